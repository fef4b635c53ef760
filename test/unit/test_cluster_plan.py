"""The emulated cluster's spec and plan: names, addresses, limits and undo, without root."""
from __future__ import annotations

from pathlib import Path

from dff_lifecycle.cluster import host as cluster_host
from dff_lifecycle.cluster.placement import member_for, on_member
from dff_lifecycle.cluster.plan import tbf_burst_bytes, up_steps
from dff_lifecycle.cluster.spec import ClusterError, ClusterSpec, parse_rate
from dff_lifecycle.ros.environment import FASTDDS_LOCALHOST_PROFILE, FASTDDS_PROFILE
import pytest


def test_rates_parse_like_tc():
    assert parse_rate('1gbit') == 10 ** 9
    assert parse_rate('100mbit') == 10 ** 8
    assert parse_rate('20m') == 2 * 10 ** 7
    assert parse_rate('1mbps') == 8 * 10 ** 6
    for bad in ('fast', '', '1tbit', '-5mbit', '1kbit'):
        with pytest.raises(ClusterError):
            parse_rate(bad)


@pytest.mark.parametrize('fields', [
    {'name': 'Bad'}, {'name': 'toolongname'}, {'devices': 0}, {'devices': 2.5},
    {'cpus': -1}, {'cpus': float('nan')}, {'cpus': 0.001}, {'memory_mib': 10},
    {'memory_mib': 1.5}, {'loss_percent': 100}, {'rate_bps': -1}])
def test_bad_specs_are_one_line_errors(fields):
    with pytest.raises(ClusterError) as err:
        ClusterSpec(**fields)
    assert '\n' not in str(err.value)


def test_names_and_addresses():
    spec = ClusterSpec(name='c1', devices=3)
    assert spec.members == ['master', 'd1', 'd2', 'd3']
    assert spec.netns('d2') == 'c1-d2'
    assert str(spec.address('master')) == '198.18.0.1'
    assert str(spec.address('d3')) == '198.18.0.13'
    assert spec.resolve_member('2') == 'd2'
    with pytest.raises(ClusterError, match='no device'):
        spec.resolve_member('d4')
    assert ClusterSpec.from_dict(spec.to_dict()) == spec


def test_pinned_cores_are_dealt_round_robin():
    spec = ClusterSpec(devices=4, cpus=0.5, pin=True)
    assert [spec.cores_of(d, 2) for d in spec.device_names] == [[0], [1], [0], [1]]
    wide = ClusterSpec(devices=2, cpus=2, pin=True)
    assert wide.cores_of('d1', 4) == [0, 1] and wide.cores_of('d2', 4) == [2, 3]


def _actions(steps):
    return [a for s in steps for a in s.do]


def test_plan_makes_every_device_and_limits_only_devices():
    spec = ClusterSpec(name='c', devices=2, cpus=0.5, memory_mib=512, rate_bps=10 ** 8,
                       loss_percent=1.5)
    steps = up_steps(spec, online_cpus=2)
    actions = _actions(steps)
    assert ('ip', 'netns', 'add', 'c-switch') == actions[0]
    for member in ('master', 'd1', 'd2'):
        assert ('ip', 'netns', 'add', f'c-{member}') in actions
    writes = {a[1]: a[2] for a in actions if a[0] == 'write'}
    assert writes['/sys/fs/cgroup/cpu/dff/c/d1/cpu.cfs_quota_us'] == '50000'
    assert writes['/sys/fs/cgroup/memory/dff/c/d2/memory.limit_in_bytes'] == str(512 << 20)
    assert not any('/master/' in path for path in writes)  # the master is not limited
    shaped = [a for a in actions if a[0] == 'sh' and a[2] == 'tc']
    assert len(shaped) == 4  # both directions of both devices
    loss = [a for a in actions if a[0] == 'sh' and 'numgen' in a]
    assert len(loss) == 2 and all('150' in a for a in loss)
    # Everything made has an undo; namespaces are emptied before they are deleted.
    for step in steps:
        assert step.undo
    undo = [a for s in steps for a in s.undo]
    assert undo.index(('kill_netns', 'c-d1')) < undo.index(('ip', 'netns', 'delete', 'c-d1'))


def test_tbf_bucket_holds_a_frame_and_ten_milliseconds():
    assert tbf_burst_bytes(20 * 10 ** 6) == 25_000
    assert tbf_burst_bytes(10 ** 5) == 4 * 1514


def test_no_limits_no_cgroups():
    actions = _actions(up_steps(ClusterSpec(devices=1), online_cpus=2))
    assert not any(a[0] in ('mkdir', 'write') for a in actions)


class FakeHost(cluster_host.Host):

    def __init__(self, fail_on=None):
        super().__init__(log=lambda _t: None)
        self.done, self.fail_on = [], fail_on

    def check_root(self):
        pass

    def check_tools(self, spec):
        pass

    def netns_exists(self, name):
        return False

    def do(self, action):
        if self.fail_on and self.fail_on(action):
            raise ClusterError(f'boom at {action}')
        self.done.append(action)


def test_a_failed_up_undoes_what_it_made(tmp_path):
    spec = ClusterSpec(name='c', devices=2)
    record = cluster_host.ClusterRecord('c', tmp_path)
    host = FakeHost(fail_on=lambda a: a[:3] == ('ip', 'netns', 'add') and a[3] == 'c-d2')
    with pytest.raises(ClusterError, match='boom'):
        cluster_host.cluster_up(spec, host, record, tmp_path / 'data')
    assert not record.exists()
    deleted = [a[3] for a in host.done if a[:3] == ('ip', 'netns', 'delete')]
    assert deleted == ['c-d2', 'c-d1', 'c-master', 'c-switch']


def test_up_is_idempotent_and_down_undoes_in_reverse(tmp_path):
    spec = ClusterSpec(name='c', devices=1, memory_mib=256)
    record = cluster_host.ClusterRecord('c', tmp_path)
    host = FakeHost()
    assert 'is up' in cluster_host.cluster_up(spec, host, record, tmp_path / 'data')
    assert (tmp_path / 'data' / 'd1' / 'weights').is_dir()
    assert 'already up' in cluster_host.cluster_up(spec, host, record, tmp_path / 'data')
    with pytest.raises(ClusterError, match='other settings'):
        cluster_host.cluster_up(ClusterSpec(name='c', devices=2), host, record, tmp_path)
    host.done.clear()
    assert 'removed' in cluster_host.cluster_down('c', host, record)
    assert host.done[0] == ('kill_cgroup', '/sys/fs/cgroup/memory/dff/c/d1')
    assert host.done[-1] == ('ip', 'netns', 'delete', 'c-switch')
    assert not record.exists()
    assert 'not up' in cluster_host.cluster_down('c', host, record)


def test_servers_are_dealt_to_devices_and_run_through_exec():
    spec = ClusterSpec(name='c', devices=2)
    assert [member_for(n, spec) for n in ('master', 'server_1', 'server_2', 'server_3')] == [
        'master', 'd1', 'd2', 'd1']
    argv = on_member(['server_container', '--ros-args'], spec, 'd2', Path('/run/x'))
    assert argv[-4:] == ['d2', '--', 'server_container', '--ros-args']
    assert '--state-dir' in argv and 'exec' in argv


def test_member_environment_keeps_dds_on_the_emulated_network(tmp_path):
    spec = ClusterSpec(name='c', devices=2, cpus=0.5)
    env = cluster_host.member_environment(spec, 'd1', tmp_path, base={})
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'SUBNET'
    assert env['FASTDDS_BUILTIN_TRANSPORTS'] == 'UDPv4'
    assert env['OMP_NUM_THREADS'] == '1'
    assert env['DFF_CLUSTER_DATA'] == str(tmp_path / 'd1')
    assert env['FASTDDS_DEFAULT_PROFILES_FILE'] == str(FASTDDS_PROFILE)
    # A test or launch on one host hands down its one-host profile: never to a member, whose
    # peers are on the bridge; a profile of the user's own is kept.
    one_host = {'FASTDDS_DEFAULT_PROFILES_FILE': str(FASTDDS_LOCALHOST_PROFILE)}
    member = cluster_host.member_environment(spec, 'd1', tmp_path, base=one_host)
    assert member['FASTDDS_DEFAULT_PROFILES_FILE'] == str(FASTDDS_PROFILE)
    own = {'FASTDDS_DEFAULT_PROFILES_FILE': '/etc/my.xml'}
    member = cluster_host.member_environment(spec, 'd1', tmp_path, base=own)
    assert member['FASTDDS_DEFAULT_PROFILES_FILE'] == '/etc/my.xml'
