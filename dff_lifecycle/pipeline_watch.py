"""What the master knows about a running pipeline, fed by subscription callbacks.

Status messages tell each layer's lifecycle state and its last processed batch;
result tensors carry goodness or features of inference batches. The master's
main thread waits on `changed` instead of polling.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from dff_msgs.msg import LayerStatus


@dataclass
class LayerView:
    state: str = 'unknown'
    stream: str = ''
    last_seq: int = -1
    error: str = ''
    rejected: int = 0
    # (stream, seq) -> (loss, goodness+, goodness-) of training batches.
    scalars: dict[tuple[str, int], tuple[float, float, float]] = field(default_factory=dict)


class PipelineWatch:
    def __init__(self, layer_of_node: dict[str, int]) -> None:
        self.layer_of_node = dict(layer_of_node)
        self.changed = threading.Condition()
        self.layers: dict[int, LayerView] = {i: LayerView() for i in layer_of_node.values()}
        self.results: dict[tuple[str, int], dict[int, np.ndarray]] = defaultdict(dict)

    def on_status(self, msg: LayerStatus) -> None:
        index = self.layer_of_node.get(msg.node_name)
        if index is None:
            return
        with self.changed:
            view = self.layers[index]
            view.state = msg.state
            view.error = msg.error
            view.rejected = msg.rejected_tensors
            if msg.stream:
                if msg.stream != view.stream or msg.last_batch_seq > view.last_seq:
                    view.stream, view.last_seq = msg.stream, msg.last_batch_seq
                if msg.stream.startswith('train'):
                    view.scalars[(msg.stream, msg.last_batch_seq)] = (
                        msg.loss, msg.goodness_positive, msg.goodness_negative)
            self.changed.notify_all()

    def on_result(self, source: str, stream: str, seq: int, array: np.ndarray) -> None:
        index = self.layer_of_node.get(source)
        if index is None:
            return
        with self.changed:
            self.results[(stream, seq)][index] = array
            self.changed.notify_all()

    def completed_through(self, stream: str, leaves: list[int]) -> int:
        """Highest batch seq of `stream` that every leaf layer has processed (-1: none).

        Batches reach a layer in order over one reliable channel, so a leaf's
        last seq acknowledges every earlier one too.
        """
        seqs = [self.layers[i].last_seq if self.layers[i].stream == stream else -1
                for i in leaves]
        return min(seqs, default=-1)

    def not_active(self) -> dict[int, str]:
        return {i: v.state for i, v in self.layers.items() if v.state not in ('active', 'unknown')}

    def take_result(self, stream: str, seq: int, wanted: set[int]) -> dict[int, np.ndarray] | None:
        """The results of a batch once every wanted layer reported, else None."""
        got = self.results.get((stream, seq))
        if got is None or not wanted.issubset(got):
            return None
        return self.results.pop((stream, seq))
