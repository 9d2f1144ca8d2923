"""Dropout whose masks cost a quarter of the random numbers (``packed_dropout``, plugin-only).

torch's CPU dropout draws one Bernoulli number per element through the generator; on the
2-core AMD EPYC of BENCHMARKS.md that is 10 ms for a (5, 180, 1024) activation, ~10 % of a tiny
model's fine-tuning step. :class:`PackedDropout` draws 64-bit random integers and reads each
as four 16-bit lanes, one lane per element: element kept when its lane is at or above
``round(p * 65536)``. The drop probability is that threshold / 65536 (within 1/131072 of
``p``) and kept elements are scaled by the inverse of the exact keep probability, so the
output's expectation is the input, as with ``nn.Dropout``. The masks are a different random
stream than torch's (seeded by the same generator): a run with it is not bit-for-bit the run
without it, which is why it is an option and not the default.

On other devices (CUDA's dropout is a fused kernel already) it is ``nn.functional.dropout``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LANES = 65536  # values of one 16-bit lane


def drop_threshold(p: float) -> int:
    """Lanes below this (counted from the lowest int16) drop their element: P(drop) = t / 65536."""
    return min(LANES, max(0, round(p * LANES)))


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu",
              generator: torch.Generator | None = None) -> torch.Tensor:
    """A bool mask of ``shape``, True where the element is kept: 16 random bits per element."""
    numel = math.prod(shape)
    words = torch.randint(-2 ** 63, 2 ** 63 - 1, ((numel + 3) // 4,), dtype=torch.int64, device=device,
                          generator=generator)
    lanes = words.view(torch.int16)[:numel].view(shape)  # each in [-32768, 32767], uniform
    return lanes >= drop_threshold(p) - LANES // 2


class _PackedDropoutFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        mask = keep_mask(x.shape, p, x.device)
        scale = LANES / (LANES - drop_threshold(p))
        ctx.save_for_backward(mask)  # bool: one byte per element, as torch's dropout keeps
        ctx.scale = scale
        return x * mask.to(x.dtype).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return grad * mask.to(grad.dtype).mul_(ctx.scale), None


class PackedDropout(nn.Module):
    """``nn.Dropout(p)`` with masks from 16-bit lanes of 64-bit random numbers on CPU.

    Args:
        p: probability of an element to be zeroed, in [0, 1].
    Shapes: any -> the same.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or drop_threshold(self.p) == LANES:
            return F.dropout(x, self.p, True)
        return _PackedDropoutFunction.apply(x, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def make_dropout(p: float, packed: bool) -> nn.Module:
    """``PackedDropout(p)`` with ``packed``, else torch's ``nn.Dropout(p)``."""
    return PackedDropout(p) if packed else nn.Dropout(p)
