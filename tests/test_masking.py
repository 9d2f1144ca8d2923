"""Span masking and distractor sampling: the paper's statistics and fairseq's semantics."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from fairseq.data.data_utils import compute_mask_indices as fairseq_compute_mask_indices

from w2v2_plugin.models.contrastive import sample_negatives
from w2v2_plugin.models.masking import compute_mask_indices, keep_random


def span_lengths(mask: torch.Tensor) -> list:
    """Lengths of the runs of True in each row."""
    out = []
    for row in mask.to(torch.int8).numpy():
        padded = np.concatenate([[0], row, [0]])
        d = np.diff(padded)
        out.extend((np.flatnonzero(d == -1) - np.flatnonzero(d == 1)).tolist())
    return out


def test_paper_statistics_mask_prob_065_length_10():
    """p = 0.065 per start, M = 10: ~49% of steps masked, mean span ~14.7 steps (paper, sec. 4)."""
    torch.manual_seed(0)
    mask = compute_mask_indices((64, 4000), None, 0.65, 10, min_masks=2, require_same_masks=False)
    frac = mask.float().mean().item()
    spans = span_lengths(mask)
    assert abs(frac - 0.49) <= 0.02, frac
    assert abs(np.mean(spans) - 14.7) <= 1.0, np.mean(spans)


def test_masked_fraction_matches_fairseq_reference():
    torch.manual_seed(1)
    np.random.seed(1)
    for prob, length in [(0.65, 10), (0.5, 10), (0.1, 64)]:
        ours = compute_mask_indices((32, 2000), None, prob, length, min_masks=2, require_same_masks=False)
        ref = fairseq_compute_mask_indices((32, 2000), None, prob, length, min_masks=2, require_same_masks=False)
        assert abs(ours.float().mean().item() - ref.mean()) < 0.015, (prob, length)
        assert abs(np.mean(span_lengths(ours)) - np.mean(span_lengths(torch.from_numpy(ref)))) < 0.08 * length


def test_require_same_masks_gives_equal_counts_and_respects_padding():
    torch.manual_seed(2)
    pm = torch.zeros(4, 300, dtype=torch.bool)
    pm[1, 200:] = True
    pm[2, 120:] = True
    mask = compute_mask_indices((4, 300), pm, 0.65, 10, min_masks=2, require_same_masks=True)
    counts = mask.sum(1)
    assert bool((counts == counts[0]).all()) and int(counts[0]) > 0
    assert not bool((mask & pm).any())


def test_padded_rows_get_spans_in_proportion_to_length():
    torch.manual_seed(3)
    pm = torch.zeros(200, 1000, dtype=torch.bool)
    pm[100:, 500:] = True
    mask = compute_mask_indices((200, 1000), pm, 0.65, 10, require_same_masks=False)
    long_rows, short_rows = mask[:100].float().sum(1).mean(), mask[100:].float().sum(1).mean()
    assert 1.7 < float(long_rows / short_rows) < 2.3


def test_zero_spans_is_not_an_error():
    """fairseq raises 'this should never happens' when mask_prob*T/length rounds to 0 spans."""
    torch.manual_seed(4)
    for _ in range(50):  # 0.1 * 256 / 32 = 0.8 spans: zero spans about one time in five
        mask = compute_mask_indices((3, 256), None, 0.1, 32, require_same_masks=False)
        assert mask.shape == (3, 256)
    seen = {int(compute_mask_indices((1, 256), None, 0.1, 32).sum()) for _ in range(100)}
    assert 0 in seen and 32 in seen


def test_zero_length_and_empty_batches():
    pm = torch.ones(2, 50, dtype=torch.bool)
    pm[0, :30] = False
    mask = compute_mask_indices((2, 50), pm, 0.65, 10, min_masks=2, require_same_masks=False)
    assert int(mask[1].sum()) == 0 and int(mask[0].sum()) > 0
    assert compute_mask_indices((0, 50), None, 0.65, 10).shape == (0, 50)
    assert compute_mask_indices((2, 0), None, 0.65, 10).shape == (2, 0)


def test_no_overlap_keeps_min_space_between_spans():
    torch.manual_seed(5)
    mask = compute_mask_indices((8, 400), None, 0.3, 10, no_overlap=True, min_space=2, require_same_masks=False)
    for row in mask:
        idx = torch.nonzero(row).flatten().tolist()
        gaps = [b - a for a, b in zip(idx, idx[1:]) if b - a > 1]
        assert all(g - 1 >= 2 for g in gaps)
    assert all(length % 10 == 0 for length in span_lengths(mask))  # spans never merge


@pytest.mark.parametrize("mask_type", ["uniform", "normal", "poisson"])
def test_other_span_distributions(mask_type):
    torch.manual_seed(6)
    mask = compute_mask_indices((16, 1000), None, 0.5, 10, mask_type=mask_type, mask_other=2,
                                require_same_masks=False)
    assert 0.2 < mask.float().mean().item() < 0.6


def test_mask_dropout_unmasks_fraction():
    torch.manual_seed(7)
    full = compute_mask_indices((16, 1000), None, 0.65, 10, require_same_masks=False)
    torch.manual_seed(7)
    dropped = compute_mask_indices((16, 1000), None, 0.65, 10, require_same_masks=False, mask_dropout=0.5)
    assert torch.equal(dropped & full, dropped)
    ratio = dropped.sum().item() / full.sum().item()
    assert abs(ratio - 0.5) < 0.01


def test_keep_random_keeps_exact_counts():
    mask = torch.rand(5, 40) > 0.3
    keep = torch.tensor([0, 3, 5, 100, 1])
    out = keep_random(mask, keep)
    assert torch.equal(out & mask, out)
    assert out.sum(1).tolist() == [min(k, int(c)) for k, c in zip(keep.tolist(), mask.sum(1))]


def test_sample_negatives_never_picks_self_and_stays_in_row():
    torch.manual_seed(8)
    idx = sample_negatives(3, 7, 50)
    assert idx.shape == (3, 7, 50)
    rows = torch.arange(3).view(3, 1, 1)
    steps = torch.arange(7).view(1, 7, 1)
    assert bool(((idx // 7) == rows).all())
    assert not bool((idx == rows * 7 + steps).any())
    # uniform over the 6 other steps
    counts = torch.bincount((idx % 7)[:, 0].flatten(), minlength=7)
    assert counts[0] == 0 and counts[1:].min() > 0


def test_cross_sample_negatives_cover_other_rows_but_not_self():
    torch.manual_seed(9)
    idx = sample_negatives(4, 5, 0, cross_sample_negatives=200)
    own = torch.arange(4).view(4, 1, 1) * 5 + torch.arange(5).view(1, 5, 1)
    assert not bool((idx == own).any())
    assert len(set((idx // 5).flatten().tolist())) == 4
    with pytest.raises(ValueError):
        sample_negatives(2, 1, 10)
