"""Real DFF processes for multi-process tests: server containers and the master.

Every process runs in the isolated environment given by test/ros_env.py and
its own process group, so a failing test never leaves anything running.
"""
from __future__ import annotations

from pathlib import Path
import re
import sys
from typing import Optional

from dff_lifecycle.testing.processes import Proc

REPO = Path(__file__).resolve().parents[1]
__all__ = ['Proc', 'REPO', 'start_master', 'start_server', 'start_servers', 'stop_all']
BIN = Path(sys.executable).parent
LAYER_CONFIG = REPO / 'params' / 'layers.yaml'


def own_pid(proc: Proc) -> list[int]:
    """Return the process itself: a DFF node process (it dumps stacks on STACK_DUMP_SIGNAL)."""
    return [proc.popen.pid]


LAUNCHED = re.compile(r'process started with pid \[(\d+)\]$'  # ros2 launch
                      r'|^\[dff_launch\] \S+: started with pid (\d+)$', re.M)  # dff_launch


def launched_pids(proc: Proc) -> list[int]:
    """Return the node processes a launcher (ros2 launch or dff_launch) said it started."""
    return [int(a or b) for a, b in LAUNCHED.findall(proc.output)]


def ros_args(params: dict) -> list[str]:
    args = ['--ros-args']
    for key, value in params.items():
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        elif isinstance(value, (list, tuple)):
            value = '[' + ','.join(f"'{v}'" for v in value) + ']'
        args += ['-p', f'{key}:={value}']
    return args


def start_server(env: dict[str, str], weight_dir: Path, name: str = 'server_1',
                 **params) -> Proc:
    return start_servers(env, [weight_dir], names=[name], **params)[0]


def start_servers(env: dict[str, str], weight_dirs: list[Path],
                  names: Optional[list[str]] = None, claim: bool = False, **params) -> list[Proc]:
    """Start one server container per weight dir at once; return them once all are up.

    Named `names` (default server_1 .. server_n), as dff_launch names them; with `claim`
    each claims a free name itself (seconds of settling, and which server gets which
    name is a race: they come back sorted by the names they claimed).
    """
    names = names or [f'server_{i + 1}' for i in range(len(weight_dirs))]
    procs = []
    for weight_dir, name in zip(weight_dirs, names):
        settings = {'weight_dir': str(weight_dir), 'torch_threads': 1, **params}
        if not claim:
            settings['server_name'] = name
        proc = Proc(name, [str(BIN / 'server_container'), *ros_args(settings)], env,
                    stacks=own_pid)
        proc.weight_dir = weight_dir
        procs.append(proc)
    try:
        for proc in procs:
            line = proc.wait_for('server container /dff/server_', 60)
            proc.name = line.split('/dff/')[1].split()[0]
    except AssertionError:
        stop_all(procs)
        raise
    return sorted(procs, key=lambda p: p.name)


def start_master(env: dict[str, str], model_config: Path, **params) -> Proc:
    params = {'model_config': str(model_config), 'layer_config': str(LAYER_CONFIG),
              'progress': False, **params}
    return Proc('master', [str(BIN / 'master'), *ros_args(params)], env, stacks=own_pid)


def stop_all(procs: list[Proc]) -> None:
    for proc in reversed(procs):
        try:
            proc.interrupt(20)
        except AssertionError:
            proc.kill()
