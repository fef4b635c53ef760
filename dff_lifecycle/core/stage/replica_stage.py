"""
One replica of a replicated layer as a pipeline stage: pure torch, no ROS.

Every replica of a layer hears every batch; replica k of n trains (and forwards) the
batches whose seq is k modulo n and lets the others pass, counting them in its watermark
as its peers' (core/ff/replicas.py has the averaging rule). Inference batches alternate
the same way. On a training stream, each time its watermark passes a round's last seq
(every `sync_every` batches, and the stream's last batch) the replica sends a snapshot of
its weights on its `sync` output; a peer's snapshot arrives on a `sync` input. A round is
applied once this replica's snapshot and every peer's are in.

The stream's last round (`stream_batches` known) ends the run with every replica holding
the same weights, so the watermark this stage reports stops one short of the stream's
last batch until that round is applied: the master, which waits for every replica's
watermark before it saves, never saves weights that differ.

A snapshot goes out again, marked as a reply, when a peer sends its snapshot of a round
applied here already (a peer restored from a checkpoint, or a lost message): replies are
never answered, so two replicas cannot echo each other.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional

from dff_lifecycle.core.ff.replicas import flat_state, move_to_mean, owner_of, state_size
from dff_lifecycle.core.stage.batch_codec import Kind
from dff_lifecycle.core.stage.layer_stage import (InputRejected, LayerStage, Output,
                                                  StageSettings)
from torch import Tensor

# Rounds whose snapshots are kept while peers' are awaited; an older one is dropped (its
# peers skipped it: a restored replica resumes past the rounds its checkpoint had).
MAX_OPEN_ROUNDS = 2  # core/ff/memory.py's replica_snapshots counts on it
SYNC_KINDS = (Kind.TRAIN_PAIR, Kind.TRAIN_CLASSED, Kind.TRAIN_LABELLED, Kind.POSITIVE,
              Kind.NEGATIVE, Kind.INFERENCE, Kind.INFER_IMAGES)

Round = tuple[str, int]  # (stream, round index)


def encode_round(index: int, reply: bool) -> int:
    """Return the batch_seq of a snapshot message: the round, and whether it answers a peer."""
    return 2 * index + int(reply)


def decode_round(seq: int) -> tuple[int, bool]:
    return seq // 2, bool(seq % 2)


class ReplicaStage(LayerStage):
    """A LayerStage that trains every n-th batch and averages its weights with n-1 peers."""

    def __init__(self, trainer: Any, settings: StageSettings, replica: int, replicas: int,
                 sync_every: int = 0, stream_batches: int = 0, **kwargs: Any) -> None:
        if not 0 <= replica < replicas or replicas < 2:
            raise ValueError(f'replica {replica} of {replicas}: need 0 <= replica < replicas, '
                             'replicas >= 2')
        if sync_every < 0 or stream_batches < 0:
            raise ValueError('sync_every and stream_batches must be >= 0')
        super().__init__(trainer, settings, **kwargs)
        self.replica, self.replicas = replica, replicas
        self.sync_every, self.stream_batches = sync_every, stream_batches
        self._next: dict[str, int] = {}                       # stream -> next round to snapshot
        self._own: OrderedDict[Round, Tensor] = OrderedDict()  # snapshots awaiting peers'
        self._peers: OrderedDict[Round, dict[int, Tensor]] = OrderedDict()
        self._applied: OrderedDict[Round, Tensor] = OrderedDict()  # own snapshot, for replies
        self.rounds_applied = 0

    # ------------------------------------------------------------------ rounds
    @property
    def averages(self) -> bool:
        """Return False for replicas that only infer (no sync_every, no stream_batches)."""
        return bool(self.sync_every or self.stream_batches)

    @property
    def last_round(self) -> Optional[int]:
        """Return the index of the stream's final round (None: its length is unknown)."""
        if not self.stream_batches:
            return None
        every = self.sync_every or self.stream_batches
        return (self.stream_batches - 1) // every

    def round_end(self, index: int) -> int:
        """Return the last seq of round `index`."""
        every = self.sync_every or self.stream_batches
        end = (index + 1) * every - 1
        return min(end, self.stream_batches - 1) if self.stream_batches else end

    def through(self, stream: str) -> int:
        """Return the watermark to report: short of the last batch until the last average."""
        through = self.watermark.through(stream)
        last = self.last_round
        if (last is not None and stream.startswith('train') and through >= self.round_end(last)
                and (stream, last) not in self._applied):
            return self.round_end(last) - 1
        return through

    def _snapshots_due(self, stream: str) -> list[Output]:
        """Snapshot the rounds the watermark has passed (only the newest of several)."""
        if not stream.startswith('train') or not self.averages:
            return []
        through = self.watermark.through(stream)
        index = self._next.get(stream, 0)
        last = self.last_round
        passed = None
        while (last is None or index <= last) and self.round_end(index) <= through:
            passed, index = index, index + 1
        if passed is None:
            return []
        self._next[stream] = index
        key = (stream, passed)
        self._drop_older(key)  # applied after this snapshot, one would count twice
        self._own[key] = flat_state(self.trainer.layer)
        while len(self._own) > MAX_OPEN_ROUNDS:
            dropped, _ = self._own.popitem(last=False)
            self.warn(f'replica {self.replica}: no peer snapshot for round {dropped[1]} of '
                      f'{dropped[0]}; skipping it')
        outputs = [Output('sync', Kind.REPLICA_WEIGHTS, self._own[key],
                          seq=encode_round(passed, False))]
        self._try_apply(key)
        return outputs

    def _try_apply(self, key: Round) -> None:
        own, peers = self._own.get(key), self._peers.get(key, {})
        if own is None or len(peers) < self.replicas - 1:
            return
        snapshots = [own if k == self.replica else peers[k] for k in range(self.replicas)]
        move_to_mean(self.trainer.layer, snapshots, self.replica)
        del self._own[key]
        self._peers.pop(key, None)
        self._drop_older(key)
        self._applied[key] = own
        while len(self._applied) > 1:  # the last round's, for a peer that asks again
            self._applied.popitem(last=False)
        self.rounds_applied += 1

    def _drop_older(self, key: Round) -> None:
        """
        Forget the stream's rounds before `key`: a newer round is snapshotted or applied.

        An older round applied after a newer snapshot would move the weights after it, and
        the newer round would then carry that move on top of its mean: at the stream's last
        round the copies would end apart (seen under load: a peer's earlier snapshot arriving
        after this copy's last one).
        """
        for older in [k for k in (*self._own, *self._peers) if k[0] == key[0] and k[1] < key[1]]:
            self._own.pop(older, None)
            self._peers.pop(older, None)

    def _snapshot_in(self, stream: str, seq: int, tensor: Tensor, position: int) -> list[Output]:
        peer = self._peer_of(position)
        index, reply = decode_round(seq)
        key = (stream, index)
        size = state_size(self.trainer.layer)
        if tensor.dim() != 1 or tensor.numel() != size:
            raise InputRejected(f'weight snapshot of shape {tuple(tensor.shape)}: this layer has '
                                f'{size} values')
        if key in self._applied:
            if reply:
                return []
            return [Output('sync', Kind.REPLICA_WEIGHTS, self._applied[key],
                           seq=encode_round(index, True))]
        self._peers.setdefault(key, {})[peer] = tensor.float().cpu()
        while len(self._peers) > MAX_OPEN_ROUNDS:
            dropped, _ = self._peers.popitem(last=False)
            self.warn(f'replica {self.replica}: dropping peer snapshots of round {dropped[1]}')
        self._try_apply(key)
        return []

    def _peer_of(self, position: int) -> int:
        """Input position of a peer's sync binding -> its replica (bindings skip this one)."""
        if not 0 <= position < self.replicas - 1:
            raise InputRejected(f'weight snapshot on input {position}: this layer has '
                                f'{self.replicas - 1} peers')
        return position if position < self.replica else position + 1

    # ------------------------------------------------------------------ batches
    def process(self, stream: str, seq: int, kind: int, tensor: Tensor,
                position: int = 0) -> list[Output]:
        if kind == Kind.REPLICA_WEIGHTS:
            return self._snapshot_in(stream, seq, tensor, position)
        # A batch resent (the master saw no progress): a snapshot may have been lost.
        again = self._open_snapshots(stream) if seq <= self.watermark.through(stream) else []
        if kind in SYNC_KINDS and owner_of(seq, self.replicas) != self.replica:
            self.watermark.add(stream, seq)  # a peer's batch: it trains and forwards it
            return again + self._snapshots_due(stream)
        outputs = super().process(stream, seq, kind, tensor, position)
        return outputs + again + self._snapshots_due(stream)

    def _open_snapshots(self, stream: str) -> list[Output]:
        """Return this replica's snapshots of the stream's open rounds, to send again."""
        return [Output('sync', Kind.REPLICA_WEIGHTS, snapshot, seq=encode_round(index, False))
                for (s, index), snapshot in self._own.items() if s == stream]

    def _bundle(self, stream: str, seq: int, tensor: Tensor, position: int) -> list[Output]:
        raise InputRejected('a replicated layer takes one training batch per message: run the '
                            'master with bundle:=1')

    def forget(self) -> None:
        super().forget()
        self._next.clear()
        self._own.clear()
        self._peers.clear()
        self._applied.clear()

    def restore_trained(self, keys: Any) -> None:
        """Resume from a checkpoint: rounds ending at or before its watermark are past."""
        super().restore_trained(keys)
        for stream in {entry[0] for entry in keys if isinstance(entry, (list, tuple))
                       and len(entry) == 2 and isinstance(entry[0], str)}:
            through, index = self.watermark.through(stream), 0
            last = self.last_round
            while self.round_end(index) <= through and (last is None or index < last):
                index += 1
            self._next[stream] = index
