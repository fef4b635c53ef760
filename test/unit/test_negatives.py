"""Label overlays, wrong labels, candidate inputs and hybrid-image negatives."""
from dff_lifecycle.core.ff.negatives import (candidate_inputs, hard_wrong_labels, hybrid_negatives,
                                             overlay_labels, permuted_labels, random_wrong_labels,
                                             smooth_masks)
import pytest
import torch


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _is_binary(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


def test_overlay_puts_image_max_at_label_in_first_pixels():
    x = torch.rand(3, 20, generator=_gen()) + 1.0
    labels = torch.tensor([0, 4, 9])
    out = overlay_labels(x, labels, 10)
    expected_head = torch.zeros(3, 10)
    expected_head[torch.arange(3), labels] = x.max()
    torch.testing.assert_close(out[:, :10], expected_head)
    torch.testing.assert_close(out[:, 10:], x[:, 10:])
    assert not torch.equal(out, x), 'the input must not be modified in place'


def test_overlay_explicit_value_and_image_input():
    images = torch.rand(2, 1, 4, 4, generator=_gen())
    out = overlay_labels(images, torch.tensor([1, 2]), 3, value=5.0)
    assert out.shape == (2, 16)
    torch.testing.assert_close(out[:, :3], torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0]]))


def test_overlay_rejects_bad_labels():
    x = torch.rand(2, 20)
    with pytest.raises(ValueError, match=r'\[0, 10\)'):
        overlay_labels(x, torch.tensor([1, 10]), 10)
    with pytest.raises(ValueError, match='shape'):
        overlay_labels(x, torch.tensor([1]), 10)
    with pytest.raises(ValueError, match='integer'):
        overlay_labels(x, torch.tensor([1.0, 2.0]), 10)
    with pytest.raises(ValueError, match='features'):
        overlay_labels(torch.rand(2, 5), torch.tensor([1, 2]), 10)


def test_wrong_labels_avoid_truth_and_cover_other_classes():
    labels = torch.randint(0, 10, (5000,), generator=_gen(1))
    wrong = random_wrong_labels(labels, 10, _gen(2))
    assert not torch.any(wrong == labels)
    assert wrong.dtype == labels.dtype
    same_class = random_wrong_labels(torch.full((2000,), 3), 10, _gen(3))
    counts = torch.bincount(same_class, minlength=10)
    assert counts[3] == 0
    # Uniform over the 9 others: about 222 each.
    assert counts[torch.arange(10) != 3].min() > 150
    assert torch.equal(wrong, random_wrong_labels(labels, 10, _gen(2)))


def test_permuted_labels_keep_the_label_counts_and_sometimes_the_truth():
    labels = torch.randint(0, 10, (5000,), generator=_gen(1))
    permuted = permuted_labels(labels, _gen(2))
    assert torch.equal(torch.bincount(permuted, minlength=10),
                       torch.bincount(labels, minlength=10))
    # About one draw in ten lands on the true label; the reference keeps those.
    assert 0.07 < (permuted == labels).float().mean() < 0.13
    assert torch.equal(permuted, permuted_labels(labels, _gen(2)))


def test_hard_wrong_labels_follow_the_scores_and_avoid_truth():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(4000) % 10
    scores = torch.zeros(4000, 10)
    scores[:, 3] = 8.0                       # the model strongly believes in label 3
    scores[torch.arange(4000), labels] = 50.0  # and even more in the truth, which is excluded
    wrong = hard_wrong_labels(scores, labels, 1.0, gen)
    assert not bool((wrong == labels).any())
    confusable = labels != 3
    assert float((wrong[confusable] == 3).float().mean()) > 0.95
    # Where the true label is 3, the others tie: roughly uniform over the 9 wrong labels.
    counts = torch.bincount(wrong[~confusable], minlength=10)
    assert counts[3] == 0 and int(counts.min()) == 0 and int(counts[counts > 0].min()) > 20
    # A high temperature flattens the choice towards uniform.
    flat = hard_wrong_labels(scores, labels, 1000.0, gen)
    assert 0.05 < float((flat[confusable] == 3).float().mean()) < 0.2


def test_hard_wrong_labels_validate_input():
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match='scores must be'):
        hard_wrong_labels(torch.zeros(4), torch.zeros(4, dtype=torch.long), 1.0, gen)
    with pytest.raises(ValueError, match='temperature'):
        hard_wrong_labels(torch.zeros(4, 10), torch.zeros(4, dtype=torch.long), 0.0, gen)
    with pytest.raises(ValueError, match='labels must have shape'):
        hard_wrong_labels(torch.zeros(4, 10), torch.zeros(3, dtype=torch.long), 1.0, gen)


def test_candidate_inputs_are_sample_major():
    x = torch.rand(2, 15, generator=_gen())
    x[1, 12] = 3.0  # the max of the whole input sets the label value
    candidates = candidate_inputs(x, 4)
    assert candidates.shape == (8, 15)
    for n in range(2):
        for c in range(4):
            row = candidates[n * 4 + c]
            assert int(row[:4].argmax()) == c and row[c] == 3.0
            torch.testing.assert_close(row[4:], x[n, 4:])


def test_smooth_masks_are_binary_balanced_and_smooth():
    masks = smooth_masks(100, 32, 32, _gen())
    assert masks.shape == (100, 1, 32, 32) and masks.dtype == torch.float32
    assert _is_binary(masks)
    assert 0.35 < masks.mean().item() < 0.65
    bits = torch.randint(0, 2, masks.shape, generator=_gen(1)).float()

    def neighbour_agreement(m: torch.Tensor) -> float:
        across = (m[..., 1:] == m[..., :-1]).float().mean()
        down = (m[..., 1:, :] == m[..., :-1, :]).float().mean()
        return ((across + down) / 2).item()

    assert neighbour_agreement(bits) < 0.6
    assert neighbour_agreement(masks) > 0.85
    assert torch.equal(masks, smooth_masks(100, 32, 32, _gen()))


def test_hybrid_mask_is_shared_across_channels():
    images = torch.stack([torch.ones(3, 16, 16), torch.zeros(3, 16, 16)])
    hybrids = hybrid_negatives(images, _gen())
    # With one all-ones and one all-zeros image each hybrid shows its mask (or its inverse).
    for hybrid in hybrids:
        assert _is_binary(hybrid) and 0 < hybrid.mean() < 1
        assert torch.equal(hybrid[0], hybrid[1]) and torch.equal(hybrid[1], hybrid[2])


def test_hybrids_mix_each_image_with_one_other_image():
    n = 6
    # Image i holds the value i everywhere, so every hybrid pixel names its source image.
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 32, 32)
    hybrids = hybrid_negatives(images, _gen(5))
    for i in range(n):
        sources = hybrids[i].unique()
        assert i in sources and len(sources) == 2, 'own pixels plus one partner'
        partner = int(sources[sources != i])
        assert partner != i
        assert 0.2 < (hybrids[i] != i).float().mean().item() < 0.8


def test_hybrids_differ_from_positives():
    images = torch.rand(8, 3, 32, 32, generator=_gen())
    hybrids = hybrid_negatives(images, _gen(1))
    assert hybrids.shape == images.shape
    changed = (hybrids != images).flatten(1).float().mean(dim=1)
    assert torch.all(changed > 0.05)


def test_hybrid_negatives_validate_input():
    with pytest.raises(ValueError, match='N, C, H, W'):
        hybrid_negatives(torch.rand(4, 784), _gen())
    with pytest.raises(ValueError, match='at least 2'):
        hybrid_negatives(torch.rand(1, 3, 8, 8), _gen())
