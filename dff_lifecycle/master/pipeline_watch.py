"""
What the master knows about a running pipeline, fed by subscription callbacks.

Status messages tell each layer's lifecycle state and its last processed batch;
result tensors carry goodness or features of inference batches. Callbacks run
on the executor thread and the master's parts read from the main thread, so
every read and write holds the one condition's lock, and readers get copies.
The main thread waits on `wait` instead of polling.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
import threading
import time
from typing import Any, Callable, Optional

from dff_lifecycle.master.plan import SHARD_UNITS
import numpy as np

Scalars = tuple[float, float, float]  # loss, goodness of positives, goodness of negatives


@dataclass
class LayerView:
    state: str = 'unknown'
    stream: str = ''
    last_seq: int = -1
    error: str = ''
    rejected: int = 0
    weights_loaded: bool = False  # configure reloaded saved weights
    # Created again under the same name: a 'finalized' that arrives before the new node's
    # own first status is the old node's last word, not news.
    recreated: bool = False
    # (stream, seq) -> (loss, goodness+, goodness-) of training batches.
    scalars: dict[tuple[str, int], Scalars] = field(default_factory=dict)
    # (stream, seq) -> class groups silent over the layer's last window of batches then.
    silent: dict[tuple[str, int], frozenset[int]] = field(default_factory=dict)


class PipelineWatch:
    """Per-layer state of one deployed model, keyed by layer index."""

    def __init__(self, layer_of_node: dict[str, int],
                 server_of_layer: Optional[dict[int, str]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._computing_at: Optional[float] = None  # the last "still computing" beacon
        self.layer_of_node = dict(layer_of_node)
        # Where each layer runs now: a stale node of the same name on a lost server that
        # came back (being removed, or still running for a moment) is not heard.
        self.server_of_layer = dict(server_of_layer or {})
        self._changed = threading.Condition()
        self._layers: dict[int, LayerView] = {i: LayerView() for i in layer_of_node.values()}
        self._results: dict[tuple[str, int], dict[int, np.ndarray]] = defaultdict(dict)

    # -------------------------------------------------------------- writers (callbacks)
    def on_status(self, msg: Any) -> None:
        """Record a dff_msgs/LayerStatus (any object with its fields)."""
        index = self.layer_of_node.get(msg.node_name)
        if index is None:
            return
        with self._changed:
            expected = self.server_of_layer.get(index)
            if expected and msg.server and msg.server != expected:
                return
            if msg.computing:  # a beacon: nothing else in it is news
                self._computing_at = self.clock()
                self._changed.notify_all()
                return
            view = self._layers[index]
            if view.recreated and msg.state == 'finalized':
                return
            view.recreated = False
            view.state = msg.state
            view.error = msg.error
            view.rejected = msg.rejected_tensors
            view.weights_loaded = msg.weights_loaded
            if msg.stream:
                if msg.stream != view.stream or msg.last_batch_seq > view.last_seq:
                    view.stream, view.last_seq = msg.stream, msg.last_batch_seq
                if msg.stream.startswith('train'):
                    view.scalars[(msg.stream, msg.last_batch_seq)] = (
                        msg.loss, msg.goodness_positive, msg.goodness_negative)
                    view.silent[(msg.stream, msg.last_batch_seq)] = frozenset(
                        getattr(msg, 'silent_groups', ()))
            self._changed.notify_all()

    def move(self, layer: int, server: str) -> None:
        """From now on hear the layer's node on `server` only."""
        with self._changed:
            self.server_of_layer[layer] = server

    def set_state(self, layer: int, state: str, recreated: bool = False) -> None:
        """
        Record a state learnt otherwise (a get_state after a recovery's bring-up).

        `recreated`: the layer's node was just created again under its old name, so
        the old node's late 'finalized' is ignored until the new one speaks.
        """
        with self._changed:
            self._layers[layer].state = state
            self._layers[layer].recreated = recreated
            if recreated:  # a new node counts from its checkpoint: hear its lower watermark
                self._layers[layer].last_seq = -1
            self._changed.notify_all()

    def on_result(self, source: str, stream: str, seq: int, array: np.ndarray) -> None:
        index = self.layer_of_node.get(source)
        if index is None:
            return
        index %= SHARD_UNITS  # a replica answers for its layer (a shard never reports)
        with self._changed:
            self._results[(stream, seq)][index] = array
            self._changed.notify_all()

    # -------------------------------------------------------------- readers (main thread)
    def wait(self, timeout_s: float) -> None:
        """Until a callback changed something, or timeout_s passed."""
        with self._changed:
            self._changed.wait(timeout_s)

    def completed_through(self, stream: str, leaves: list[int]) -> int:
        """
        Highest batch seq of `stream` that every leaf layer has processed (-1: none).

        A layer's status seq is its watermark (core/stage/seq_watermark.py): every batch
        of the stream up to it processed there, so a gap (a batch lost to a subscription
        created again) holds the count until the master's resend fills it.
        """
        with self._changed:
            seqs = [self._layers[i].last_seq if self._layers[i].stream == stream else -1
                    for i in leaves]
        return min(seqs, default=-1)

    def computing_at(self) -> Optional[float]:
        """When a layer last said it is still computing a batch (`clock` time); None: never."""
        with self._changed:
            return self._computing_at

    def not_active(self) -> dict[int, str]:
        """{layer: state} of the layers known to be in a state other than active."""
        with self._changed:
            return {i: v.state for i, v in self._layers.items()
                    if v.state not in ('active', 'unknown')}

    def errors(self) -> dict[int, str]:
        """{layer: last error} of the layers that reported one."""
        with self._changed:
            return {i: v.error for i, v in self._layers.items() if v.error}

    def weights_loaded(self) -> dict[int, bool]:
        """{layer: whether it started from saved weights}, as its last status said."""
        with self._changed:
            return {i: v.weights_loaded for i, v in self._layers.items()}

    def state_of(self, layer: int) -> str:
        with self._changed:
            return self._layers[layer].state

    def scalars(self, stream: str) -> dict[int, dict[int, Scalars]]:
        """{layer: {seq: scalars}} of the training batches of `stream`."""
        with self._changed:
            return {i: {seq: v for (s, seq), v in view.scalars.items() if s == stream}
                    for i, view in self._layers.items()}

    def silent_groups(self, stream: str) -> dict[int, dict[int, frozenset[int]]]:
        """{layer: {seq: class groups silent over its last window then}} of `stream`."""
        with self._changed:
            return {i: {seq: v for (s, seq), v in view.silent.items() if s == stream}
                    for i, view in self._layers.items()}

    def take_result(self, stream: str, seq: int, wanted: set[int]
                    ) -> Optional[dict[int, np.ndarray]]:
        """Pop the results of a batch once every wanted layer reported, else return None."""
        with self._changed:
            got = self._results.get((stream, seq))
            if got is None or not wanted.issubset(got):
                return None
            return self._results.pop((stream, seq))
