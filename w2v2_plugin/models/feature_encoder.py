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
from .conv_kernel import StridedConv1d, conv1d_on_channels_last_view


def lengths_to_padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(batch,) lengths -> (batch, max_len) bool, True on padding."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) >= lengths.unsqueeze(1)


class ChannelNormGelu(torch.autograd.Function):
    """GELU(GroupNorm(x)) for a group norm with one group per channel, on channels-last data:
    (batch, frame, channel) -> the same, fp32.

    Written out for the CPU because there torch's channels-last group-norm kernel is 3.7x and
    ``var_mean`` over a non-innermost dim 30x slower than plain sums over the frame axis (which
    vectorise along the channels), and autograd through the elementwise formula makes a dozen
    passes over the network's largest activation. Forward: mean, then the variance of the
    centred values (two passes, as torch's kernel), affine, GELU. Only the centred input is
    kept; backward recomputes the pre-GELU value from it (one pass, and one fewer tensor of
    this size in memory than norm + GELU modules keep).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)  # (batch, 1, channel)
        centred = x - mean
        rstd = torch.rsqrt(centred.square().mean(1, keepdim=True) + eps)  # biased variance, as GroupNorm
        ctx.save_for_backward(centred, rstd, weight, bias)
        return F.gelu(torch.addcmul(bias, centred, rstd * weight))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        centred, rstd, weight, bias = ctx.saved_tensors
        scale = rstd * weight  # (batch, 1, channel)
        d_normed = torch.ops.aten.gelu_backward(grad, torch.addcmul(bias, centred, scale))
        d_bias = d_normed.sum((0, 1))
        d_scale_sum = (d_normed * centred).sum(1, keepdim=True)  # (batch, 1, channel)
        d_weight = (d_scale_sum * rstd).sum((0, 1))
        # d x = scale * (d - mean_t(d) - x_hat * mean_t(d * x_hat)), x_hat = centred * rstd
        d_x = torch.addcmul(-scale * d_normed.mean(1, keepdim=True), d_normed, scale)
        d_x.addcmul_(centred, -scale * rstd * rstd * d_scale_sum / centred.size(1))
        return d_x, d_weight, d_bias, None


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

    Equal computations in two layouts: ``forward`` on (batch, channel, sample) with
    ``nn.Conv1d`` (cuDNN on GPU, fp32 BASE on CPU), and on CPU ``forward_channels_last`` on
    (batch, sample, channel), its conv as one GEMM (:mod:`.conv_kernel`, fp32) or as oneDNN's
    conv on a channels-last view (bf16 autocast); ``forward_waveform_channels_last`` is the first
    block's. All use ``self.conv``'s parameters, so checkpoints are the same.
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

    def forward_waveform_channels_last(self, audio: torch.Tensor) -> torch.Tensor:
        """The first block on channels-last data: (batch, sample) -> (batch, frame, channel),
        contiguous. One GEMM over the samples' windows (one input channel) writes the frames
        channels-last directly, and the norm runs in that layout: no transpose of the largest
        activation of the network, forward or backward (each such copy costs as much as the
        conv here)."""
        x = self.conv_as_gemm(audio.unsqueeze(2))  # (batch, frame, channel)
        if self.norm_type == "group":
            norm = cast(nn.GroupNorm, self._made_norm())
            return cast(torch.Tensor, ChannelNormGelu.apply(x, norm.weight, norm.bias, norm.eps))
        if self.norm_type == "layer":
            x = self._made_norm()(x)
        return F.gelu(x)

    def forward_channels_last(self, x: torch.Tensor, gemm: bool = True) -> torch.Tensor:
        # x: (batch, sample, channel) -> (batch, frame, channel)
        x = self.conv_as_gemm(x) if gemm else self.conv_on_channels_last_view(x)
        if self.norm_type == "group":
            # one group per channel = each channel normalized over time; the group-norm kernel
            # reads this (batch, channel, 1, frame) view as channels-last: no transpose copy
            x = self._made_norm()(x.float().transpose(1, 2).unsqueeze(2)).squeeze(2).transpose(1, 2).type_as(x)
        elif self.norm_type == "layer":
            x = self._made_norm()(x.float()).type_as(x)
        return F.gelu(x)

    def conv_as_gemm(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, sample, channel) -> (batch, frame, channel) as one matrix product (fp32 only:
        :class:`.conv_kernel.StridedConv1d`'s backward is written for fp32)."""
        w = self.conv.weight  # (out, in, kernel) -> (out, kernel * in), the window order of frame_windows
        w = w.transpose(1, 2).reshape(w.size(0), -1)
        return StridedConv1d.apply(x, w, self.conv.bias, self.kernel, self.stride)

    def conv_on_channels_last_view(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, sample, channel) -> (batch, frame, channel), contiguous, with oneDNN's own
        convolution on a channels-last view (:func:`.conv_kernel.conv1d_on_channels_last_view`):
        oneDNN's bf16 kernels work in that layout, so forward and backward run without the
        reorder copies a channels-first 1-D conv costs them (layers 2-7 of the tiny encoder
        alone, bf16 forward + backward: 148 -> 82 ms in an ad-hoc timing; the whole encoder
        1.16x, BENCHMARKS.md "The feature encoder channels-last in bf16")."""
        return conv1d_on_channels_last_view(self.conv, x)


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
        # The two paths are tested equal; on GPU always nn.Conv1d (cuDNN). Under CPU autocast
        # both extractors run channels-last with oneDNN's bf16 convs (see ``forward``).
        self.gemm_on_cpu = mode == "layer_norm"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, sample) -> (batch, frame, channel)
        if x.dim() != 2:
            raise ValueError(f"expected audio of shape (batch, samples), got {tuple(x.shape)}")
        if x.size(1) < self.min_input_length:
            raise ValueError(f"audio of {x.size(1)} samples is shorter than the feature encoder's receptive "
                             f"field ({self.min_input_length} samples); pad or drop such clips")
        x = x.unsqueeze(1)  # (batch, 1, sample)
        # On CPU the blocks after the first run on channels-last data, which is also the layout
        # the model wants at the end: as GEMMs for the layer-norm extractor in fp32 (the GEMM
        # kernel's custom backward is fp32-only), with oneDNN on a channels-last view under
        # autocast (bf16). fp32 with the group-norm extractor keeps channels-first nn.Conv1d,
        # where oneDNN's fp32 direct conv is as fast (BENCHMARKS.md "feature encoder").
        autocast = torch.is_autocast_enabled("cpu")
        channels_last = x.device.type == "cpu" and (self.gemm_on_cpu or autocast)
        gemm = channels_last and not autocast
        x = self.waveform_block(x, channels_last=channels_last)
        for block in self.conv_layers[1:]:
            x = cast(ConvBlock, block).forward_channels_last(x, gemm) if channels_last else block(x)
        return x if channels_last else x.transpose(1, 2)

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
            return first.forward_waveform_channels_last(x.squeeze(1)) if channels_last else first(x)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(batch,) sample counts -> (batch,) frame counts."""
        return conv_output_lengths(lengths, self.conv_layers_spec)
