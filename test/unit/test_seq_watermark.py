"""The master's completion count reads a layer's watermark, not its last batch."""
from __future__ import annotations

from dff_lifecycle.core.stage.seq_watermark import MAX_AHEAD, SeqWatermark


def test_in_order_batches_move_the_watermark_one_by_one():
    marks = SeqWatermark()
    assert marks.through('train') == -1
    assert [marks.add('train', seq) for seq in range(4)] == [0, 1, 2, 3]
    assert marks.through('infer') == -1  # streams apart


def test_a_gap_holds_the_watermark_until_the_resend_fills_it():
    # A subscription created again missed 4 and 5, and 6 and 7 arrived: only 0-3 are done.
    marks = SeqWatermark()
    for seq in (0, 1, 2, 3, 6, 7):
        marks.add('train', seq)
    assert marks.through('train') == 3
    assert marks.add('train', 4) == 4
    assert marks.add('train', 5) == 7  # 6 and 7 were held above the gap
    assert marks.add('train', 2) == 7  # a resend of a done batch changes nothing


def test_a_checkpoint_starts_the_watermark_at_what_it_had_trained():
    marks = SeqWatermark()
    marks.add('train', 12)
    marks.start_after('train', 10)
    assert marks.through('train') == 10 and marks.add('train', 11) == 12
    marks.start_after('train', 5)  # never backwards
    assert marks.through('train') == 12


def test_seqs_held_above_a_gap_that_never_fills_are_bounded_and_forgotten_safely():
    marks = SeqWatermark()
    for seq in range(1, MAX_AHEAD + 2):  # seq 0 never comes
        marks.add('train', seq)
    assert marks.through('train') == -1
    assert marks.add('train', 0) == 0  # the forgotten ones count again when resent
    marks.clear()
    assert marks.through('train') == -1
