"""Short pretraining run, plugin ``w2v2`` in bf16 (autocast) vs fp32: does the loss fall alike?

Both arms start from the same weights and see the same batches in the same order: a pool of
synthetic "phone" audio (a small inventory of formant-like tone mixtures strung into
utterances, so there is structure to learn, unlike white noise), fairseq's own contrastive
criterion (infonce, loss weights [0.1, 10]) and fairseq's own Adam with a linear warm-up to
the peak learning rate. Span masks, distractors and dropout are drawn by the model itself (a
real run), from the same seed at the start of each arm.

    python benchmarks/bench_short_run.py --device cuda --arch base --updates 600
    python benchmarks/bench_short_run.py --arch tiny_cpu --updates 20 --batch 2 --seconds 2

Prints the mean loss of each window of ``--log-every`` updates for both arms, then one line:
``SHORT RUN plugin bf16 vs fp32: loss A -> B vs C -> D (last window bf16/fp32 R.RRx)``.
Exits 1 when the low-precision curve does not follow fp32's (a window more than
``--tolerance`` apart, relative) or its loss did not fall (last window not below the first).
"""
from __future__ import annotations

import copy
import json
import statistics
import time
from typing import Any

import torch
from bench_pretrain_step import contrastive_criterion
from common import TrainPrecision, base_parser, build_pretrain_pair, command_line, machine_info, setup, sync

SAMPLE_RATE = 16000


def phone_audio(batch: int, seconds: float, seed: int, device: torch.device) -> torch.Tensor:
    """(batch, samples) utterances of 40-160 ms "phones", each three tones with a decay.

    Twenty phones, each a fixed triple of frequencies (200-3500 Hz) and amplitudes; an
    utterance is a random phone sequence with random durations, a small per-phone pitch shift and a
    little noise. What matters is that nearby frames predict each other, as in speech.
    """
    g = torch.Generator().manual_seed(seed)
    freqs = 200.0 + 3300.0 * torch.rand(20, 3, generator=g)
    amps = 0.2 + torch.rand(20, 3, generator=g)
    samples = int(round(seconds * SAMPLE_RATE))
    out = torch.empty(batch, samples)
    for row in range(batch):
        pieces, filled = [], 0
        while filled < samples:
            n = int(SAMPLE_RATE * (0.04 + 0.12 * float(torch.rand(1, generator=g))))
            phone = int(torch.randint(20, (1,), generator=g))
            t = torch.arange(n) / SAMPLE_RATE
            drift = 1.0 + 0.05 * float(torch.randn(1, generator=g))
            tones = amps[phone, :, None] * torch.sin(2 * torch.pi * freqs[phone, :, None] * drift * t)
            pieces.append(tones.sum(0) * torch.exp(-3.0 * t))
            filled += n
        signal = torch.cat(pieces)[:samples]
        out[row] = 0.1 * signal / signal.abs().max() + 0.003 * torch.randn(samples, generator=g)
    return out.to(device)


def run_arm(model: torch.nn.Module, pool: list[torch.Tensor], args: Any, dtype: str,
            device: torch.device) -> tuple[list[float], float]:
    """Train ``model`` for ``args.updates`` updates cycling over ``pool``: (loss per update, seconds)."""
    criterion = contrastive_criterion()
    precision = TrainPrecision(model, device, dtype, cast_weights=False)
    torch.manual_seed(args.seed)  # the same masks, distractors and dropout draws to start with
    losses: list[float] = []
    sync(device)
    start = time.perf_counter()
    for update in range(args.updates):
        for group in precision.optimizer.param_groups:  # linear warm-up, then constant
            group["lr"] = args.lr * min(1.0, (update + 1) / args.lr_warmup)
        audio = pool[update % len(pool)]
        sample = {"id": torch.arange(audio.size(0), device=device),
                  "net_input": {"source": audio, "padding_mask": None}}
        model.set_num_updates(update)  # the quantizer's Gumbel temperature schedule
        precision.optimizer.zero_grad(set_to_none=True)
        with precision.context():
            loss, sample_size, log = criterion(model, sample)
        precision.backward_and_step(loss)
        losses.append(float(log["loss"]) / max(1.0, float(sample_size)))
    sync(device)
    return losses, time.perf_counter() - start


def windows(losses: list[float], every: int) -> list[float]:
    return [statistics.fmean(losses[i:i + every]) for i in range(0, len(losses), every)]


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--arch", choices=["base", "tiny_cpu", "large"], default="base")
    p.add_argument("--updates", type=int, default=600)
    p.add_argument("--batch", type=int, default=4, help="utterances per batch")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each utterance")
    p.add_argument("--pool", type=int, default=8, help="distinct batches, cycled")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    p.add_argument("--lr-warmup", type=int, default=100, help="updates of linear warm-up")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="largest relative gap between the two curves' windows that still passes")
    p.set_defaults(dtype="bf16")  # the arm under test; the other is always fp32
    args = p.parse_args()
    if args.dtype == "fp32":
        p.error("--dtype: the arm under test is bf16 or fp16 (the other arm is always fp32)")
    device = setup(args)
    _, model = build_pretrain_pair(args.arch, args.seed)
    pool = [phone_audio(args.batch, args.seconds, args.seed * 1000 + i, device) for i in range(args.pool)]
    curves, seconds = {}, {}
    for dtype in ("fp32", args.dtype):
        arm = copy.deepcopy(model).to(device).train()
        curves[dtype], seconds[dtype] = run_arm(arm, pool, args, dtype, device)
        del arm
    rows = {d: windows(c, args.log_every) for d, c in curves.items()}
    print(f"updates  {'fp32':>8} {args.dtype:>8}   (mean loss per {args.log_every} updates, per target frame)")
    for i, (a, b) in enumerate(zip(rows["fp32"], rows[args.dtype], strict=True)):
        print(f"{(i + 1) * args.log_every:7d}  {a:8.4f} {b:8.4f}")
    m = machine_info(args.device)
    print(f"machine: {m.device_name}, torch {m.torch_version}, {m.date}; command: {command_line()}")
    print(f"seconds: fp32 {seconds['fp32']:.1f}, {args.dtype} {seconds[args.dtype]:.1f} "
          f"({seconds['fp32'] / seconds[args.dtype]:.2f}x); arch {args.arch}, batch {args.batch} x {args.seconds:g} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"curves": curves, "seconds": seconds, "command": command_line()}, f)
    f32, low = rows["fp32"], rows[args.dtype]
    gap = largest_relative_gap(f32, low)
    print(f"SHORT RUN plugin {args.dtype} vs fp32: loss {low[0]:.3f} -> {low[-1]:.3f} vs "
          f"{f32[0]:.3f} -> {f32[-1]:.3f} (last window {args.dtype}/fp32 {low[-1] / f32[-1]:.2f}x, "
          f"largest window gap {gap:.2%})")
    if gap > args.tolerance or not low[-1] < low[0]:
        raise SystemExit(f"short run: the {args.dtype} curve does not follow fp32's within "
                         f"{args.tolerance:.0%} or its loss did not fall")


def largest_relative_gap(reference: list[float], other: list[float]) -> float:
    """max over windows of |other - reference| / |reference|."""
    return max(abs(o - r) / abs(r) for r, o in zip(reference, other, strict=True))


if __name__ == "__main__":
    main()
