"""What an emulated cluster is: devices, their CPU and memory limits, their links."""
from __future__ import annotations

from dataclasses import asdict, dataclass
import ipaddress
import math
import os
import re
from typing import Any, Mapping, Optional

#: Addresses come from the benchmarking range of RFC 2544 (198.18.0.0/15); every
#: cluster has its own bridge in its own namespace, so clusters may reuse them.
SUBNET = ipaddress.ip_network('198.18.0.0/24')
MASTER = 'master'
MAX_DEVICES = 200
_NAME = re.compile(r'^[a-z][a-z0-9]{0,7}$')
_RATE = re.compile(r'^([0-9]+(?:\.[0-9]+)?)\s*([kmg]?)(bit|bps)?$', re.IGNORECASE)
_RATE_UNITS = {'': 1, 'k': 1e3, 'm': 1e6, 'g': 1e9}


class ClusterError(Exception):
    """Something that stops a cluster command; the message is one line for the user."""


def parse_rate(text: str) -> int:
    """'100mbit', '1gbit', '20m', '500k' -> bits per second (tc's units, decimal)."""
    match = _RATE.match(str(text).strip())
    if not match:
        raise ClusterError(f'link rate {text!r}: expected a number and a unit, e.g. 1gbit, '
                           '100mbit, 20mbit')
    value = float(match.group(1)) * _RATE_UNITS[match.group(2).lower()]
    if (match.group(3) or '').lower() == 'bps':
        value *= 8  # bytes per second
    if not 8e3 <= value <= 1e11:
        raise ClusterError(f'link rate {text!r} is outside 8kbit .. 100gbit')
    return int(value)


@dataclass(frozen=True)
class ClusterSpec:
    """A cluster: `devices` devices plus the master's namespace, all on one bridge."""

    name: str = 'dff'
    devices: int = 2
    cpus: float = 0.0           # CPU share per device in cores (cfs quota); 0: unlimited
    pin: bool = False           # give each device its own cores (cpuset), round robin
    memory_mib: int = 0         # memory cap per device (cgroup memory); 0: unlimited
    rate_bps: int = 0           # link rate of each device, both directions (tc tbf); 0: none
    loss_percent: float = 0.0   # random loss of each device's outgoing packets (nftables)
    master_limits: bool = False  # the master's namespace gets the device limits too

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ClusterError(f'cluster name {self.name!r}: 1-8 lowercase letters and digits, '
                               'starting with a letter')
        if not isinstance(self.devices, int) or not 1 <= self.devices <= MAX_DEVICES:
            raise ClusterError(f'devices must be an integer in 1..{MAX_DEVICES}, '
                               f'got {self.devices!r}')
        if not (isinstance(self.cpus, (int, float)) and math.isfinite(self.cpus)
                and 0 <= self.cpus <= 1024):
            raise ClusterError(f'cpus must be a number of cores >= 0 (0: unlimited), '
                               f'got {self.cpus!r}')
        if 0 < self.cpus < 0.01:
            raise ClusterError(f'cpus={self.cpus}: at least 0.01 core per device')
        if not isinstance(self.memory_mib, int) or self.memory_mib < 0:
            raise ClusterError(f'memory must be a whole number of MiB >= 0, '
                               f'got {self.memory_mib!r}')
        if 0 < self.memory_mib < 64:
            raise ClusterError(f'memory={self.memory_mib} MiB: a device needs at least 64 MiB')
        if not isinstance(self.rate_bps, int) or self.rate_bps < 0:
            raise ClusterError(f'rate must be >= 0 bit/s, got {self.rate_bps!r}')
        if not (isinstance(self.loss_percent, (int, float)) and 0 <= self.loss_percent < 100):
            raise ClusterError(f'loss must be a percentage in [0, 100), '
                               f'got {self.loss_percent!r}')

    # ----------------------------------------------------------------- names
    @property
    def device_names(self) -> list[str]:
        return [f'd{i}' for i in range(1, self.devices + 1)]

    @property
    def members(self) -> list[str]:
        """Every namespace with a process in it: the master's, then the devices'."""
        return [MASTER, *self.device_names]

    def netns(self, member: str) -> str:
        self._check_member(member)
        return f'{self.name}-{member}'

    @property
    def switch_netns(self) -> str:
        return f'{self.name}-switch'

    def address(self, member: str) -> ipaddress.IPv4Address:
        """198.18.0.1 for the master, 198.18.0.(10 + i) for device d<i>."""
        self._check_member(member)
        host = 1 if member == MASTER else 10 + int(member[1:])
        return SUBNET.network_address + host

    def cgroup(self, member: str) -> str:
        """Relative cgroup path of a member, the same under every controller."""
        self._check_member(member)
        return f'dff/{self.name}/{member}'

    def limited(self, member: str) -> bool:
        return member != MASTER or self.master_limits

    def cores_of(self, member: str, online: int) -> list[int]:
        """Cores of a pinned member: ceil(cpus) cores each, dealt round robin."""
        width = max(1, math.ceil(self.cpus or 1))
        index = 0 if member == MASTER else int(member[1:]) - 1
        return sorted({(index * width + k) % online for k in range(width)})

    def threads(self) -> int:
        """Torch threads for a process on a device: its whole cores, at least 1."""
        return max(1, int(self.cpus)) if self.cpus else (os.cpu_count() or 1)

    def resolve_member(self, text: str) -> str:
        """'master', 'd2' or '2' -> the member name; a clear error otherwise."""
        member = f'd{text}' if str(text).isdigit() else str(text)
        self._check_member(member)
        return member

    def _check_member(self, member: str) -> None:
        if member != MASTER and member not in self.device_names:
            raise ClusterError(f'cluster {self.name!r} has no device {member!r} '
                               f'(it has: {", ".join(self.members)})')

    # ----------------------------------------------------------------- records
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'ClusterSpec':
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def describe(self) -> str:
        parts = [f'{self.devices} device(s)',
                 f'{self.cpus:g} core(s) each' if self.cpus else 'CPU unlimited',
                 f'{self.memory_mib} MiB each' if self.memory_mib else 'memory unlimited']
        if self.pin:
            parts.append('pinned')
        if self.rate_bps:
            parts.append(f'links {format_rate(self.rate_bps)}')
        if self.loss_percent:
            parts.append(f'{self.loss_percent:g} % loss')
        return f'cluster {self.name!r}: ' + ', '.join(parts)


def format_rate(bps: Optional[int]) -> str:
    if not bps:
        return 'unshaped'
    for unit, scale in (('gbit', 1e9), ('mbit', 1e6), ('kbit', 1e3)):
        if bps >= scale:
            return f'{bps / scale:g}{unit}'
    return f'{bps}bit'
