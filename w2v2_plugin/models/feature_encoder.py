"""The feature encoder f: X -> Z, raw audio to latent frames (paper, section 2).

A stack of temporal conv blocks (conv -> optional norm -> GELU); its geometry (output lengths,
receptive field) comes from :mod:`.conv_geometry`. ``feature_grad_mult`` scales its gradient
with :class:`GradMultiply` (0.1 in BASE pretraining).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import fp32_region
from .conv_geometry import ConvLayerSpec, conv_output_lengths, receptive_field
from .conv_kernel import StridedConv1d


def lengths_to_padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(batch,) lengths -> (batch, max_len) bool, True on padding."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) >= lengths.unsqueeze(1)


class GradMultiply(torch.autograd.Function):
    """Identity forward; scales the gradient (feature_grad_mult)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


class ConvBlock(nn.Module):
    """Conv1d -> optional norm (group norm, one group per channel, or layer norm over channels) -> GELU.

    Two equal computations: ``forward`` on (batch, channel, sample) with ``nn.Conv1d`` (cuDNN on
    GPU), and ``forward_channels_last`` on (batch, sample, channel) as one GEMM (CPU, see
    :mod:`.conv_kernel`). Both use ``self.conv``'s parameters, so checkpoints are the same.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, bias: bool,
                 norm: str | None) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        self.kernel, self.stride = kernel, stride
        self.norm_type = norm
        if norm == "group":
            self.norm: nn.Module | None = nn.GroupNorm(out_channels, out_channels, affine=True)
        elif norm == "layer":
            self.norm = nn.LayerNorm(out_channels, elementwise_affine=True)
        else:
            self.norm = None

    def _made_norm(self) -> nn.Module:
        """``self.norm``, for a ``norm_type`` ("group", "layer") that made one in ``__init__``."""
        if self.norm is None:
            raise AssertionError(f"norm_type {self.norm_type!r} has no norm module")
        return self.norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, channel, sample) -> (batch, channel, frame)
        x = self.conv(x)
        if self.norm_type == "group":  # computed in fp32, as fairseq's Fp32GroupNorm
            x = self._made_norm()(x.float()).type_as(x)
        elif self.norm_type == "layer":
            x = self._made_norm()(x.float().transpose(1, 2)).transpose(1, 2).type_as(x)
        return F.gelu(x)

    def forward_to_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, channel, sample) -> (batch, frame, channel), contiguous. The layout changes
        # after the conv and a group norm, before the GELU: GELU's backward then reads its input
        # and its gradient in the same layout (mixed layouts run it several times slower).
        x = self.conv(x)
        if self.norm_type == "group":
            x = self._made_norm()(x.float()).type_as(x)
        x = x.transpose(1, 2).contiguous()
        if self.norm_type == "layer":
            x = self._made_norm()(x.float()).type_as(x)
        return F.gelu(x)

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, sample, channel) -> (batch, frame, channel)
        w = self.conv.weight  # (out, in, kernel) -> (out, kernel * in), the window order of frame_windows
        w = w.transpose(1, 2).reshape(w.size(0), -1)
        x = StridedConv1d.apply(x, w, self.conv.bias, self.kernel, self.stride)
        if self.norm_type == "group":
            # one group per channel = each channel normalized over time; the group-norm kernel
            # reads this (batch, channel, 1, frame) view as channels-last: no transpose copy
            x = self._made_norm()(x.float().transpose(1, 2).unsqueeze(2)).squeeze(2).transpose(1, 2).type_as(x)
        elif self.norm_type == "layer":
            x = self._made_norm()(x.float()).type_as(x)
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    """Temporal conv stack from raw audio X to latent frames Z (z_1..z_T in the paper)."""

    def __init__(self, conv_layers: Sequence[ConvLayerSpec], mode: str = "default", bias: bool = False) -> None:
        super().__init__()
        if mode not in ("default", "layer_norm"):
            raise ValueError(f"extractor_mode must be 'default' or 'layer_norm', got {mode!r}")
        self.conv_layers_spec: list[ConvLayerSpec] = list(conv_layers)
        blocks = []
        in_channels = 1
        for i, (channels, kernel, stride) in enumerate(self.conv_layers_spec):
            norm = "layer" if mode == "layer_norm" else ("group" if i == 0 else None)
            blocks.append(ConvBlock(in_channels, channels, kernel, stride, bias, norm))
            in_channels = channels
        self.conv_layers = nn.ModuleList(blocks)
        self.out_channels = in_channels
        self.min_input_length = receptive_field(self.conv_layers_spec)
        # CPU path for the layer-norm extractor (LARGE): channels-last GEMMs, where the norm
        # over channels needs no transposes: 1.5x (512 ch) to 1.9x (128 ch) faster forward +
        # backward than nn.Conv1d with fairseq's transposes around each LayerNorm. The group-norm
        # extractor (BASE) keeps nn.Conv1d: there oneDNN's direct conv is as fast or faster
        # (GEMM path 0.66x forward, 0.9-1.0x forward + backward, BENCHMARKS.md "feature encoder").
        # The two paths are tested equal; on GPU always nn.Conv1d (cuDNN).
        self.gemm_on_cpu = mode == "layer_norm"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, sample) -> (batch, frame, channel)
        if x.dim() != 2:
            raise ValueError(f"expected audio of shape (batch, samples), got {tuple(x.shape)}")
        if x.size(1) < self.min_input_length:
            raise ValueError(f"audio of {x.size(1)} samples is shorter than the feature encoder's receptive "
                             f"field ({self.min_input_length} samples); pad or drop such clips")
        x = x.unsqueeze(1)  # (batch, 1, sample)
        # CPU, layer-norm extractor: the blocks after the first run as GEMMs on channels-last
        # data, which is also the layout the model wants at the end (not under autocast: the
        # GEMM kernel's custom backward is fp32-only).
        gemm = self.gemm_on_cpu and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
        x = self.waveform_block(x, channels_last=gemm)
        for block in self.conv_layers[1:]:
            x = cast(ConvBlock, block).forward_channels_last(x) if gemm else block(x)
        return x if gemm else x.transpose(1, 2)

    def waveform_block(self, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
        """The first block, on raw samples: (batch, 1, sample) -> (batch, channel, frame), or
        (batch, frame, channel) with ``channels_last``. Always fp32, also under autocast: bf16
        keeps 8 significant bits, which would round the waveform itself and the largest
        activations of the network before any feature is formed. It is a small share of the
        work (one input channel; on CPU its conv and per-channel norm run channels-first,
        where those kernels are fastest)."""
        first = cast(ConvBlock, self.conv_layers[0])  # the ModuleList holds ConvBlocks
        with fp32_region(x):
            x = x.float()
            return first.forward_to_channels_last(x) if channels_last else first(x)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(batch,) sample counts -> (batch,) frame counts."""
        return conv_output_lengths(lengths, self.conv_layers_spec)
