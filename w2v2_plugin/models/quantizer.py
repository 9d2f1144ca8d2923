"""The quantizer q: Z -> Q, Gumbel-softmax product quantization (paper, section 2).

G codebooks of V entries each (``groups``, ``num_vars``); a latent frame z_t picks one entry
per codebook, the picks are concatenated (entry dim = vq_dim / G). Training uses the
straight-through hard Gumbel softmax at temperature tau (annealed per update), evaluation the
argmax. The batch-averaged softmax's perplexity feeds the diversity loss L_d
(:func:`.contrastive.compute_diversity_loss`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class QuantizerOutput(NamedTuple):
    x: torch.Tensor  # (batch, frame, vq_dim)
    num_vars: int  # G * V
    code_perplexity: torch.Tensor  # of the hard (argmax) code choices
    prob_perplexity: torch.Tensor  # of the batch-averaged softmax, summed over codebooks
    temp: float  # the Gumbel temperature tau in use
    targets: torch.Tensor | None  # (batch, frame, groups) codebook indices


def _perplexity(probs: torch.Tensor) -> torch.Tensor:
    """sum over codebooks of exp(entropy) of (groups, vars) distributions."""
    return torch.exp(-(probs * torch.log(probs + 1e-7)).sum(-1)).sum()


class GumbelQuantizer(nn.Module):
    """Product quantizer: G codebooks of V entries; straight-through hard Gumbel in training,
    argmax in eval; temperature annealed per update as max(start * decay**updates, end)."""

    def __init__(self, dim: int, num_vars: int, groups: int, vq_dim: int,
                 temp: tuple[float, float, float], depth: int = 1, factor: int = 3) -> None:
        super().__init__()
        if vq_dim % groups:
            raise ValueError(f"quantized dimension {vq_dim} must be divisible by latent_groups {groups}")
        self.groups = groups
        self.num_vars = num_vars
        self.codevectors = nn.Parameter(torch.empty(1, groups * num_vars, vq_dim // groups))
        nn.init.uniform_(self.codevectors)
        if depth > 1:
            inner = dim * factor
            blocks: list[nn.Module] = []
            for i in range(depth - 1):
                blocks.append(nn.Sequential(nn.Linear(dim if i == 0 else inner, inner), nn.GELU()))
            blocks.append(nn.Linear(inner, groups * num_vars))
            self.weight_proj: nn.Module = nn.Sequential(*blocks)
        else:
            self.weight_proj = nn.Linear(dim, groups * num_vars)
            nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
            nn.init.zeros_(self.weight_proj.bias)
        self.max_temp, self.min_temp, self.temp_decay = temp
        self.curr_temp = self.max_temp

    def set_num_updates(self, num_updates: int) -> None:
        self.curr_temp = max(self.max_temp * self.temp_decay ** num_updates, self.min_temp)

    def forward(self, x: torch.Tensor, produce_targets: bool = False) -> QuantizerOutput:
        # x: (batch, frame, feature)
        if torch.is_autocast_enabled(x.device.type):
            # mixed precision (bf16/fp16): the quantizer stays in fp32. The code choice is an
            # argmax over logits, and bf16 rounding (8 bits of mantissa) flips near-ties, which
            # changes targets and the perplexity that the diversity loss is built on.
            with torch.autocast(x.device.type, enabled=False):
                return self.forward(x.float(), produce_targets)
        bsz, tsz, _ = x.shape
        logits = self.weight_proj(x).view(bsz * tsz, self.groups, self.num_vars)
        idx = logits.argmax(dim=-1)  # (batch*frame, groups)
        with torch.no_grad():
            counts = torch.zeros(self.groups, self.num_vars, device=x.device, dtype=torch.float32)
            counts.scatter_add_(1, idx.t(), torch.ones_like(idx.t(), dtype=torch.float32))
            code_ppl = _perplexity(counts / max(bsz * tsz, 1))
        avg_probs = torch.softmax(logits.float(), dim=-1).mean(dim=0)  # (groups, vars)
        prob_ppl = _perplexity(avg_probs)
        q = self.codewords(logits, idx).reshape(bsz, tsz, -1)
        targets = idx.view(bsz, tsz, self.groups) if produce_targets else None
        return QuantizerOutput(q, self.groups * self.num_vars, code_ppl, prob_ppl, self.curr_temp, targets)

    def codewords(self, logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(batch*frame, groups, vars) logits and their argmax -> (batch*frame, groups, dim/groups)."""
        if self.training:
            codebooks = self.codevectors.view(self.groups, self.num_vars, -1)  # (groups, vars, dim/groups)
            onehot = F.gumbel_softmax(logits.float(), tau=self.curr_temp, hard=True).type_as(logits)
            return torch.einsum("ngv,gvd->ngd", onehot, codebooks)
        # a one-hot times the codebook is a lookup
        offsets = torch.arange(self.groups, device=logits.device) * self.num_vars
        return self.codevectors.squeeze(0)[idx + offsets]
