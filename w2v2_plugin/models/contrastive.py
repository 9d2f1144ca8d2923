"""wav2vec 2.0's contrastive logits, computed from distractor indices.

fairseq gathers every distractor into a (K, batch, step, dim) tensor, concatenates the true
target in front, and takes cosine similarities over that (K+1)-fold copy of the targets; with
K = 100 that copy and the intermediates autograd keeps for it are most of the contrastive
head's memory. The same numbers come from normalizing context vectors and candidates once,
taking all their dot products within each utterance (batch, step, candidate), a few MB, and
reading off the K+1 that each step needs. Distractors equal to the true target get -inf, as in
fairseq (with quantized targets, two steps that picked the same codewords have equal targets).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Elements compared at once by the duplicate check: bounds its transient (K, dim) gathers.
_COMPARE_CHUNK = 1 << 24


@torch.no_grad()
def _distractor_is_target(flat: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """(batch, step, K) bool: distractor row equal to the true target row in every element.

    Exact, as fairseq's ``(y == negatives).all(-1)``, and free of host syncs; the rows are
    gathered a slice of distractors at a time so the transient stays under _COMPARE_CHUNK elements.
    """
    bsz, tsz, k = negatives.shape
    own = flat[target]  # (batch, step, dim)
    per = max(1, _COMPARE_CHUNK // max(1, bsz * tsz * flat.size(1)))
    return torch.cat([(flat[negatives[..., i:i + per]] == own.unsqueeze(2)).all(-1)
                      for i in range(0, k, per)], dim=-1)


def contrastive_logits(x: torch.Tensor, candidates: torch.Tensor, positive: torch.Tensor,
                       negatives: torch.Tensor, temperature: float, cross_sample: bool = False) -> torch.Tensor:
    """Cosine similarity / temperature of each context vector with its true target and its distractors.

    x: (batch, step, dim) context vectors at the masked steps.
    candidates: (batch, cand, dim) the vectors targets and distractors are drawn from.
    positive: (batch, step) long, index into ``cand`` of each step's true target (same row).
    negatives: (batch, step, K) long, flat index into ``candidates.view(batch * cand, dim)``;
        with ``cross_sample=False`` every distractor must come from the step's own row (the
        default sampler's contract; not checked, which would cost a host sync per step).
    Returns (K+1, batch, step) fp32, also under autocast (as fairseq's cosine similarity),
    candidate 0 the true target: fairseq's ``compute_preds`` layout.
    """
    if x.dim() != 3 or candidates.dim() != 3 or x.size(0) != candidates.size(0) or x.size(2) != candidates.size(2):
        raise ValueError(f"expected x (batch, step, dim) and candidates (batch, cand, dim), got "
                         f"{tuple(x.shape)} and {tuple(candidates.shape)}")
    if positive.shape != x.shape[:2] or negatives.shape[:2] != x.shape[:2]:
        raise ValueError(f"positive {tuple(positive.shape)} and negatives {tuple(negatives.shape)} must "
                         f"start with x's (batch, step) = {tuple(x.shape[:2])}")
    bsz, tsz, dim = x.shape
    csz = candidates.size(1)
    row_start = torch.arange(bsz, device=x.device).view(bsz, 1, 1) * csz
    index = torch.cat([positive.unsqueeze(-1) + row_start, negatives], dim=-1)  # (batch, step, K+1), flat
    # fp32 even under autocast (bmm / matmul would otherwise run in bf16 / fp16); normalizing each
    # side by max(norm, eps) equals cosine_similarity's x.y / max(|x||y|, eps) except for norms < 1e-8
    with torch.autocast(x.device.type, enabled=False):
        xn = F.normalize(x.float(), dim=-1, eps=1e-8)
        cn = F.normalize(candidates.float(), dim=-1, eps=1e-8)
        if not cross_sample:  # every distractor from its own utterance: (batch, step, cand) products suffice
            sims = torch.bmm(xn, cn.transpose(1, 2))
            logits = sims.gather(2, index - row_start)
        else:  # cross-sample distractors: every step against every candidate of the batch
            sims = xn.reshape(bsz * tsz, dim) @ cn.reshape(bsz * csz, dim).t()
            logits = sims.gather(1, index.view(bsz * tsz, -1)).view(bsz, tsz, -1)
        logits = logits / temperature
    if negatives.size(-1):
        same = _distractor_is_target(candidates.reshape(bsz * csz, dim), index[..., 0], negatives)
        logits = torch.cat([logits[..., :1], logits[..., 1:].masked_fill(same, float("-inf"))], dim=-1)
    return logits.permute(2, 0, 1)  # (K+1, batch, step)
