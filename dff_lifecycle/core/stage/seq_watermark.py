"""
How far a layer has processed each stream, as the master's completion count reads it.

The master counts a batch done when every leaf layer's status says it processed the stream
through that batch's seq. A leaf's *last* seq is not that: batches can reach a layer out of
order and with gaps. A subscription created again by a pause (deactivate, activate) or a
recovery misses what its upstream publishes before the two have matched, while later
batches arrive; counting the last seq then marked the missed batches done, trained by no
layer (a CI run: 960 batches "done", 900 trained). The watermark is the highest seq through
which every batch of the stream was processed here; a gap holds it until the master's
resend fills it. Pure, no ROS.
"""
from __future__ import annotations

# Seqs held above a gap, per stream, at most: more means no gap is being filled; forgetting
# them is safe (the master resends what the watermark does not cover; a resend of a batch
# already trained is forwarded, not trained again).
MAX_AHEAD = 1 << 16


class SeqWatermark:
    """Per stream: the highest seq s such that every seq from the stream's start to s was seen."""

    def __init__(self) -> None:
        self._through: dict[str, int] = {}
        self._ahead: dict[str, set[int]] = {}

    def through(self, stream: str) -> int:
        """Return the stream's watermark (-1: not even its first batch, seq 0, yet)."""
        return self._through.get(stream, -1)

    def start_after(self, stream: str, seq: int) -> None:
        """Count every seq up to `seq` as processed (a checkpoint that had trained them)."""
        if seq > self.through(stream):
            self._through[stream] = seq
            ahead = self._ahead.get(stream)
            if ahead:
                ahead.difference_update([s for s in ahead if s <= seq])
            self._advance(stream)

    def add(self, stream: str, seq: int) -> int:
        """Record one processed batch; return the stream's watermark."""
        if seq > self.through(stream):
            ahead = self._ahead.setdefault(stream, set())
            ahead.add(seq)
            self._advance(stream)
            if len(ahead) > MAX_AHEAD:
                ahead.clear()
        return self.through(stream)

    def clear(self) -> None:
        self._through.clear()
        self._ahead.clear()

    def _advance(self, stream: str) -> None:
        ahead = self._ahead.get(stream)
        if not ahead:
            return
        through = self.through(stream)
        while through + 1 in ahead:
            through += 1
            ahead.remove(through)
        self._through[stream] = through
