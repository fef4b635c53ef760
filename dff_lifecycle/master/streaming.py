"""
Windowed streaming: keep `window` items in flight, resend after a pause or a stall.

Pure logic. The pipeline is seen through `PipelineView` (the master's
`PipelineWatch` in a run, a scripted fake in the unit tests), time through an
injected clock, and liveness through a health-check hook (the supervisor's),
so every path here is tested without ROS.

Items are acknowledged in order: `done_through()` is the highest seq that
every consumer has finished. A layer that leaves `active` pauses the stream;
when every layer is active again the items in flight are resent (layers train
each batch once and only forward a repeat). No progress for `stall_limit_s`
resends too, at most `max_resends` times in a row.

When the health check reports a recovery (layers moved or created again), the
items in flight are resent, and so are the recently completed ones that the
restored layers had not trained by their checkpoint (`replay`), so that no layer
misses a batch: the others only forward a batch they trained already. Whatever goes
out again waits its turn in the window, lowest seq first, like a new item: a stage
that joins inputs holds a bounded number of partly joined batches.
"""
from __future__ import annotations

from collections import deque, OrderedDict
from dataclasses import dataclass
import time
from typing import Callable, Iterable, Mapping, Optional, Protocol, TypeVar

from dff_lifecycle.master.errors import PipelineError

#: Layer states a layer cannot leave without someone configuring it again (or ever).
DEAD_END_STATES = ('unconfigured', 'finalized')


class Sequenced(Protocol):
    seq: int


T = TypeVar('T', bound=Sequenced)


class Resume(Protocol):
    """What a recovery tells the streamer (`recovery.Recovered`)."""

    def replay_after(self, stream: str) -> Optional[int]:
        """Resend the completed items of `stream` after this seq; None: only those in flight."""


class PipelineView(Protocol):
    """What streaming needs to know about the pipeline."""

    def wait(self, timeout_s: float) -> None:
        """Return when something changed, or after timeout_s."""

    def not_active(self) -> Mapping[int, str]:
        """{layer: state} of the layers known to be in a state other than active."""

    def errors(self) -> Mapping[int, str]:
        """{layer: last error} of the layers that reported one."""

    def computing_at(self) -> Optional[float]:
        """When a layer last said it is still computing a batch (the streamer's clock)."""


@dataclass(frozen=True)
class StreamSettings:
    window: int                 # items in flight
    stall_limit_s: float        # no progress for this long: resend
    pause_timeout_s: float      # how long to wait for paused layers
    max_resends: int            # resends in a row without progress before giving up
    poll_s: float = 0.2         # longest wait between looks at the pipeline
    replay: int = 0             # completed batches kept to resend after a recovery
    # A layer that says it is still computing (a step of seconds on a starved device) is
    # progress, for at most this long without a completed item; then it is a stall.
    hang_limit_s: float = 60.0
    # Items kept in flight whatever their weight: with bundles of several batches, one per
    # stage plus one keeps every stage busy although `window` batches are fewer.
    min_items: int = 1


def _no_check(what: str) -> Optional[Resume]:
    """Check nothing: the default health check."""
    return None


class Streamer:
    """Streams items through the pipeline with a bounded window."""

    def __init__(self, settings: StreamSettings, pipeline: PipelineView,
                 layer_names: Mapping[int, str], *,
                 clock: Callable[[], float] = time.monotonic,
                 log: Callable[[str], None] = print,
                 health_check: Callable[[str], Optional[Resume]] = _no_check) -> None:
        if settings.window < 1:
            raise ValueError(f'window must be >= 1, got {settings.window}')
        self.settings = settings
        self.pipeline = pipeline
        self.layer_names = dict(layer_names)
        self.clock = clock
        self.log = log
        self.health_check = health_check  # a Resume: lost layers were recovered
        self.resends_total = 0  # for tests and reports: how often items went out again

    def stream(self, items: Iterable[T], send: Callable[[T], None],
               done_through: Callable[[], int], on_done: Callable[[T], None],
               what: str, stream_id: str = '',
               weight: Callable[[T], int] = lambda _item: 1) -> None:
        """
        Send every item, call on_done(item) in order as items complete.

        stream_id names the stream for replays after a recovery. `weight` is how many
        batches an item holds: the window counts batches (a bundle of k weighs k).
        Raise PipelineError when the pipeline cannot finish the items.
        """
        s = self.settings
        inflight: OrderedDict[int, T] = OrderedDict()
        # Items to send again before any new one, lowest seq first, inside the window: a
        # replay or a resend of hundreds of batches at once overran the joins of a Concat
        # stage (one input forwarding repeats, the other training them), which dropped
        # partly joined batches and held the stream for the stall limit.
        again: dict[int, T] = {}
        owed: set[int] = set()  # sent from `items`, on_done not called yet
        recent: deque[T] = deque()  # completed items, for replays: `replay` batches at most
        recent_load = 0
        source = iter(items)
        exhausted, resends, load = False, 0, 0  # load: batches in flight
        last_progress = last_done = self.clock()  # last_done: an item completed

        def requeue(more: Iterable[T]) -> None:
            nonlocal load
            for item in list(inflight.values()) + list(more):
                again[item.seq] = item
            inflight.clear()
            load = 0

        while True:
            while (again or not exhausted) and (load < s.window or len(inflight) < s.min_items):
                if again:
                    item = again.pop(min(again))
                    self.resends_total += 1
                else:
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    owed.add(item.seq)
                send(item)
                inflight[item.seq] = item
                load += weight(item)
            if exhausted and not inflight and not again:
                return
            self.pipeline.wait(s.poll_s)
            resume = self.health_check(what)
            if resume is not None:
                replayed = self._replay(resume, stream_id, recent, what)
                self.log(f'{what}: pipeline recovered: resending {len(inflight)} batch(es)')
                requeue(replayed)
                last_progress = last_done = self.clock()
                resends = 0
                continue
            done = done_through()
            finished = [seq for seq in inflight if seq <= done]
            for seq in finished:
                item = inflight.pop(seq)
                load -= weight(item)
                if seq not in owed:  # a replay or resend of an item completed before
                    continue
                owed.discard(seq)
                recent.append(item)
                recent_load += weight(item)
                while recent and recent_load > s.replay:
                    recent_load -= weight(recent.popleft())
                on_done(item)
            if finished:
                last_progress = last_done = self.clock()
                resends = 0
                continue
            paused = dict(self.pipeline.not_active())
            stalled = self._quiet_s(last_progress, last_done) > s.stall_limit_s
            if not paused and not stalled:
                continue
            if paused:
                resume = self._wait_until_active(paused, what, len(inflight))
                requeue(self._replay(resume, stream_id, recent, what) if resume else ())
                resends = 0
            else:
                resends = self._count_resend(resends, what, len(inflight))
                # Completed items the leaves no longer acknowledge: a restored leaf counts
                # from its checkpoint, and a replayed batch it lost holds its watermark.
                requeue(item for item in recent if item.seq > done)
            last_progress = self.clock()

    def _quiet_s(self, last_progress: float, last_done: float) -> float:
        """
        Return the seconds without evidence of progress.

        Evidence: an item completed or resent (`last_progress`), or a layer's beacon
        that it is still computing, which counts for `hang_limit_s` after the last
        completed item (`last_done`) at most.
        """
        now = self.clock()
        beacon = self.pipeline.computing_at()
        if beacon is not None and beacon > last_progress and \
                now - last_done <= self.settings.hang_limit_s:
            return now - beacon
        return now - last_progress

    def _replay(self, resume: Resume, stream_id: str, recent: Iterable[T],
                what: str) -> list[T]:
        """Return the completed items the restored layers had not trained by their checkpoint."""
        after = resume.replay_after(stream_id)
        if after is None:
            return []
        again = [item for item in recent if item.seq > after]
        if again:
            self.log(f'{what}: replaying {len(again)} completed batch(es) after #{after} for '
                     'the restored layers')
        return again

    # ------------------------------------------------------------------ recovery
    def _describe(self, states: Mapping[int, str]) -> str:
        return ', '.join(f'{self.layer_names.get(i, f"layer {i}")} is {state}'
                         for i, state in sorted(states.items()))

    def _wait_until_active(self, paused: Mapping[int, str], what: str,
                           inflight: int) -> Optional[Resume]:
        first = self.layer_names.get(min(paused), f'layer {min(paused)}')
        self.log(f'{what} paused: {self._describe(paused)}; waiting for every layer to be '
                 f'active (e.g. `dff_lifecycle set {first} activate`)')
        deadline = self.clock() + self.settings.pause_timeout_s
        resume = None
        while True:
            resume = self.health_check(what)
            if resume is not None:  # e.g. a finalized layer created again
                break
            states = dict(self.pipeline.not_active())
            if not states:
                break
            if 'finalized' in states.values():
                raise PipelineError(f'{what} stopped: {self._describe(states)}; a finalized '
                                    'node cannot come back: delete the model and deploy it '
                                    'again (weights were saved at shutdown)')
            if any(state in DEAD_END_STATES for state in states.values()):
                raise PipelineError(f'{what} stopped: {self._describe(states)} (configure and '
                                    'activate it again, then run the master again to resume '
                                    'from its saved weights)')
            if self.clock() > deadline:
                raise PipelineError(f'{what} stopped: {self._describe(states)} for '
                                    f'{self.settings.pause_timeout_s:g} s')
            self.pipeline.wait(self.settings.poll_s)
        self.log(f'every layer is active again: resending {inflight} {what} batch(es)')
        return resume

    def _count_resend(self, resends: int, what: str, inflight: int) -> int:
        limit = self.settings.stall_limit_s
        if resends >= self.settings.max_resends:
            errors = {self.layer_names.get(i, i): e for i, e in self.pipeline.errors().items()}
            raise PipelineError(f'{what} made no progress for {limit:.0f} s after {resends} '
                                f'resends; layer errors: {errors or "none"}')
        self.log(f'{what}: no progress for {limit:.0f} s; resending {inflight} batch(es)')
        return resends + 1
