"""
One shard of a split layer as a pipeline stage: pure torch, no ROS.

Every shard of a layer receives the same training batches, in the same order. For each
batch a shard runs its forward, sends its partial sums of squares to its peers (a
`partials` output, one small tensor per batch), and waits for theirs; once all have
come it finishes the step with their total and passes its activities on, which the next
stage joins in unit order. Batches are finished strictly in arrival order, one at a
time, so every shard takes the same steps as the whole layer would: a batch that comes
while another waits for partial sums is queued, and peers' partial sums that come early
are kept until their batch is reached.

A repeat of a trained batch (a resend after a pause or a recovery) sends the partial
sums this shard sent the first time, computed before that step, with the activities: a
peer restored from an older checkpoint then finishes exactly the step it had missed.
"""
from __future__ import annotations

from collections import deque, OrderedDict
from typing import Any, Optional

from dff_lifecycle.core.ff.sharding import ShardTrainer
from dff_lifecycle.core.stage.batch_codec import Kind, pack_classed, pack_pair
from dff_lifecycle.core.stage.layer_stage import (InputRejected, LayerStage, MAX_PENDING_HALVES,
                                                  Output, StageSettings, TRAINED_MEMORY)
from torch import Tensor

# Partial sums this shard sent, kept for repeats (as many as the trained batch ids, within
# a memory bound: per-position sums of a conv map are H*W per sample); peers' partial sums
# kept ahead of time.
SENT_PARTIALS_BYTES = 32 << 20
EARLY_PARTIALS = 4 * MAX_PENDING_HALVES

Key = tuple[str, int]


class ShardStage(LayerStage):
    """A LayerStage whose training step is split over `shards` peers exchanging partial sums."""

    def __init__(self, trainer: ShardTrainer, settings: StageSettings, shard: int,
                 shards: int, **kwargs: Any) -> None:
        if not 0 <= shard < shards or shards < 2:
            raise ValueError(f'shard {shard} of {shards}: need 0 <= shard < shards, shards >= 2')
        if settings.steps_per_batch != 1:
            raise ValueError('a split layer takes one step per batch (minibatch training)')
        if settings.report_goodness:
            raise ValueError('a split layer cannot report goodness: its shards hold parts of it')
        super().__init__(trainer, settings, **kwargs)
        self.shard, self.shards = shard, shards
        self._queue: deque[tuple[Key, Tensor, Optional[Tensor]]] = deque()
        self._current: Optional[tuple[Key, Optional[Tensor]]] = None  # (key, labels)
        self._peers: OrderedDict[Key, dict[int, Tensor]] = OrderedDict()
        self._sent_partials: OrderedDict[Key, Tensor] = OrderedDict()
        self._sent_partials_bytes = 0

    # ----------------------------------------------------------------- inputs
    def _process(self, stream: str, seq: int, kind: int, tensor: Tensor,
                 position: int) -> list[Output]:
        if kind == Kind.PARTIALS:
            return self._partials_in((stream, seq), tensor, self._peer_of(position))
        return super()._process(stream, seq, kind, tensor, position)

    def _bundle(self, stream: str, seq: int, tensor: Tensor, position: int) -> list[Output]:
        raise InputRejected('a split layer takes one training batch per message: run the '
                            'master with bundle:=1')

    def _peer_of(self, position: int) -> int:
        """Input position of a peer's partials binding -> its shard (bindings skip this one)."""
        if not 0 <= position < self.shards - 1:
            raise InputRejected(f'partial sums on input {position}: this layer has '
                                f'{self.shards - 1} peers')
        return position if position < self.shard else position + 1

    def _partials_in(self, key: Key, tensor: Tensor, peer: int) -> list[Output]:
        if key in self._trained_set:
            return []  # a peer's repeat for a batch finished here already
        if tensor.dim() != 2 or tensor.shape[1] != self.trainer.partial_width():
            raise InputRejected(f'partial sums of shape {tuple(tensor.shape)}: expected '
                                f'(N, {self.trainer.partial_width()})')
        self._peers.setdefault(key, {})[peer] = tensor
        while len(self._peers) > EARLY_PARTIALS:
            dropped, _ = self._peers.popitem(last=False)
            self.warn(f'dropping early partial sums of {dropped}')
        return self._advance()

    def _train(self, stream: str, seq: int, x_pos: Tensor, x_neg: Tensor) -> list[Output]:
        return self._arrived((stream, seq), x_pos, x_neg, None)

    def _train_classed(self, stream: str, seq: int, tensor: Tensor) -> list[Output]:
        x, y = self._classed(tensor)
        return self._arrived((stream, seq), self._checked(x), None, y)

    def _arrived(self, key: Key, x: Tensor, x_neg: Optional[Tensor],
                 y: Optional[Tensor]) -> list[Output]:
        if key in self._trained_set:
            return self._repeat(key, x, x_neg, y)
        if self._current is not None and self._current[0] == key:
            return self._partials_out(key)  # a resend: a restored peer may need them
        if any(queued[0] == key for queued in self._queue):
            return []
        self._queue.append((key, x, x_neg) if y is None else (key, x, y))
        return self._advance()

    # --------------------------------------------------------------- the work
    def _advance(self) -> list[Output]:
        """Start the next queued batch, and finish every batch whose partial sums are all in."""
        outputs: list[Output] = []
        while True:
            if self._current is None:
                if not self._queue:
                    return outputs
                key, x, other = self._queue.popleft()
                classed = self.trainer.class_groups > 0
                own = self.trainer.forward(x) if classed else self.trainer.forward(x, other)
                self._current = (key, other if classed else None)
                self._keep_partials(key, own)
                outputs += self._partials_out(key)
            key, labels = self._current
            peers = self._peers.get(key, {})
            if len(peers) < self.shards - 1:
                return outputs
            del self._peers[key]
            parts = dict(peers)
            parts[self.shard] = self._sent_partials[key]
            total = parts[0].to(parts[self.shard].device)
            for index in range(1, self.shards):  # one order on every shard: equal totals
                total = total + parts[index].to(total.device)
            self._current = None
            outputs.append(self._finish(key, total, labels))

    def _finish(self, key: Key, total: Tensor, labels: Optional[Tensor]) -> Output:
        result = self.trainer.finish(total, labels)
        self._trained_once(key, result)
        if labels is None:
            packed, kind = pack_pair(self.ops.post(result.h_pos), self.ops.post(result.h_neg)), \
                Kind.TRAIN_PAIR
        else:
            packed, kind = pack_classed(self.ops.post(result.h_pos), labels), Kind.TRAIN_CLASSED
        self._cache(key, packed)
        return Output('train', kind, packed, key[1])

    def _keep_partials(self, key: Key, own: Tensor) -> None:
        self._sent_partials[key] = own
        self._sent_partials_bytes += own.numel() * own.element_size()
        while len(self._sent_partials) > 1 and (len(self._sent_partials) > TRAINED_MEMORY or
                                                self._sent_partials_bytes > SENT_PARTIALS_BYTES):
            _, old = self._sent_partials.popitem(last=False)
            self._sent_partials_bytes -= old.numel() * old.element_size()

    def _partials_out(self, key: Key) -> list[Output]:
        sent = self._sent_partials.get(key)
        return [] if sent is None else [Output('partials', Kind.PARTIALS, sent, key[1])]

    def _repeat(self, key: Key, x: Tensor, x_neg: Optional[Tensor],
                y: Optional[Tensor]) -> list[Output]:
        """Answer a trained batch again: its partial sums as first sent, and its activities."""
        outputs = self._partials_out(key)
        sent = self._sent.get(key)
        if y is not None:
            packed = sent if sent is not None else pack_classed(
                self.ops.post(self.trainer.infer(x)), y)
            return outputs + [Output('train', Kind.TRAIN_CLASSED, packed, key[1])]
        if sent is None:
            sent = pack_pair(self.ops.post(self.trainer.infer(x)),
                             self.ops.post(self.trainer.infer(x_neg)))
        return outputs + [Output('train', Kind.TRAIN_PAIR, sent, key[1])]

    # ------------------------------------------------------------ housekeeping
    def drop_pending(self) -> None:
        super().drop_pending()
        self._drop_work()

    def forget(self) -> None:
        super().forget()
        self._drop_work()
        self._sent_partials.clear()
        self._sent_partials_bytes = 0

    def _drop_work(self) -> None:
        """Drop the waiting work on a pause: the master resends it, redone from its forward."""
        if self._current is not None:
            dropped = self._sent_partials.pop(self._current[0], None)
            if dropped is not None:
                self._sent_partials_bytes -= dropped.numel() * dropped.element_size()
        self._queue.clear()
        self._current = None
        self._peers.clear()
        self.trainer.abandon()


__all__ = ['ShardStage']
