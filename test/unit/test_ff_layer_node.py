"""FFLayerNode driven in-process through its lifecycle with trigger_* calls."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from dff_lifecycle.core.run.weights import layer_weight_path, load_state
from dff_lifecycle.nodes.ff_layer_node import FFLayerNode
from dff_lifecycle.wire.messages import tensor_to_msgs
from dff_msgs.msg import TensorChunk
from layer_ports import ports
import numpy as np
from rclpy.parameter import Parameter
import torch

IN, OUT = 12, 8


def make_node(context, weight_dir, **extra) -> FFLayerNode:
    params = {'model': 'unit', 'layer_index': 0, 'in_features': IN, 'out_features': OUT,
              **ports('/unit/input/train', '/unit/input/infer',
                      train_out='/unit/layer_0/train_out', result='/unit/results',
                      status='/unit/layer_0/status'),
              'report_goodness': True, 'weight_dir': str(weight_dir), **extra}
    return FFLayerNode('layer_0', namespace='/unit', context=context,
                       parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def destroy(node: FFLayerNode) -> None:
    node.destroy_node()
    node._state_machine.destroy_when_not_in_use()


@contextmanager
def active_node(context, weight_dir) -> Iterator[FFLayerNode]:
    """Yield a configured and activated layer node, destroyed afterwards."""
    node = make_node(context, weight_dir)
    try:
        node.trigger_configure()
        node.trigger_activate()
        yield node
    finally:
        destroy(node)


def feed(node: FFLayerNode, array: np.ndarray, kind: int, seq: int, **kw) -> None:
    for msg in tensor_to_msgs(array, model='unit', stream='train_x', source='/test',
                              batch_seq=seq, kind=kind, chunk_elements=kw.get('chunk', 20)):
        node._on_chunk(msg)
    assert node._worker.wait_idle(10), 'the compute thread did not finish'


def batch(seed: int, n: int = 6, width: int = IN) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, width)).astype(np.float32)


def test_full_lifecycle_trains_saves_and_reloads(context, tmp_path):
    node = make_node(context, tmp_path)
    try:
        assert node.lifecycle_label == 'unconfigured'
        node.trigger_configure()
        assert node.lifecycle_label == 'inactive'
        node.trigger_activate()
        assert node.lifecycle_label == 'active'
        before = node._trainer.layer.weight.detach().clone()
        feed(node, batch(0), TensorChunk.KIND_POSITIVE, 0)
        feed(node, batch(1), TensorChunk.KIND_NEGATIVE, 0)
        assert node._trainer.batches_seen == 1
        assert not torch.equal(before, node._trainer.layer.weight)
        # The same batch again (a resend) must not update the weights a second time.
        after_one = node._trainer.layer.weight.detach().clone()
        feed(node, batch(0), TensorChunk.KIND_POSITIVE, 0)
        feed(node, batch(1), TensorChunk.KIND_NEGATIVE, 0)
        assert node._trainer.batches_seen == 1
        assert torch.equal(after_one, node._trainer.layer.weight)
        node.trigger_deactivate()
        feed(node, batch(2), TensorChunk.KIND_POSITIVE, 1)  # paused: ignored
        feed(node, batch(3), TensorChunk.KIND_NEGATIVE, 1)
        assert node._trainer.batches_seen == 1
        node.trigger_cleanup()
        assert node.lifecycle_label == 'unconfigured' and node._trainer is None
        path = layer_weight_path(tmp_path, 'unit', 0)
        assert torch.equal(load_state(path)['layer']['weight'], after_one)
        node.trigger_configure()  # reload from disk
        assert node._weights_loaded and node._trainer.batches_seen == 1
        assert torch.equal(node._trainer.layer.weight, after_one)
        node.trigger_shutdown()
        assert node.lifecycle_label == 'finalized'
    finally:
        destroy(node)


def test_wrong_width_is_rejected_and_layer_stays_active(context, tmp_path):
    with active_node(context, tmp_path) as node:
        feed(node, batch(0, width=IN + 1), TensorChunk.KIND_POSITIVE, 0)
        bad = tensor_to_msgs(batch(1), model='unit', stream='s', source='/t', batch_seq=1,
                             kind=TensorChunk.KIND_INFERENCE, chunk_elements=20)
        bad[0].crc32 ^= 0xFF
        for msg in bad:
            node._on_chunk(msg)
        assert node.lifecycle_label == 'active'
        assert node._rejected_inputs == 1 and node._rejected_by_receivers() == 1


def test_failure_while_training_goes_through_error_processing_and_saves(context, tmp_path):
    with active_node(context, tmp_path) as node:
        def broken(*_args, **_kwargs):
            raise RuntimeError('simulated numerical failure')

        node._trainer.step = broken
        feed(node, batch(0), TensorChunk.KIND_POSITIVE, 0)
        feed(node, batch(1), TensorChunk.KIND_NEGATIVE, 0)
        assert node.lifecycle_label == 'unconfigured'  # on_error released the layer
        assert layer_weight_path(tmp_path, 'unit', 0).is_file()  # ...after saving it


def test_configure_fails_cleanly_on_bad_parameters(context, tmp_path):
    node = make_node(context, tmp_path, goodness='cubic')
    try:
        node.trigger_configure()
        assert node.lifecycle_label == 'unconfigured'
        assert 'cubic' in node._status.error
    finally:
        destroy(node)


def test_shutdown_without_configure_is_harmless(context, tmp_path):
    node = make_node(context, tmp_path)
    try:
        node.trigger_shutdown()
        assert node.lifecycle_label == 'finalized'
        assert not any(tmp_path.iterdir())
    finally:
        destroy(node)


def test_a_layer_too_large_for_its_device_refuses_configure_before_allocating(context, tmp_path):
    node = make_node(context, tmp_path, in_features=300_000, out_features=300_000)
    try:
        node.trigger_configure()
        assert node.lifecycle_label == 'unconfigured'
        assert node._trainer is None
        assert 'needs about' in node._status.error and '\n' not in node._status.error
    finally:
        destroy(node)
