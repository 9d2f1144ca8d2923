"""Seconds of audio per second of the demo's CPU pretraining, under the settings it had and has.

Runs the demo's ``fairseq-hydra-train`` pretraining command (tiny_cpu, the plugin's
``w2v2_pretraining`` / ``w2v2`` / ``w2v2_contrastive``) for ``--updates`` updates per arm, one arm
after the other, on a pretraining manifest folder (``train.tsv``), validation off as in the demo:

- ``old-demo``: the demo's plan when issue 11 was filed: ``dataset.max_tokens=192000`` (about
  three 4 s crops), ``dataset.num_workers=0``, fp32;
- ``demo``: the demo's plan now: ``dataset.max_tokens=320000`` (about six utterances cropped to
  the shortest), ``dataset.num_workers=1``, fp32;
- ``demo-bf16``: the same with ``++task.precision=bf16 ++model.packed_dropout=true``.

Audio per update comes from fairseq's own batching of the manifest sizes (as in
``bench_time_to_accuracy.py``), the rate from the median of the log's ``ups``. Prints a table
and, last, ``RATIO demo pretraining audio s/s <arm> / old-demo: N.NNx``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bench_time_to_accuracy import (
    PRETRAIN_YAML,
    USER_DIR,
    audio_per_update,
    median_ups,
    parse_run_log,
    read_manifest_sizes,
)
from common import command_line, machine_info
from omegaconf import OmegaConf

from examples.demo.run import DEFAULT, Plan, pretrain_overrides
from examples.demo.steps import resolve


@dataclass(frozen=True)
class Arm:
    plan: Plan  # the demo plan whose pretraining command the arm runs
    extra: tuple[str, ...] = ()  # plugin-only fields on top

    def settings(self) -> str:
        """What tells the arms apart, for the table."""
        return " ".join([f"dataset.max_tokens={self.plan.pretrain_max_tokens}",
                         f"dataset.num_workers={self.plan.num_workers}", *self.extra])


ARMS = {
    "old-demo": Arm(replace(DEFAULT, pretrain_max_tokens=192000, num_workers=0)),
    "demo": Arm(DEFAULT),
    "demo-bf16": Arm(DEFAULT, ("++task.precision=bf16", "++model.packed_dropout=true")),
}


def train_command(data: Path, save: Path, updates: int, seed: int, arm: Arm) -> list[str]:
    """The demo's pretraining command (examples/demo/run.py: Demo.pretrain, its overrides from
    ``pretrain_overrides``) for the first ``updates`` updates, without checkpoints."""
    trainer = resolve(["fairseq-hydra-train"])[0]
    return [trainer, "--config-dir", str(PRETRAIN_YAML.parent), "--config-name", PRETRAIN_YAML.stem,
            f"task.data={data}", f"common.user_dir={USER_DIR}", f"hydra.run.dir={save / 'hydra'}",
            f"checkpoint.save_dir={save}", "checkpoint.no_save=true", "common.cpu=true",
            f"common.seed={seed}", f"dataset.num_workers={arm.plan.num_workers}",
            *pretrain_overrides(arm.plan, updates), *arm.extra]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="pretraining manifest folder (train.tsv)")
    ap.add_argument("--updates", type=int, default=200, help="updates per arm")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    args = ap.parse_args(argv)
    sizes = read_manifest_sizes(args.data / "train.tsv")
    task = OmegaConf.load(PRETRAIN_YAML).task
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arm in args.arms:
            cmd = train_command(args.data, Path(tmp) / arm, args.updates, args.seed, ARMS[arm])
            print("+", " ".join(cmd), flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = (proc.stdout + proc.stderr).splitlines()
            if proc.returncode:
                print("\n".join(lines[-20:]), file=sys.stderr)
                raise SystemExit(f"{arm}: fairseq-hydra-train exited {proc.returncode}")
            audio = audio_per_update(sizes, ARMS[arm].plan.pretrain_max_tokens, crop=True,
                                     max_sample_size=task.max_sample_size,
                                     min_sample_size=task.min_sample_size, keep_tail=True)
            ups = median_ups(parse_run_log(lines).train_inner)
            if ups is None:
                raise SystemExit(f"{arm}: the run logged no train_inner line with ups")
            rows[arm] = (ups, audio.seconds, audio.utterances, ups * audio.seconds)
            print(f"{arm}: {ups:.2f} updates/s x {audio.seconds:.1f} s of audio = {ups * audio.seconds:.1f} s/s",
                  flush=True)
    print("\n| arm | overrides | updates/s | utterances / update | audio s / update | audio s/s |")
    print("|---|---|---:|---:|---:|---:|")
    for arm, (ups, sec, utt, rate) in rows.items():
        print(f"| {arm} | `{ARMS[arm].settings()}` | {ups:.2f} | {utt:.1f} | {sec:.1f} | **{rate:.1f}** |")
    m = machine_info("cpu")
    print(f"\ncommand: {command_line()}\nmachine: {m.cpu_model}, {m.cores} cores, torch {m.torch_version}, "
          f"{m.date}, load {m.load}")
    if "old-demo" in rows:
        for arm in rows:
            if arm != "old-demo":
                print(f"RATIO demo pretraining audio s/s {arm} / old-demo: {rows[arm][3] / rows['old-demo'][3]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
