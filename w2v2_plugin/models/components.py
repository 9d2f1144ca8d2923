"""Building blocks of the wav2vec 2.0 model.

Modules take their configuration as plain arguments (or injected submodules) and keep
``forward(x, lengths or padding_mask)`` signatures free of fairseq types, so each is usable
and testable on its own. Layout is (batch, frame, feature) throughout; fairseq's (T, B, C)
appears only where its public ``layer_results`` contract asks for it.
"""
from __future__ import annotations

import math
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import fp32_region

ConvLayerSpec = Tuple[int, int, int]


def conv_output_lengths(lengths: torch.Tensor, conv_layers: Sequence[ConvLayerSpec]) -> torch.Tensor:
    """Frames produced from ``lengths`` samples: floor((L - kernel) / stride) + 1 per block, >= 0."""
    lengths = lengths.long()
    for _, kernel, stride in conv_layers:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        lengths = lengths.clamp(min=0)
    return lengths


def receptive_field(conv_layers: Sequence[ConvLayerSpec]) -> int:
    """Fewest input samples that produce one output frame."""
    field, jump = 1, 1
    for _, kernel, stride in conv_layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field


def lengths_to_padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(batch,) lengths -> (batch, max_len) bool, True on padding."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) >= lengths.unsqueeze(1)


class GradMultiply(torch.autograd.Function):
    """Identity forward; scales the gradient (feature_grad_mult)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad * ctx.scale, None


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if name == "gelu":
        return lambda x: F.gelu(x.float()).type_as(x)
    if name in ("gelu_accurate", "gelu_fast"):
        return lambda x: F.gelu(x.float(), approximate="tanh").type_as(x)
    if name == "relu":
        return F.relu
    if name == "tanh":
        return torch.tanh
    if name == "linear":
        return lambda x: x
    raise ValueError(f"unknown activation_fn {name!r}")


def _frame_windows(x: torch.Tensor, kernel: int, stride: int, frames: int) -> torch.Tensor:
    """(batch, sample, channel) contiguous -> (batch * frames, kernel * channel): row t holds input
    samples [t * stride, t * stride + kernel) back to back, i.e. the im2col matrix of a 1-D conv in
    channels-last order. One contiguous copy per row, no index tensors."""
    b, _, c = x.shape
    return x.as_strided((b, frames, kernel * c), (x.stride(0), stride * c, 1)).reshape(b * frames, kernel * c)


class _StridedConv1d(torch.autograd.Function):
    """1-D convolution of channels-last input as one matrix product (im2col + GEMM).

    Why: on CPU, oneDNN's direct convolution runs the feature encoder's strided 512 x 512 convs at
    about half the speed MKL reaches on the same products written as one GEMM (forward and both
    gradients; benchmarks/README numbers). Only the block input is kept for backward (not the
    k/s-times larger window matrix, which is rebuilt), so memory matches a convolution's.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],  # type: ignore[override]
                kernel: int, stride: int) -> torch.Tensor:
        # x: (batch, sample, in_channel) contiguous; weight: (out_channel, kernel * in_channel) in (kernel, channel) order
        x = x.contiguous()  # _frame_windows' strides assume it
        b, length, _ = x.shape
        frames = (length - kernel) // stride + 1
        cols = _frame_windows(x, kernel, stride, frames)  # (batch * frame, kernel * in_channel)
        y = cols @ weight.t() if bias is None else torch.addmm(bias, cols, weight.t())
        ctx.save_for_backward(x, weight)
        ctx.kernel, ctx.stride, ctx.has_bias = kernel, stride, bias is not None
        return y.view(b, frames, -1)  # (batch, frame, out_channel)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        k, s = ctx.kernel, ctx.stride
        b, length, c = x.shape
        frames = grad.size(1)
        g = grad.reshape(b * frames, -1)  # (batch * frame, out_channel)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_w = g.t() @ _frame_windows(x, k, s, frames)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        if ctx.needs_input_grad[0]:
            # col2im: window slot j of frame t adds into sample t * s + j. With k >= s the first
            # s slots of every window tile samples [0, s * frames) exactly once: one plain copy
            # into a (batch, frame, s * channel) view; the k - s overlapping slots are added.
            gc = (g @ weight).view(b, frames, k, c)
            grad_x = x.new_empty(b, length, c)
            first = s if k >= s else 0  # slots placed by the copy; k < s leaves gaps: add them all
            if first:
                grad_x[:, :s * frames].view(b, frames, s, c).copy_(gc[:, :, :s])
                grad_x[:, s * frames:].zero_()
            else:
                grad_x.zero_()
            for j in range(first, k):
                grad_x[:, j: j + s * (frames - 1) + 1: s].add_(gc[:, :, j])
        return grad_x, grad_w, grad_b, None, None


class ConvBlock(nn.Module):
    """Conv1d -> optional norm (group norm, one group per channel, or layer norm over channels) -> GELU.

    Two equal computations: ``forward`` on (batch, channel, sample) with ``nn.Conv1d`` (cuDNN on
    GPU), and ``forward_channels_last`` on (batch, sample, channel) as one GEMM (CPU, see
    ``_StridedConv1d``). Both use ``self.conv``'s parameters, so checkpoints are the same.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, bias: bool,
                 norm: Optional[str]) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        self.kernel, self.stride = kernel, stride
        self.norm_type = norm
        if norm == "group":
            self.norm: Optional[nn.Module] = nn.GroupNorm(out_channels, out_channels, affine=True)
        elif norm == "layer":
            self.norm = nn.LayerNorm(out_channels, elementwise_affine=True)
        else:
            self.norm = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, channel, sample) -> (batch, channel, frame)
        x = self.conv(x)
        if self.norm_type == "group":  # computed in fp32, as fairseq's Fp32GroupNorm
            x = self.norm(x.float()).type_as(x)
        elif self.norm_type == "layer":
            x = self.norm(x.float().transpose(1, 2)).transpose(1, 2).type_as(x)
        return F.gelu(x)

    def forward_to_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, channel, sample) -> (batch, frame, channel), contiguous. The layout changes
        # after the conv and a group norm, before the GELU: GELU's backward then reads its input
        # and its gradient in the same layout (mixed layouts run it several times slower).
        x = self.conv(x)
        if self.norm_type == "group":
            x = self.norm(x.float()).type_as(x)
        x = x.transpose(1, 2).contiguous()
        if self.norm_type == "layer":
            x = self.norm(x.float()).type_as(x)
        return F.gelu(x)

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, sample, channel) -> (batch, frame, channel)
        w = self.conv.weight  # (out, in, kernel) -> (out, kernel * in), the window order of _frame_windows
        w = w.transpose(1, 2).reshape(w.size(0), -1)
        x = _StridedConv1d.apply(x, w, self.conv.bias, self.kernel, self.stride)
        if self.norm_type == "group":
            # one group per channel = each channel normalized over time; the group-norm kernel
            # reads this (batch, channel, 1, frame) view as channels-last: no transpose copy
            x = self.norm(x.float().transpose(1, 2).unsqueeze(2)).squeeze(2).transpose(1, 2).type_as(x)
        elif self.norm_type == "layer":
            x = self.norm(x.float()).type_as(x)
        return F.gelu(x)


class FeatureEncoder(nn.Module):
    """Temporal conv stack from raw audio to latent frames (z in the paper)."""

    def __init__(self, conv_layers: Sequence[ConvLayerSpec], mode: str = "default", bias: bool = False) -> None:
        super().__init__()
        if mode not in ("default", "layer_norm"):
            raise ValueError(f"extractor_mode must be 'default' or 'layer_norm', got {mode!r}")
        self.conv_layers_spec: List[ConvLayerSpec] = list(conv_layers)
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
            x = block.forward_channels_last(x) if gemm else block(x)
        return x if gemm else x.transpose(1, 2)

    def waveform_block(self, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
        """The first block, on raw samples: (batch, 1, sample) -> (batch, channel, frame), or
        (batch, frame, channel) with ``channels_last``. Always fp32, also under autocast: bf16
        keeps 8 significant bits, which would round the waveform itself and the largest
        activations of the network before any feature is formed. It is a small share of the
        work (one input channel; on CPU its conv and per-channel norm run channels-first,
        where those kernels are fastest)."""
        first = self.conv_layers[0]
        with fp32_region(x):
            x = x.float()
            return first.forward_to_channels_last(x) if channels_last else first(x)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_lengths(lengths, self.conv_layers_spec)


class ConvPositionalEmbedding(nn.Module):
    """Relative positions from a grouped conv over time (weight norm over the kernel dim), GELU.

    An even kernel yields one extra frame, which is dropped (fairseq's SamePad).
    """

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel_size=kernel, padding=kernel // 2, groups=groups)
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel * dim)))
        nn.init.constant_(conv.bias, 0.0)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, frame, feature) -> same
        y = self.conv(x.transpose(1, 2))
        if self.remove:
            y = y[:, :, :-self.remove]
        return F.gelu(y).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection and SDPA."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"encoder_embed_dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.in_proj = nn.Linear(dim, 3 * dim)  # rows: [q; k; v]
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        # x: (batch, frame, feature); attn_mask: (batch, 1, 1, frame) bool, True = attend
        bsz, tsz, dim = x.shape
        qkv = self.in_proj(x).view(bsz, tsz, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, head, frame, head_dim)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(bsz, tsz, dim)
        return self.out_proj(y)


class FeedForward(nn.Module):
    def __init__(self, dim: int, inner_dim: int, activation: str, activation_dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, inner_dim)
        self.fc2 = nn.Linear(inner_dim, dim)
        self.activation = get_activation(activation)
        self.activation_dropout = nn.Dropout(activation_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_dropout(self.activation(self.fc1(x))))


class EncoderLayer(nn.Module):
    """Transformer layer, post-LN (BASE) or pre-LN (``layer_norm_first``, LARGE).

    Returns the output and the FFN output before its residual (fairseq's ``layer_result``).
    """

    def __init__(self, attention: SelfAttention, feed_forward: FeedForward, dim: int, dropout: float,
                 layer_norm_first: bool) -> None:
        super().__init__()
        self.attention = attention
        self.feed_forward = feed_forward
        self.attention_norm = nn.LayerNorm(dim)
        self.final_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm_first = layer_norm_first

    def forward(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        # x: (batch, frame, feature)
        if self.layer_norm_first:
            x = x + self.dropout(self.attention(self.attention_norm(x), attn_mask))
            ffn = self.feed_forward(self.final_norm(x))
            x = x + self.dropout(ffn)
        else:
            x = self.attention_norm(x + self.dropout(self.attention(x, attn_mask)))
            ffn = self.feed_forward(x)
            x = self.final_norm(x + self.dropout(ffn))
        return x, ffn


class EncoderOutput(NamedTuple):
    x: torch.Tensor  # (batch, frame, feature)
    layer_results: List[Tuple[torch.Tensor, None, torch.Tensor]]  # fairseq layout: (frame, batch, feature)


class TransformerEncoder(nn.Module):
    """Context network: positional conv, (post-LN) layer norm, layers with LayerDrop."""

    def __init__(self, pos_conv: ConvPositionalEmbedding, layers: Sequence[EncoderLayer], dim: int,
                 dropout: float, layerdrop: float, layer_norm_first: bool,
                 checkpoint_activations: bool = False) -> None:
        super().__init__()
        self.pos_conv = pos_conv
        self.layers = nn.ModuleList(layers)
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.layerdrop = layerdrop
        self.layer_norm_first = layer_norm_first
        self.checkpoint_activations = checkpoint_activations

    @staticmethod
    def attention_mask(padding_mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """(batch, frame) padding mask -> SDPA boolean mask (batch, 1, 1, frame), True = attend.

        A row that is all padding (a zero-length input) attends everywhere instead of nowhere,
        which would give NaN; its outputs are padding and ignored downstream.
        """
        if padding_mask is None:
            return None
        attend = ~padding_mask
        attend = attend | ~attend.any(dim=1, keepdim=True)
        return attend[:, None, None, :]

    def forward(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor] = None,
                layer: Optional[int] = None) -> EncoderOutput:
        # x: (batch, frame, feature); padding_mask: (batch, frame), True on padding
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        x = x + self.pos_conv(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        attn_mask = self.attention_mask(padding_mask)
        layer_results: List[Tuple[torch.Tensor, None, torch.Tensor]] = []
        for i, enc_layer in enumerate(self.layers):
            skip = self.training and self.layerdrop > 0 and float(torch.rand(())) <= self.layerdrop
            if not skip:
                if self.checkpoint_activations and self.training:
                    x, ffn = torch.utils.checkpoint.checkpoint(enc_layer, x, attn_mask, use_reentrant=False)
                else:
                    x, ffn = enc_layer(x, attn_mask)
                layer_results.append((x.transpose(0, 1), None, ffn.transpose(0, 1)))
            if layer is not None and i == layer:
                break
        if self.layer_norm_first and layer is None:
            x = self.layer_norm(x)
        return EncoderOutput(x, layer_results)


class QuantizerOutput(NamedTuple):
    x: torch.Tensor  # (batch, frame, vq_dim)
    num_vars: int
    code_perplexity: torch.Tensor
    prob_perplexity: torch.Tensor
    temp: float
    targets: Optional[torch.Tensor]  # (batch, frame, groups) codebook indices


class GumbelQuantizer(nn.Module):
    """Product quantizer: G codebooks of V entries; straight-through hard Gumbel in training,
    argmax in eval; temperature annealed per update as max(start * decay**updates, end)."""

    def __init__(self, dim: int, num_vars: int, groups: int, vq_dim: int,
                 temp: Tuple[float, float, float], depth: int = 1, factor: int = 3) -> None:
        super().__init__()
        if vq_dim % groups:
            raise ValueError(f"quantized dimension {vq_dim} must be divisible by latent_groups {groups}")
        self.groups = groups
        self.num_vars = num_vars
        self.codevectors = nn.Parameter(torch.empty(1, groups * num_vars, vq_dim // groups))
        nn.init.uniform_(self.codevectors)
        if depth > 1:
            inner = dim * factor
            blocks: List[nn.Module] = []
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
            hard_probs = counts / max(bsz * tsz, 1)
            code_ppl = torch.exp(-(hard_probs * torch.log(hard_probs + 1e-7)).sum(-1)).sum()
        avg_probs = torch.softmax(logits.float(), dim=-1).mean(dim=0)
        prob_ppl = torch.exp(-(avg_probs * torch.log(avg_probs + 1e-7)).sum(-1)).sum()
        codebooks = self.codevectors.view(self.groups, self.num_vars, -1)  # (groups, vars, dim/groups)
        if self.training:
            onehot = F.gumbel_softmax(logits.float(), tau=self.curr_temp, hard=True).type_as(logits)
            q = torch.einsum("ngv,gvd->ngd", onehot, codebooks)
        else:
            # a one-hot times the codebook is a lookup
            offsets = torch.arange(self.groups, device=x.device) * self.num_vars
            q = self.codevectors.squeeze(0)[idx + offsets]  # (batch*frame, groups, dim/groups)
        q = q.reshape(bsz, tsz, -1)
        targets = idx.view(bsz, tsz, self.groups) if produce_targets else None
        return QuantizerOutput(q, self.groups * self.num_vars, code_ppl, prob_ppl, self.curr_temp, targets)
