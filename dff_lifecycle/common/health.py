"""
The health rules of layers and containers: facts in, (level, message, key/values) out.

One table of rules, read the same way by `/diagnostics` (ros/diagnostics.py), by
rqt_robot_monitor through it, and by `dff_status`. Pure: no ROS, no torch, an
injected clock. The rules (docs/operations.md, "/diagnostics", prints them):

ERROR  layer      the last transition failed, or processing a batch failed (error
                  processing ran): until the next successful transition
ERROR  layer      a tensor was rejected (a malformed chunk stream, a wrong width) and
                  no batch was processed since: until the next batch processed
WARN   layer      inactive after training batches while it was active (paused
                  mid-training: the master waits for it): until activate or cleanup
WARN   layer      the last loss or goodness is NaN or infinite
WARN   layer      its goodness of positive and negative data (true and other class
                  groups) equal within 1 % over its last 50 batches: not learning
WARN   layer      a class group with no unit active for any image over its last 50
                  batches: that class can never be predicted
WARN   layer      active, trained since it was activated, but no batch for IDLE_WARN_S
WARN   container  memory in use at MEMORY_WARN_FRACTION of its cgroup limit or more
OK                otherwise

`LayerStatus.error` keeps the last error for good, so it is shown (`last error`)
but raises the level only through the rules above: a layer that recovered is OK.
"""
from __future__ import annotations

from dataclasses import dataclass
import enum
import math
from typing import Optional


class Level(enum.IntEnum):
    """diagnostic_msgs/DiagnosticStatus levels."""

    OK = 0
    WARN = 1
    ERROR = 2
    STALE = 3


# Entry names follow diagnostic_updater's `<node>: <task>`, with the fully qualified node
# name (layer names repeat across models).
LAYER_TASK = 'ff_layer'
CONTAINER_TASK = 'server_container'

IDLE_WARN_S = 60.0            # active, had batches, then none for this long: stalled or over
MEMORY_WARN_FRACTION = 0.9    # of the cgroup's limit (what check_fits measures room against)

# Keys of the values, shared with dff_status (its columns read them back).
STATE = 'state'
BATCHES = 'batches trained'
INFERENCE_BATCHES = 'inference batches'
LOSS = 'loss'
GOODNESS_POSITIVE = 'goodness positive'
GOODNESS_NEGATIVE = 'goodness negative'
REJECTED = 'rejected tensors'
LAST_ERROR = 'last error'
WEIGHT_FILE = 'weight file'
WEIGHTS_LOADED = 'weights loaded'
MEMORY = 'memory'
MODEL = 'model'
SERVER = 'server'
LAYERS_HOSTED = 'layers hosted'
LAYERS = 'layers'
RSS = 'memory rss'
CGROUP_LIMIT = 'cgroup limit'
CGROUP_IN_USE = 'cgroup in use'
UPTIME = 'uptime'
PID = 'pid'
WEIGHT_DIR = 'weight dir'

LAYER_KEYS = (STATE, BATCHES, INFERENCE_BATCHES, LOSS, GOODNESS_POSITIVE, GOODNESS_NEGATIVE,
              REJECTED, LAST_ERROR, WEIGHT_FILE, WEIGHTS_LOADED, MEMORY, MODEL, SERVER)
CONTAINER_KEYS = (LAYERS_HOSTED, LAYERS, RSS, CGROUP_LIMIT, CGROUP_IN_USE, UPTIME, PID,
                  WEIGHT_DIR)


@dataclass(frozen=True)
class Report:
    """One diagnostic entry's content: level, one-line message, key/value strings."""

    level: Level
    message: str
    values: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class LayerFacts:
    """What a layer node knows about itself at one moment (its LayerStatus, mostly)."""

    state: str                  # lifecycle label
    batches: int                # training batches trained (counting those of loaded weights)
    inference_batches: int
    loss: float
    goodness_positive: float
    goodness_negative: float
    rejected: int               # tensors rejected since configure
    error: str = ''             # the last error, '' if none ever
    weight_file: str = ''
    weights_loaded: bool = False
    memory_bytes: int = 0       # weights, gradients and optimiser state; 0 unconfigured
    model: str = ''
    server: str = ''
    not_learning: str = ''      # core.objectives.separation's verdict; '' while it learns


@dataclass(frozen=True)
class ContainerFacts:
    """What a server container knows about itself at one moment."""

    layers: tuple[str, ...]     # hosted layer nodes
    rss_bytes: Optional[int]
    cgroup: Optional[tuple[int, int]]  # (limit, in use) in bytes; None: no limit
    uptime_s: float
    pid: int
    weight_dir: str = ''


def entry_name(node: str, task: str) -> str:
    """`/mnist_ff/layer_0: ff_layer`: the DiagnosticStatus name of a node's task."""
    return f'{node}: {task}'


def split_entry_name(name: str) -> tuple[str, str]:
    """Return (node, task) of an entry name; ('', name) when it has no `<node>: ` part."""
    node, sep, task = name.partition(': ')
    return (node, task) if sep else ('', name)


def mib(n: int) -> str:
    """1.5 GiB as `1,536 MiB`; below 1 MiB in KiB."""
    return f'{n / (1 << 20):,.0f} MiB' if n >= 1 << 20 else f'{n / 1024:,.0f} KiB'


def _number(x: float) -> str:
    return f'{x:.4f}' if math.isfinite(x) else str(x)


def _summary(level: Level, reasons: dict[Level, list[str]], ok: str) -> str:
    return '; '.join(reasons[level]) if level > Level.OK else ok


class LayerHealth:
    """
    The rules for one layer, with the little memory they need between reports.

    Call `failed` when a transition or processing fails, `transition` after each
    successful one, and `assess` with the current facts (at every report and on
    every change: it notices state changes, rejections and progress between calls).
    Not thread-safe: the caller holds one lock around all three.
    """

    def __init__(self, idle_warn_s: float = IDLE_WARN_S) -> None:
        self.idle_warn_s = idle_warn_s
        self._failure = ''                # what failed last; '' none
        self._error_processing = False    # the failure's error processing still to come
        self._state = ''
        self._processed = -1              # batches + inference batches at the last assess
        self._progress_at = 0.0           # when that count last grew
        self._rejected = 0                # rejected count at the last assess
        self._rejected_pending = 0        # rejected since the last batch processed
        self._active_from = -1            # training batches when it was last activated
        self._paused_after_training = False

    def failed(self, what: str, error_processing: bool = False) -> None:
        """Record a failed transition or batch; `error_processing`: on_error follows."""
        self._failure = what or 'failed'
        self._error_processing = error_processing

    def transition(self) -> None:
        """Record a successful transition: it ends a failure, unless it is error processing."""
        if self._error_processing:
            self._error_processing = False  # this one was the failure's error processing
        else:
            self._failure = ''

    def assess(self, facts: LayerFacts, now: float) -> Report:
        self._observe(facts, now)
        reasons: dict[Level, list[str]] = {Level.ERROR: [], Level.WARN: []}
        if self._failure:
            reasons[Level.ERROR].append(self._failure)
        if self._rejected_pending:
            detail = f': {facts.error}' if facts.error else ''
            reasons[Level.ERROR].append(
                f'rejected {self._rejected_pending} tensor(s) since the last good batch{detail}')
        if facts.state == 'inactive' and self._paused_after_training:
            reasons[Level.WARN].append('inactive after training: a stream waits for it '
                                       '(activate to resume)')
        if facts.batches and not all(math.isfinite(x) for x in (
                facts.loss, facts.goodness_positive, facts.goodness_negative)):
            reasons[Level.WARN].append(f'loss {facts.loss}, goodness {facts.goodness_positive} '
                                       f'/ {facts.goodness_negative}: not finite')
        if facts.not_learning:
            reasons[Level.WARN].append(facts.not_learning)
        idle = now - self._progress_at
        if (facts.state == 'active' and self._trained_since_activation(facts)
                and idle >= self.idle_warn_s):
            reasons[Level.WARN].append(f'no batch for {idle:.0f} s while active')
        level = max([lv for lv, found in reasons.items() if found], default=Level.OK)
        ok = facts.state + (f', {facts.batches} batches trained' if facts.batches else '')
        return Report(level, _summary(level, reasons, ok), layer_values(facts))

    def _observe(self, facts: LayerFacts, now: float) -> None:
        processed = facts.batches + facts.inference_batches
        if processed != self._processed:
            if 0 <= self._processed < processed:
                self._rejected_pending = 0  # a batch went through after the rejection
            self._processed, self._progress_at = processed, now
        if facts.rejected > self._rejected:
            self._rejected_pending += facts.rejected - self._rejected
        self._rejected = facts.rejected  # a new configure counts from 0 again
        if facts.state != self._state:
            if facts.state == 'active':
                self._active_from, self._progress_at = facts.batches, now
            elif self._state == 'active':
                self._paused_after_training = self._trained_since_activation(facts)
            if facts.state in ('unconfigured', 'finalized'):
                self._paused_after_training = False
            self._state = facts.state

    def _trained_since_activation(self, facts: LayerFacts) -> bool:
        return 0 <= self._active_from < facts.batches


def layer_values(facts: LayerFacts) -> tuple[tuple[str, str], ...]:
    trained = facts.batches > 0
    return (
        (STATE, facts.state),
        (BATCHES, str(facts.batches)),
        (INFERENCE_BATCHES, str(facts.inference_batches)),
        (LOSS, _number(facts.loss) if trained else '-'),
        (GOODNESS_POSITIVE, _number(facts.goodness_positive) if trained else '-'),
        (GOODNESS_NEGATIVE, _number(facts.goodness_negative) if trained else '-'),
        (REJECTED, str(facts.rejected)),
        (LAST_ERROR, facts.error or '-'),
        (WEIGHT_FILE, facts.weight_file or '-'),
        (WEIGHTS_LOADED, 'yes' if facts.weights_loaded else 'no'),
        (MEMORY, mib(facts.memory_bytes) if facts.memory_bytes else '-'),
        (MODEL, facts.model or '-'),
        (SERVER, facts.server or '-'),
    )


def assess_container(facts: ContainerFacts) -> Report:
    """Apply the container's rules (stateless): WARN near its cgroup's memory limit, else OK."""
    reasons: dict[Level, list[str]] = {Level.ERROR: [], Level.WARN: []}
    if facts.cgroup is not None:
        limit, used = facts.cgroup
        if limit > 0 and used >= MEMORY_WARN_FRACTION * limit:
            reasons[Level.WARN].append(f'memory at {used / limit:.0%} of its cgroup limit '
                                       f'({mib(used)} of {mib(limit)})')
    level = max([lv for lv, found in reasons.items() if found], default=Level.OK)
    count = len(facts.layers)
    ok = f'hosting {count} layer{"" if count == 1 else "s"}'
    values = (
        (LAYERS_HOSTED, str(count)),
        (LAYERS, ', '.join(facts.layers) or '-'),
        (RSS, mib(facts.rss_bytes) if facts.rss_bytes is not None else '-'),
        (CGROUP_LIMIT, mib(facts.cgroup[0]) if facts.cgroup else 'none'),
        (CGROUP_IN_USE, mib(facts.cgroup[1]) if facts.cgroup else '-'),
        (UPTIME, f'{facts.uptime_s:.0f} s'),
        (PID, str(facts.pid)),
        (WEIGHT_DIR, facts.weight_dir or '-'),
    )
    return Report(level, _summary(level, reasons, ok), values)
