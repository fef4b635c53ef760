"""What the master knows of a running pipeline: status and result callbacks in, answers out.

The writers run on other threads.
"""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from dff_lifecycle.master.pipeline_watch import PipelineWatch
import numpy as np

NODES = {'/m/layer_0': 0, '/m/layer_1': 1}


def status(node: str, state: str = 'active', stream: str = '', seq: int = -1, error: str = '',
           loss: float = 0.5, rejected: int = 0, loaded: bool = False,
           server: str = '', computing: bool = False) -> SimpleNamespace:
    return SimpleNamespace(node_name=node, server=server, state=state, stream=stream,
                           computing=computing,
                           last_batch_seq=seq,
                           error=error, rejected_tensors=rejected, loss=loss,
                           weights_loaded=loaded,
                           goodness_positive=2.0, goodness_negative=1.0)


def test_completed_through_is_the_slowest_leaf_on_that_stream():
    watch = PipelineWatch(NODES)
    assert watch.completed_through('train_a', [0, 1]) == -1
    watch.on_status(status('/m/layer_0', stream='train_a', seq=5))
    watch.on_status(status('/m/layer_1', stream='train_a', seq=3))
    assert watch.completed_through('train_a', [0, 1]) == 3
    assert watch.completed_through('train_a', [0]) == 5
    assert watch.completed_through('train_b', [0, 1]) == -1  # another stream's progress
    watch.on_status(status('/m/layer_1', stream='train_a', seq=2))  # late, older message
    assert watch.completed_through('train_a', [1]) == 3


def test_not_active_and_errors_name_layers_by_index():
    watch = PipelineWatch(NODES)
    assert watch.not_active() == {}  # unknown is not a pause
    watch.on_status(status('/m/layer_1', state='inactive', error='boom'))
    watch.on_status(status('/m/layer_0'))
    assert watch.not_active() == {1: 'inactive'}
    assert watch.errors() == {1: 'boom'}
    assert watch.state_of(0) == 'active'
    assert watch.weights_loaded() == {0: False, 1: False}
    watch.on_status(status('/m/layer_0', loaded=True))
    assert watch.weights_loaded() == {0: True, 1: False}


def test_messages_from_unknown_nodes_are_ignored():
    watch = PipelineWatch(NODES)
    watch.on_status(status('/other/layer_0', state='inactive'))
    watch.on_result('/other/layer_0', 's', 0, np.zeros(2, np.float32))
    assert watch.not_active() == {}
    assert watch.take_result('s', 0, {0}) is None


def test_training_scalars_are_kept_per_stream_and_batch():
    watch = PipelineWatch(NODES)
    watch.on_status(status('/m/layer_0', stream='train_a', seq=0, loss=0.7))
    watch.on_status(status('/m/layer_0', stream='train_a', seq=1, loss=0.6))
    watch.on_status(status('/m/layer_0', stream='infer_x', seq=0, loss=9.0))  # not training
    assert watch.scalars('train_a') == {0: {0: (0.7, 2.0, 1.0), 1: (0.6, 2.0, 1.0)}, 1: {}}
    copy = watch.scalars('train_a')
    copy[0].clear()
    assert len(watch.scalars('train_a')[0]) == 2  # readers get copies


def test_a_result_is_taken_once_when_every_wanted_layer_reported():
    watch = PipelineWatch(NODES)
    watch.on_result('/m/layer_0', 'infer', 3, np.ones(2, np.float32))
    assert watch.take_result('infer', 3, {0, 1}) is None
    watch.on_result('/m/layer_1', 'infer', 3, np.zeros(2, np.float32))
    got = watch.take_result('infer', 3, {0, 1})
    assert sorted(got) == [0, 1] and got[0].tolist() == [1.0, 1.0]
    assert watch.take_result('infer', 3, {0, 1}) is None


def test_wait_returns_when_a_callback_changes_something():
    watch = PipelineWatch(NODES)
    timer = threading.Timer(0.05, watch.on_status, [status('/m/layer_0', stream='t', seq=0)])
    started = time.monotonic()
    timer.start()
    watch.wait(5.0)
    assert time.monotonic() - started < 2.0
    assert watch.completed_through('t', [0]) == 0
    started = time.monotonic()
    watch.wait(0.05)  # nothing happens: the timeout
    assert time.monotonic() - started >= 0.04


def test_readers_and_writers_on_different_threads_stay_consistent():
    watch = PipelineWatch(NODES)
    messages = 2000

    def writer(node: str) -> None:
        for seq in range(messages):
            watch.on_status(status(node, stream='train_a', seq=seq))

    threads = [threading.Thread(target=writer, args=(n,)) for n in NODES]
    for t in threads:
        t.start()
    last = -1
    while any(t.is_alive() for t in threads):
        done = watch.completed_through('train_a', [0, 1])
        assert done >= last  # acknowledgements never go back
        last = done
        assert watch.not_active() == {}
    for t in threads:
        t.join()
    assert watch.completed_through('train_a', [0, 1]) == messages - 1
    assert {i: len(v) for i, v in watch.scalars('train_a').items()} == {0: messages, 1: messages}


def test_after_a_move_the_stale_node_of_the_same_name_is_not_heard():
    watch = PipelineWatch(NODES, {0: 'server_1', 1: 'server_2'})
    watch.on_status(status('/m/layer_1', stream='train_a', seq=4, server='server_2'))
    watch.move(1, 'server_1')
    # The old node, being removed from server_2 as it comes back, says "finalized".
    watch.on_status(status('/m/layer_1', state='finalized', stream='train_a', seq=9,
                           server='server_2'))
    assert watch.not_active() == {} and watch.completed_through('train_a', [1]) == 4
    watch.on_status(status('/m/layer_1', stream='train_a', seq=6, server='server_1'))
    assert watch.completed_through('train_a', [1]) == 6


def test_a_computing_beacon_says_when_and_changes_nothing_else():
    clock = {'now': 100.0}
    watch = PipelineWatch(NODES, clock=lambda: clock['now'])
    watch.on_status(status('/m/layer_1', stream='train_a', seq=4, error='late'))
    assert watch.computing_at() is None
    clock['now'] = 107.0
    watch.on_status(status('/m/layer_1', state='', computing=True))  # a bare beacon
    assert watch.computing_at() == 107.0
    assert watch.completed_through('train_a', [1]) == 4
    assert watch.errors() == {1: 'late'} and watch.state_of(1) == 'active'


def test_a_recreated_layer_ignores_its_old_nodes_late_finalized_until_the_new_one_speaks():
    watch = PipelineWatch(NODES)
    watch.set_state(1, 'active', recreated=True)
    watch.on_status(status('/m/layer_1', state='finalized'))  # the old node's last word
    assert watch.not_active() == {}
    watch.on_status(status('/m/layer_1', state='active', stream='train_a', seq=0))
    watch.on_status(status('/m/layer_1', state='finalized'))  # the new node, finalized
    assert watch.not_active() == {1: 'finalized'}
