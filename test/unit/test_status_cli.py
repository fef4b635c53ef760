"""dff_status's view of /diagnostics: which entries, filtered how, shown how."""
from __future__ import annotations

from dff_lifecycle.cli.status import format_status, Latest, STALE_AFTER_S
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from fake_clock import FakeClock


def status(name: str, level: bytes, message: str, **values: str) -> DiagnosticStatus:
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id='h',
                            values=[KeyValue(key=k.replace('_', ' '), value=v)
                                    for k, v in values.items()])


def array(*statuses: DiagnosticStatus) -> DiagnosticArray:
    return DiagnosticArray(status=list(statuses))


def filled(clock: FakeClock) -> Latest:
    latest = Latest(clock)
    latest.on_array(array(status('/m/layer_0: ff_layer', DiagnosticStatus.OK,
                                 'active, 5 batches trained', state='active',
                                 batches_trained='5', loss='0.6931',
                                 goodness_positive='2.1000', goodness_negative='0.4000',
                                 rejected_tensors='0')))
    latest.on_array(array(status('/other/layer_0: ff_layer', DiagnosticStatus.ERROR,
                                 'configure failed: bad file', state='unconfigured',
                                 batches_trained='0', rejected_tensors='0'),
                          status('motor_driver: temperature', DiagnosticStatus.WARN, 'hot')))
    latest.on_array(array(status('/dff/server_1: server_container', DiagnosticStatus.OK,
                                 'hosting 2 layers', layers_hosted='2', memory_rss='410 MiB',
                                 uptime='31 s')))
    return latest


def test_layers_then_containers_with_level_and_message():
    clock = FakeClock(10.0)
    layers, containers = filled(clock).snapshot()
    text = format_status(layers, containers, clock.now)
    layer_table, container_table = text.split('\n\n')
    head, *rows = layer_table.splitlines()
    assert head.split() == ['layer', 'state', 'level', 'batches', 'loss', 'g+', 'g-',
                            'rejected', 'message']
    assert rows[0].split() == ['/m/layer_0', 'active', 'OK', '5', '0.6931', '2.1000', '0.4000',
                               '0', 'active,', '5', 'batches', 'trained']
    assert rows[1].split()[:3] == ['/other/layer_0', 'unconfigured', 'ERROR']
    assert rows[1].endswith('configure failed: bad file')
    assert 'motor_driver' not in text  # not a DFF entry
    head, row = container_table.splitlines()
    assert head.split() == ['container', 'level', 'layers', 'rss', 'uptime', 'message']
    assert row.split() == ['/dff/server_1', 'OK', '2', '410', 'MiB', '31', 's', 'hosting', '2',
                           'layers']


def test_model_keeps_only_its_layers_and_no_containers():
    clock = FakeClock(10.0)
    layers, containers = filled(clock).snapshot('m')
    assert set(layers) == {'/m/layer_0'} and containers == {}
    text = format_status(layers, containers, clock.now)
    assert [line.split()[0] for line in text.splitlines()[1:]] == ['/m/layer_0']


def test_an_entry_not_refreshed_shows_stale():
    clock = FakeClock(10.0)
    latest = filled(clock)
    clock.now += STALE_AFTER_S + 1
    latest.on_array(array(status('/m/layer_1: ff_layer', DiagnosticStatus.OK, 'inactive',
                                 state='inactive')))
    layers, _ = latest.snapshot('m')
    levels = {line.split()[0]: line.split()[2]
              for line in format_status(layers, {}, clock.now).splitlines()[1:]}
    assert levels == {'/m/layer_0': 'STALE', '/m/layer_1': 'OK'}


def test_heard_names_the_reporting_nodes():
    assert filled(FakeClock(10.0)).heard() == {'/m/layer_0', '/other/layer_0', '/dff/server_1'}


def test_nothing_heard_is_empty():
    assert format_status({}, {}, 0.0) == ''
