"""contrastive_logits (by index) against fairseq's way: gather every distractor, cosine similarity."""
import pytest
import torch

from w2v2_plugin.models.contrastive import contrastive_logits, sample_negatives


def reference(x, cand, positive, negatives, temp):
    """fairseq's compute_preds on explicitly gathered targets and distractors."""
    bsz, tsz, dim = x.shape
    flat = cand.reshape(-1, dim)
    y = cand.gather(1, positive.unsqueeze(-1).expand(-1, -1, dim))  # (B, T, D)
    negs = flat[negatives.reshape(-1)].view(bsz, tsz, -1, dim).permute(2, 0, 1, 3)  # (K, B, T, D)
    neg_is_pos = (y == negs).all(-1)
    targets = torch.cat([y.unsqueeze(0), negs], dim=0)
    logits = torch.cosine_similarity(x.float(), targets.float(), dim=-1) / temp
    logits[1:] = logits[1:].masked_fill(neg_is_pos, float("-inf"))
    return logits


def with_duplicates(bsz, csz, dim, seed):
    """Candidates where several steps share a vector (as quantized targets do)."""
    g = torch.Generator().manual_seed(seed)
    codebook = torch.randn(5, dim, generator=g, dtype=torch.float64)
    return codebook[torch.randint(0, 5, (bsz, csz), generator=g)]


@pytest.mark.parametrize("cross", [0, 3])
def test_logits_and_gradients_equal_fairseqs_way(cross):
    torch.manual_seed(0)
    bsz, tsz, dim, k = 3, 9, 6, 5
    x = torch.randn(bsz, tsz, dim, dtype=torch.float64, requires_grad=True)
    cand = with_duplicates(bsz, tsz, dim, 1).requires_grad_()
    negatives = sample_negatives(bsz, tsz, k, cross_sample_negatives=cross)
    positive = torch.arange(tsz).expand(bsz, tsz)
    got = contrastive_logits(x, cand, positive, negatives, 0.1, cross_sample=cross > 0)
    ref = reference(x, cand, positive, negatives, 0.1)
    assert got.shape == ref.shape == (k + cross + 1, bsz, tsz)
    assert got.dtype == torch.float32  # fp32 like fairseq's cosine of .float() inputs
    assert torch.equal(torch.isinf(got), torch.isinf(ref)) and torch.isinf(got).any()  # duplicates found
    fin = torch.isfinite(ref)
    assert torch.allclose(got[fin], ref[fin].float(), atol=1e-5)
    w = torch.randn(ref.shape, dtype=torch.float64).masked_fill(~fin, 0)
    gx, gc = torch.autograd.grad((got.double().masked_fill(~fin, 0) * w).sum(), (x, cand))
    rx, rc = torch.autograd.grad((ref.double().masked_fill(~fin, 0) * w).sum(), (x, cand))
    assert torch.allclose(gx, rx, atol=1e-5) and torch.allclose(gc, rc, atol=1e-5)


def test_true_target_at_another_step_negatives_from_everywhere():
    """Queries at masked steps only, candidates at every step: the target is the query's own step."""
    torch.manual_seed(2)
    bsz, csz, dim = 2, 12, 4
    steps = torch.tensor([[1, 4, 5, 9], [0, 2, 7, 11]])
    x = torch.randn(bsz, 4, dim)
    cand = torch.randn(bsz, csz, dim)
    negatives = sample_negatives(bsz, csz, 3).gather(1, steps.unsqueeze(-1).expand(-1, -1, 3))
    got = contrastive_logits(x, cand, steps, negatives, 0.5)
    assert torch.allclose(got, reference(x, cand, steps, negatives, 0.5), atol=1e-6)


def test_no_distractors_gives_only_the_target_logit():
    x, cand = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    got = contrastive_logits(x, cand, torch.arange(3).expand(2, 3), torch.empty(2, 3, 0, dtype=torch.long), 1.0)
    assert got.shape == (1, 2, 3)
    assert torch.allclose(got[0], torch.cosine_similarity(x, cand, dim=-1), atol=1e-6)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="candidates"):
        contrastive_logits(torch.randn(2, 3, 4), torch.randn(2, 3, 5), torch.zeros(2, 3, dtype=torch.long),
                           torch.zeros(2, 3, 1, dtype=torch.long), 1.0)
    with pytest.raises(ValueError, match="positive"):
        contrastive_logits(torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.zeros(2, 2, dtype=torch.long),
                           torch.zeros(2, 3, 1, dtype=torch.long), 1.0)


def test_logits_stay_fp32_under_autocast():
    torch.manual_seed(3)
    x, cand = torch.randn(2, 50, 64), torch.randn(2, 50, 64)
    negatives = sample_negatives(2, 50, 10)
    positive = torch.arange(50).expand(2, 50)
    ref = contrastive_logits(x, cand, positive, negatives, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = contrastive_logits(x, cand, positive, negatives, 0.1)
    assert got.dtype == torch.float32
    assert torch.allclose(got, ref, atol=1e-5)


def test_duplicate_check_in_slices_equals_all_at_once(monkeypatch):
    import w2v2_plugin.models.contrastive as c

    cand = with_duplicates(2, 9, 6, 4).float()
    x = torch.randn(2, 9, 6)
    negatives = sample_negatives(2, 9, 7)
    positive = torch.arange(9).expand(2, 9)
    whole = contrastive_logits(x, cand, positive, negatives, 0.1)
    monkeypatch.setattr(c, "_COMPARE_CHUNK", 1)  # one distractor per slice
    sliced = contrastive_logits(x, cand, positive, negatives, 0.1)
    assert torch.isinf(whole).any() and torch.equal(torch.isinf(whole), torch.isinf(sliced))
    assert torch.allclose(whole[torch.isfinite(whole)], sliced[torch.isfinite(sliced)])
