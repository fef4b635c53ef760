"""Failures across processes: a server dies or hangs mid-training; it is noticed in 2 s."""
from __future__ import annotations

import os
import signal
import time

from dff_lifecycle.common.liveness import PARTICIPANT_LEASE_S
from dff_lifecycle.core.run.weights import layer_weight_path, load_state
from dff_lifecycle.testing.waiting import wait_until
from dff_processes import REPO, start_master, start_servers, stop_all
import pytest

pytestmark = pytest.mark.integration
SMALL = REPO / 'test' / 'fixtures' / 'mnist_small.yaml'


def test_without_recovery_a_dead_server_stops_training_clearly_and_keeps_weights(
        ros_domain, tmp_path):
    env = os.environ.copy()
    first, second = start_servers(env, [tmp_path / 'a', tmp_path / 'b'])
    procs = [first, second]
    try:
        master = start_master(env, SMALL, servers=2, epochs=20, save_every_batches=20,
                              recovery=False)
        procs.append(master)
        master.wait_for('activate   /mnist_small/layer_1: ok', 120)
        saved = layer_weight_path(second.weight_dir, 'mnist_small', 1)
        wait_until(saved.exists, 150, 'layer_1 to train and save once',
                   detail=lambda: master.output)
        os.killpg(second.popen.pid, signal.SIGKILL)
        assert master.wait(120) == 2, master.output
        # The heartbeat names it first (within a second); the graph would take the 20 s lease.
        assert 'has not answered' in master.output and '/mnist_small/layer_1' in master.output, \
            master.output[-3000:]
        # The surviving layer was saved at teardown, the dead one by its periodic saves.
        survivor = load_state(layer_weight_path(first.weight_dir, 'mnist_small', 0))
        assert survivor['batches_seen'] > 20
        assert load_state(saved)['batches_seen'] >= 20
        assert first.popen.poll() is None  # the surviving container is unaffected
    finally:
        stop_all(procs)


@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGSTOP], ids=['killed', 'hung'])
def test_a_silent_server_is_named_within_two_seconds(ros_domain, tmp_path, sig):
    """
    Detection by heartbeat: the DDS participant lease alone would take 20 s.

    SIGKILL: the process is gone. SIGSTOP: it is alive and still in the graph, but its
    executor no longer runs (hung). Either way its layer moves to server_1 and training
    finishes. The hung one stays stopped past the DDS participant lease, so the master drops
    its participant; continued, it starts over as a new participant (same process) and is
    heard again at once, and fenced: its stale layer is removed unsaved. (Before, a returned
    participant could stay unmatched for 30 s under load.)
    """
    env = os.environ.copy()
    first, second = start_servers(env, [tmp_path / 'a', tmp_path / 'b'])
    procs = [first, second]
    try:
        # the hung case trains long enough to outlast the returned server's restart
        master = start_master(env, SMALL, servers=2, epochs=3 if sig == signal.SIGKILL else 10)
        procs.append(master)
        master.wait_for('bring-up:', 120)
        wait_until(layer_weight_path(second.weight_dir, 'mnist_small', 1).exists, 120,
                   'layer_1 to train and save once (training is streaming)',
                   detail=lambda: master.output)
        silenced_at = time.monotonic()
        os.killpg(second.popen.pid, sig)
        line = master.wait_for('has not answered for', 30)
        detected = time.monotonic() - silenced_at
        print(f'{sig.name} of server_2 named by the master after {detected:.2f} s')
        assert detected <= 2.0, f'{detected:.2f} s: {line}\n{master.output}'
        assert 'dead or hung' in line and '/mnist_small/layer_1' in line and 'server_2' in line, \
            master.output
        master.wait_for('recovered: /mnist_small/layer_1 now on server_1', 60)
        if sig == signal.SIGSTOP:
            frozen = time.monotonic() - silenced_at
            time.sleep(max(0.0, PARTICIPANT_LEASE_S + 1.5 - frozen))  # past the lease
            os.killpg(second.popen.pid, signal.SIGCONT)
            try:
                master.wait_for('server_2 beats again: removing its stale layers', 30)
            except AssertionError as exc:
                raise AssertionError(f'{exc}\nserver_2:\n{second.output}') from None
            assert second.popen.poll() is None  # the same process, back in the graph
        assert master.wait(180) == 0, master.output
        assert 'test accuracy: ' in master.output
    finally:
        if sig == signal.SIGSTOP:
            try:
                os.killpg(second.popen.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        stop_all(procs)
