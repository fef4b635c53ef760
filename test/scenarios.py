"""Multi-process scenarios of the operations tools, shared by two kinds of test.

test/integration/test_{launcher,lifecycle_cli,graph,manual_pause}.py run them
here with pytest (processes started by dff_launch or test/dff_processes.py);
test/launch/test_*_launch.py run the same checks under launch_testing on a
full ROS 2 install (processes started by launch_ros). Every function takes the
environment of an isolated ROS domain (test/ros_env.py) and, where it needs
one, an rclpy node that is already spinning.
"""
from __future__ import annotations

import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import threading
from typing import Callable

from dff_lifecycle.core.config import load_layer_config, load_model_config
from dff_lifecycle.core.run.weights import load_state, WeightFileError
from dff_lifecycle.master.parameters import MASTER_PARAMETERS
from dff_lifecycle.master.plan import build_plan
from dff_lifecycle.ros.lifecycle_client import LifecycleClient
from dff_lifecycle.ros.service_calls import call, ClientCache
from dff_lifecycle.testing.waiting import wait_until
from dff_lifecycle.wire.qos import STATUS_QOS
from dff_msgs.msg import LayerSpec, LayerStatus
from dff_msgs.srv import CreateLayers
from dff_processes import launched_pids, Proc
from rclpy.node import Node
from rclpy.parameter import Parameter
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAYER_CONFIG = REPO / 'params' / 'layers.yaml'
TINY_MODEL = REPO / 'test' / 'fixtures' / 'mnist_tiny.yaml'
TINY = 'mnist_tiny'
TINY_LAYERS = (f'/{TINY}/layer_0', f'/{TINY}/layer_1')
TINY_BATCHES_PER_EPOCH = 8          # 2000 training images in batches of 250
BROKEN = 'mnist_broken'             # a layer whose configure fails (unknown goodness)
BROKEN_LAYER = f'/{BROKEN}/layer_0'
MASTER_WINDOW = MASTER_PARAMETERS['window'].default  # batches the master keeps in flight
PAUSE_EPOCHS = 120                  # 960 batches, ~9 s alone (pause_and_resume holds it)
WaitForOutput = Callable[[str, float], object]  # (text, timeout_s): return once seen, else raise


# ---------------------------------------------------------------------------- helpers

def write_deployment(folder: Path, servers: int = 2, **master: object) -> Path:
    """Write a deployment of the tiny model: one weight folder per server under `folder`."""
    sections: dict = {'/dff/master': {'ros__parameters': {
        'model_config': str(TINY_MODEL), 'layer_config': str(LAYER_CONFIG), 'servers': servers,
        'progress': False, **master}}}
    for i in range(1, servers + 1):
        sections[f'/dff/server_{i}'] = {'ros__parameters': {
            'weight_dir': str(folder / 'weights' / f'server_{i}'), 'torch_threads': 1}}
    path = folder / 'deployment.yaml'
    path.write_text(yaml.safe_dump(sections, sort_keys=False), encoding='utf-8')
    return path


def weight_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in (folder / 'weights').rglob('*.pt'))


def run_tool(env: dict[str, str], tool: str, *args: str,
             timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    """Run one of the console scripts (dff_lifecycle, dff_graph, ...) to completion."""
    return subprocess.run([str(BIN / tool), *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s, cwd=REPO)


def _show(result: subprocess.CompletedProcess) -> str:
    return (f'{" ".join(result.args[1:])} -> {result.returncode}\nstdout:\n{result.stdout}'
            f'stderr:\n{result.stderr}')


def cli(env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess:
    """dff_lifecycle with args; asserts the exit code."""
    verb, rest = args[0], args[1:]  # options given in `rest` win over these defaults
    result = run_tool(env, 'dff_lifecycle', verb, '--spin-time', '1', '--timeout', '15', *rest)
    assert result.returncode == code, _show(result)
    return result


# ------------------------------------------------------------------------ dff_launch

def start_launcher(env: dict[str, str], deployment: Path, *args: str) -> Proc:
    return Proc('dff_launch', [str(BIN / 'dff_launch'), str(deployment), *args], env,
                stacks=launched_pids)


def child_pids(output: str) -> dict[str, int]:
    """{process name: pid} from dff_launch's `<name>: started with pid N` lines."""
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r'^\[dff_launch\] (\S+): started with pid (\d+)$', output, re.M)}


def running_children(launcher: Proc, deployment: Path) -> list[int]:
    """Return the children of dff_launch still running.

    Their pid is alive and its command line still names this test's deployment file (so
    a reused pid is never mistaken for one).
    """
    running = []
    for pid in child_pids(launcher.output).values():
        try:
            cmdline = Path(f'/proc/{pid}/cmdline').read_bytes()
        except OSError:
            continue
        if str(deployment).encode() in cmdline:
            running.append(pid)
    return running


def stop_launcher(launcher: Proc, deployment: Path) -> None:
    """Never leave anything running: Ctrl-C to dff_launch, then kill what survived.

    Each child runs in a process group of its own.
    """
    try:
        if launcher.popen.poll() is None:
            launcher.interrupt(60)
    except AssertionError:
        pass
    finally:
        launcher.kill()
        for pid in running_children(launcher, deployment):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def check_ordered_run(output: str) -> None:
    """Servers up before the master starts; master gone before the servers are stopped."""
    lines = output.splitlines()

    def first(text: str) -> int:
        found = [i for i, line in enumerate(lines) if text in line]
        assert found, f'no line with {text!r} in:\n{output}'
        return found[0]

    master_start = first('[dff_launch] master: started with pid')
    for server in ('server_1', 'server_2'):
        assert first(f'[{server}] server container /dff/{server} up') < master_start
        assert first('[dff_launch] master: ') < first(f'[dff_launch] {server}: sending SIGINT')
        assert first(f'[dff_launch] {server}: finished cleanly') > master_start
    assert first('[dff_launch] master: finished cleanly') < first('sending SIGINT')


# -------------------------------------------------------------------- layers by hand

def create_layers(node: Node, server: str = 'server_1', timeout_s: float = 30.0) -> list[str]:
    """Ask a server container for the tiny model's layers and a broken one, unconfigured."""
    layer_types = load_layer_config(LAYER_CONFIG)
    tiny = load_model_config(TINY_MODEL, layer_types)
    raw = yaml.safe_load(TINY_MODEL.read_text(encoding='utf-8'))
    broken = load_model_config({**raw, 'name': BROKEN, 'layers': raw['layers'][:1],
                                'goodness_layers': [0]}, layer_types)
    specs = []
    for model, bad in ((tiny, {}), (broken, {'goodness': 'no_such_reduction'})):
        for p in build_plan(model, [server]).placements:
            params = {**p.parameters, **bad}
            specs.append(LayerSpec(model=model.name, layer_index=p.layer.index,
                                   layer_type=p.layer.module, node_name=p.node_name,
                                   parameters=[Parameter(k, value=v).to_parameter_msg()
                                               for k, v in params.items()]))
    client = ClientCache(node).get(CreateLayers, f'/dff/{server}/create_layers')
    response = call(client, CreateLayers.Request(layers=specs), timeout_s)
    assert response.success, response.message
    return list(response.node_names)


def bring_up(node: Node, layers: list[str]) -> None:
    """configure, then activate, like the master's lifecycle manager."""
    client = LifecycleClient(ClientCache(node), timeout_s=15.0)
    for label in ('configure', 'activate'):
        for layer in layers:
            client.transition(layer, label)


# ------------------------------------------------------------------ lifecycle CLI

def expect(env: dict[str, str], *args: str, out: object = None, err: object = None,
           code: int = 0) -> subprocess.CompletedProcess:
    """Run dff_lifecycle with args; check the exit code, and stdout / stderr when given.

    A str `out` / `err` is the exact text, a list the exact lines.
    """
    result = cli(env, *args, code=code)
    for wanted, got in ((out, result.stdout), (err, result.stderr)):
        if wanted is not None:
            assert (got.splitlines() if isinstance(wanted, list) else got) == wanted, \
                _show(result)
    return result


def check_lifecycle_cli(env: dict[str, str]) -> None:
    """`dff_lifecycle` against TINY_LAYERS and BROKEN_LAYER, all unconfigured at the start."""
    layer, other = TINY_LAYERS
    everything = sorted([*TINY_LAYERS, BROKEN_LAYER])
    ok = 'Transitioning successful\n'
    expect(env, 'nodes', out=everything)
    expect(env, 'get', layer, out='unconfigured [1]\n')
    expect(env, 'list', layer, out=[
        '- configure [1]', '\tStart: unconfigured', '\tGoal: configuring',
        '- shutdown [5]', '\tStart: unconfigured', '\tGoal: shuttingdown'])
    full = expect(env, 'list', layer, '-a').stdout
    assert '- transition_success [10]\n\tStart: configuring\n\tGoal: inactive' in full, full

    # by label, then by id (3: activate, available only from inactive)
    expect(env, 'set', layer, 'configure', out=ok)
    expect(env, 'set', layer, '3', out=ok)
    expect(env, 'get', out=[f'{BROKEN_LAYER}: unconfigured [1]', f'{layer}: active [3]',
                            f'{other}: unconfigured [1]'])

    # not a transition of the current state: refused before asking the node
    expect(env, 'set', layer, 'configure', code=1, out='', err=[
        'Unknown transition requested, available ones are:', '- deactivate [4]', '- shutdown [7]'])

    # back down: deactivate by label, cleanup by id (2)
    expect(env, 'set', layer, 'deactivate', out=ok)
    expect(env, 'set', layer, '2', out=ok)
    expect(env, 'get', layer, out='unconfigured [1]\n')

    # a transition the node refuses (its configure fails): like ros2 lifecycle
    expect(env, 'set', BROKEN_LAYER, 'configure', code=1, out='', err='Transitioning failed\n')

    expect(env, 'set', '/no/such_node', 'configure', '--timeout', '2', code=1,
           err='Node not found\n')


# -------------------------------------------------------------------------- graph

def check_graph(env: dict[str, str], out: Path, master: bool = False) -> None:
    """dff_graph with TINY_LAYERS active on server_1 (and the master when `master`)."""
    dot, png = out / 'graph.dot', out / 'graph.png'
    result = run_tool(env, 'dff_graph', '--wait', '2', '--dot', str(dot), '--png', str(png))
    assert result.returncode == 0, _show(result)
    text = result.stdout
    nodes = _section(text, 'nodes')
    expected = {'/dff/server_1', *TINY_LAYERS} | ({'/dff/master'} if master else set())
    assert expected <= set(nodes), text
    assert not [n for n in nodes if '/_' in n], f'hidden nodes listed:\n{text}'
    assert '/rosout' not in text and '/parameter_events' not in text, text
    tensor = 'RELIABLE, VOLATILE'  # discovery does not tell history and depth
    # Layer status is latched (TRANSIENT_LOCAL) so that monitors started later still see it.
    assert (f'  /{TINY}/layer_0/train_out [dff_msgs/msg/TensorChunk]\n'
            f'    publishers:\n      /{TINY}/layer_0  {tensor}\n'
            f'    subscribers:\n      /{TINY}/layer_1  {tensor}\n') in text, text
    assert (f'  /{TINY}/layer_1/status [dff_msgs/msg/LayerStatus]\n'
            f'    publishers:\n      /{TINY}/layer_1  RELIABLE, TRANSIENT_LOCAL\n') in text, text
    assert f'  /{TINY}/input/train [dff_msgs/msg/TensorChunk]' in text
    dot_text = dot.read_text(encoding='utf-8')
    assert dot_text.startswith('digraph ros_graph {')
    assert f'"n:/{TINY}/layer_0" -> "t:/{TINY}/layer_0/train_out";' in dot_text
    assert f'"t:/{TINY}/layer_0/train_out" -> "n:/{TINY}/layer_1";' in dot_text
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and png.stat().st_size > 5000


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f'{title} ('))
    out = []
    for line in lines[start + 1:]:
        if not line.startswith('  '):
            break
        out.append(line.strip())
    return out


# -------------------------------------------------------------------- manual pause

class StatusWatch:
    """The latest state and the most batches seen of each layer, from its status topic.

    Also how far the first layer ran ahead of the second while the second was inactive.
    """

    def __init__(self, node: Node, layers: tuple[str, ...] = TINY_LAYERS) -> None:
        self._lock = threading.Lock()
        self.layers = layers
        self.batches = dict.fromkeys(layers, 0)
        self.state = dict.fromkeys(layers, 'unknown')
        self.lead_while_paused = 0  # max of batches(first) - batches(last) while last inactive
        self._subs = [node.create_subscription(LayerStatus, f'{layer}/status', self._on_status,
                                               STATUS_QOS) for layer in layers]

    def _on_status(self, msg: LayerStatus) -> None:
        with self._lock:
            if msg.node_name in self.batches:
                self.batches[msg.node_name] = max(self.batches[msg.node_name], msg.batches_seen)
                self.state[msg.node_name] = msg.state
                first, last = self.layers[0], self.layers[-1]
                if self.state[last] == 'inactive':
                    self.lead_while_paused = max(self.lead_while_paused,
                                                 self.batches[first] - self.batches[last])

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.batches)


def trained_batches(weights: Path) -> list[int]:
    """Return the batches each tiny layer's weight file under `weights` says it trained."""
    counts = []
    for server, layer in ((1, 0), (2, 1)):
        try:
            state = load_state(weights / f'server_{server}' / TINY / f'layer_{layer}.pt')
            counts.append(state['batches_seen'])
        except (WeightFileError, KeyError):  # not written yet
            counts.append(0)
    return counts


LayerTool = Callable[..., str]  # (verb, *args) -> stdout of the lifecycle tool under test


def dff_lifecycle_tool(env: dict[str, str]) -> LayerTool:
    """`dff_lifecycle <verb> <args>`, which must exit 0; its stdout."""
    return lambda *args: cli(env, *args).stdout


def pause_and_resume(tool: LayerTool, node: Node, wait_for_master: WaitForOutput,
                     weights: Path, epochs: int = PAUSE_EPOCHS) -> None:
    """Pause training by deactivating layer_1 by hand with `tool`, then resume it.

    Deactivate layer_1 in the middle of training, check that the pipeline stands still,
    activate it, and check that training ends with every batch trained exactly once by
    every layer (the counts the layers save in `weights` when the master tears them down:
    their last status messages can be lost with the node, which is deleted a moment later).

    A tool is a new process that needs seconds to start and discover the graph (a CI run
    took longer than the whole run's training), so the test holds the run first with its
    own node, already in the graph: layer_0 deactivated in milliseconds. The tool then
    deactivates layer_1 at whatever speed it runs, layer_0 is activated again, and layer_1
    alone holds the run until the tool activates it.
    """
    first, layer = TINY_LAYERS
    total = epochs * TINY_BATCHES_PER_EPOCH
    watch = StatusWatch(node)
    lifecycle = LifecycleClient(ClientCache(node), timeout_s=15.0)
    wait_until(lambda: watch.snapshot()[layer] >= 2, 120, f'{layer} to train')
    assert lifecycle.change_state(first, 'deactivate')
    # (the master may see it in the middle of the transition: "is deactivating")
    wait_for_master(f'training paused: {first} is ', 30)

    assert tool('set', layer, 'deactivate') == 'Transitioning successful\n'
    assert tool('get', layer) == 'inactive [2]\n'
    wait_until(lambda: watch.state[layer] == 'inactive', 10, f'{layer} to report inactive')
    assert lifecycle.change_state(first, 'activate')
    wait_until(lambda: watch.state[first] == 'active', 10, f'{first} to report active')
    paused_at = watch.snapshot()
    assert paused_at[layer] < total, f'training was over before the pause: {paused_at}'

    assert tool('set', layer, 'activate') == 'Transitioning successful\n'
    wait_for_master('every layer is active again: resending', 30)
    wait_for_master('training done', 120)
    wait_until(lambda: trained_batches(weights) == [total, total], 30,
               f'every layer to have saved {total} trained batches: {trained_batches(weights)}')
    # While layer_1 was inactive the master held the stream: layer_0 got at most the window
    # of batches in flight (16 by default) beyond what layer_1 had acknowledged (+2 for the
    # order in which two topics' messages reach this process), not the rest of the run.
    assert watch.lead_while_paused <= MASTER_WINDOW + 2, watch.lead_while_paused
