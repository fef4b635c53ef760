"""
The steps that make a cluster, each with the steps that undo it (pure: no system calls).

An action is a tuple: ('ip', args...) runs `ip args...`; ('sh', ns, argv...) runs argv in
namespace ns; ('mkdir', path), ('write', path, text), ('rmdir', path), ('kill_netns', ns),
('kill_cgroup', path). `host.Host` carries them out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from dff_lifecycle.cluster.spec import ClusterSpec, SUBNET

Action = tuple
CGROUP_ROOT = '/sys/fs/cgroup'
CFS_PERIOD_US = 100_000
BRIDGE = 'br0'
DEVICE_LINK = 'eth0'


@dataclass(frozen=True)
class Step:
    """One thing the cluster needs, how to make it and how to remove it again."""

    what: str
    do: Sequence[Action]
    undo: Sequence[Action] = field(default_factory=tuple)


def port_name(member: str) -> str:
    """Switch-side end of a member's veth (interface names have at most 15 characters)."""
    return f'p-{member}'


def tbf_burst_bytes(rate_bps: int) -> int:
    """Bucket of 10 ms of traffic, at least four full frames (tbf needs >= one MTU)."""
    return max(4 * 1514, rate_bps // 8 // 100)


def shaping(ns: str, link: str, rate_bps: int) -> list[Action]:
    """Shape a link's egress with tbf: the rate, a 10 ms bucket, up to 100 ms of queue."""
    return [('sh', ns, 'tc', 'qdisc', 'replace', 'dev', link, 'root', 'tbf',
             'rate', f'{rate_bps}bit', 'burst', str(tbf_burst_bytes(rate_bps)),
             'latency', '100ms')]


def packet_loss(ns: str, percent: float) -> list[Action]:
    """Drop that share of a namespace's outgoing UDP (all of DDS's traffic), with nftables."""
    per_10k = int(round(percent * 100))
    table = 'dff_loss'
    return [('sh', ns, 'nft', 'add', 'table', 'inet', table),
            ('sh', ns, 'nft', 'add', 'chain', 'inet', table, 'out',
             '{ type filter hook output priority 0 ; policy accept ; }'),
            ('sh', ns, 'nft', 'add', 'rule', 'inet', table, 'out', 'meta', 'l4proto', 'udp',
             'numgen', 'random', 'mod', '10000', '<', str(per_10k), 'drop')]


def controllers(spec: ClusterSpec) -> list[str]:
    """Return the cgroup controllers a cluster uses."""
    used = []
    if spec.cpus:
        used.append('cpu')
    if spec.pin:
        used.append('cpuset')
    if spec.memory_mib:
        used.append('memory')
    return used


def cgroup_dir(controller: str, relative: str) -> str:
    return f'{CGROUP_ROOT}/{controller}/{relative}'


def up_steps(spec: ClusterSpec, online_cpus: int, cpuset_mems: str = '0') -> list[Step]:
    """Every step of `up`, in order; undoing the done ones in reverse removes the cluster."""
    switch = spec.switch_netns
    steps = [Step(f'namespace {switch} with bridge {BRIDGE}',
                  do=[('ip', 'netns', 'add', switch),
                      ('sh', switch, 'ip', 'link', 'set', 'lo', 'up'),
                      ('sh', switch, 'ip', 'link', 'add', BRIDGE, 'type', 'bridge'),
                      ('sh', switch, 'ip', 'link', 'set', BRIDGE, 'up')],
                  undo=[('kill_netns', switch), ('ip', 'netns', 'delete', switch)])]
    used = controllers(spec)
    for controller in used:
        for parent in ('dff', f'dff/{spec.name}'):
            path = cgroup_dir(controller, parent)
            do: list[Action] = [('mkdir', path)]
            if controller == 'cpuset':  # a v1 cpuset must have cores and memory before tasks
                do += [('write', f'{path}/cpuset.cpus', f'0-{online_cpus - 1}'),
                       ('write', f'{path}/cpuset.mems', cpuset_mems)]
            steps.append(Step(f'cgroup {controller}:{parent}', do=do,
                              undo=[('rmdir', path)]))
    for member in spec.members:
        steps += member_steps(spec, member, used, online_cpus, cpuset_mems)
    return steps


def member_steps(spec: ClusterSpec, member: str, used: list[str], online_cpus: int,
                 cpuset_mems: str) -> list[Step]:
    ns, switch, port = spec.netns(member), spec.switch_netns, port_name(member)
    address = f'{spec.address(member)}/{SUBNET.prefixlen}'
    do: list[Action] = [
        ('ip', 'netns', 'add', ns),
        ('sh', ns, 'ip', 'link', 'set', 'lo', 'up'),
        ('ip', 'link', 'add', DEVICE_LINK, 'netns', ns, 'type', 'veth',
         'peer', 'name', port, 'netns', switch),
        ('sh', switch, 'ip', 'link', 'set', port, 'master', BRIDGE),
        ('sh', switch, 'ip', 'link', 'set', port, 'up'),
        ('sh', ns, 'ip', 'addr', 'add', address, 'dev', DEVICE_LINK),
        ('sh', ns, 'ip', 'link', 'set', DEVICE_LINK, 'up'),
        # Discovery is multicast: route it to the bridge. No default route, so nothing
        # addressed outside the cluster's subnet can leave it.
        ('sh', ns, 'ip', 'route', 'add', '224.0.0.0/4', 'dev', DEVICE_LINK),
    ]
    limited = spec.limited(member)
    if spec.rate_bps and limited:
        do += shaping(ns, DEVICE_LINK, spec.rate_bps)      # what the device sends
        do += shaping(switch, port, spec.rate_bps)         # what it receives
    if spec.loss_percent and limited:
        do += packet_loss(ns, spec.loss_percent)
    steps = [Step(f'namespace {ns} ({spec.address(member)})', do=do,
                  undo=[('kill_netns', ns), ('ip', 'netns', 'delete', ns)])]
    if not limited:
        return steps
    for controller in used:
        path = cgroup_dir(controller, spec.cgroup(member))
        do = [('mkdir', path)]
        if controller == 'cpu':
            do += [('write', f'{path}/cpu.cfs_period_us', str(CFS_PERIOD_US)),
                   ('write', f'{path}/cpu.cfs_quota_us', str(int(spec.cpus * CFS_PERIOD_US)))]
        elif controller == 'cpuset':
            cores = ','.join(str(c) for c in spec.cores_of(member, online_cpus))
            do += [('write', f'{path}/cpuset.cpus', cores),
                   ('write', f'{path}/cpuset.mems', cpuset_mems)]
        elif controller == 'memory':
            do += [('write', f'{path}/memory.limit_in_bytes', str(spec.memory_mib << 20))]
        steps.append(Step(f'cgroup {controller}:{spec.cgroup(member)}', do=do,
                          undo=[('kill_cgroup', path), ('rmdir', path)]))
    return steps


def member_cgroups(spec: ClusterSpec, member: str) -> list[str]:
    """Return the cgroup directories (one per controller) a member's processes join."""
    if not spec.limited(member):
        return []
    return [cgroup_dir(c, spec.cgroup(member)) for c in controllers(spec)]


def names_in_use(spec: ClusterSpec) -> list[str]:
    """Return the namespaces and cgroups `up` creates (checked free before it starts)."""
    names = [spec.switch_netns, *(spec.netns(m) for m in spec.members)]
    return names + [cgroup_dir(c, f'dff/{spec.name}') for c in controllers(spec)]
