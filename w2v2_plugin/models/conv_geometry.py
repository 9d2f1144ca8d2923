"""Geometry of the feature encoder f: X -> Z, the one place that knows it.

The encoder is a stack of temporal conv blocks given as fairseq's ``conv_feature_layers``
string, a list expression of (channels, kernel, stride) tuples. Everything that maps samples
to frames reads it through this module: the model (output lengths, padding masks, the
too-short-input check), the CTC emission code (frame stride, chunk windows) and the Hugging
Face export (conv dims).

Each block maps L samples to floor((L - kernel) / stride) + 1 frames (paper, section 2;
wav2vec 2.0 BASE/LARGE: receptive field 400 samples = 25 ms, stride 320 = 20 ms at 16 kHz).
"""
from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import NamedTuple

import torch

from w2v2_common.errors import W2v2Error

ConvLayerSpec = tuple[int, int, int]  # (channels, kernel, stride)

# wav2vec 2.0's feature encoder, written as fairseq's configs write it; W2v2Config's default.
DEFAULT_CONV_FEATURE_LAYERS = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]"


class ConvSpecError(W2v2Error, ValueError):
    """A ``conv_feature_layers`` string that is not a list of (channels, kernel, stride) tuples."""


def _literal_layers(node: ast.AST, spec: str) -> object:
    """Value of one node of the list expression; only literals, list + list and list * int."""
    if isinstance(node, ast.List):
        return [_literal_layers(e, spec) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal_layers(e, spec) for e in node.elts)
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal_layers(node.left, spec), _literal_layers(node.right, spec)
        if isinstance(left, list) and isinstance(right, list):
            return left + right
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        left, right = _literal_layers(node.left, spec), _literal_layers(node.right, spec)
        if isinstance(left, list) and isinstance(right, int):
            return left * right
        if isinstance(right, list) and isinstance(left, int):
            return right * left
    raise ConvSpecError(
        f"conv_feature_layers: unsupported expression {ast.unparse(node)!r} in {spec!r}; "
        "write lists of (channels, kernel, stride) tuples joined with + and * int")


def parse_conv_layers(spec: str) -> list[ConvLayerSpec]:
    """Parse fairseq's conv_feature_layers string without eval.

    Grammar: a list literal of (channels, kernel, stride) int tuples, lists joined with ``+``
    and repeated with ``* int``, e.g. ``"[(512, 10, 5)] + [(512, 3, 2)] * 4"``. The string
    comes from configs and checkpoints, so it is parsed, never run.
    """
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError as e:
        raise ConvSpecError(f"conv_feature_layers is not a list expression: {spec!r} ({e.msg})") from None
    layers = _literal_layers(tree.body, spec)
    if not isinstance(layers, list) or not layers:
        raise ConvSpecError(f"conv_feature_layers must be a non-empty list, got {spec!r}")
    for item in layers:
        if not (isinstance(item, tuple) and len(item) == 3 and all(isinstance(v, int) and v > 0 for v in item)):
            raise ConvSpecError(f"conv_feature_layers: {item!r} is not a (channels, kernel, stride) "
                                f"tuple of positive ints in {spec!r}")
    return layers


def default_conv_layers() -> list[ConvLayerSpec]:
    """wav2vec 2.0's seven blocks (BASE and LARGE alike): stride 320, receptive field 400."""
    return parse_conv_layers(DEFAULT_CONV_FEATURE_LAYERS)


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


def total_stride(conv_layers: Sequence[ConvLayerSpec]) -> int:
    """Samples between the starts of consecutive output frames (the product of the strides)."""
    jump = 1
    for _, _, stride in conv_layers:
        jump *= stride
    return jump


class FrameGeometry(NamedTuple):
    """Feature-encoder geometry: samples per frame step and per frame's receptive field."""

    stride: int
    receptive_field: int

    def n_frames(self, n_samples: int) -> int:
        """Frames of ``n_samples`` samples; the same count as ``conv_output_lengths`` gives."""
        return max(0, (n_samples - self.receptive_field) // self.stride + 1)


def frame_geometry(conv_layers: Sequence[ConvLayerSpec]) -> FrameGeometry:
    return FrameGeometry(total_stride(conv_layers), receptive_field(conv_layers))
