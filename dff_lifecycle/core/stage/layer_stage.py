"""
What one pipeline stage does with each tensor it receives: pure torch, no ROS.

A stage owns a `LocalTrainer`. Training batches (as halves, pairs or labelled
images; classed batches for the class_groups objective) train it exactly once per
(stream, batch) and pass the activities on as one pair (or classed batch);
inference batches pass activities on and report goodness or features.
A repeat of a trained batch (a resend after a pause, a stall or a recovery) is
forwarded again without a second update, and with the very activities sent the
first time while they are in the bounded resend cache: a layer restored from a
checkpoint downstream then trains on exactly the inputs it had, so a recovery
ends with the weights of an uninterrupted run. The layer node feeds it from its
compute thread.
"""
from __future__ import annotations

from collections import deque, OrderedDict
from dataclasses import dataclass
import math
import time
from typing import Any, Callable, Iterable, NamedTuple, Optional

from dff_lifecycle.common.duty_cycle import DutyCycle
from dff_lifecycle.core.ff.local_trainer import LocalTrainer, StepResult
from dff_lifecycle.core.ff.scoring import normalised_features
from dff_lifecycle.core.objectives.separation import SeparationWatch
from dff_lifecycle.core.stage.batch_codec import (CodecError, expand_candidates, Kind,
                                                  pack_classed, pack_pair, unpack_classed,
                                                  unpack_labelled, unpack_pair)
from dff_lifecycle.core.stage.bundles import pack_bundle, unpack_bundle
from dff_lifecycle.core.stage.seq_watermark import SeqWatermark
from dff_lifecycle.core.stage.stage_ops import StageOps
import torch
from torch import Tensor

# How many unpaired positive/negative halves and trained batch ids to remember.
MAX_PENDING_HALVES = 16
TRAINED_MEMORY = 4096


class InputRejected(ValueError):
    """A well-formed tensor that this stage cannot use (wrong shape, kind, ...)."""


class Output(NamedTuple):
    channel: str   # 'train' | 'infer' | 'result' | 'partials'
    kind: Kind
    tensor: Tensor
    seq: Optional[int] = None  # the batch it belongs to, when not the received one's


@dataclass(frozen=True)
class StageSettings:
    in_features: int
    overlay_classes: int = 0     # > 0: this stage builds the first layer's input
    steps_per_batch: int = 1
    report_goodness: bool = False
    report_features: bool = False
    save_every_batches: int = 0  # checkpoint every N trained batches (0: off)
    save_every_s: float = 0.0    # ... and at the first batch trained N seconds after the last
    resend_cache_bytes: int = 0  # activities of recent training batches kept for repeats


@dataclass
class StageScalars:
    loss: float = 0.0
    goodness_positive: float = 0.0
    goodness_negative: float = 0.0
    inference_batches: int = 0


class LayerStage:
    """Turns received tensors into a training step and the tensors to send on."""

    def __init__(self, trainer: LocalTrainer, settings: StageSettings,
                 save: Callable[[], Any] = lambda: None,
                 warn: Callable[[str], None] = lambda _text: None,
                 clock: Callable[[], float] = time.monotonic,
                 ops: Optional[StageOps] = None) -> None:
        self.trainer = trainer
        self.settings = settings
        # Joining several inputs, and the pools / Flatten fused after the layer.
        self.ops = ops or StageOps([(settings.in_features,)], 1, [])
        self.save = save
        self.warn = warn
        self.clock = clock
        # Checkpoints take at most a tenth of the time, however large the layer is.
        self._checkpoints = DutyCycle(settings.save_every_s, clock=clock)
        self.scalars = StageScalars()
        self.separation = SeparationWatch()  # is this layer learning? (/diagnostics)
        self.watermark = SeqWatermark()  # processed through which seq (the master's count)
        self._pending: OrderedDict[tuple[str, int], dict[int, Tensor]] = OrderedDict()
        self._joining: OrderedDict[tuple[str, int, int], dict[int, Tensor]] = OrderedDict()
        self._trained: deque[tuple[str, int]] = deque(maxlen=TRAINED_MEMORY)
        self._trained_set: set[tuple[str, int]] = set()
        self._sent: OrderedDict[tuple[str, int], Tensor] = OrderedDict()  # the resend cache
        self._sent_bytes = 0

    def process(self, stream: str, seq: int, kind: int, tensor: Tensor,
                position: int = 0) -> list[Output]:
        """
        Handle one received tensor; the outputs to publish (none for a lone half).

        `position` is the input it came in on, for a stage that joins several (a Concat):
        such a stage waits for the same (stream, seq, kind) on every input, then joins.
        Each batch it completes moves `watermark` (a bundle's, batch by batch).
        """
        outputs = self._process(stream, seq, kind, tensor, position)
        for out in outputs:
            if out.kind not in (Kind.BUNDLE, Kind.PARTIALS):  # a bundle's parts: already in
                self.watermark.add(stream, seq if out.seq is None else out.seq)
        return outputs

    def through(self, stream: str) -> int:
        """Return the watermark the master hears: the seq through which `stream` is done here."""
        return self.watermark.through(stream)

    def _process(self, stream: str, seq: int, kind: int, tensor: Tensor,
                 position: int) -> list[Output]:
        try:
            kind = Kind(kind)
        except ValueError:
            raise InputRejected(f'unexpected tensor kind {kind}') from None
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            # One NaN trained on would poison the weights for good: refuse the batch.
            raise InputRejected(f'{kind.name} tensor of shape {tuple(tensor.shape)} holds NaN '
                                'or Inf values')
        if kind == Kind.BUNDLE:
            return self._bundle(stream, seq, tensor, position)
        try:
            if self.ops.inputs > 1:
                joined = self._join(stream, seq, kind, tensor, position)
                if joined is None:
                    return []
                tensor = joined
            if kind in (Kind.POSITIVE, Kind.NEGATIVE):
                halves = self._collect_half(stream, seq, kind, tensor)
                return [] if halves is None else self._train(stream, seq, *halves)
            if kind == Kind.TRAIN_PAIR:
                return self._train(stream, seq, *unpack_pair(self._checked(tensor)))
            if kind == Kind.TRAIN_LABELLED:
                return self._train(stream, seq, *self._overlaid(tensor))
            if kind == Kind.TRAIN_CLASSED:
                return self._train_classed(stream, seq, tensor)
            if kind == Kind.INFERENCE:
                return self._infer(self._checked(tensor))
            if kind == Kind.INFER_IMAGES:
                return self._infer(self._candidates(tensor))
        except CodecError as err:
            raise InputRejected(str(err)) from err
        raise InputRejected(f'a layer does not take {kind.name} tensors')

    def _bundle(self, stream: str, seq: int, tensor: Tensor, position: int) -> list[Output]:
        """
        Handle each batch of a bundle as if it had come alone; bundle what they produce.

        A batch that fails is rejected with the bundle; those before it are trained and are
        only forwarded when the bundle comes again.
        """
        try:
            kind, parts = unpack_bundle(tensor, seq)
        except CodecError as err:
            raise InputRejected(str(err)) from err
        produced: dict[tuple[str, Kind], list[tuple[int, Tensor]]] = {}
        for part_seq, part in parts:
            for out in self.process(stream, part_seq, kind, part, position):
                produced.setdefault((out.channel, out.kind), []).append((part_seq, out.tensor))
        return [Output(channel, Kind.BUNDLE, pack_bundle(out_kind, outs, seq))
                for (channel, out_kind), outs in produced.items()]

    def forget(self) -> None:
        self.separation.reset()
        self._pending.clear()
        self._joining.clear()
        self._trained.clear()
        self._trained_set.clear()
        self.watermark.clear()
        self._sent.clear()
        self._sent_bytes = 0

    def drop_pending(self) -> None:
        self._pending.clear()
        self._joining.clear()

    def trained_keys(self) -> list[list]:
        """Return the (stream, seq) of the batches trained lately, oldest first, to checkpoint."""
        return [[stream, seq] for stream, seq in self._trained]

    def restore_trained(self, keys: Iterable) -> None:
        """
        Remember a checkpoint's trained batches: a resend of one is forwarded, not retrained.

        The watermark starts at the newest of them (per stream): what the checkpoint had.
        """
        for entry in keys:
            if (isinstance(entry, (list, tuple)) and len(entry) == 2
                    and isinstance(entry[0], str) and isinstance(entry[1], int)):
                key = (entry[0], entry[1])
                if key not in self._trained_set:
                    self._remember(key)
                self.watermark.start_after(*key)

    # ------------------------------------------------------------------ inputs
    def _join(self, stream: str, seq: int, kind: Kind, tensor: Tensor,
              position: int) -> Optional[Tensor]:
        if kind not in (Kind.TRAIN_PAIR, Kind.TRAIN_CLASSED, Kind.INFERENCE):
            raise InputRejected(f'a stage joining {self.ops.inputs} inputs takes activity '
                                f'pairs, classed activities and inference activities, not '
                                f'{kind.name} tensors')
        labels = None
        if kind == Kind.TRAIN_CLASSED:  # join the activities; the label column goes on once
            tensor, labels = self._classed(tensor)
        if not 0 <= position < self.ops.inputs:
            raise InputRejected(f'input {position} of a stage with {self.ops.inputs} inputs')
        shape = self.ops.input_shapes[position]
        size = math.prod(shape)
        if tensor.dim() < 2 or int(tensor[0].numel() if tensor.shape[0] else 0) != size:
            raise InputRejected(f'input {position}: shape {tuple(tensor.shape)} does not fit '
                                f'{list(shape)}')
        key = (stream, seq, int(kind))
        parts = self._joining.setdefault(key, {})
        parts[position] = tensor if labels is None else (tensor, labels)
        while len(self._joining) > MAX_PENDING_HALVES:
            dropped, _ = self._joining.popitem(last=False)
            self.warn(f'dropping a partly joined batch {dropped}')
        if len(parts) < self.ops.inputs:
            return None
        del self._joining[key]
        ordered = [parts[i] for i in range(self.ops.inputs)]
        if kind == Kind.TRAIN_CLASSED:
            first = ordered[0][1]
            if any(part[1].shape != first.shape or not torch.equal(part[1], first)
                   for part in ordered[1:]):
                raise InputRejected(f'joined inputs of {stream}#{seq} carry different labels')
            joined = self.ops.join([part[0] for part in ordered])
            return pack_classed(joined, first)
        rows = {part.shape[0] for part in ordered}
        if len(rows) != 1:
            raise InputRejected(f'joined inputs of {stream}#{seq} differ in rows: {sorted(rows)}')
        return self.ops.join(ordered)

    def _checked(self, tensor: Tensor) -> Tensor:
        features = int(tensor[0].numel()) if tensor.dim() >= 1 and tensor.shape[0] else 0
        if tensor.dim() < 2 or features != self.settings.in_features:
            raise InputRejected(f'shape {tuple(tensor.shape)} does not fit in_features='
                                f'{self.settings.in_features}')
        return tensor

    def _classed(self, tensor: Tensor) -> tuple[Tensor, Tensor]:
        groups = self.trainer.class_groups
        if not groups:
            raise InputRejected('classed batches go to layers with the class_groups objective '
                                f'only; this one learns with {self.trainer.hparams.objective}')
        return unpack_classed(tensor, groups)

    def _needs_overlay(self, what: str) -> int:
        classes = self.settings.overlay_classes
        if classes <= 0:
            raise InputRejected(f'{what} go to the first layer of a supervised model only '
                                '(overlay_classes is 0 here)')
        return classes

    def _overlaid(self, tensor: Tensor) -> tuple[Tensor, Tensor]:
        classes = self._needs_overlay('labelled images')
        if tensor.dim() != 2 or tensor.shape[1] != self.settings.in_features + 2:
            raise InputRejected(f'labelled batch of shape {tuple(tensor.shape)}: expected '
                                f'(N, {self.settings.in_features} + 2)')
        return unpack_labelled(tensor, classes)

    def _candidates(self, tensor: Tensor) -> Tensor:
        classes = self._needs_overlay('images for label candidates')
        return expand_candidates(self._checked(tensor), classes)

    def _collect_half(self, stream: str, seq: int, kind: Kind,
                      tensor: Tensor) -> Optional[tuple[Tensor, Tensor]]:
        key = (stream, seq)
        halves = self._pending.setdefault(key, {})
        halves[kind] = self._checked(tensor)
        while len(self._pending) > MAX_PENDING_HALVES:
            dropped, _ = self._pending.popitem(last=False)
            self.warn(f'dropping unpaired training half {dropped}')
        if len(halves) < 2:
            return None
        del self._pending[key]
        return halves[Kind.POSITIVE], halves[Kind.NEGATIVE]

    # --------------------------------------------------------------- the work
    def _train(self, stream: str, seq: int, x_pos: Tensor, x_neg: Tensor) -> list[Output]:
        key = (stream, seq)
        trainer = self.trainer
        if key in self._trained_set:
            sent = self._sent.get(key)
            if sent is not None:  # exactly what went out the first time
                return [Output('train', Kind.TRAIN_PAIR, sent)]
            h_pos = self.ops.post(trainer.infer(x_pos))
            h_neg = self.ops.post(trainer.infer(x_neg))
        else:
            result = trainer.step(x_pos, x_neg, steps=self.settings.steps_per_batch)
            h_pos, h_neg = self.ops.post(result.h_pos), self.ops.post(result.h_neg)
            self._trained_once(key, result)
            pair = pack_pair(h_pos, h_neg)
            self._cache(key, pair)
            return [Output('train', Kind.TRAIN_PAIR, pair)]
        return [Output('train', Kind.TRAIN_PAIR, pack_pair(h_pos, h_neg))]

    def _train_classed(self, stream: str, seq: int, tensor: Tensor) -> list[Output]:
        x, y = self._classed(tensor)
        x = self._checked(x)
        key = (stream, seq)
        if key in self._trained_set:
            sent = self._sent.get(key)
            if sent is None:
                sent = pack_classed(self.ops.post(self.trainer.infer(x)), y)
            return [Output('train', Kind.TRAIN_CLASSED, sent)]
        result = self.trainer.step_classes(x, y, steps=self.settings.steps_per_batch)
        self._trained_once(key, result)
        packed = pack_classed(self.ops.post(result.h_pos), y)
        self._cache(key, packed)
        return [Output('train', Kind.TRAIN_CLASSED, packed)]

    def _trained_once(self, key: tuple[str, int], result: StepResult) -> None:
        """Book a batch trained for the first time: its key, scalars, and maybe a checkpoint."""
        self._remember(key)
        self.scalars.loss = result.loss
        self.scalars.goodness_positive = result.goodness_pos
        self.scalars.goodness_negative = result.goodness_neg
        self.separation.record(result.goodness_pos, result.goodness_neg, result.silent_groups)
        self._maybe_checkpoint()

    def _cache(self, key: tuple[str, int], pair: Tensor) -> None:
        limit = self.settings.resend_cache_bytes
        size = pair.numel() * pair.element_size()
        if size > limit:
            return
        self._sent[key] = pair
        self._sent_bytes += size
        while self._sent_bytes > limit:
            _, old = self._sent.popitem(last=False)
            self._sent_bytes -= old.numel() * old.element_size()

    def _maybe_checkpoint(self) -> None:
        every, every_s = self.settings.save_every_batches, self.settings.save_every_s
        cycle = self._checkpoints
        if ((every and self.trainer.batches_seen % every == 0 and cycle.affordable())
                or (every_s and cycle.due())):
            cycle.run(self.save)

    @property
    def checkpoint_interval_s(self) -> float:
        """Seconds between time-triggered checkpoints now (longer when saving is costly)."""
        return self._checkpoints.interval_s

    def _infer(self, x: Tensor) -> list[Output]:
        raw = self.trainer.infer(x)
        h = self.ops.post(raw)  # what the next layers read, and the features
        outputs = [Output('infer', Kind.INFERENCE, h)]
        if self.settings.report_goodness:
            outputs.append(Output('result', Kind.GOODNESS, self.trainer.goodness_of(raw)))
        if self.settings.report_features:
            outputs.append(Output('result', Kind.FEATURES, normalised_features([h])))
        self.scalars.inference_batches += 1
        return outputs

    def _remember(self, key: tuple[str, int]) -> None:
        if len(self._trained) == self._trained.maxlen:
            self._trained_set.discard(self._trained[0])
        self._trained.append(key)
        self._trained_set.add(key)


__all__ = ['InputRejected', 'Kind', 'LayerStage', 'Output', 'StageSettings', 'torch']
