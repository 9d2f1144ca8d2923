"""The pure parts of benchmarks/bench_time_to_accuracy.py on fixture log lines (no training):
log parsing into timed validations, time to target, the target, ratio bounds and their
formatting, seconds of audio per update from manifest sizes, and the shared-field check."""
from __future__ import annotations

import datetime
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_time_to_accuracy as tta  # noqa: E402

START = datetime.datetime(2026, 12, 1, 22, 31, 0)  # local time, as the logging module writes it


def stamp(seconds: float) -> str:
    t = START + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%d %H:%M:%S,") + f"{t.microsecond // 1000:03d}"


def line(seconds: float, kind: str, record: dict) -> str:
    return f"[{stamp(seconds)}][{kind}][INFO] - {json.dumps({k: str(v) for k, v in record.items()})}"


def pretraining_log(accs: dict, ups=(2.0, 2.5, 3.0), end: float = 100.0, rss_kb: int = 3 * 1024 * 1024) -> list:
    t0 = START.timestamp()
    lines = [f"{tta._MARK} start {t0:.6f}",
             f"[{stamp(4.2)}][fairseq_cli.train][INFO] - task: W2v2PretrainingTask",
             "some unrelated stderr line"]
    for i, u in enumerate(ups):
        lines.append(line(10.0 + i, "train_inner", {"epoch": 1, "loss": 6.5, "accuracy": 0.1, "ups": u,
                                                    "bsz": 6.0, "num_updates": 10 * (i + 1)}))
    for seconds, (updates, acc) in accs.items():
        lines.append(line(seconds, "valid", {"epoch": 1, "valid_loss": 6.1, "valid_accuracy": acc,
                                             "valid_num_updates": updates}))
    lines.append(f"{tta._MARK} end {t0 + end:.6f} rc 0 maxrss_kb {rss_kb}")
    return lines


def test_log_parsing_times_each_validation_from_the_process_start() -> None:
    log = tta.parse_run_log(pretraining_log({30.25: (50, 0.12), 61.5: (100, 0.2)}))
    assert log.returncode == 0 and log.maxrss_kb == 3 * 1024 * 1024
    assert log.wall == pytest.approx(100.0)
    assert [(p.updates, round(p.seconds, 3)) for p in log.valid] == [(50, 30.25), (100, 61.5)]
    assert log.valid[1].values["valid_accuracy"] == pytest.approx(0.2)
    assert tta.median_ups(log.train_inner) == pytest.approx(2.5)
    assert tta.value_at(log.valid, "accuracy", 50) == pytest.approx(0.12)
    assert tta.value_at(log.valid, "accuracy", 75) is None
    assert tta.final_value(log.valid, "accuracy") == pytest.approx(0.2)


def test_dev_subset_records_are_validations_with_uer_and_wer() -> None:
    t0 = START.timestamp()
    lines = [f"{tta._MARK} start {t0:.6f}",
             line(20.0, "dev", {"epoch": 1, "dev_loss": 300, "dev_uer": 80.5, "dev_wer": 100.0, "dev_num_updates": 50}),
             line(40.0, "dev", {"epoch": 1, "dev_loss": 200, "dev_uer": 55.0, "dev_wer": 97.0, "dev_num_updates": 100})]
    log = tta.parse_run_log(lines)
    assert [p.updates for p in log.valid] == [50, 100]
    hit = tta.time_to_target(log.valid, "uer", 60.0, higher_is_better=False)
    assert hit is not None and hit.updates == 100 and hit.seconds == pytest.approx(40.0)
    assert tta.time_to_target(log.valid, "uer", 50.0, higher_is_better=False) is None
    assert log.wall is None  # no end marker: the run did not finish


def test_validation_before_the_start_marker_is_an_error() -> None:
    with pytest.raises(ValueError):
        tta.parse_run_log([line(5.0, "valid", {"valid_accuracy": 0.1, "valid_num_updates": 50})])


def test_time_to_target_is_the_first_validation_at_or_past_it() -> None:
    log = tta.parse_run_log(pretraining_log({30.0: (50, 0.10), 60.0: (100, 0.25), 90.0: (150, 0.24)}))
    hit = tta.time_to_target(log.valid, "accuracy", 0.25, higher_is_better=True)
    assert hit is not None and (hit.updates, hit.seconds) == (100, pytest.approx(60.0))  # at the target counts
    assert tta.time_to_target(log.valid, "accuracy", 0.251, higher_is_better=True) is None


def test_target_is_fairseqs_mean_final() -> None:
    assert tta.target_of([0.24, 0.25]) == pytest.approx(0.245)
    with pytest.raises(ValueError):
        tta.target_of([0.24, None])


def test_ratio_bounds_and_formatting() -> None:
    exact = tta.time_bound(tta.ValidPoint(50.0, 100, {}), wall=80.0)
    missed = tta.time_bound(None, wall=80.0)
    assert exact == tta.Bound(50.0, 50.0) and missed == tta.Bound(80.0, math.inf)
    assert tta.format_ratio(*tta.ratio_bounds(tta.Bound(150.0, 150.0), tta.Bound(100.0, 100.0))) == "1.50x"
    # fairseq never reached it within its 200 s: its time is more than that
    assert tta.format_ratio(*tta.ratio_bounds(tta.Bound(200.0, math.inf), tta.Bound(100.0, 100.0))) == "> 2.00x"
    # the plugin never reached it within its 300 s
    assert tta.format_ratio(*tta.ratio_bounds(tta.Bound(150.0, 150.0), tta.Bound(300.0, math.inf))) == "< 0.50x"
    assert tta.format_ratio(*tta.ratio_bounds(tta.Bound(200.0, math.inf), tta.Bound(300.0, math.inf))) == "n/a"
    # mean over seeds: one fairseq seed censored -> a lower bound on the mean ratio
    f = tta.mean_bound([tta.Bound(100.0, 100.0), tta.Bound(200.0, math.inf)])
    p = tta.mean_bound([tta.Bound(50.0, 50.0), tta.Bound(70.0, 70.0)])
    assert f.lo == pytest.approx(150.0) and f.hi == math.inf
    assert tta.format_ratio(*tta.ratio_bounds(f, p)) == "> 2.50x"
    assert tta.format_bound(tta.Bound(12.34, 12.34)) == "12.3"
    assert tta.format_bound(tta.Bound(80.0, math.inf)).startswith("> 80.0")


def test_audio_per_update_crops_to_the_shortest_of_each_batch() -> None:
    sizes = [80000, 64000, 48000, 8000, 4000]  # 4000 < min_sample_size: dropped at load
    crop = tta.audio_per_update(sizes, max_tokens=320000, crop=True, max_sample_size=64000,
                                min_sample_size=8000, required_batch_size_multiple=1)
    assert crop.batches == 1 and crop.utterances == 4
    assert crop.seconds == pytest.approx(4 * 8000 / 16000)  # all cropped to the shortest
    whole = tta.audio_per_update(sizes, max_tokens=320000, crop=False, min_sample_size=8000,
                                 required_batch_size_multiple=1)
    assert whole.batches == 1 and whole.seconds == pytest.approx(sum(sizes[:4]) / 16000)  # padded, not cropped


def test_audio_per_update_fairseq_drops_the_odd_tail_the_plugin_keeps_it() -> None:
    sizes = [64000] * 12  # 5 per batch fit in 320000: batches 5, 5 and a tail of 2
    fairseq = tta.audio_per_update(sizes, 320000, crop=True, max_sample_size=64000, required_batch_size_multiple=8)
    plugin = tta.audio_per_update(sizes, 320000, crop=True, max_sample_size=64000, required_batch_size_multiple=8,
                                  keep_tail=True)
    assert plugin.batches == 3 and plugin.seconds == pytest.approx((20 + 20 + 8) / 3)
    assert fairseq.batches == 2 and fairseq.seconds == pytest.approx(20.0)  # fairseq 0.12.3 drops the tail


def test_manifest_sizes(tmp_path: Path) -> None:
    tsv = tmp_path / "train.tsv"
    tsv.write_text("/root\na/1.flac\t16000\nb/2.flac\t32000\n")
    assert tta.read_manifest_sizes(tsv) == [16000, 32000]


def test_field_problems() -> None:
    fairseq = {"task": {"data", "max_sample_size"}, "model": {"encoder_layers"}, "criterion": {"infonce"}}
    plugin = {"task": {"data", "max_sample_size", "precision", "check_audio"}, "model": {"encoder_layers"},
              "criterion": {"infonce"}}
    shared = {"task": ["data", "max_sample_size"], "model": ["encoder_layers"], "criterion": ["infonce"]}
    assert tta.field_problems(shared, ["task.precision"], fairseq, plugin) == []
    bad = tta.field_problems(dict(shared, task=["data", "check_audio"]), ["task.max_sample_size", "task.nope"],
                             fairseq, plugin)
    assert any(p.startswith("task.check_audio") and "fairseq" in p for p in bad)
    assert any(p.startswith("task.max_sample_size") and "shared field" in p for p in bad)
    assert any(p.startswith("task.nope") for p in bad)


def test_shipped_yamls_have_no_plugin_only_fields() -> None:
    """Every field the tiny_cpu yamls set is accepted by fairseq's built-in task/model/criterion."""
    for cmp in (tta.PRETRAINING, tta.FINETUNING):
        tta.check_fields(cmp, ["task.data=/d", "model.freeze_finetune_updates=2"] if cmp is tta.FINETUNING else [],
                         ["++task.precision=bf16"])
