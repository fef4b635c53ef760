"""The health rules of layers and containers (common/health.py), one test per rule."""
from __future__ import annotations

from dataclasses import replace

from dff_lifecycle.common.health import (assess_container, CONTAINER_KEYS, ContainerFacts,
                                         entry_name, IDLE_WARN_S, LAYER_KEYS, LayerFacts,
                                         LayerHealth, Level, split_entry_name)

MIB = 1 << 20


def facts(state: str = 'active', **kw) -> LayerFacts:
    base = {'batches': 0, 'inference_batches': 0, 'loss': 0.5, 'goodness_positive': 2.0,
            'goodness_negative': 0.5, 'rejected': 0}
    return LayerFacts(state=state, **{**base, **kw})


def container(**kw) -> ContainerFacts:
    base = {'layers': ('/m/layer_0', '/m/layer_1'), 'rss_bytes': 300 * MIB, 'cgroup': None,
            'uptime_s': 12.0, 'pid': 42}
    return ContainerFacts(**{**base, **kw})


def test_a_new_layer_is_ok_and_reports_every_key():
    report = LayerHealth().assess(facts('unconfigured'), 0.0)
    assert report.level == Level.OK and report.message == 'unconfigured'
    assert tuple(k for k, _ in report.values) == LAYER_KEYS
    assert all(isinstance(v, str) and v for _, v in report.values)


def test_ok_message_counts_batches_and_values_carry_the_facts():
    report = LayerHealth().assess(facts(batches=7, loss=0.25, rejected=0, error='',
                                        weight_file='/w/m/layer_0.pt', memory_bytes=3 * MIB), 0)
    values = dict(report.values)
    assert report.level == Level.OK and report.message == 'active, 7 batches trained'
    assert values['batches trained'] == '7' and values['loss'] == '0.2500'
    assert values['weight file'] == '/w/m/layer_0.pt' and values['memory'] == '3 MiB'
    assert values['last error'] == '-'


def test_a_failed_transition_is_error_until_the_next_successful_one():
    health = LayerHealth()
    health.assess(facts('unconfigured'), 0)
    health.failed('configure failed: cannot load weight file /w/layer_0.pt')
    report = health.assess(facts('unconfigured'), 1)
    assert report.level == Level.ERROR and 'cannot load weight file' in report.message
    assert health.assess(facts('unconfigured'), 2).level == Level.ERROR  # stays
    health.transition()  # configure succeeded
    assert health.assess(facts('inactive'), 3).level == Level.OK


def test_error_processing_after_a_failure_does_not_clear_it():
    health = LayerHealth()
    health.failed('processing failed: boom', error_processing=True)
    health.transition()  # on_error: the failure's own error processing
    assert health.assess(facts('unconfigured'), 0).level == Level.ERROR
    health.transition()  # configure again
    assert health.assess(facts('inactive'), 1).level == Level.OK


def test_a_rejected_tensor_is_error_until_the_next_batch_goes_through():
    health = LayerHealth()
    health.assess(facts(batches=3), 0)
    report = health.assess(facts(batches=3, rejected=1, error='crc mismatch'), 1)
    assert report.level == Level.ERROR
    assert 'rejected 1 tensor' in report.message and 'crc mismatch' in report.message
    assert health.assess(facts(batches=3, rejected=2), 2).level == Level.ERROR
    assert 'rejected 2 tensor' in health.assess(facts(batches=3, rejected=2), 3).message
    assert health.assess(facts(batches=3, inference_batches=1, rejected=2), 4).level == Level.OK
    assert health.assess(facts(batches=4, rejected=2), 5).level == Level.OK


def test_a_rejection_counter_reset_by_a_new_configure_is_no_rejection():
    health = LayerHealth()
    health.assess(facts(rejected=3, batches=1), 0)
    health.assess(facts(rejected=3, batches=2), 1)  # cleared by the batch
    health.assess(facts('unconfigured', rejected=3, batches=2), 2)
    assert health.assess(facts('inactive', rejected=0, batches=2), 3).level == Level.OK
    assert health.assess(facts('inactive', rejected=1, batches=2), 4).level == Level.ERROR


def test_inactive_after_training_is_a_pause_warning_until_activated_or_cleaned_up():
    health = LayerHealth()
    health.assess(facts('inactive', batches=10), 0)   # loaded 10 batches
    health.assess(facts('active', batches=10), 1)
    health.assess(facts('active', batches=12), 2)
    report = health.assess(facts('inactive', batches=12), 3)
    assert report.level == Level.WARN and 'activate' in report.message
    assert health.assess(facts('active', batches=12), 4).level == Level.OK
    health.assess(facts('active', batches=13), 5)
    health.assess(facts('inactive', batches=13), 6)
    assert health.assess(facts('unconfigured', batches=13), 7).level == Level.OK
    assert health.assess(facts('inactive', batches=13), 8).level == Level.OK  # reconfigured


def test_inactive_without_training_since_activation_is_ok():
    health = LayerHealth()
    health.assess(facts('inactive', batches=10), 0)   # weights with 10 batches loaded
    health.assess(facts('active', batches=10), 1)
    assert health.assess(facts('inactive', batches=10), 2).level == Level.OK


def test_a_loss_or_goodness_that_is_not_finite_warns():
    health = LayerHealth()
    assert health.assess(facts(batches=2, loss=float('nan')), 0).level == Level.WARN
    assert health.assess(facts(batches=2, goodness_negative=float('inf')), 1).level == Level.WARN
    assert health.assess(facts(batches=3), 2).level == Level.OK
    assert health.assess(facts(batches=0, loss=float('nan')), 3).level == Level.OK  # none yet
    values = dict(health.assess(facts(batches=2, loss=float('nan')), 4).values)
    assert values['loss'] == 'nan'


def test_no_batch_for_long_while_active_after_training_warns():
    health = LayerHealth()
    health.assess(facts('active', batches=5), 0)
    health.assess(facts('active', batches=6), 1)
    assert health.assess(facts('active', batches=6), 1 + IDLE_WARN_S - 1).level == Level.OK
    report = health.assess(facts('active', batches=6), 1 + IDLE_WARN_S + 5)
    assert report.level == Level.WARN and f'{IDLE_WARN_S + 5:.0f} s' in report.message
    assert health.assess(facts('active', batches=7), 100).level == Level.OK


def test_an_idle_layer_that_never_trained_since_activation_is_ok():
    health = LayerHealth()
    health.assess(facts('inactive', batches=5), 0)
    health.assess(facts('active', batches=5), 1)
    assert health.assess(facts('active', batches=5), 10 * IDLE_WARN_S).level == Level.OK


def test_error_wins_over_warn_and_the_message_names_only_the_errors():
    health = LayerHealth()
    health.failed('activate failed: no topic')
    report = health.assess(facts(batches=1, loss=float('nan')), 0)
    assert report.level == Level.ERROR and report.message == 'activate failed: no topic'


def test_the_last_error_alone_does_not_raise_the_level():
    report = LayerHealth().assess(facts('inactive', error='configure failed: old news'), 0)
    assert report.level == Level.OK and dict(report.values)['last error'].endswith('old news')


def test_a_container_without_memory_limit_is_ok_and_reports_every_key():
    report = assess_container(container())
    assert report.level == Level.OK and report.message == 'hosting 2 layers'
    assert tuple(k for k, _ in report.values) == CONTAINER_KEYS
    values = dict(report.values)
    assert values['layers'] == '/m/layer_0, /m/layer_1' and values['cgroup limit'] == 'none'
    assert values['memory rss'] == '300 MiB' and values['uptime'] == '12 s'
    assert assess_container(container(layers=('/m/layer_0',))).message == 'hosting 1 layer'


def test_a_container_near_its_cgroup_limit_warns():
    assert assess_container(container(cgroup=(1000 * MIB, 899 * MIB))).level == Level.OK
    report = assess_container(container(cgroup=(1000 * MIB, 950 * MIB)))
    assert report.level == Level.WARN and '95%' in report.message
    assert dict(report.values)['cgroup in use'] == '950 MiB'


def test_entry_names_follow_diagnostic_updater():
    assert entry_name('/m/layer_0', 'ff_layer') == '/m/layer_0: ff_layer'
    assert split_entry_name('/m/layer_0: ff_layer') == ('/m/layer_0', 'ff_layer')
    assert split_entry_name('cpu temperature') == ('', 'cpu temperature')


def test_facts_are_values():
    a = facts(batches=1)
    assert replace(a, batches=2) != a and replace(a, batches=1) == a
