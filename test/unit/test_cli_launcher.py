"""dff_launch's process handling, with small stand-in scripts instead of ROS nodes."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
import io
from pathlib import Path
import shutil
import signal
import sys
import threading

from dff_lifecycle.cli import launcher
from dff_lifecycle.deploy.deployment import ProcessSpec
from dff_lifecycle.testing.waiting import wait_until
import pytest
import yaml

# Like the real nodes, the stand-ins install their SIGINT handler themselves: a test run
# started in the background of a script inherits SIGINT ignored.
SERVER = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
mode = sys.argv[1]
name = [a.split(':=')[1] for a in sys.argv if a.startswith('__node:=')][0]
if mode == 'stubborn':
    signal.signal(signal.SIGINT, signal.SIG_IGN)
if mode == 'crash':
    print('crashing', flush=True)
    sys.exit(3)
print(f'server container /dff/{name} up (pid 1)', flush=True)
try:
    while True:
        time.sleep(0.05)
except KeyboardInterrupt:
    print('saving weights', flush=True)
"""
MASTER = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
mode = sys.argv[1]
print('training', flush=True)
try:
    time.sleep(60 if mode == 'long' else 0.5)
except KeyboardInterrupt:
    print('master: interrupted', flush=True)
    sys.exit(130)
sys.exit(int(mode) if mode != 'long' else 0)
"""


@dataclass
class FakeDeployment:
    specs: list

    def processes(self):
        return self.specs


def spec(name: str, mode: str) -> ProcessSpec:
    server = name != 'master'
    return ProcessSpec(name=name, executable='unused', module='unused', namespace='/dff',
                       params_file=Path('/dev/null'), overrides={'mode': mode},
                       ready_text=f'server container /dff/{name} up' if server else '')


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Run a Launcher over stand-ins: (code, output); `then` runs beside it."""
    scripts = {'server': tmp_path / 'server.py', 'master': tmp_path / 'master.py'}
    scripts['server'].write_text(SERVER)
    scripts['master'].write_text(MASTER)

    def command_line(s: ProcessSpec) -> list[str]:
        script = scripts['master' if s.name == 'master' else 'server']
        return [sys.executable, str(script), s.overrides['mode'], *s.ros_arguments()]

    def run_(specs, then=None, **options) -> tuple[int, str]:
        args = argparse.Namespace(ready_timeout=30.0, sigint_timeout=5.0, sigterm_timeout=5.0)
        vars(args).update(options)
        out = io.StringIO()
        job = launcher.Launcher(FakeDeployment(specs), args, launcher.Output(out), command_line)
        if then is not None:
            threading.Thread(target=then, args=(job, out), daemon=True).start()
        return job.run(), out.getvalue()

    return run_


def lines_with(output: str, *texts: str) -> list[int]:
    lines = output.splitlines()
    return [next(i for i, line in enumerate(lines) if text in line) for text in texts]


def test_servers_first_master_next_then_servers_stopped(run):
    code, out = run([spec('server_1', 'ok'), spec('server_2', 'ok'), spec('master', '0')])
    assert code == 0, out
    order = lines_with(out, '[server_1] server container /dff/server_1 up',
                       '[server_2] server container /dff/server_2 up',
                       '[dff_launch] master: started with pid', '[master] training',
                       '[dff_launch] master: finished cleanly',
                       '[dff_launch] server_2: sending SIGINT', '[server_2] saving weights',
                       '[dff_launch] server_2: finished cleanly')
    assert order[2] > max(order[:2]) and order[2:] == sorted(order[2:]), out
    assert 'problems' not in out


def test_exit_code_is_the_masters(run):
    code, out = run([spec('server_1', 'ok'), spec('master', '2')])
    assert code == 2, out
    assert '[dff_launch] master: exited with code 2' in out


def test_a_server_that_ignores_sigint_gets_sigterm_and_fails_the_run(run):
    code, out = run([spec('server_1', 'stubborn'), spec('master', '0')], sigint_timeout=0.5)
    assert code == 1, out
    assert 'server_1: still running after 0.5 s: sending SIGTERM' in out
    assert 'problems: server_1 needed SIGTERM' in out


def test_a_server_that_dies_before_it_is_up_stops_everything(run):
    code, out = run([spec('server_1', 'ok'), spec('server_2', 'crash'), spec('master', '0')])
    assert code == 1, out
    assert 'error: server_2 exited with code 3 before it was up' in out
    assert '[dff_launch] master: started' not in out
    assert '[dff_launch] server_1: finished cleanly' in out


def test_ctrl_c_interrupts_the_master_first(run):
    def interrupt_when_training(job, out):
        wait_until(lambda: '[master] training' in out.getvalue(), 30, 'the master to train',
                   detail=out.getvalue)
        job.on_signal(signal.SIGINT, None)

    code, out = run([spec('server_1', 'ok'), spec('master', 'long')], then=interrupt_when_training)
    assert code == 130, out
    order = lines_with(out, '[dff_launch] SIGINT: stopping the master, then the servers',
                       '[master] master: interrupted', '[dff_launch] master: exited with code 130',
                       '[dff_launch] server_1: sending SIGINT',
                       '[dff_launch] server_1: finished cleanly')
    assert order == sorted(order), out


def test_exit_status_of_signals():
    assert launcher.exit_status(0) == 0
    assert launcher.exit_status(2) == 2
    assert launcher.exit_status(-9) == 137


def test_dry_run_prints_the_command_lines(capsys):
    assert launcher.main(['mnist_2servers', '--dry-run', '--servers', '3']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert '__node:=server_3' in lines[2]
    overrides = [yaml.safe_load(Path(part).read_text()) for part in lines[2].split()
                 if part.endswith('server_3.yaml')]
    assert overrides == [{'/dff/server_3': {'ros__parameters': {
        'server_name': 'server_3', 'weight_dir': str(Path.cwd() / 'weights')}}}]
    master_file = next(part for part in lines[3].split() if part.endswith('master.yaml'))
    assert yaml.safe_load(Path(master_file).read_text())['/dff/master']['ros__parameters'][
        'servers'] == 3
    shutil.rmtree(Path(master_file).parent)


def test_bad_deployment_exits_2(capsys, tmp_path):
    assert launcher.main([str(tmp_path / 'none.yaml')]) == 2
    assert 'dff_launch: error:' in capsys.readouterr().err
