"""The positional conv alone, forward + backward: ``nn.Conv1d`` on the channels-first copy of
the (batch, frame, feature) input (fairseq's way, the plugin's before) against the plugin's CPU
path, ``F.conv2d`` on a channels-last view of it (``ConvPositionalEmbedding``).

    python benchmarks/bench_positional_conv.py
    python benchmarks/bench_positional_conv.py --dtype bf16      # CPU autocast (needs AVX-512 bf16)

Shapes: tiny_cpu's (6 x 130 frames, 256 features, kernel 64, 16 groups: a 2.6 s crop batch)
and BASE's (2 x 750, 768, 128, 16: 2 x 15 s). Prints the median milliseconds of each way
(alternating, fresh gradients) and one ``RATIO`` line per shape (channels-first / channels-last).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from common import autocast, command_line, machine_info

from w2v2_plugin.models.transformer import ConvPositionalEmbedding

SHAPES = {"tiny_cpu": (6, 130, 256, 64, 16), "base": (2, 750, 768, 128, 16)}


def channels_first(module: ConvPositionalEmbedding, x: torch.Tensor) -> torch.Tensor:
    y = module.conv(x.transpose(1, 2))[:, :, :-module.remove or None]
    return F.gelu(y).transpose(1, 2)


def time_both(module: ConvPositionalEmbedding, x: torch.Tensor, dtype: str, repeats: int) -> dict[str, float]:
    ways = {"channels-first nn.Conv1d": lambda: channels_first(module, x), "channels-last view": lambda: module(x)}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for i in range(repeats + 2):  # two warm-up rounds
        for name, way in ways.items():
            start = time.perf_counter()
            with autocast(x.device, dtype):
                y = way()
            y.float().square().sum().backward()
            if i >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    torch.manual_seed(0)
    for name, (batch, frames, dim, kernel, groups) in SHAPES.items():
        module = ConvPositionalEmbedding(dim, kernel, groups)
        x = torch.randn(batch, frames, dim, requires_grad=True)
        ms = time_both(module, x, args.dtype, args.repeats)
        print(f"{name} ({batch} x {frames} frames, {dim} features, kernel {kernel}, {groups} groups), {args.dtype}: "
              + ", ".join(f"{way} {t:.1f} ms" for way, t in ms.items()))
        first, last = ms.values()
        print(f"RATIO positional conv fwd+bwd {name}, channels-first / channels-last: {first / last:.2f}x")
    m = machine_info("cpu")
    print(f"command: {command_line()}")
    print(f"machine: {m.cpu_model}, {m.cores} cores, torch {m.torch_version}, load {m.load}")
    print(f"date: {m.date}")


if __name__ == "__main__":
    main()
