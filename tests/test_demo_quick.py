"""Acceptance: the demo's quick mode runs the whole recipe end to end with the plugin's own
commands (synthesis, manifests, pretraining, two fine-tunings, 4-gram LM, tuning, decoding)
and leaves a results table, its json and the curves PNG. Minutes on 2 cores: marked slow."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path: Path, have_espeak: bool) -> None:
    if not have_espeak:
        pytest.skip("espeak-ng/sox not installed (make sysdeps)")
    from w2v2_plugin.lm.kenlm_tools import have_kenlm_tools
    if not have_kenlm_tools():
        pytest.skip("KenLM's lmplz/build_binary not built (make kenlm)")
    out = tmp_path / "demo"
    # Fewer updates than --quick's default: the point here is that every step connects.
    proc = subprocess.run([sys.executable, "-m", "examples.demo.run", "--quick", "--budget-minutes", "2",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # Every step was printed as a copyable command before it ran.
    printed = [line[2:].split()[0] for line in proc.stdout.splitlines() if line.startswith("+ ")]
    for tool in ("w2v2-manifest", "fairseq-hydra-train", "w2v2-lm", "w2v2-infer"):
        assert tool in printed
    assert printed.count("fairseq-hydra-train") == 3  # pretraining + 2 fine-tunings

    results = json.loads((out / "results" / "results.json").read_text())
    rows = {(r["model"], r["decoder"]): r for r in results["rows"]}
    assert set(rows) == {(m, d) for m in ("scratch", "pretrained") for d in ("viterbi", "4-gram")}
    for r in rows.values():
        assert math.isfinite(r["test_wer"]) and r["test_wer"] >= 0
        assert math.isfinite(r["test_cer"]) and r["test_cer"] >= 0
    assert rows[("pretrained", "4-gram")]["lm_weight"] is not None
    # The table printed at the end is the one written to results.md, paper column included.
    md = (out / "results" / "results.md").read_text()
    assert "| pretrained | 4-gram |" in md and "46.9 / 50.9" in md
    assert "| pretrained | 4-gram |" in proc.stdout
    # Training curves were parsed from fairseq's json logs and drawn.
    ctx = results["context"]
    assert ctx["pretrain_final"]["accuracy"] is not None
    assert all(v is not None for v in ctx["finetune_final_dev_wer"].values())
    # Every training's curves for TensorBoard (make env installs it), one folder each.
    if importlib.util.find_spec("tensorboard") is not None:
        for name in ("pretrain", "scratch", "pretrained"):
            assert list((out / "tensorboard" / name).rglob("events.out.tfevents.*")), name
        assert f"tensorboard --logdir {out / 'tensorboard'}" in proc.stdout
    # Equal updates: each training's completed updates are recorded, and all were done.
    assert all(v["completed"] == v["planned"] for v in ctx["updates"].values()) and len(ctx["updates"]) == 3
    if _has_matplotlib():
        png = out / "results" / "curves.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False
