"""Where a real ``fairseq-hydra-train`` pretraining run spends its time: py-spy self time, top entries.

Starts the demo's pretraining command (``bench_demo_pretrain_rate.py``'s, one of its arms), lets
it run ``--warmup`` seconds (start-up, the first epoch's loader), samples it and its data-loader
worker with ``py-spy record --subprocesses`` for ``--duration`` seconds, stops it, and prints the
``--top`` Python frames by self time (the innermost Python frame of each sample: a C++ kernel's
time is counted in the frame that called it, e.g. autograd's backward in ``_engine_run_backward``)
as a share of all samples, and last ``PROFILE samples N, backward X %, data path Y %``.
Needs ``py-spy`` (``pip install py-spy``) and the right to trace a child (root or ptrace_scope 0).

    python benchmarks/profile_real_run.py --data WORK/manifests/pretrain --arm demo-bf16
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_demo_pretrain_rate import ARMS, train_command
from common import command_line, machine_info

# Frames of the data path: decoding, collation, the loader and its worker process.
DATA_PATH_FILES = ("soundfile", "dataloader", "data/", "raw_audio_dataset", "worker.py", "collate",
                   "iterators.py", "multiprocessing")


def read_samples(raw: Path) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed-stack) output: (frames outermost first, sample count) per line."""
    samples = []
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            samples.append((stack.split(";"), int(n)))
    return samples


def leaf_counts(samples: list[tuple[list[str], int]]) -> tuple[collections.Counter[str], int]:
    """Self-time samples per innermost frame, and all samples."""
    counts: collections.Counter[str] = collections.Counter()
    for frames, n in samples:
        counts[frames[-1]] += n
    return counts, sum(n for _, n in samples)


def stack_share(samples: list[tuple[list[str], int]], needles: tuple[str, ...]) -> int:
    """Samples whose stack passes through a frame whose text holds one of ``needles``."""
    return sum(n for frames, n in samples if any(x in frame for frame in frames for x in needles))


def record(cmd: list[str], out: Path, warmup: float, duration: int, rate: int) -> None:
    """Run ``cmd``, sample it after ``warmup`` s for ``duration`` s, then stop it."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        raise SystemExit("profile_real_run.py needs py-spy: pip install py-spy (or pip install -e '.[bench]')")
    trainer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(warmup)
        if trainer.poll() is not None:
            raise SystemExit(f"the run ended (exit {trainer.returncode}) before sampling began: "
                             "raise --updates or lower --warmup")
        subprocess.run([pyspy, "record", "--pid", str(trainer.pid), "--subprocesses", "-r", str(rate),
                        "-d", str(duration), "-f", "raw", "-o", str(out), "--nonblocking"], check=True,
                       stdout=subprocess.DEVNULL)
    finally:
        trainer.terminate()
        trainer.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="pretraining manifest folder (train.tsv)")
    ap.add_argument("--arm", default="demo-bf16", choices=list(ARMS))
    ap.add_argument("--warmup", type=float, default=40.0, help="seconds before sampling starts")
    ap.add_argument("--duration", type=int, default=60, help="seconds sampled")
    ap.add_argument("--rate", type=int, default=40, help="samples per second")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--keep", type=Path, help="also keep py-spy's raw output here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "profile.txt"
        cmd = train_command(args.data, Path(tmp) / "run", 100000, 1, ARMS[args.arm])
        print("+", " ".join(cmd), flush=True)
        record(cmd, raw, args.warmup, args.duration, args.rate)
        if args.keep:
            shutil.copyfile(raw, args.keep)
        samples = read_samples(raw)
    counts, total = leaf_counts(samples)
    backward = stack_share(samples, ("_engine_run_backward",))
    data = stack_share(samples, DATA_PATH_FILES)
    if not total:
        raise SystemExit("py-spy recorded no samples")
    print("\n| self time | frame |\n|---:|---|")
    for leaf, n in counts.most_common(args.top):
        print(f"| {100 * n / total:.1f} % | `{leaf}` |")
    m = machine_info("cpu")
    print(f"\ncommand: {command_line()}\nmachine: {m.cpu_model}, {m.cores} cores, torch {m.torch_version}, "
          f"{m.date}, load {m.load}")
    print(f"PROFILE {args.arm}: samples {total}, backward {100 * backward / total:.1f} %, "
          f"data path {100 * data / total:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
