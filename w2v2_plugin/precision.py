"""Mixed-precision training that fairseq itself does not offer on CPU.

fairseq's ``common.bf16`` casts the weights (and so the optimizer's view of them) to bf16, and
``common.amp`` is CUDA-only. ``task.precision=bf16`` instead runs the forward pass of each
train and valid step under ``torch.autocast(device, dtype=torch.bfloat16)``: weights, gradients
and Adam state stay fp32, matrix products and convolutions run in bf16, and the model keeps its
numerically sensitive parts in fp32. bf16 has fp32's exponent range, so no loss scaling is
needed. Backward runs outside autocast, on the dtypes forward chose.

What stays fp32 under bf16 autocast (tests/test_precision.py checks it):
- the first conv block on the raw waveform, with its group norm (models/feature_encoder.py);
- every layer norm and group norm, and GELU (models/feature_encoder.py, models/transformer.py);
- the Gumbel quantizer: codebook logits, softmax, perplexities (models/quantizer.py);
- the two projections into the contrastive space and the cosine logits (models/wav2vec2.py,
  models/contrastive.py);
- the feature penalty and every loss term (models/contrastive.py, criterions/);
- the CTC output layer (projection and log-softmax) and the CTC loss (models/ctc.py,
  criterions/ctc.py).

On CPU every step (fp32 too) bounds oneDNN's primitive cache (``bound_onednn_primitive_cache``),
and in bf16 the feature encoder runs channels-last (models/feature_encoder.py).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from contextlib import AbstractContextManager

import torch

from w2v2_common.errors import W2v2Error

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


class PrecisionError(W2v2Error, ValueError):
    """An unknown ``task.precision`` value, or bf16 asked of a device that cannot run it."""


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise PrecisionError(f"task.precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    return precision


def prepare_step(device_type: str) -> None:
    """What every train or valid step on ``device_type`` needs first, in any precision (fp32's
    steps are fairseq's own and call this before it; bf16's through ``step_autocast``)."""
    if device_type == "cpu":
        bound_onednn_primitive_cache()


def step_autocast(precision: str, device_type: str) -> AbstractContextManager:
    """The context a train or valid step's forward pass runs in."""
    prepare_step(device_type)
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    if device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PrecisionError("task.precision=bf16: this GPU has no bf16 support; use fp32 "
                             "(or fairseq's common.fp16 / common.amp)")
    if device_type == "cpu":
        if not cpu_has_bf16_kernels():
            warn_slow_cpu_bf16()
    return torch.autocast(device_type, dtype=torch.bfloat16)


ONEDNN_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
ONEDNN_CACHE_CAPACITY = 256


@functools.cache
def bound_onednn_primitive_cache() -> None:
    """Keep at most ``ONEDNN_CACHE_CAPACITY`` oneDNN primitives (default 1024) in a CPU run,
    unless the user set ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` already.

    Why: a convolution primitive on channels-last data (the bf16 feature encoder, the
    positional conv in any precision) is built per input shape and holds megabytes (its JIT
    kernels and buffers); training batches nearly all differ in length, so the cache fills with
    primitives never used again. A real bf16 pretraining run's peak RSS rose by ~0.9 GB over 200
    updates (3236 vs 2398 MB with 256, updates/s unchanged: 1.28 vs 1.35), an fp32 fine-tuning
    run's by ~1.1 GB over 300 (2823 vs 1681 MB, 131 vs 128 s, the same losses; BENCHMARKS.md).
    256 still holds every primitive of one step, which the same-shaped layers reuse (64 is too
    few: 1.5x slower steps). oneDNN reads the variable lazily: set after the process's first
    convolution it still took effect (measured), so setting it at the first step is enough."""
    os.environ.setdefault(ONEDNN_CACHE_VARIABLE, str(ONEDNN_CACHE_CAPACITY))


@functools.cache
def cpu_has_bf16_kernels() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU: AVX-512 (bf16 emulated), or avx512_bf16 /
    AMX (native, where bf16 pays). Without AVX-512 torch falls back to reference loops: a bf16
    matrix product there was measured 80x slower than fp32's (AMD EPYC, AVX2 only, torch 2.13,
    BENCHMARKS.md)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@functools.cache
def warn_slow_cpu_bf16() -> None:
    logger.warning("task.precision=bf16 on a CPU without native bf16 (torch reports %s; needs AVX-512 "
                   "or AMX): bf16 runs many times slower than fp32 here; use task.precision=fp32",
                   torch.backends.cpu.get_cpu_capability())


def fp32_region(x: torch.Tensor) -> AbstractContextManager:
    """Autocast off for the block that follows, when it was on for ``x``'s device (its inputs
    must then be cast to fp32 by the caller)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()
