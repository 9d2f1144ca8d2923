"""The plugin's step time at two checkouts of this repository, fairseq's as the common yardstick.

    git worktree add --detach ../w2v2_old <revision>
    python benchmarks/compare_revisions.py --old ../w2v2_old --bench pretrain --arch base \\
        --batch 2 --seconds 4 --rounds 6 --repeats 5

Each round starts one fresh process per checkout (order alternating: old, new, new, old, ...)
with that checkout first on ``sys.path``, so each runs its own ``w2v2_plugin`` and its own step
benchmark's ``make_step`` (``bench_pretrain_step`` or ``bench_finetune_step``). Inside a process
the plugin and fairseq's model step alternately, as in those benchmarks. What it prints, per
checkout: the median over all rounds of the plugin's step, of fairseq's step, and of the
per-process ratio fairseq / plugin (the step benchmarks' figure); then the line
``RATIO plugin step old / new: N.NNx`` (above 1: the new checkout is faster) with the command,
machine and date, as the step benchmarks end. Comparing the
plugin's medians directly cancels most of the machine's drift between processes; the ratio
of ratios is printed too, because a change may touch the benchmark's helpers as well.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MARK = "COMPARE_REVISIONS "


def child(args: argparse.Namespace) -> None:
    """One process: time the plugin and fairseq's step of ``args.root``'s code."""
    root = Path(args.root).resolve()
    sys.path[:0] = [str(root / "benchmarks"), str(root)]
    import tempfile

    import common
    import torch

    import w2v2_plugin

    for module in (w2v2_plugin, common):  # the editable install or this script's folder must not win
        if not Path(str(module.__file__)).resolve().is_relative_to(root):
            raise SystemExit(f"imported {module.__file__}, not the checkout {root}")
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    audio = common.batch_audio(args.batch, args.seconds, args.seed, device)
    if args.bench == "pretrain":
        import bench_pretrain_step

        ref, ours = common.build_pretrain_pair(args.arch, args.seed)
        sample = bench_pretrain_step.make_sample(ours, audio, args.seed)
        steps = {"fairseq": bench_pretrain_step.make_step(ref, sample, device, "fp32", cast_weights=True),
                 "plugin": bench_pretrain_step.make_step(ours, sample, device, args.dtype)}
    else:
        import bench_finetune_step

        targets, target_lengths = bench_finetune_step.make_targets(args.batch, args.seconds, args.seed, device)
        with tempfile.TemporaryDirectory() as tmp:
            ref, ours = common.build_ctc_pair(args.arch, args.seed, Path(tmp), train=True)
        steps = {"fairseq": bench_finetune_step.make_step(ref.train(), audio, targets, target_lengths, device,
                                                       "fp32", cast_weights=True),
                 "plugin": bench_finetune_step.make_step(ours.train(), audio, targets, target_lengths, device,
                                                      args.dtype)}
    times = common.time_alternating(steps, args.warmup, args.repeats, device, progress=False)
    print(MARK + json.dumps(times.wall), flush=True)


def run_round(args: argparse.Namespace, root: Path) -> dict[str, list[float]]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--root", str(root),
            "--bench", args.bench, "--arch", args.arch, "--batch", str(args.batch),
            "--seconds", str(args.seconds), "--warmup", str(args.warmup), "--repeats", str(args.repeats),
            "--seed", str(args.seed), "--threads", str(args.threads), "--dtype", args.dtype]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{root}: the timing process failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", help="the other checkout (a git worktree of the revision to compare)")
    p.add_argument("--new", default=str(ROOT), help="this checkout (default: %(default)s)")
    p.add_argument("--bench", choices=["pretrain", "finetune"], default="pretrain")
    p.add_argument("--arch", choices=["base", "tiny_cpu", "large"], default="tiny_cpu")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="the plugin's precision")
    p.add_argument("--rounds", type=int, default=4, help="processes per checkout (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed steps per model and process")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if not args.old:
        p.error("--old is required: the checkout to compare this one with")
    # this checkout's helpers, for the report only (a child imports its own checkout's instead)
    from common import command_line, machine_info

    roots = {"old": Path(args.old).resolve(), "new": Path(args.new).resolve()}
    wall: dict[str, dict[str, list[float]]] = {k: {"plugin": [], "fairseq": []} for k in roots}
    ratios: dict[str, list[float]] = {k: [] for k in roots}
    try:
        from tqdm import tqdm

        progress = tqdm(total=2 * args.rounds, desc="processes", file=sys.stderr)
    except ImportError:  # pragma: no cover
        progress = None
    for r in range(args.rounds):
        for key in (("old", "new") if r % 2 == 0 else ("new", "old")):
            times = run_round(args, roots[key])
            for model in ("plugin", "fairseq"):
                wall[key][model] += times[model]
            ratios[key].append(statistics.median(times["fairseq"]) / statistics.median(times["plugin"]))
            if progress is not None:
                progress.update()
    if progress is not None:
        progress.close()
    print(f"{args.bench} step, {args.arch}, batch {args.batch} x {args.seconds:g} s, plugin {args.dtype}, "
          f"{args.rounds} processes x {args.repeats} steps per checkout")
    print("| checkout | plugin median s | fairseq median s | fairseq / plugin, median of processes (each) |")
    print("|---|---:|---:|---|")
    for key, root in roots.items():
        each = ", ".join(f"{x:.2f}" for x in ratios[key])
        print(f"| {key} ({root}) | {statistics.median(wall[key]['plugin']):.3f} | "
              f"{statistics.median(wall[key]['fairseq']):.3f} | {statistics.median(ratios[key]):.3f} ({each}) |")
    print(f"ratio of the step benchmark's ratios, new / old: "
          f"{statistics.median(ratios['new']) / statistics.median(ratios['old']):.3f}")
    old, new = statistics.median(wall["old"]["plugin"]), statistics.median(wall["new"]["plugin"])
    print(f"RATIO plugin step old / new: {old / new:.3f}x")
    machine = machine_info("cpu")
    print(f"command: {command_line()}")
    print(f"machine: {machine.cpu_model}, {machine.cores} cores, torch {machine.torch_version} "
          f"({args.threads} threads), load {machine.load}")
    print(f"date: {machine.date}")


if __name__ == "__main__":
    main()
