"""
Carry a cluster plan out on this machine, and remember what was made.

The record (`<state_dir>/<name>.json`) lists the undo actions of every step that
succeeded, written after each step, so `down` removes exactly what `up` made
even after a crash half way; nothing else is ever touched.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import signal
import subprocess
import time
from typing import Callable, Iterable, Mapping, Optional, Sequence

from dff_lifecycle.cluster.plan import Action, member_cgroups, names_in_use, Step, up_steps
from dff_lifecycle.cluster.spec import ClusterError, ClusterSpec, MASTER
from dff_lifecycle.ros.environment import FASTDDS_PROFILE, OUR_PROFILES

DEFAULT_STATE_DIR = Path(os.environ.get('DFF_CLUSTER_STATE', '/run/dff_cluster'))
NETNS_DIR = Path('/run/netns')
TOOLS = {'ip': 'iproute2', 'tc': 'iproute2', 'nft': 'nftables'}


class Host:
    """Runs actions; the one place that changes the system."""

    def __init__(self, log: Callable[[str], None] = print) -> None:
        self.log = log

    def check_root(self) -> None:
        if os.geteuid() != 0:
            raise ClusterError('the emulated cluster needs root (network namespaces, cgroups); '
                               'run it with sudo')

    def check_tools(self, spec: ClusterSpec) -> None:
        needed = ['ip']
        if spec.rate_bps:
            needed.append('tc')
        if spec.loss_percent:
            needed.append('nft')
        missing = [t for t in needed if shutil.which(t) is None]
        if missing:
            packages = sorted({TOOLS[t] for t in missing})
            raise ClusterError(f'missing tool(s): {", ".join(missing)} (Debian: apt-get install '
                               f'{" ".join(packages)})')
        for controller in ('cpu', 'cpuset', 'memory'):
            if (controller in ('cpu',) and spec.cpus or controller == 'cpuset' and spec.pin
                    or controller == 'memory' and spec.memory_mib):
                if not Path(f'/sys/fs/cgroup/{controller}/tasks').exists():
                    raise ClusterError(f'cgroup v1 controller {controller!r} is not mounted at '
                                       f'/sys/fs/cgroup/{controller}')

    def netns_exists(self, name: str) -> bool:
        return (NETNS_DIR / name).exists()

    def do(self, action: Action) -> None:
        kind, args = action[0], action[1:]
        if kind == 'ip':
            self._run(['ip', *args])
        elif kind == 'sh':
            self._run(['ip', 'netns', 'exec', args[0], *args[1:]])
        elif kind == 'mkdir':
            Path(args[0]).mkdir(exist_ok=True)
        elif kind == 'write':
            try:
                Path(args[0]).write_text(args[1])
            except OSError as err:
                raise ClusterError(f'cannot write {args[1]!r} to {args[0]}: '
                                   f'{err.strerror or err}') from err
        elif kind == 'rmdir':
            self._rmdir(Path(args[0]))
        elif kind == 'kill_netns':
            self._kill(self._netns_pids(args[0]))
        elif kind == 'kill_cgroup':
            self._kill(self._cgroup_pids(Path(args[0])))
        else:
            raise ValueError(f'unknown action {kind!r}')

    # ------------------------------------------------------------------ helpers
    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            text = (done.stderr or done.stdout).strip().splitlines()
            why = text[0] if text else f'exit code {done.returncode}'
            raise ClusterError(f'`{" ".join(argv)}` failed: {why}')

    def _netns_pids(self, name: str) -> list[int]:
        done = subprocess.run(['ip', 'netns', 'pids', name], capture_output=True, text=True)
        return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []

    @staticmethod
    def _cgroup_pids(path: Path) -> list[int]:
        try:
            return [int(p) for p in (path / 'tasks').read_text().split()]
        except OSError:
            return []

    def _kill(self, pids: Iterable[int]) -> None:
        pids = [p for p in pids if p != os.getpid()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5.0
        while any(Path(f'/proc/{p}').exists() for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)

    @staticmethod
    def _rmdir(path: Path) -> None:
        if not path.exists():
            return
        if any(p.is_dir() for p in path.iterdir()):
            return  # a shared parent that still holds another cluster's cgroups
        deadline = time.monotonic() + 5.0
        while True:
            try:
                path.rmdir()
                return
            except OSError as err:  # busy: killed tasks still exiting
                if time.monotonic() > deadline:
                    raise ClusterError(f'cannot remove {path}: {err.strerror or err}') from err
                time.sleep(0.05)


class ClusterRecord:
    """The state file of one cluster: its spec and the undo actions of what exists."""

    def __init__(self, name: str, state_dir: Path = DEFAULT_STATE_DIR) -> None:
        self.path = Path(state_dir) / f'{name}.json'

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> tuple[ClusterSpec, list[list[Action]], dict]:
        try:
            data = json.loads(self.path.read_text())
            spec = ClusterSpec.from_dict(data['spec'])
            undo = [[tuple(a) for a in step] for step in data['undo']]
            return spec, undo, data.get('extra', {})
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ClusterError(f'{self.path}: unreadable cluster record ({err}); remove the '
                               'namespaces by hand (`ip netns list`) and delete the file') from err

    def save(self, spec: ClusterSpec, undo: Sequence[Sequence[Action]], extra: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix('.tmp')
        tmp.write_text(json.dumps({'spec': spec.to_dict(), 'undo': [list(map(list, s))
                                                                    for s in undo],
                                   'extra': extra}, indent=1))
        tmp.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def online_cpus() -> int:
    return len(os.sched_getaffinity(0))


def cluster_up(spec: ClusterSpec, host: Host, record: ClusterRecord,
               data_dir: Path) -> str:
    """Make the cluster (idempotent: the same spec already up is fine); say what happened."""
    if record.exists():
        current, _, _ = record.load()
        if current == spec:
            return f'{spec.describe()} is already up'
        raise ClusterError(f'cluster {spec.name!r} is up with other settings ({current.describe()}'
                           f'); run `dff_cluster down --name {spec.name}` first')
    host.check_root()
    host.check_tools(spec)
    for name in names_in_use(spec):
        taken = Path(name).exists() if name.startswith('/') else host.netns_exists(name)
        if taken:
            raise ClusterError(f'{name} exists and was not made for cluster {spec.name!r} '
                               'by this tool; choose another --name or remove it')
    steps = up_steps(spec, online_cpus(), _cpuset_mems())
    extra = {'data_dir': str(data_dir)}
    undo: list[Sequence[Action]] = []
    try:
        for step in steps:
            undo.append(step.undo)  # recorded first: a step that fails half way is undone too
            record.save(spec, undo, extra)
            for action in step.do:
                host.do(action)
    except BaseException:
        _undo_all(host, undo, quiet=True)
        record.remove()
        raise
    for member in spec.members:
        (data_dir / member / 'weights').mkdir(parents=True, exist_ok=True)
    return f'{spec.describe()} is up'


def cluster_down(name: str, host: Host, record: ClusterRecord) -> str:
    """Remove everything the record lists, in reverse order; say what happened."""
    if not record.exists():
        return f'cluster {name!r} is not up (nothing to remove)'
    host.check_root()
    _, undo, _ = record.load()
    problems = _undo_all(host, undo, quiet=False)
    record.remove()
    if problems:
        raise ClusterError(f'cluster {name!r} removed, except: {"; ".join(problems)}')
    return f'cluster {name!r} removed'


def _undo_all(host: Host, undo: Sequence[Sequence[Action]], quiet: bool) -> list[str]:
    problems = []
    for actions in reversed(undo):
        for action in actions:
            try:
                host.do(action)
            except (ClusterError, OSError) as err:
                problems.append(str(err))
    return problems


def _cpuset_mems() -> str:
    try:
        return Path('/sys/fs/cgroup/cpuset/cpuset.mems').read_text().strip() or '0'
    except OSError:
        return '0'


def member_environment(spec: ClusterSpec, member: str, data_dir: Path,
                       base: Optional[dict] = None) -> dict[str, str]:
    """Return the environment of a process on a member: discovery on its subnet, UDP only."""
    env = dict(os.environ if base is None else base)
    threads = str(spec.threads() if spec.limited(member) else os.cpu_count() or 1)
    env.update({
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET',
        # Processes of one machine would otherwise talk through /dev/shm and never
        # touch the emulated network.
        'FASTDDS_BUILTIN_TRANSPORTS': 'UDPv4',
        # The lease profile only: the one-host profile peers with 127.0.0.1 alone.
        'FASTDDS_DEFAULT_PROFILES_FILE': member_profile(env),
        'OMP_NUM_THREADS': threads,
        'DFF_CLUSTER': spec.name,
        'DFF_CLUSTER_DEVICE': member,
        'DFF_CLUSTER_DATA': str(data_dir / member),
    })
    return env


def member_profile(env: Mapping[str, str]) -> str:
    """Return a member's Fast DDS profile: the user's own, else DFF's lease-only one."""
    chosen = env.get('FASTDDS_DEFAULT_PROFILES_FILE') or env.get('FASTRTPS_DEFAULT_PROFILES_FILE')
    return chosen if chosen and chosen not in OUR_PROFILES else str(FASTDDS_PROFILE)


CLONE_NEWNET = 0x40000000


def join_netns(name: str) -> None:
    """
    Move this process into a network namespace (setns(2)).

    Not `ip netns exec`: that also remounts /sys for the namespace, which hides
    /sys/fs/cgroup, and a process on a device must see its own memory cap.
    """
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fd = os.open(NETNS_DIR / name, os.O_RDONLY)
    except OSError as err:
        raise ClusterError(f'no network namespace {name!r}: {err.strerror or err}') from err
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise ClusterError(f'cannot enter namespace {name!r}: {os.strerror(errno)}')
    finally:
        os.close(fd)


def enter(spec: ClusterSpec, member: str, data_dir: Path, argv: Sequence[str]) -> None:
    """Join the member's cgroups and namespace, then become argv (does not return)."""
    if not argv:
        raise ClusterError('nothing to run: give a command after --')
    for path in member_cgroups(spec, member):
        try:
            Path(path, 'tasks').write_text(str(os.getpid()))
        except OSError as err:
            raise ClusterError(f'cannot join cgroup {path}: {err.strerror or err}') from err
    join_netns(spec.netns(member))
    env = member_environment(spec, member, data_dir)
    try:
        os.execvpe(argv[0], list(argv), env)
    except OSError as err:
        raise ClusterError(f'cannot run {argv[0]!r} on {member}: {err.strerror or err}') from err


__all__ = ['ClusterRecord', 'cluster_down', 'cluster_up', 'enter', 'Host', 'MASTER',
           'member_environment', 'Step']
