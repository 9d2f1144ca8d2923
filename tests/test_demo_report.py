"""The demo's glue, without training: fairseq json log parsing, the results table and
files, budget scaling, and how printed commands resolve to executables."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from examples.demo.logs import completed_updates, parse_line, read_log
from examples.demo.report import Row, improvements, summary_sentence, table_markdown, write_results
from examples.demo.run import DEFAULT, QUICK, Demo, scaled
from examples.demo.steps import StepError, resolve, run_step

TRAIN = ('[2026-11-27 06:25:57,070][train_inner][INFO] - {"epoch": 1, "loss": "7.779", '
         '"accuracy": "0.02516", "code_perplexity": "83.1", "num_updates": "10", "lr": "5e-05"}')
DEV = ('[2026-11-27 06:40:50,102][dev][INFO] - {"epoch": 1, "dev_loss": "642.2", "dev_wer": "100", '
       '"dev_uer": "215.7", "dev_num_updates": "100"}')
OTHER = "[2026-11-27 06:40:50,102][fairseq_cli.train][INFO] - end of epoch 1 (average epoch stats below)"


def test_parse_lines() -> None:
    kind, rec = parse_line(TRAIN)
    assert kind == "train_inner" and rec["accuracy"] == pytest.approx(0.02516) and rec["num_updates"] == 10
    # Validation lines are tagged with the subset name; they come back as valid_* records.
    kind, rec = parse_line(DEV)
    assert kind == "valid" and rec["valid_wer"] == 100 and rec["num_updates"] == 100
    assert parse_line(OTHER) is None
    assert parse_line("[x][train_inner][INFO] - {not json}") is None


def test_read_log_series(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    log.write_text("\n".join([OTHER, TRAIN, DEV, TRAIN.replace('"10"', '"20"').replace("0.02516", "0.05")]))
    c = read_log(log)
    assert c.series("train_inner", "accuracy") == ([10.0, 20.0], [pytest.approx(0.02516), 0.05])
    assert c.series("valid", "valid_wer") == ([100.0], [100.0])
    assert c.last("train_inner", "accuracy") == 0.05
    assert read_log(tmp_path / "missing.log").train_inner == []


def test_table_and_files(tmp_path: Path) -> None:
    rows = [Row("scratch", "viterbi", 91.6, 48.0, 93.4, None, None),
            Row("pretrained", "4-gram", 58.3, 39.4, 60.2, 1.88, 0.09)]
    md = table_markdown(rows, 10)
    assert "| pretrained | 4-gram | 60.2 | 58.3 | 39.4 | 1.88 / 0.09 | 9.1 / 15.6 (BASE, 10 min) |" in md
    assert "| scratch | viterbi | 93.4 | 91.6 | 48.0 | - | n/a" in md
    assert "24.5 / 29.7 (BASE, 1 h)" in table_markdown([Row("pretrained", "viterbi", 1, 1, 1, None, None)], 60)
    md_path, json_path = write_results(tmp_path / "r", rows, 10, {"k": 1}, ["w2v2-lm build x"])
    assert md in md_path.read_text() and "w2v2-lm build x" in md_path.read_text()
    assert json.loads(json_path.read_text())["rows"][1]["test_wer"] == 58.3
    assert not list((tmp_path / "r").glob("*.part"))


def test_budget_scaling() -> None:
    p = scaled(DEFAULT, 2 * DEFAULT.budget_minutes, None)
    assert (p.pretrain_updates, p.finetune_updates) == (2 * DEFAULT.pretrain_updates, 2 * DEFAULT.finetune_updates)
    assert scaled(QUICK, None, None) == QUICK
    h = scaled(DEFAULT, None, 60)
    assert h.labeled_minutes == 60 and h.synth_args[h.synth_args.index("--labeled-minutes") + 1] == "60"
    assert DEFAULT.synth_args[DEFAULT.synth_args.index("--labeled-minutes") + 1] == "10"  # preset untouched


def test_resolve_and_failed_step(tmp_path: Path) -> None:
    assert resolve(["python", "-c", "1"])[0] == sys.executable
    argv = resolve(["w2v2-infer", "--help"])
    assert argv[-1] == "--help" and ("w2v2-infer" in argv[0] or argv[1:3] == ["-m", "w2v2_plugin.cli.infer"])
    shown: list[str] = []
    with pytest.raises(StepError, match=r"step 'boom' failed \(exit 3\).*boom\.log"):
        run_step("boom", ["python", "-c", "print('about to fail'); raise SystemExit(3)"], tmp_path,
                 show=shown.append)
    assert shown[0].startswith("+ python -c") and any("about to fail" in s for s in shown)
    assert "about to fail" in (tmp_path / "boom.log").read_text()


EPOCH_END = ('[2026-11-27 06:41:00,000][train][INFO] - {"epoch": 3, "train_loss": "5.1", '
             '"train_num_updates": "37"}')


def test_completed_updates(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    log.write_text("\n".join([TRAIN, TRAIN.replace('"10"', '"30"')]))
    assert completed_updates(log) == 30  # no epoch-end record: the last train_inner
    log.write_text("\n".join([TRAIN, EPOCH_END]))
    assert completed_updates(log) == 37  # fairseq's record when it stops
    assert completed_updates(tmp_path / "missing.log") == 0


def _rows() -> list[Row]:
    return [Row("scratch", "viterbi", 90.4, 49.0, 91.0, None, None),
            Row("scratch", "4-gram", 71.2, 48.5, None, 1.5, 0.2),
            Row("pretrained", "viterbi", 81.9, 45.3, 80.0, None, None),
            Row("pretrained", "4-gram", 66.9, 44.0, 69.0, 1.2, 0.1)]


def test_improvement_rows_and_summary() -> None:
    imp = improvements(_rows())
    assert imp["viterbi"] == {"dev_wer": pytest.approx(11.0), "test_wer": pytest.approx(8.5),
                              "test_cer": pytest.approx(3.7)}
    assert imp["4-gram"]["dev_wer"] is None and imp["4-gram"]["test_wer"] == pytest.approx(4.3)
    md = table_markdown(_rows(), 10)
    assert "| **improvement** (scratch - pretrained) | viterbi | +11.0 | **+8.5** | **+3.7** |" in md
    assert "| **improvement** (scratch - pretrained) | 4-gram | - | **+4.3** | **+4.5** |" in md
    text = summary_sentence(_rows())
    assert "pretraining bought +8.5 WER / +3.7 CER points with viterbi and +4.3 WER / +4.5 CER" in text
    assert "4-gram LM bought +19.2 WER points for the scratch model and +15.0 WER points for the pretrained" in text
    # Only one model: nothing to compare, said plainly.
    assert improvements(_rows()[:2]) == {}
    assert "pretraining bought nothing measurable" in summary_sentence(_rows()[:2])


def test_results_record_completed_updates(tmp_path: Path) -> None:
    ctx = {"updates": {"pretrain": {"planned": 40, "completed": 40}}}
    md_path, json_path = write_results(tmp_path, _rows(), 10, ctx, [], summary_sentence(_rows()))
    assert "Updates completed: pretrain 40 / 40." in md_path.read_text()
    saved = json.loads(json_path.read_text())
    assert saved["improvement"]["viterbi"]["test_wer"] == pytest.approx(8.5)
    assert saved["summary"].startswith("On test, pretraining bought")


def test_training_cut_short_stops_the_demo(tmp_path: Path) -> None:
    """An arm stopped by its wall-clock cap before its planned updates is an error, not a row."""
    demo = Demo(QUICK, tmp_path, seed=0, keep=False)
    script = f"print({EPOCH_END!r})"
    with pytest.raises(StepError, match=r"stopped training at update 37 of 40.*equal updates"):
        demo.train("pretrain", ["python", "-c", script], updates=40, keys=())
    assert demo.updates["pretrain"] == {"planned": 40, "completed": 37}
    demo.train("pretrain", ["python", "-c", script], updates=37, keys=())  # all done: no error


def test_seed_reaches_every_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--seed is the corpus seed and each training's common.seed; the precision is pinned."""
    calls: list[list[str]] = []
    monkeypatch.setattr(Demo, "train", lambda self, name, argv, updates, keys: calls.append(argv))
    demo = Demo(DEFAULT, tmp_path, seed=7, keep=False)
    demo.pretrain(tmp_path / "m")
    for name in ("scratch", "pretrained"):
        demo.finetune(tmp_path / "l", tmp_path / "p.pt", name, scratch=name == "scratch")
    assert len(calls) == 3
    for argv in calls:
        assert "common.seed=7" in argv and "++task.precision=fp32" in argv
        assert "common.fp16=false" in argv and "++common.bf16=false" in argv
    # The scratch arm trains its encoder from the first update; only the starting weights differ.
    assert "model.feature_grad_mult=1.0" in calls[1] and "model.freeze_finetune_updates=0" in calls[1]
    assert [a for a in calls[1] if "lr=" in a] == [a for a in calls[2] if "lr=" in a]
