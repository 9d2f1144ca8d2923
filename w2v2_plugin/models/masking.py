"""Span masking of the latent frames (paper, section 3.1), as standalone tested functions.

``compute_mask_indices`` has the semantics of fairseq's function of the same name (span
count ``int(mask_prob * T / mask_length + U[0,1))``, at least ``min_masks``; span starts
drawn without replacement from ``[0, T - min_span_len)``; spans may overlap unless
``no_overlap``; ``require_same_masks`` trims every row at random to the smallest row's count;
``mask_dropout`` unmasks a fraction of each row) but runs as tensor ops on the device of the
padding mask, with no per-row Python loop and no host round trip (``no_overlap`` excepted:
its recursive placement is inherently sequential and runs in numpy). One deliberate
difference: where fairseq raises "this should never happens" because the expected number of
spans rounds down to zero, zero spans is a legitimate outcome and nothing is masked.

Distractor sampling is part of the contrastive objective: :func:`.contrastive.sample_negatives`.
"""
from __future__ import annotations

import numpy as np
import torch


def _span_lengths(num_spans: int, batch: int, mask_type: str, mask_length: int, mask_other: float,
                  device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Span lengths, (batch, num_spans) long, drawn from the requested distribution."""
    shape = (batch, num_spans)
    if mask_type == "static":
        return torch.full(shape, mask_length, dtype=torch.long, device=device)
    if mask_type == "uniform":
        return torch.randint(int(mask_other), mask_length * 2 + 1, shape, device=device, generator=generator)
    if mask_type == "normal":
        lengths = torch.normal(float(mask_length), float(mask_other), shape, device=device, generator=generator)
        return lengths.round().long().clamp(min=1)
    if mask_type == "poisson":
        rates = torch.full(shape, float(mask_length), device=device)
        return torch.poisson(rates, generator=generator).round().long()
    raise ValueError(f"unknown mask selection {mask_type!r} (static, uniform, normal, poisson)")


def keep_random(mask: torch.Tensor, keep: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep ``keep[b]`` of the True entries of each row of ``mask``, chosen uniformly at random.

    mask: (batch, time) bool; keep: (batch,) long. Rows with fewer True entries keep them all.
    """
    keys = torch.rand(mask.shape, device=mask.device, generator=generator)
    keys = torch.where(mask, keys, torch.full_like(keys, -1.0))  # unmasked entries sort last
    order = keys.argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(mask.size(1), device=mask.device).expand_as(order))
    return mask & (rank < keep.unsqueeze(1))


def _no_overlap_row(sz: int, lengths: np.ndarray, min_space: int, rng: np.random.Generator) -> np.ndarray:
    """fairseq's recursive non-overlapping placement for one row; returns masked indices."""
    mask_idc: list = []
    parts = [(0, sz)]
    min_length = int(lengths.min()) if len(lengths) else 0
    for length in sorted((int(v) for v in lengths), reverse=True):
        lens = np.array([e - s if e - s >= length + min_space else 0 for s, e in parts], dtype=np.int64)
        if lens.sum() == 0:
            break
        c = rng.choice(len(parts), p=lens / lens.sum())
        s, e = parts.pop(c)
        span_start = int(rng.integers(s, e - length))
        mask_idc.extend(range(span_start, span_start + length))
        if span_start - s - min_space >= min_length:
            parts.append((s, span_start - min_space + 1))
        if e - span_start - length - min_space > min_length:
            parts.append((span_start + length + min_space, e))
    return np.asarray(mask_idc, dtype=np.int64)


def _no_overlap_mask(shape: tuple[int, int], sizes: torch.Tensor, lengths: torch.Tensor, span_valid: torch.Tensor,
                     min_space: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """(batch, time) mask of non-overlapping spans, placed row by row (fairseq's recursion, numpy)."""
    rng = np.random.default_rng(
        int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item()))
    mask_np = np.zeros(shape, dtype=bool)
    sizes_np, lengths_np, valid_np = sizes.cpu().numpy(), lengths.cpu().numpy(), span_valid.cpu().numpy()
    for i in range(shape[0]):
        idc = _no_overlap_row(int(sizes_np[i]), lengths_np[i][valid_np[i]], min_space, rng)
        mask_np[i, idc[idc < sizes_np[i]]] = True
    return torch.from_numpy(mask_np).to(device)


def _overlapping_spans_mask(shape: tuple[int, int], sizes: torch.Tensor, lengths: torch.Tensor,
                            span_valid: torch.Tensor, num_spans: torch.Tensor, max_spans: int,
                            device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """(batch, time) mask of spans that may overlap, all rows at once as tensor ops.

    sizes: (batch,) unpadded lengths; lengths, span_valid: (batch, max_spans) span lengths and
    which of them the row uses; num_spans: (batch,) how many it uses.
    """
    bsz, all_sz = shape
    # starts without replacement from [0, sz - min_len): top-k of random keys over the range
    big = torch.iinfo(torch.long).max
    min_len = torch.where(span_valid, lengths, torch.full_like(lengths, big)).min(dim=1).values
    min_len = torch.where(num_spans > 0, min_len, torch.zeros_like(min_len))
    # fairseq: when the spans would not fit, shrink the start range to num_spans + 1 slots
    min_len = torch.where(sizes - min_len <= num_spans, sizes - num_spans - 1, min_len)
    start_range = (sizes - min_len).clamp(min=0)  # (batch,)
    keys = torch.rand((bsz, all_sz), device=device, generator=generator)
    in_range = torch.arange(all_sz, device=device).unsqueeze(0) < start_range.unsqueeze(1)
    keys = torch.where(in_range, keys, torch.full_like(keys, -1.0))
    starts = keys.topk(max_spans, dim=1).indices  # (batch, max_spans)
    usable = span_valid & (torch.arange(max_spans, device=device).unsqueeze(0) < start_range.unsqueeze(1))
    lengths = lengths * usable
    # difference array: +1 at each start, -1 at each end; positive prefix sum = masked
    diff = torch.zeros((bsz, all_sz + 1), dtype=torch.long, device=device)
    ends = (starts + lengths).clamp(max=all_sz)
    diff.scatter_add_(1, starts, usable.long())
    diff.scatter_add_(1, ends, -usable.long())
    mask = diff[:, :all_sz].cumsum(dim=1) > 0
    mask &= torch.arange(all_sz, device=device).unsqueeze(0) < sizes.unsqueeze(1)
    return mask


def compute_mask_indices(
    shape: tuple[int, int],
    padding_mask: torch.Tensor | None,
    mask_prob: float,
    mask_length: int,
    mask_type: str = "static",
    mask_other: float = 0.0,
    min_masks: int = 0,
    no_overlap: bool = False,
    min_space: int = 0,
    require_same_masks: bool = True,
    mask_dropout: float = 0.0,
    device: torch.device | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random span mask of ``shape`` = (batch, time); True = masked. Returns a bool tensor.

    padding_mask: (batch, time) bool, True on padding; padded steps are never masked and the
    span count of a row follows its unpadded length.
    """
    bsz, all_sz = shape
    if device is None:
        device = padding_mask.device if padding_mask is not None else torch.device("cpu")
    if bsz == 0 or all_sz == 0 or mask_prob <= 0:
        return torch.zeros(shape, dtype=torch.bool, device=device)
    if padding_mask is not None:
        if tuple(padding_mask.shape) != (bsz, all_sz):
            raise ValueError(f"padding_mask has shape {tuple(padding_mask.shape)}, expected {(bsz, all_sz)}")
        sizes = all_sz - padding_mask.to(device).long().sum(-1)  # (batch,)
        rand = torch.rand(bsz, device=device, generator=generator)
    else:
        sizes = torch.full((bsz,), all_sz, dtype=torch.long, device=device)
        # fairseq draws one rounding number for the whole batch when there is no padding
        rand = torch.rand(1, device=device, generator=generator).expand(bsz)
    num_spans = (mask_prob * sizes.double() / float(mask_length) + rand.double()).floor().long()
    num_spans = num_spans.clamp(min=min_masks)
    num_spans = torch.where(sizes > 0, num_spans, torch.zeros_like(num_spans))

    max_spans = int(min(all_sz, max(min_masks, int(mask_prob * all_sz / float(mask_length)) + 1)))
    lengths = _span_lengths(max_spans, bsz, mask_type, mask_length, mask_other, device, generator)
    span_valid = torch.arange(max_spans, device=device).unsqueeze(0) < num_spans.unsqueeze(1)
    lengths = lengths * span_valid

    if no_overlap:
        mask = _no_overlap_mask(shape, sizes, lengths, span_valid, min_space, device, generator)
    else:
        mask = _overlapping_spans_mask(shape, sizes, lengths, span_valid, num_spans, max_spans, device, generator)

    if require_same_masks:
        counts = mask.sum(dim=1)
        mask = keep_random(mask, counts.min().expand(bsz), generator)
    if mask_dropout > 0:
        counts = mask.sum(dim=1)
        holes = torch.round(counts.double() * mask_dropout).long()
        mask = keep_random(mask, counts - holes, generator)
    return mask
