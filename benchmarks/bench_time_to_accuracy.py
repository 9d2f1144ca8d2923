"""Time to accuracy in real ``fairseq-hydra-train`` runs: fairseq's own wav2vec 2.0 vs the plugin.

    python benchmarks/bench_time_to_accuracy.py                     # the full claim (hours)
    python benchmarks/bench_time_to_accuracy.py --updates 100 --ft-updates 100 --seeds 1 \\
        --unlabeled-hours 0.5 --labeled-minutes 10                   # a try (minutes)

It synthesizes an espeak-ng corpus (``examples.demo.synth``: several voices, held-out dev
speakers) in ``--work`` (reused when already there), indexes it with ``w2v2-manifest``, then
runs two comparisons, each arm a ``fairseq-hydra-train`` child process, one after the other:

* pretraining, ``examples/wav2vec2/config/pretraining/tiny_cpu.yaml``: fairseq's
  ``audio_pretraining`` / ``wav2vec2`` / ``wav2vec`` vs the plugin's ``w2v2_pretraining`` /
  ``w2v2`` / ``w2v2_contrastive``; validation contrastive accuracy every 50 updates;
* CTC fine-tuning, ``examples/wav2vec2/config/finetuning/tiny_cpu.yaml``, both arms from ONE
  pretrained file (fairseq's own pretraining checkpoint of the first seed): fairseq's
  ``audio_finetuning`` / ``wav2vec_ctc`` / ``ctc`` vs the plugin's ``w2v2_finetuning`` /
  ``w2v2_ctc`` / ``w2v2_ctc``; dev UER and WER every 50 updates.

The arms of a comparison get the same yaml and the same overrides; they differ only in the
three ``_name`` s and in plugin-only fields (``task.precision``, ``--plugin-override``), which
is checked against fairseq's and the plugin's config dataclasses before anything runs.
``common.user_dir`` goes to the plugin arm only: the fairseq arm is what a user without the
plugin runs (nothing of the plugin imported), and the plugin arm pays its own import. Two
shared settings depart from the yamls, both because of fairseq 0.12.3 (see the constants below):
``dataset.required_batch_size_multiple=1`` and, for fine-tuning, ``model.mask_channel_prob``.

For every run: wall-clock from the trainer's process start to its exit; updates/s (median of
the log's ``ups``: the steady rate, start-up and most validation excluded); seconds of audio
per second (that rate times the mean audio of one update, from fairseq's own ``batch_by_size``
on the manifest sizes with the task's crop rules); peak RSS of the trainer (``getrusage`` of a
thin wrapper that starts it: the max of the trainer and its data-loader worker, not their
sum); the metric at every validation, timed from process start by the log lines' timestamps;
and the time to the target: the first validation at or past fairseq's mean, over the seeds,
at its last validation. The last lines are ``RATIO time-to-accuracy pretraining: N.NNx`` and
``RATIO time-to-accuracy fine-tuning: N.NNx`` (fairseq time / plugin time, of the means over
the seeds; ``> X`` when a fairseq run never reached the target, ``< X`` when a plugin run
did not, ``n/a`` when both).
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

_MARK = "W2V2_BENCH_CHILD"


def _timed_child(argv: list) -> int:
    """Run ``argv``, printing its start and end times and its peak RSS (stdlib only: this runs
    before anything heavy is imported, so the trainer starts within milliseconds)."""
    print(f"{_MARK} start {time.time():.6f}", flush=True)
    proc = subprocess.Popen(argv)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        code = proc.wait()
    maxrss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(f"{_MARK} end {time.time():.6f} rc {code} maxrss_kb {maxrss_kb}", flush=True)
    return code


if __name__ == "__main__" and sys.argv[1:2] == ["--timed-child"]:
    sys.exit(_timed_child(sys.argv[2:]))

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
from collections.abc import Iterable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, NamedTuple  # noqa: E402

from common import CONFIG_DIR, ROOT, command_line, machine_info  # noqa: E402

from examples.demo.logs import completed_updates, parse_line  # noqa: E402
from examples.demo.steps import StepError, resolve, run_step  # noqa: E402
from examples.demo.synth import split_name  # noqa: E402

USER_DIR = ROOT / "w2v2_plugin"
PRETRAIN_YAML = CONFIG_DIR / "pretraining" / "tiny_cpu.yaml"
FINETUNE_YAML = CONFIG_DIR / "finetuning" / "tiny_cpu.yaml"
ARMS = ("fairseq", "plugin")
# fairseq 0.12.3's compute_mask_indices raises ("this should never happens") when a row draws no
# channel span, i.e. when mask_channel_prob * channels / mask_channel_length + U(0,1) < 1: the
# fine-tuning yaml's 0.05 * 256 / 16 = 0.8 crashes fairseq's arm within a few updates. Both arms
# get 1/16 (256 / 16 * 1/16 = 1: one or two 16-channel spans per row, never none).
FAIRSEQ_CHANNEL_MASK_PROB = 0.0625
# fairseq 0.12.3's batch_by_size drops the last batch of a split when its size is not a multiple
# of dataset.required_batch_size_multiple (8 by default); the plugin keeps it. With 1 in both
# arms nothing is dropped: the same batches, and validation on the same utterances.
BATCH_SIZE_MULTIPLE = 1
# The shared batch, loader and validation settings (the command line's defaults): the tiny yamls'
# batch of ~6 utterances, one loader worker, a validation every 50 updates.
MAX_TOKENS = 320000
NUM_WORKERS = 1
VALIDATE_EVERY = 50


def run_overrides(data: Path, seed: int, updates: int, *, max_tokens: int = MAX_TOKENS,
                  num_workers: int = NUM_WORKERS, validate_every: int = VALIDATE_EVERY,
                  cpu: bool = True) -> list[str]:
    """The fields every arm of every real-run benchmark shares (data, seed, length, lr 1e-3, batch,
    loader, validation, logging, device), whatever the comparison adds on top."""
    return [f"task.data={data}", f"common.seed={seed}", f"optimization.max_update={updates}",
            "optimization.lr=[0.001]", f"dataset.max_tokens={max_tokens}", f"dataset.num_workers={num_workers}",
            f"dataset.required_batch_size_multiple={BATCH_SIZE_MULTIPLE}",
            f"dataset.validate_interval_updates={validate_every}", "dataset.validate_interval=1000000",
            f"common.log_interval={max(1, min(10, updates // 10))}", f"common.cpu={'true' if cpu else 'false'}"]


class Names(NamedTuple):
    task: str
    model: str
    criterion: str


@dataclasses.dataclass(frozen=True)
class Comparison:
    key: str  # pretraining / finetuning
    label: str  # what the RATIO line names
    yaml: Path
    names: dict[str, Names]  # arm -> registry names
    metric: str  # the target's metric (valid_<metric> in the log)
    higher_is_better: bool
    shown: tuple[str, ...]  # metrics in the tables


PRETRAINING = Comparison(
    "pretraining", "pretraining", PRETRAIN_YAML,
    {"fairseq": Names("audio_pretraining", "wav2vec2", "wav2vec"),
     "plugin": Names("w2v2_pretraining", "w2v2", "w2v2_contrastive")},
    "accuracy", True, ("accuracy",))
FINETUNING = Comparison(
    "finetuning", "fine-tuning", FINETUNE_YAML,
    {"fairseq": Names("audio_finetuning", "wav2vec_ctc", "ctc"),
     "plugin": Names("w2v2_finetuning", "w2v2_ctc", "w2v2_ctc")},
    "uer", False, ("uer", "wer"))
COMPARISONS = {c.key: c for c in (PRETRAINING, FINETUNING)}


def name_overrides(names: Names) -> list[str]:
    """The three registry names of an arm as overrides: all that tells the arms' code apart."""
    return [f"task._name={names.task}", f"model._name={names.model}", f"criterion._name={names.criterion}"]


# ---- fields: the arms share every field fairseq accepts ------------------------------------------

def _key(override: str) -> str:
    """``++task.precision=bf16`` -> ``task.precision``."""
    return override.lstrip("+").split("=", 1)[0]


def yaml_fields(path: Path) -> dict[str, list[str]]:
    """Field names the yaml sets in its task / model / criterion sections (``_name`` aside)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    return {g: sorted(k for k in (cfg.get(g) or {}) if k != "_name") for g in ("task", "model", "criterion")}


def registry_fields(names: Names) -> dict[str, set]:
    """Field names of the config dataclasses registered under ``names`` (task, model, criterion)."""
    from fairseq.criterions import CRITERION_DATACLASS_REGISTRY
    from fairseq.models import MODEL_DATACLASS_REGISTRY
    from fairseq.tasks import TASK_DATACLASS_REGISTRY

    out = {}
    for group, registry, name in (("task", TASK_DATACLASS_REGISTRY, names.task),
                                  ("model", MODEL_DATACLASS_REGISTRY, names.model),
                                  ("criterion", CRITERION_DATACLASS_REGISTRY, names.criterion)):
        if name not in registry:
            raise SystemExit(f"{group}._name={name}: not registered with fairseq")
        out[group] = {f.name for f in dataclasses.fields(registry[name])}
    return out


def field_problems(shared: dict[str, Sequence[str]], plugin_only: Sequence[str],
                   fairseq_fields: dict[str, set], plugin_fields: dict[str, set]) -> list[str]:
    """Why the arms would not differ only in their names and plugin-only fields: a shared field
    that one side does not accept, or a plugin-only field that fairseq accepts (then it is a
    shared field and must be set in both arms). Empty when all is well."""
    problems = []
    for group, keys in shared.items():
        for k in keys:
            for side, fields in (("fairseq", fairseq_fields), ("plugin", plugin_fields)):
                if k not in fields.get(group, set()):
                    problems.append(f"{group}.{k}: set for both arms but {side}'s {group} has no such field")
    for key in plugin_only:
        group, _, k = key.partition(".")
        if group not in plugin_fields or k not in plugin_fields[group]:
            problems.append(f"{key}: plugin-only override, but the plugin's {group} has no such field")
        elif k in fairseq_fields.get(group, set()):
            problems.append(f"{key}: fairseq's {group} accepts it too, so it is a shared field: "
                            "set it for both arms (in the yaml), not as a plugin-only override")
    return problems


def check_fields(cmp: Comparison, shared_overrides: Sequence[str], plugin_overrides: Sequence[str]) -> None:
    import w2v2_plugin  # noqa: F401  (registers the plugin's dataclasses, in this process only)

    shared = {g: list(ks) for g, ks in yaml_fields(cmp.yaml).items()}
    for o in shared_overrides:
        group, _, k = _key(o).partition(".")
        if group in shared and "." not in k and k != "_name" and k not in shared[group]:
            shared[group].append(k)
    plugin_only = [_key(o) for o in plugin_overrides if _key(o).split(".")[0] in shared]
    problems = field_problems(shared, plugin_only, registry_fields(cmp.names["fairseq"]),
                              registry_fields(cmp.names["plugin"]))
    if problems:
        raise SystemExit(f"{cmp.key}: the arms would differ in more than names and plugin-only fields:\n  "
                         + "\n  ".join(problems))


# ---- logs: validation points timed from process start ------------------------------------------------

_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[")


def log_time(line: str) -> float | None:
    """Epoch seconds of a fairseq/hydra log line's timestamp (``[2026-12-01 22:31:38,324][...``,
    local time as the logging module writes it), or None."""
    m = _STAMP.match(line)
    if not m:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


class ValidPoint(NamedTuple):
    seconds: float  # from the trainer's process start to this validation's log line
    updates: int
    values: dict[str, float]  # valid_<metric> -> value


class RunLog(NamedTuple):
    start: float | None  # epoch seconds
    end: float | None
    returncode: int | None
    maxrss_kb: int | None
    valid: list[ValidPoint]
    train_inner: list[dict[str, float]]

    @property
    def wall(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start


def parse_run_log(lines: Iterable[str]) -> RunLog:
    """A benchmark child's log (wrapper markers + fairseq's json log lines)."""
    start = end = rc = rss = None
    valid: list[ValidPoint] = []
    inner: list[dict[str, float]] = []
    for line in lines:
        if line.startswith(_MARK):
            parts = line.split()
            if parts[1] == "start":
                start = float(parts[2])
            elif parts[1] == "end":
                end, rc, rss = float(parts[2]), int(parts[4]), int(parts[6])
            continue
        parsed = parse_line(line)
        if not parsed:
            continue
        kind, rec = parsed
        if kind == "train_inner":
            inner.append(rec)
        elif kind == "valid" and "num_updates" in rec:
            t = log_time(line)
            if t is None or start is None:
                raise ValueError(f"validation line without a timestamp or before the start marker: {line[:120]}")
            valid.append(ValidPoint(t - start, int(rec["num_updates"]), rec))
    return RunLog(start, end, rc, rss, valid, inner)


def read_run_log(path: Path) -> RunLog:
    return parse_run_log(path.read_text(encoding="utf-8", errors="replace").splitlines())


def reached(value: float, target: float, higher_is_better: bool) -> bool:
    return value >= target if higher_is_better else value <= target


def time_to_target(valid: Sequence[ValidPoint], metric: str, target: float,
                   higher_is_better: bool) -> ValidPoint | None:
    """The first validation at or past the target, or None."""
    for p in valid:
        v = p.values.get(f"valid_{metric}")
        if v is not None and reached(v, target, higher_is_better):
            return p
    return None


def final_value(valid: Sequence[ValidPoint], metric: str) -> float | None:
    rows = [p for p in valid if f"valid_{metric}" in p.values]
    return rows[-1].values[f"valid_{metric}"] if rows else None


def value_at(valid: Sequence[ValidPoint], metric: str, updates: int) -> float | None:
    for p in valid:
        if p.updates == updates and f"valid_{metric}" in p.values:
            return p.values[f"valid_{metric}"]
    return None


def target_of(finals: Sequence[float | None]) -> float:
    """fairseq's mean over the seeds of its last validation's metric."""
    vals = [v for v in finals if v is not None]
    if not vals or len(vals) != len(finals):
        raise ValueError("a fairseq run has no validation of the target metric: no target")
    return statistics.fmean(vals)


# ---- times to target as bounds, their ratio ---------------------------------------------------------

class Bound(NamedTuple):
    """A time to target: [lo, hi]; exact when equal, ``(wall, inf)`` when never reached."""
    lo: float
    hi: float

    @property
    def exact(self) -> bool:
        return self.lo == self.hi


def time_bound(hit: ValidPoint | None, wall: float) -> Bound:
    return Bound(hit.seconds, hit.seconds) if hit is not None else Bound(wall, math.inf)


def mean_bound(bounds: Sequence[Bound]) -> Bound:
    return Bound(statistics.fmean(b.lo for b in bounds), statistics.fmean(b.hi for b in bounds))


def ratio_bounds(fairseq: Bound, plugin: Bound) -> tuple[float, float]:
    """fairseq time / plugin time as [lo, hi]."""
    lo = fairseq.lo / plugin.hi if plugin.hi != math.inf else 0.0
    hi = fairseq.hi / plugin.lo if fairseq.hi != math.inf else math.inf
    return lo, hi


def format_ratio(lo: float, hi: float) -> str:
    if lo == 0.0 and hi == math.inf:
        return "n/a"
    if hi == math.inf:
        return f"> {lo:.2f}x"
    if lo == 0.0:
        return f"< {hi:.2f}x"
    return f"{lo:.2f}x"


def format_bound(b: Bound) -> str:
    return f"{b.lo:.1f}" if b.exact else f"> {b.lo:.1f} (not reached)"


# ---- seconds of audio per update, from the manifest ------------------------------------------------

def read_manifest_sizes(tsv: Path) -> list[int]:
    """Sample counts of a fairseq manifest (line 1: root; then path<TAB>frames)."""
    lines = tsv.read_text(encoding="utf-8").splitlines()[1:]
    return [int(line.split("\t")[1]) for line in lines if line.strip()]


class AudioPerUpdate(NamedTuple):
    seconds: float  # mean seconds of audio in one batch (after cropping, without padding)
    utterances: float  # mean utterances per batch
    batches: int  # batches per epoch


def audio_per_update(sizes: Sequence[int], max_tokens: int, crop: bool, max_sample_size: int | None = None,
                     min_sample_size: int | None = None, required_batch_size_multiple: int = 8,
                     keep_tail: bool = False, sample_rate: int = 16000) -> AudioPerUpdate:
    """What one update trains on, on average over an epoch, batching as the audio tasks do.

    Utterances under ``min_sample_size`` are dropped when the manifest is read; the rest are
    ordered longest first (by their length capped at ``max_sample_size``) and cut into batches
    by fairseq's own ``data_utils.batch_by_size`` (cost = longest x count <= ``max_tokens``).
    ``crop`` (pretraining, no padding): every utterance of a batch is cropped to the batch's
    shortest (at most ``max_sample_size``); else (fine-tuning, padded) each counts whole.
    ``keep_tail``: the plugin keeps the last batch of an epoch, which fairseq 0.12.3 drops when
    its size is not a multiple of ``required_batch_size_multiple``. Epoch order shuffles the
    batches, not their content, so the epoch mean is what an update trains on in expectation.
    """
    import numpy as np
    from fairseq.data import data_utils

    cap = max_sample_size or sys.maxsize
    arr = np.asarray([s for s in sizes if min_sample_size is None or s >= min_sample_size], dtype=np.int64)
    tokens = np.minimum(arr, cap) if crop else arr
    order = np.argsort(-tokens, kind="stable")
    batches = list(data_utils.batch_by_size(order, lambda i: int(tokens[i]), num_tokens_vec=tokens[order],
                                            max_tokens=max_tokens,
                                            required_batch_size_multiple=required_batch_size_multiple))
    batched = sum(len(b) for b in batches)
    if keep_tail and batched < len(order):
        batches.append(order[batched:])
    if not batches:
        raise ValueError("no batch: every utterance was filtered out")
    per_batch = [len(b) * int(tokens[b].min()) if crop else int(arr[b].sum()) for b in batches]
    return AudioPerUpdate(statistics.fmean(per_batch) / sample_rate,
                          statistics.fmean(len(b) for b in batches), len(batches))


# ---- one run's summary ----------------------------------------------------------------------------

def median_ups(train_inner: Sequence[dict[str, float]]) -> float | None:
    ups = [r["ups"] for r in train_inner if r.get("ups")]
    return statistics.median(ups) if ups else None


def summarize_run(cmp: Comparison, arm: str, seed: int, log: RunLog, planned: int, audio: AudioPerUpdate,
                  table_every: int) -> dict[str, Any]:
    ups = median_ups(log.train_inner)
    bsz = [r["bsz"] for r in log.train_inner if "bsz" in r]
    done = max([p.updates for p in log.valid] + [int(r.get("num_updates", 0)) for r in log.train_inner] + [0])
    marks = list(range(table_every, planned, table_every)) if table_every else []
    return {
        "arm": arm, "seed": seed, "updates": done, "planned_updates": planned,
        "wall_s": log.wall, "ups_median": ups,
        "updates_per_wall_s": done / log.wall if log.wall else None,
        "audio_s_per_update": audio.seconds,
        "audio_s_per_s": ups * audio.seconds if ups else None,
        "simulated_bsz": audio.utterances, "logged_bsz": statistics.fmean(bsz) if bsz else None,
        "peak_rss_mb": log.maxrss_kb / 1024.0 if log.maxrss_kb is not None else None,
        "at": {str(k): {m: value_at(log.valid, m, k) for m in cmp.shown} for k in marks},
        "final": {m: final_value(log.valid, m) for m in cmp.shown},
        "validations": [{"seconds": round(p.seconds, 3), "updates": p.updates,
                         **{m: p.values.get(f"valid_{m}") for m in cmp.shown}} for p in log.valid],
    }


def analyse(cmp: Comparison, runs: dict[tuple[str, int], dict[str, Any]], logs: dict[tuple[str, int], RunLog],
            seeds: Sequence[int]) -> dict[str, Any]:
    """Target, each run's time to it, the per-seed and mean ratios (with the reasons for bounds)."""
    target = target_of([runs[("fairseq", s)]["final"][cmp.metric] for s in seeds])
    bounds: dict[tuple[str, int], Bound] = {}
    notes: list[str] = []
    better = ">=" if cmp.higher_is_better else "<="
    for (arm, seed), run in runs.items():
        hit = time_to_target(logs[(arm, seed)].valid, cmp.metric, target, cmp.higher_is_better)
        bounds[(arm, seed)] = time_bound(hit, run["wall_s"])
        run["time_to_target_s"] = hit.seconds if hit else None
        run["updates_to_target"] = hit.updates if hit else None
        if hit is None:
            notes.append(f"{arm} seed {seed} never reached {cmp.metric} {better} {target:.4f} "
                         f"(final {run['final'][cmp.metric]} at update {run['updates']}): its time counts "
                         f"as more than its whole run, {run['wall_s']:.1f} s")
    per_seed = {}
    for s in seeds:
        lo, hi = ratio_bounds(bounds[("fairseq", s)], bounds[("plugin", s)])
        per_seed[str(s)] = format_ratio(lo, hi)
    means = {arm: mean_bound([bounds[(arm, s)] for s in seeds]) for arm in ARMS}
    lo, hi = ratio_bounds(means["fairseq"], means["plugin"])
    deltas = {str(s): _delta(runs[("plugin", s)]["final"][cmp.metric], runs[("fairseq", s)]["final"][cmp.metric])
              for s in seeds}
    return {"metric": cmp.metric, "higher_is_better": cmp.higher_is_better, "target": target,
            "per_seed_ratio": per_seed, "ratio": format_ratio(lo, hi),
            # [lo, hi]; hi null (unbounded) where a run never reached the target
            "mean_time_to_target_s": {a: [means[a].lo, None if means[a].hi == math.inf else means[a].hi]
                                      for a in ARMS},
            "final_delta_plugin_minus_fairseq": deltas, "notes": notes}


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# ---- tables ---------------------------------------------------------------------------------------

def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _metric_cell(cmp: Comparison, values: dict[str, float | None]) -> str:
    digits = 3 if cmp.higher_is_better else 1
    return "/".join(_fmt(values.get(m), digits) for m in cmp.shown)


def _mean(vals: Iterable[float | None]) -> float | None:
    vals = list(vals)
    return None if not vals or any(v is None for v in vals) else statistics.fmean(vals)


def table_markdown(cmp: Comparison, runs: dict[tuple[str, int], dict[str, Any]], result: dict[str, Any],
                   seeds: Sequence[int]) -> str:
    metric = "/".join(cmp.shown)
    any_run = next(iter(runs.values()))
    marks = list(any_run["at"])
    head = (["arm", "seed", "wall s", "updates/s", "audio s/s", "peak RSS MB"]
            + [f"{metric} @{k}" for k in marks] + [f"final {metric}", "time to target s", "updates to target"])
    out = [f"| {' | '.join(head)} |", "|" + "---|" * len(head)]
    for arm in ARMS:
        for s in seeds:
            r = runs[(arm, s)]
            tt = r["time_to_target_s"]
            cells = [arm, str(s), _fmt(r["wall_s"], 1), _fmt(r["ups_median"]), _fmt(r["audio_s_per_s"], 1),
                     _fmt(r["peak_rss_mb"], 0)]
            cells += [_metric_cell(cmp, r["at"][k]) for k in marks]
            cells += [_metric_cell(cmp, r["final"]),
                      _fmt(tt, 1) if tt is not None else f"not reached (> {r['wall_s']:.1f})",
                      _fmt(r["updates_to_target"])]
            out.append(f"| {' | '.join(cells)} |")
        rs = [runs[(arm, s)] for s in seeds]
        lo, hi = result["mean_time_to_target_s"][arm]
        hi = math.inf if hi is None else hi
        cells = [f"**{arm} mean**", "", _fmt(_mean(r["wall_s"] for r in rs), 1),
                 _fmt(_mean(r["ups_median"] for r in rs)), _fmt(_mean(r["audio_s_per_s"] for r in rs), 1),
                 _fmt(_mean(r["peak_rss_mb"] for r in rs), 0)]
        cells += [_metric_cell(cmp, {m: _mean(r["at"][k][m] for r in rs) for m in cmp.shown}) for k in marks]
        cells += [_metric_cell(cmp, {m: _mean(r["final"][m] for r in rs) for m in cmp.shown}),
                  format_bound(Bound(lo, hi)), ""]
        out.append(f"| {' | '.join(cells)} |")
    return "\n".join(out)


# ---- running ----------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work).resolve()
        self.logs = self.work / "logs"
        self.env = {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        self.commands: list[str] = []

    # -- data
    def corpus(self) -> tuple[Path, Path]:
        a = self.args
        corpus = self.work / "corpus"
        if not a.report_only:
            run_step("synth", ["python", "-m", "examples.demo.synth", "--out", str(corpus),
                               "--seed", str(a.corpus_seed),
                               "--unlabeled-hours", f"{a.unlabeled_hours:g}", "--labeled-minutes",
                               f"{a.labeled_minutes:g}", "--dev-minutes", f"{a.dev_minutes:g}", "--test-minutes", "1",
                               "--jobs", str(a.synth_jobs)], self.logs, env=self.env)
        libri = corpus / "LibriSpeech"
        pre, lab = self.work / "manifests" / "pretrain", self.work / "manifests" / "labeled"
        if not a.report_only:
            run_step("manifest_pretrain", ["w2v2-manifest", str(libri / "train-unlabeled"), "--dest", str(pre),
                                           "--valid-percent", f"{a.valid_percent:g}", "--labels", "none",
                                           "--no-progress"], self.logs)
            for split, folder in (("train", split_name(a.labeled_minutes)), ("dev", "dev")):
                run_step(f"manifest_{split}", ["w2v2-manifest", str(libri / folder), "--dest", str(lab),
                                               "--valid-percent", "0", "--split-name", split, "--no-progress"],
                         self.logs)
        return pre, lab

    # -- overrides
    def shared(self, cmp: Comparison, seed: int, data: Path, run_dir: Path, pretrained: Path | None) -> list[str]:
        a = self.args
        updates = a.updates if cmp is PRETRAINING else a.ft_updates
        out = [*run_overrides(data, seed, updates, max_tokens=a.max_tokens, num_workers=a.num_workers,
                              validate_every=a.validate_every, cpu=a.device == "cpu"),
               f"checkpoint.save_dir={run_dir / 'ckpt'}", f"hydra.run.dir={run_dir / 'hydra'}",
               "checkpoint.save_interval=1000000"]
        if cmp is PRETRAINING:
            # Saved once, at the end (after the last validation): the fine-tuning arms start from
            # fairseq's. Every pretraining arm saves, so the write costs them alike.
            out += ["dataset.valid_subset=valid", "optimization.clip_norm=5",
                    f"lr_scheduler.warmup_updates={max(1, min(300, updates // 8))}",
                    f"++lr_scheduler.total_num_update={3 * updates}", "checkpoint.save_interval_updates=0"]
        else:
            assert pretrained is not None
            out += ["dataset.valid_subset=dev", f"model.w2v_path={pretrained}",
                    f"model.freeze_finetune_updates={min(50, updates // 8)}", "checkpoint.no_save=true",
                    f"model.mask_channel_prob={FAIRSEQ_CHANNEL_MASK_PROB}"]
        return out

    def plugin_only(self, cmp: Comparison) -> list[str]:
        return plugin_only_fields(self.args, cmp)

    def arm_overrides(self, cmp: Comparison, arm: str) -> list[str]:
        out = name_overrides(cmp.names[arm])
        if arm == "plugin":
            out += [f"common.user_dir={USER_DIR}", *self.plugin_only(cmp)]
        return out

    def run_dir(self, cmp: Comparison, arm: str, seed: int) -> Path:
        return self.work / "runs" / cmp.key / f"{arm}_seed{seed}"

    def log_name(self, cmp: Comparison, arm: str, seed: int) -> str:
        return f"{cmp.key}_{arm}_seed{seed}"

    def train(self, cmp: Comparison, arm: str, seed: int, data: Path, pretrained: Path | None = None) -> None:
        updates = self.args.updates if cmp is PRETRAINING else self.args.ft_updates
        run_dir = self.run_dir(cmp, arm, seed)
        if run_dir.exists():
            shutil.rmtree(run_dir)  # fairseq would resume from an old checkpoint_last.pt
        trainer = resolve(["fairseq-hydra-train"])[0]
        argv = ["python", str(Path(__file__).resolve()), "--timed-child", trainer,
                "--config-dir", str(cmp.yaml.parent), "--config-name", cmp.yaml.stem,
                *self.shared(cmp, seed, data, run_dir, pretrained), *self.arm_overrides(cmp, arm)]
        self.commands.append(" ".join(argv))
        name = self.log_name(cmp, arm, seed)
        run_step(name, argv, self.logs, total_updates=updates, postfix_keys=tuple(cmp.shown))
        log = read_run_log(self.logs / f"{name}.log")
        done = max([int(r.get("num_updates", 0)) for r in log.train_inner] + [p.updates for p in log.valid] + [0])
        if done < updates:
            raise StepError(f"{name}: stopped at update {done} of {updates}; the comparison needs every run complete")

    def pretrained(self, pre: Path, seeds: Sequence[int]) -> Path:
        """The one pretrained file both fine-tuning arms start from."""
        if self.args.pretrained:
            return Path(self.args.pretrained).resolve()
        path = self.run_dir(PRETRAINING, "fairseq", seeds[0]) / "ckpt" / "checkpoint_last.pt"
        if not path.exists() and not self.args.report_only:
            print(f"fine-tuning needs {path}: running fairseq's pretraining of seed {seeds[0]} first")
            self.train(PRETRAINING, "fairseq", seeds[0], pre)
        return path

    def compare(self, cmp: Comparison, data: Path, audio: dict[str, AudioPerUpdate],
                pretrained: Path | None = None) -> dict[str, Any]:
        a = self.args
        seeds = a.seeds
        updates = a.updates if cmp is PRETRAINING else a.ft_updates
        check_fields(cmp, self.shared(cmp, seeds[0], data, self.work, pretrained or self.work), self.plugin_only(cmp))
        if not a.report_only:
            for i, seed in enumerate(seeds):
                # Order alternates with the seed (fairseq first, then plugin first, ...), so that
                # a drift of the machine's speed does not favour one arm.
                for arm in (ARMS if i % 2 == 0 else ARMS[::-1]):
                    self.train(cmp, arm, seed, data, pretrained)
        paths = {(arm, s): self.logs / f"{self.log_name(cmp, arm, s)}.log" for arm in ARMS for s in seeds}
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise StepError(f"{cmp.key}: no log {', '.join(missing)} (run without --report-only first)")
        logs = {k: read_run_log(p) for k, p in paths.items()}
        runs = {k: summarize_run(cmp, k[0], k[1], log, updates, audio[k[0]], a.table_every) for k, log in logs.items()}
        result = analyse(cmp, runs, logs, seeds)
        result["runs"] = [runs[(arm, s)] for arm in ARMS for s in seeds]
        result["table"] = table_markdown(cmp, runs, result, seeds)
        for arm in ARMS:
            logged = [runs[(arm, s)]["logged_bsz"] for s in seeds]
            sim = audio[arm].utterances
            if any(b is not None and abs(b - sim) > 0.1 * sim for b in logged):
                result["notes"].append(f"{arm}: logged utterances per batch {logged} differ from the simulated "
                                       f"{sim:.2f} by more than 10%: its audio s/s is approximate")
        return result


def audio_rates(cmp: Comparison, data: Path, args: argparse.Namespace) -> dict[str, AudioPerUpdate]:
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(cmp.yaml)
    task = cfg.task
    sizes = read_manifest_sizes(data / "train.tsv")
    crop = cmp is PRETRAINING  # fine-tuning pads (labels)
    return {arm: audio_per_update(sizes, args.max_tokens, crop, task.get("max_sample_size"),
                                  task.get("min_sample_size"), BATCH_SIZE_MULTIPLE, keep_tail=arm == "plugin")
            for arm in ARMS}


def plugin_only_fields(args: argparse.Namespace, cmp: Comparison) -> list[str]:
    """The plugin arm's own fields: its precision, for fine-tuning the frozen-feature cache, and
    any ``--plugin-override``."""
    out = [f"++task.precision={args.plugin_precision}"]
    if cmp is FINETUNING and args.ft_feature_cache_mb > 0:
        out.append(f"++model.feature_cache_mb={args.ft_feature_cache_mb:g}")
    return out + list(args.plugin_override)


def resolve_precision(requested: str, device: str) -> str:
    """``auto``: bf16 where torch has bf16 kernels for the device (a bf16 GPU; an AVX-512 CPU),
    else fp32: on an AVX2-only CPU torch's bf16 falls back to loops many times slower than fp32."""
    if requested != "auto":
        return requested
    import torch

    from w2v2_plugin.precision import cpu_has_bf16_kernels

    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16_kernels() else "fp32"


def settings_lines(args: argparse.Namespace, audio: dict[str, dict[str, AudioPerUpdate]]) -> list[str]:
    out = [f"corpus: espeak-ng, {args.unlabeled_hours:g} h unlabeled ({args.valid_percent:g} held out for "
           f"validation), {args.labeled_minutes:g} min labeled, {args.dev_minutes:g} min dev (held-out speakers), "
           f"corpus seed {args.corpus_seed}",
           f"shared: lr 1e-3, dataset.max_tokens={args.max_tokens}, num_workers {args.num_workers}, validation every "
           f"{args.validate_every} updates; pretraining {args.updates} updates (clip 5, warm-up "
           f"{max(1, min(300, args.updates // 8))}, polynomial decay over {3 * args.updates} updates, so the lr is "
           f"still ~2/3 of its peak at the end: a slice of a longer run), fine-tuning {args.ft_updates} updates "
           f"(the yaml's tri-stage schedule over them, encoder frozen for {min(50, args.ft_updates // 8)}, "
           f"mask_channel_prob {FAIRSEQ_CHANNEL_MASK_PROB}: the yaml's 0.05 crashes fairseq's channel masking)",
           f"plugin-only: pretraining {' '.join(plugin_only_fields(args, PRETRAINING))}, fine-tuning "
           f"{' '.join(plugin_only_fields(args, FINETUNING))}; "
           f"common.user_dir for the plugin arm only; seeds {' '.join(map(str, args.seeds))}, arms one after the "
           "other, order alternating with the seed"]
    for key, per_arm in audio.items():
        a = per_arm["fairseq"]
        p = per_arm["plugin"]
        same = "the same in both arms" if p == a else f"plugin {p.seconds:.2f} s, {p.batches} batches"
        out.append(f"{key}: {a.seconds:.2f} s of audio per update ({a.utterances:.2f} utterances, {a.batches} "
                   f"batches per epoch; {same}; dataset.required_batch_size_multiple={BATCH_SIZE_MULTIPLE})")
    return out


def write_report(out_dir: Path, doc: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "time_to_accuracy.json", out_dir / "time_to_accuracy.md"
    for path, text in ((js, json.dumps(doc, indent=1, allow_nan=False) + "\n"), (md, markdown + "\n")):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return md, js


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="results/time_to_accuracy",
                   help="corpus, manifests, runs, logs (default: %(default)s)")
    p.add_argument("--out", default=None, help="report folder (default: WORK/report)")
    p.add_argument("--only", choices=["pretraining", "finetuning"], default=None)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="common.seed of the runs (default: 1 2)")
    p.add_argument("--updates", type=int, default=1000, help="pretraining updates (default: %(default)s)")
    p.add_argument("--ft-updates", type=int, default=1500, help="fine-tuning updates (default: %(default)s)")
    p.add_argument("--unlabeled-hours", type=float, default=3.0, help="pretraining audio (default: %(default)s)")
    p.add_argument("--labeled-minutes", type=float, default=60.0,
                   help="fine-tuning labels, e.g. 10 or 60 (default: %(default)s)")
    p.add_argument("--dev-minutes", type=float, default=5.0, help="fine-tuning dev audio (default: %(default)s)")
    p.add_argument("--valid-percent", type=float, default=0.03,
                   help="fraction of the pretraining audio held out for validation (default: %(default)s)")
    p.add_argument("--corpus-seed", type=int, default=0, help="seed of the synthesized corpus (default: %(default)s)")
    p.add_argument("--synth-jobs", type=int, default=2, help="processes synthesizing the corpus (default: %(default)s)")
    p.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="dataset.max_tokens of both comparisons")
    p.add_argument("--num-workers", type=int, default=NUM_WORKERS, help="dataset.num_workers of every run")
    p.add_argument("--validate-every", type=int, default=VALIDATE_EVERY,
                   help="dataset.validate_interval_updates (default: %(default)s)")
    p.add_argument("--table-every", type=int, default=250, help="the metric's columns every N updates (default: 250)")
    p.add_argument("--plugin-precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="task.precision of the plugin arm; auto: bf16 where torch has bf16 kernels for the "
                        "device (AVX-512 CPU, bf16 GPU), else fp32 (default: %(default)s)")
    p.add_argument("--ft-feature-cache-mb", type=float, default=1024,
                   help="model.feature_cache_mb of the plugin's fine-tuning arm (0: off; default: %(default)s)")
    p.add_argument("--plugin-override", action="append", default=[], metavar="KEY=VALUE",
                   help="another plugin-only field of the plugin arm (e.g. ++task.FIELD=...); refused if "
                        "fairseq's task/model/criterion accepts it too (repeatable)")
    p.add_argument("--pretrained", default=None,
                   help="fine-tuning: start both arms from this fairseq wav2vec2 checkpoint (default: fairseq's "
                        "pretraining checkpoint of the first seed, run first if missing)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--report-only", action="store_true", help="no runs: re-read the logs in WORK and report")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.plugin_precision = resolve_precision(args.plugin_precision, args.device)
    for o in args.plugin_override:
        if "=" not in o:
            raise SystemExit(f"--plugin-override {o!r}: expected KEY=VALUE")
    started = time.time()
    bench = Bench(args)
    wanted = [COMPARISONS[args.only]] if args.only else [PRETRAINING, FINETUNING]
    try:
        pre, lab = bench.corpus()
        data = {"pretraining": pre, "finetuning": lab}
        audio = {c.key: audio_rates(c, data[c.key], args) for c in wanted}
        results: dict[str, dict[str, Any]] = {}
        for cmp in wanted:
            pretrained = bench.pretrained(pre, args.seeds) if cmp is FINETUNING else None
            results[cmp.key] = bench.compare(cmp, data[cmp.key], audio[cmp.key], pretrained)
            if pretrained is not None:
                log = bench.logs / f"{bench.log_name(PRETRAINING, 'fairseq', args.seeds[0])}.log"
                made = (f", {completed_updates(log)} updates of fairseq's pretraining (log {log})"
                        if not args.pretrained and log.exists() else "")
                results[cmp.key]["pretrained"] = f"{pretrained}{made}"

    except StepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    machine = machine_info(args.device)
    settings = settings_lines(args, audio)
    lines = ["# Time to accuracy: fairseq-hydra-train, fairseq built-in vs the plugin", ""]
    lines += [f"- {s}" for s in settings]
    for cmp in wanted:
        r = results[cmp.key]
        better = "higher" if cmp.higher_is_better else "lower"
        lines += ["", f"## {cmp.label}: target {cmp.metric} {r['target']:.4f} ({better} is better; fairseq's mean "
                      f"over seeds {' '.join(map(str, args.seeds))} at its last validation)", "", r["table"], ""]
        lines += ["- per-seed ratio (fairseq / plugin time to target): "
                  + ", ".join(f"seed {s} {v}" for s, v in r["per_seed_ratio"].items()),
                  "- final " + cmp.metric + ", plugin - fairseq: "
                  + ", ".join(f"seed {s} {_fmt(d, 4)}" for s, d in r["final_delta_plugin_minus_fairseq"].items())]
        if "pretrained" in r:
            lines.append(f"- both arms start from {r['pretrained']}")
        lines += [f"- note: {n}" for n in r["notes"]]
    lines += ["", f"command: {command_line()}",
              f"machine: {machine.cpu_model}, {machine.cores} cores, torch {machine.torch_version}, device "
              f"{machine.device_name}, load {machine.load}", f"date: {machine.date}"]
    ratio_lines = [f"RATIO time-to-accuracy {c.label}: {results[c.key]['ratio']}" for c in wanted]
    markdown = "\n".join(lines + [""] + ratio_lines)
    doc = {"title": "time to accuracy", "command": command_line(), "machine": machine._asdict(),
           "settings": settings, "args": vars(args), "commands": bench.commands,
           "audio_per_update": {k: {arm: v._asdict() for arm, v in per.items()} for k, per in audio.items()},
           "comparisons": results, "ratios": {c.key: results[c.key]["ratio"] for c in wanted}}
    md, js = write_report(Path(args.out) if args.out else bench.work / "report", doc, markdown)
    print()
    print("\n".join(lines))
    print()
    print(f"time-to-accuracy: {', '.join(c.label for c in wanted)} x {len(args.seeds)} seed(s) x 2 arms done in "
          f"{(time.time() - started) / 60:.1f} min; report {md}, {js}")
    for line in ratio_lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
