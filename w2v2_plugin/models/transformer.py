"""The context network g: Z -> C, a Transformer encoder (paper, section 2).

Relative positions come from a grouped conv over time added to the input
(:class:`ConvPositionalEmbedding`); layers are post-LN (BASE) or pre-LN (``layer_norm_first``,
LARGE) with LayerDrop. Layout is (batch, frame, feature) throughout; fairseq's (T, B, C)
appears only where its public ``layer_results`` contract asks for it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import W2v2Config
from .conv_kernel import conv1d_on_channels_last_view
from .dropout import PackedDropout, make_dropout


def get_activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The FFN activation named by ``activation_fn``; GELU runs in fp32 (also under autocast)."""
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


class ConvPositionalEmbedding(nn.Module):
    """Relative positions from a grouped conv over time (weight norm over the kernel dim), GELU.

    An even kernel yields one extra frame, which is dropped (fairseq's SamePad).
    """

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel_size=kernel, padding=kernel // 2, groups=groups)
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel * dim)))
        if conv.bias is None:
            raise AssertionError("nn.Conv1d has a bias unless bias=False")
        nn.init.constant_(conv.bias, 0.0)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (batch, frame, feature) -> same
        if x.device.type == "cpu":
            # oneDNN's grouped conv is fast on a channels-last view of x, no transpose copy:
            # tiny_cpu's (6 x 130 frames, 256 features, kernel 64, 16 groups) forward + backward
            # 2.61x, BASE's (2 x 750, 768, 128, 16) 1.24x against nn.Conv1d on the channels-first
            # copy (benchmarks/bench_positional_conv.py); equal up to float rounding
            # (tests/test_positional_conv.py). On GPU nn.Conv1d (cuDNN).
            y = conv1d_on_channels_last_view(self.conv, x)
        else:
            y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        # y: (batch, frame + 1 - kernel % 2, feature)
        if self.remove:
            y = y[:, :-self.remove]
        return F.gelu(y)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection and SDPA.

    With ``packed_dropout`` and attention dropout in training on CPU, the attention weights
    are formed explicitly and dropped with :class:`PackedDropout`: SDPA's dropout on CPU runs
    its reference path, which draws one Bernoulli number per weight (a (5, 4, 187, 187) draw
    was 9 % of a tiny pretraining step in bf16) and upcasts q, k, v to fp32.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, packed_dropout: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"encoder_embed_dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.dropout = dropout
        self.weights_dropout = PackedDropout(dropout) if packed_dropout and dropout > 0 else None
        self.in_proj = nn.Linear(dim, 3 * dim)  # rows: [q; k; v]
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        # x: (batch, frame, feature); attn_mask: (batch, 1, 1, frame) bool, True = attend
        bsz, tsz, dim = x.shape
        qkv = self.in_proj(x).view(bsz, tsz, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, head, frame, head_dim)
        if self.weights_dropout is not None and self.training and x.device.type == "cpu":
            y = self.attend_with_packed_dropout(q, k, v, attn_mask, self.weights_dropout)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(bsz, tsz, dim)
        return self.out_proj(y)

    @staticmethod
    def attend_with_packed_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                   attn_mask: torch.Tensor | None, dropout: nn.Module) -> torch.Tensor:
        """softmax(q k^T / sqrt(d)) with dropout on the weights, times v: (batch, head, frame, d)
        each -> (batch, head, frame, d). The softmax runs in fp32 (also under autocast)."""
        scores = torch.matmul(q, k.transpose(-2, -1)) * (q.size(-1) ** -0.5)  # (batch, head, frame, frame)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        weights = dropout(F.softmax(scores.float(), dim=-1))
        return torch.matmul(weights.to(v.dtype), v)


class FeedForward(nn.Module):
    """Position-wise FFN: Linear -> activation -> dropout -> Linear."""

    def __init__(self, dim: int, inner_dim: int, activation: str, activation_dropout: float,
                 packed_dropout: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, inner_dim)
        self.fc2 = nn.Linear(inner_dim, dim)
        self.activation = get_activation(activation)
        self.activation_dropout = make_dropout(activation_dropout, packed_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_dropout(self.activation(self.fc1(x))))


class EncoderLayer(nn.Module):
    """Transformer layer, post-LN (BASE) or pre-LN (``layer_norm_first``, LARGE).

    Returns the output and the FFN output before its residual (fairseq's ``layer_result``).
    """

    def __init__(self, attention: SelfAttention, feed_forward: FeedForward, dim: int, dropout: float,
                 layer_norm_first: bool, packed_dropout: bool = False) -> None:
        super().__init__()
        self.attention = attention
        self.feed_forward = feed_forward
        self.attention_norm = nn.LayerNorm(dim)
        self.final_norm = nn.LayerNorm(dim)
        self.dropout = make_dropout(dropout, packed_dropout)
        self.layer_norm_first = layer_norm_first

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
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
    layer_results: list[tuple[torch.Tensor, None, torch.Tensor]]  # fairseq layout: (frame, batch, feature)


class TransformerEncoder(nn.Module):
    """Context network: positional conv, (post-LN) layer norm, layers with LayerDrop."""

    def __init__(self, pos_conv: ConvPositionalEmbedding, layers: Sequence[EncoderLayer], dim: int,
                 dropout: float, layerdrop: float, layer_norm_first: bool,
                 checkpoint_activations: bool = False, packed_dropout: bool = False) -> None:
        super().__init__()
        self.pos_conv = pos_conv
        self.layers = nn.ModuleList(layers)
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = make_dropout(dropout, packed_dropout)
        self.layerdrop = layerdrop
        self.layer_norm_first = layer_norm_first
        self.checkpoint_activations = checkpoint_activations

    @staticmethod
    def attention_mask(padding_mask: torch.Tensor | None) -> torch.Tensor | None:
        """(batch, frame) padding mask -> SDPA boolean mask (batch, 1, 1, frame), True = attend.

        A row that is all padding (a zero-length input) attends everywhere instead of nowhere,
        which would give NaN; its outputs are padding and ignored downstream.
        """
        if padding_mask is None:
            return None
        attend = ~padding_mask
        attend = attend | ~attend.any(dim=1, keepdim=True)
        return attend[:, None, None, :]

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor | None = None,
                layer: int | None = None) -> EncoderOutput:
        # x: (batch, frame, feature); padding_mask: (batch, frame), True on padding
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        x = x + self.pos_conv(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        attn_mask = self.attention_mask(padding_mask)
        layer_results: list[tuple[torch.Tensor, None, torch.Tensor]] = []
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


def init_bert_params(module: nn.Module) -> None:
    """BERT-style init used by fairseq's transformer: N(0, 0.02) linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_transformer_encoder(cfg: W2v2Config) -> TransformerEncoder:
    """Plain factory: the context network described by ``cfg``."""
    dim = cfg.encoder_embed_dim
    layers = [
        EncoderLayer(
            attention=SelfAttention(dim, cfg.encoder_attention_heads, cfg.attention_dropout, cfg.packed_dropout),
            feed_forward=FeedForward(dim, cfg.encoder_ffn_embed_dim, str(cfg.activation_fn), cfg.activation_dropout,
                                     cfg.packed_dropout),
            dim=dim,
            dropout=cfg.dropout,
            layer_norm_first=cfg.layer_norm_first,
            packed_dropout=cfg.packed_dropout,
        )
        for _ in range(cfg.encoder_layers)
    ]
    for layer in layers:
        layer.apply(init_bert_params)
    return TransformerEncoder(
        pos_conv=ConvPositionalEmbedding(dim, cfg.conv_pos, cfg.conv_pos_groups),
        layers=layers,
        dim=dim,
        dropout=cfg.dropout,
        layerdrop=cfg.encoder_layerdrop,
        layer_norm_first=cfg.layer_norm_first,
        checkpoint_activations=cfg.checkpoint_activations,
        packed_dropout=cfg.packed_dropout,
    )
