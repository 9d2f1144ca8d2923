"""fairseq-hydra-train with the plugin's fine-tuning config: the checkpoints it writes hold
plain data only (torch.load with weights_only=True), resume, and load for inference without
the pretrained model file (self-contained)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_conversion_ctc import save_fairseq_wav2vec2
from test_finetuning_task import write_corpus

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "examples" / "wav2vec2" / "config" / "finetuning"


def hydra_train(config: str, save_dir: Path, *overrides: str, timeout: int = 900,
                config_dir: Path = CONFIG_DIR) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "fairseq_cli.hydra_train", "--config-dir", str(config_dir),
           "--config-name", config, f"common.user_dir={REPO / 'w2v2_plugin'}",
           f"checkpoint.save_dir={save_dir}", f"hydra.run.dir={save_dir / 'hydra'}", *overrides]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


@pytest.mark.slow
def test_hydra_train_checkpoints_are_plain_and_self_contained(tmp_path):
    data = write_corpus(tmp_path / "data")
    write_corpus(tmp_path / "data", split="valid")
    pre = save_fairseq_wav2vec2(tmp_path / "pre.pt")
    save = tmp_path / "ckpt"
    common = [f"task.data={data}", f"model.w2v_path={pre}", "dataset.valid_subset=valid",
              "model.mask_channel_length=8", "model.freeze_finetune_updates=1",
              "checkpoint.save_interval_updates=2", "dataset.validate_interval_updates=2"]
    res = hydra_train("tiny_cpu", save, *common, "optimization.max_update=2")
    assert res.returncode == 0, res.stderr[-3000:]
    last = save / "checkpoint_last.pt"
    state = torch.load(last, weights_only=True)  # torch's default since 2.6: no pickled classes
    assert state["cfg"]["model"]["_name"] == "w2v2_ctc"
    assert state["cfg"]["model"]["w2v_args"]["model"]["encoder_layers"] == 3
    assert "valid_wer" in res.stdout + res.stderr

    res = hydra_train("tiny_cpu", save, *common, "optimization.max_update=3")  # resumes
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Loaded checkpoint" in res.stdout + res.stderr
    assert torch.load(last, weights_only=True)["optimizer_history"][-1]["num_updates"] == 3

    pre.rename(tmp_path / "moved.pt")  # inference must not need the pretrained file
    code = ("import torch, w2v2_plugin; from fairseq import checkpoint_utils; "
            f"m, c, t = checkpoint_utils.load_model_ensemble_and_task([{str(last)!r}]); "
            "m = m[0].eval(); o = m(source=torch.randn(2, 8000), padding_mask=None); "
            "print(tuple(m.get_normalized_probs(o, log_probs=True).shape), len(t.target_dictionary))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(199, 2, 17) 17"  # 8000 samples -> 199 frames; 4 specials + 13 symbols


@pytest.mark.slow
def test_bad_labels_stop_before_training(tmp_path):
    data = write_corpus(tmp_path / "data")
    write_corpus(tmp_path / "data", split="valid")
    (data / "valid.ltr").write_text("H I |\n")  # 1 line for 4 audio entries
    pre = save_fairseq_wav2vec2(tmp_path / "pre.pt")
    res = hydra_train("tiny_cpu", tmp_path / "ckpt", f"task.data={data}", f"model.w2v_path={pre}",
                      "dataset.valid_subset=valid")
    assert res.returncode != 0
    assert "valid.ltr: 1 transcript lines but" in res.stderr
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()
