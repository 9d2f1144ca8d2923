"""Peak memory and wall-clock of real ``fairseq-hydra-train`` pretraining with the LARGE-style encoder.

    python benchmarks/bench_large_style_memory.py --data WORK/manifests/pretrain [--updates 100]

The tiny_cpu yaml with the LARGE-style feature encoder and pre-LN layers
(``model.extractor_mode=layer_norm ++model.layer_norm_first=true ++model.conv_bias=true``), one
run after the other: fairseq's ``wav2vec2`` in fp32, the plugin in fp32 and the plugin in bf16
(``++task.precision=bf16``; ``--plugin-override`` adds fields to the plugin arms). Every arm gets
the same overrides but the ``_name`` s and the plugin-only fields. Each trainer starts under
``bench_time_to_accuracy.py --timed-child``, so peak RSS and wall-clock are measured exactly as
in the time-to-accuracy benchmark (``getrusage`` of the children: the larger of the trainer and
its loader worker; process start to exit), and its log is read with the same parser.

Prints one line per arm (peak RSS, wall s, last validation accuracy) and, last,
``RATIO peak RSS plugin <arm> / fairseq: N.NNx`` per plugin arm.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_time_to_accuracy import (
    PRETRAIN_YAML,
    PRETRAINING,
    USER_DIR,
    RunLog,
    final_value,
    name_overrides,
    parse_run_log,
    run_overrides,
)
from common import command_line, machine_info

from examples.demo.steps import resolve

LARGE_STYLE = ["model.extractor_mode=layer_norm", "++model.layer_norm_first=true", "++model.conv_bias=true"]
PLUGIN_ARMS = {"plugin_fp32": ["++task.precision=fp32"], "plugin_bf16": ["++task.precision=bf16"]}
TIMED_CHILD = Path(__file__).resolve().parent / "bench_time_to_accuracy.py"


def shared_overrides(data: Path, updates: int, seed: int) -> list[str]:
    """The fields every arm gets: the time-to-accuracy benchmark's shared settings, a warm-up over
    half the run (it is short), no checkpoints, and the LARGE-style fields."""
    return [*run_overrides(data, seed, updates), "optimization.clip_norm=5",
            f"lr_scheduler.warmup_updates={max(1, updates // 2)}", "checkpoint.no_save=true", *LARGE_STYLE]


def arm_overrides(arm: str, plugin_extra: list[str]) -> list[str]:
    """The registry names (the time-to-accuracy benchmark's pretraining pair) and plugin-only fields."""
    if arm == "fairseq_fp32":
        return name_overrides(PRETRAINING.names["fairseq"])
    return [*name_overrides(PRETRAINING.names["plugin"]), f"common.user_dir={USER_DIR}", *PLUGIN_ARMS[arm],
            *plugin_extra]


def run_arm(arm: str, shared: list[str], extra: list[str], work: Path) -> RunLog:
    """One trainer under the timed child; its log parsed (raises with the log's tail if it fails)."""
    trainer = resolve(["fairseq-hydra-train"])[0]
    argv = [sys.executable, str(TIMED_CHILD), "--timed-child", trainer,
            "--config-dir", str(PRETRAIN_YAML.parent), "--config-name", PRETRAIN_YAML.stem, *shared,
            f"hydra.run.dir={work / arm}", f"checkpoint.save_dir={work / arm / 'ckpt'}", *extra]
    print("+", " ".join(argv), flush=True)
    proc = subprocess.run(argv, capture_output=True, text=True)
    lines = (proc.stdout + proc.stderr).splitlines()
    log = parse_run_log(lines)
    if proc.returncode or log.returncode or log.maxrss_kb is None:
        print("\n".join(lines[-20:]), file=sys.stderr)
        raise SystemExit(f"bench_large_style_memory: arm {arm} failed (exit {proc.returncode}); "
                         "its log's tail is above")
    return log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="pretraining manifest folder (train.tsv, valid.tsv)")
    ap.add_argument("--updates", type=int, default=100, help="updates per arm (validation every 50)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--arms", nargs="+", default=["fairseq_fp32", *PLUGIN_ARMS],
                    choices=["fairseq_fp32", *PLUGIN_ARMS])
    ap.add_argument("--plugin-override", action="append", default=[], metavar="FIELD=VALUE",
                    help="a plugin-only field for the plugin arms (repeatable), e.g. ++model.packed_dropout=true")
    args = ap.parse_args(argv)
    for name in ("train.tsv", "valid.tsv"):
        if not (args.data / name).is_file():
            raise SystemExit(f"bench_large_style_memory: {args.data / name} not found; pass --data a folder made "
                             "by w2v2-manifest (e.g. bench_time_to_accuracy.py's WORK/manifests/pretrain)")
    shared = shared_overrides(args.data, args.updates, args.seed)
    logs: dict[str, RunLog] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arm in args.arms:
            log = logs[arm] = run_arm(arm, shared, arm_overrides(arm, args.plugin_override), Path(tmp))
            acc = final_value(log.valid, "accuracy")
            print(f"{arm:14s} peak RSS {(log.maxrss_kb or 0) / 1024:6.0f} MB   wall {log.wall or 0:7.1f} s   "
                  f"last valid accuracy {'n/a' if acc is None else f'{acc:.3f}'}", flush=True)
    m = machine_info("cpu")
    print(f"command: {command_line()}\nmachine: {m.cpu_model}, {m.cores} cores, torch {m.torch_version}, "
          f"{m.date}, load {m.load}")
    if "fairseq_fp32" in logs:
        peer = logs["fairseq_fp32"].maxrss_kb or 1
        for arm, log in logs.items():
            if arm != "fairseq_fp32":
                print(f"RATIO peak RSS {arm.replace('_', ' ', 1)} / fairseq: {(log.maxrss_kb or 0) / peer:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
