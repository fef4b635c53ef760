"""
Is a layer learning? Whether its goodness tells positive from negative data apart.

Every objective reports two goodness means per batch: of positive and negative data
(pos_neg), or of the true class's group and of the other groups (class_groups). A layer
whose two stay equal learns nothing (a supervised conv reading the label overlay: 1.956
and 1.956 in every layer). The same rule warns in the training log (per epoch means,
`inseparable_layers`) and on /diagnostics (a window of the layer's last batches,
`SeparationWatch`).

A class-group layer can also lose a class: a group whose units are all off for every image
(silent) gives its class the lowest logit always, while the other groups still separate.
The watch warns when a group stays silent over its whole window, and so does the one
process's training log per epoch.
"""
from __future__ import annotations

from collections import deque
import math
from typing import Sequence

# Equal within 1 % of their size: a layer that learns separates them by far more (MNIST's
# recipes: 20 % and up after one epoch).
MIN_RELATIVE_GAP = 0.01
# The watch decides over this many batches (and says nothing before it has them).
SEPARATION_WINDOW = 50


def inseparable(g_pos: float, g_neg: float, min_gap: float = MIN_RELATIVE_GAP) -> bool:
    """Return True when two goodness means are equal within min_gap of their size (or 0)."""
    if not (math.isfinite(g_pos) and math.isfinite(g_neg)):
        return False  # a NaN or Inf has its own warning
    size = (abs(g_pos) + abs(g_neg)) / 2
    return abs(g_pos - g_neg) <= min_gap * size or size < 1e-12


def describe_inseparable(g_pos: float, g_neg: float, over: str) -> str:
    """Return the one-line warning for a layer whose goodness did not separate `over` a span."""
    return (f'goodness of positive and negative data inseparable {over} '
            f'({g_pos:.4g} / {g_neg:.4g}): this layer is not learning')


def describe_silent(groups: Sequence[int], over: str) -> str:
    """Return the one-line warning for class groups silent for every image `over` a span."""
    listed = ', '.join(str(g) for g in sorted(groups))
    return (f'class group(s) {listed} silent {over} (no unit active for any image): those '
            'classes can never be predicted; peer_norm (e.g. 0.03) brings silent units back')


def silent_group_layers(records: Sequence[dict]) -> list[str]:
    """
    Warnings for the epoch records with `silent_groups`: silent at the epoch's end.

    The distributed master's records: a layer's status names the groups silent over its
    last SEPARATION_WINDOW batches, and the last status of an epoch closes its record.
    """
    warnings = []
    for r in records:
        if r.get('silent_groups'):
            over = f'over the last {SEPARATION_WINDOW} batches of epoch {r["epoch"]}'
            warnings.append(f'layer {r["layer"]}: ' + describe_silent(r['silent_groups'], over))
    return warnings


def inseparable_layers(records: Sequence[dict]) -> list[str]:
    """Warnings for the epoch records (one per layer and epoch) whose goodness stayed equal."""
    return [f"layer {r['layer']}: " + describe_inseparable(
                r['goodness_pos'], r['goodness_neg'], f"through epoch {r['epoch']}")
            for r in records if 'epoch' in r and inseparable(r['goodness_pos'],
                                                             r['goodness_neg'])]


class SeparationWatch:
    """The last `window` batches' goodness of one layer, and whether they separate."""

    def __init__(self, window: int = SEPARATION_WINDOW) -> None:
        if window < 1:
            raise ValueError(f'window must be >= 1, got {window}')
        self.window = window
        self._seen: deque[tuple[float, float, frozenset[int]]] = deque(maxlen=window)

    def record(self, g_pos: float, g_neg: float, silent_groups: Sequence[int] = ()) -> None:
        self._seen.append((float(g_pos), float(g_neg), frozenset(silent_groups)))

    def reset(self) -> None:
        self._seen.clear()

    def silent_groups(self) -> frozenset[int]:
        """Return the class groups silent in every batch of a full window (else none)."""
        seen = list(self._seen)
        if len(seen) < self.window:
            return frozenset()
        return frozenset.intersection(*(groups for _, _, groups in seen))

    def verdict(self) -> str:
        """'' while learning (or too few batches to tell); else the warning."""
        seen = list(self._seen)  # one copy: the compute thread appends while others read
        if len(seen) < self.window:
            return ''
        g_pos = sum(p for p, _, _ in seen) / len(seen)
        g_neg = sum(n for _, n, _ in seen) / len(seen)
        over = f'over its last {len(seen)} batches'
        if inseparable(g_pos, g_neg):
            return describe_inseparable(g_pos, g_neg, over)
        silent = frozenset.intersection(*(groups for _, _, groups in seen))
        return describe_silent(silent, over) if silent else ''
