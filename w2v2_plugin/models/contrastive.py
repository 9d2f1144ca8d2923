"""wav2vec 2.0's contrastive objective (paper, section 3.2): L = L_m + alpha * L_d (+ feature penalty).

- :func:`sample_negatives` draws the K distractors of every masked step;
- :func:`contrastive_logits` scores the context vector c_t against its target q_t and the
  distractors: cosine similarity / kappa;
- :func:`compute_contrastive_loss` is L_m, the InfoNCE cross-entropy over those K+1 logits;
- :func:`compute_diversity_loss` is L_d, from the quantizer's codebook perplexity;
- :func:`compute_features_penalty` is the L2 penalty on the feature encoder's output.

The logits are computed from distractor indices. fairseq gathers every distractor into a
(K, batch, step, dim) tensor, concatenates the true target in front, and takes cosine
similarities over that (K+1)-fold copy of the targets; with K = 100 that copy and the
intermediates autograd keeps for it are most of the contrastive head's memory. The same
numbers come from normalizing context vectors and candidates once, taking all their dot
products within each utterance (batch, step, candidate), a few MB, and reading off the K+1
that each step needs. Distractors equal to the true target get -inf, as in fairseq (with
quantized targets, two steps that picked the same codewords have equal targets).

Distractor sampling lives here rather than with span masking (:mod:`.masking`): K and the
"other masked steps of the same utterance" rule are part of L_m's definition, and span
masking is also used without the objective (CTC fine-tuning's SpecAugment).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Elements compared at once by the duplicate check: bounds its transient (K, dim) gathers.
_COMPARE_CHUNK = 1 << 24


def sample_negatives(
    num_rows: int,
    num_steps: int,
    num_negatives: int,
    cross_sample_negatives: int = 0,
    device: torch.device | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices of distractors into a flattened (num_rows * num_steps) target tensor.

    For step t of row b, ``num_negatives`` indices are drawn uniformly from the other steps of
    row b (never t itself), then ``cross_sample_negatives`` uniformly from every other step
    of the batch (never (b, t) itself). Returns (num_rows, num_steps, K) long.
    """
    if num_steps < 2 and num_negatives > 0:
        raise ValueError(f"need at least 2 target steps per row to sample distractors, got {num_steps}")
    device = device or torch.device("cpu")
    step = torch.arange(num_steps, device=device).view(1, num_steps, 1)
    row = torch.arange(num_rows, device=device).view(num_rows, 1, 1)
    parts = []
    if num_negatives > 0:
        idx = torch.randint(0, num_steps - 1, (num_rows, num_steps, num_negatives), device=device, generator=generator)
        idx = idx + (idx >= step).long()  # skip the step itself
        parts.append(idx + row * num_steps)
    if cross_sample_negatives > 0:
        total = num_rows * num_steps
        if total < 2:
            raise ValueError("need at least 2 target steps in the batch to sample cross-sample distractors")
        own = row * num_steps + step
        idx = torch.randint(0, total - 1, (num_rows, num_steps, cross_sample_negatives), device=device,
                            generator=generator)
        parts.append(idx + (idx >= own).long())
    if not parts:
        return torch.empty((num_rows, num_steps, 0), dtype=torch.long, device=device)
    return torch.cat(parts, dim=-1)


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


def compute_contrastive_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """L_m, the contrastive (InfoNCE) loss: -log(exp(sim(c_t, q_t) / kappa) / sum over the K+1
    candidates q~ of exp(sim(c_t, q~) / kappa)) for each masked step t (paper, eq. 3).

    logits: (steps, K+1) float, ``sim / kappa`` as :func:`contrastive_logits` gives them (after
        the model's ``get_logits``), -inf on distractors equal to the target.
    targets: (steps,) long, the true target's candidate index (0 for this model).
    Returns the cross-entropy, summed over steps (``reduction="sum"``, as the criterion scales
    every term by the number of masked steps), or (steps,) with ``reduction="none"``.
    """
    return F.cross_entropy(logits, targets, reduction=reduction)


def compute_diversity_loss(num_vars: int | torch.Tensor, prob_perplexity: torch.Tensor) -> torch.Tensor:
    """L_d, the codebook diversity loss (paper, eq. 4, in fairseq's perplexity form):
    (G*V - sum_g exp(H(p_bar_g))) / (G*V), H the entropy of codebook g's batch-averaged softmax p_bar_g.

    num_vars: G*V, all entries of all codebooks.
    prob_perplexity: () tensor, sum over the G codebooks of exp(entropy) of the softmax over
        the V entries averaged over the batch's frames (``QuantizerOutput.prob_perplexity``).
    Returns a () tensor in [0, 1): 0 when every entry is used equally often.
    """
    return (num_vars - prob_perplexity) / num_vars


def compute_features_penalty(features: torch.Tensor) -> torch.Tensor:
    """The feature penalty: mean of the squared feature encoder outputs f(X) (paper, section 4.2,
    "an L2 penalty to the activations of the final layer of the feature encoder"; weight 10 in BASE).

    features: (batch, frame, channel), before the layer norm. Returns a () fp32 tensor, also
    under autocast (the square of bf16 activations would lose the penalty's precision).
    """
    return features.float().pow(2).mean()
