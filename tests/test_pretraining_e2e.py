"""End to end: tiny_cpu pretraining under fairseq-hydra-train and fairseq-train.

A small espeak-ng corpus; the run trains, saves, resumes from checkpoint_last at the same
update, and its contrastive accuracy rises (read from fairseq's json log).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pretraining_corpus import CONFIG_DIR, FAST, USER_DIR, corpus, env, records  # noqa: F401 (fixture)

BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def hydra_train(data: Path, save_dir: Path, *overrides: str, timeout: int = 400) -> str:
    cmd = [str(BIN / "fairseq-hydra-train"), "--config-dir", str(CONFIG_DIR), "--config-name", "tiny_cpu",
           f"task.data={data}", f"common.user_dir={USER_DIR}", f"checkpoint.save_dir={save_dir}",
           f"hydra.run.dir={save_dir}/hydra", *FAST, *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout, cwd=str(save_dir.parent))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    return log


def checkpoint_updates(path: Path) -> int:
    state = torch.load(str(path), map_location="cpu", weights_only=False)
    return int(state["optimizer_history"][-1]["num_updates"])


def test_hydra_train_saves_and_resumes_at_the_same_update(corpus: Path, tmp_path: Path) -> None:  # noqa: F811
    save = tmp_path / "ckpt"
    first = 12
    log1 = hydra_train(corpus, save, f"optimization.max_update={first}", f"checkpoint.save_interval_updates={first}")
    assert (save / "checkpoint_last.pt").is_file()
    assert checkpoint_updates(save / "checkpoint_last.pt") == first
    state = torch.load(str(save / "checkpoint_last.pt"), map_location="cpu", weights_only=False)
    assert state["cfg"]["model"]["_name"] == "w2v2" and state["cfg"]["task"]["_name"] == "w2v2_pretraining"
    assert state["cfg"]["criterion"]["_name"] == "w2v2_contrastive"

    log2 = hydra_train(corpus, save, f"optimization.max_update={first + 8}", "checkpoint.save_interval_updates=100")
    assert re.search(rf"Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ {first} updates\)", log2), log2[-3000:]
    resumed = records(log2)
    assert resumed and resumed[0]["num_updates"] == first + 2  # the first log_interval after the resume
    assert checkpoint_updates(save / "checkpoint_last.pt") == first + 8

    inner = records(log1) + resumed
    steps = [r["num_updates"] for r in inner]
    assert steps == list(range(2, first + 9, 2))  # every update logged once, none repeated or lost
    for r in inner:
        assert {"loss", "prob_perplexity", "code_perplexity", "temp", "loss_0", "loss_1", "loss_2"} <= set(r)
        assert 0 <= r["accuracy"] <= 1 and r["code_perplexity"] > 1 and 0 < r["temp"] <= 2
    # it learns: the total loss (contrastive + diversity + feature penalty) falls
    assert inner[-1]["loss"] < inner[0]["loss"] - 0.1, [r["loss"] for r in inner]
    seconds = sum(r["train_wall"] for r in inner) / (first + 8)
    print(f"loss {inner[0]['loss']} -> {inner[-1]['loss']}, accuracy {inner[0]['accuracy']} -> "
          f"{inner[-1]['accuracy']}, about {seconds:.2f} s/update")


@pytest.mark.parametrize("arch", [
    # fairseq's own model: the task's and criterion's flags
    "wav2vec2",
    "w2v2",
])
def test_fairseq_train_cli_flags(corpus: Path, tmp_path: Path, arch: str) -> None:  # noqa: F811
    save = tmp_path / "ckpt"
    cmd = [
        str(BIN / "fairseq-train"), str(corpus), "--user-dir", str(USER_DIR),
        "--task", "w2v2_pretraining", "--arch", arch, "--criterion", "w2v2_contrastive",
        "--infonce", "--loss-weights", "[0.1, 10]", "--log-keys", '["prob_perplexity","code_perplexity","temp"]',
        "--max-sample-size", "32000", "--min-sample-size", "8000", "--max-tokens", "192000",
        "--conv-feature-layers", "[(64, 10, 5)] + [(64, 3, 2)] * 4 + [(64, 2, 2)] * 2",
        "--encoder-layers", "2", "--encoder-embed-dim", "128", "--encoder-ffn-embed-dim", "256",
        "--encoder-attention-heads", "2", "--conv-pos", "32", "--latent-vars", "32", "--final-dim", "64",
        "--num-negatives", "20", "--feature-grad-mult", "0.1", "--quantize-targets",
        "--optimizer", "adam", "--adam-betas", "(0.9,0.98)", "--adam-eps", "1e-06", "--weight-decay", "0.01",
        "--lr", "0.0005", "--lr-scheduler", "polynomial_decay", "--warmup-updates", "2", "--total-num-update", "4", "--max-update", "4",
        "--cpu", "--num-workers", "0", "--log-format", "json", "--log-interval", "1",
        "--save-dir", str(save), "--save-interval-updates", "4", "--no-epoch-checkpoints",
        "--ddp-backend", "legacy_ddp", "--required-batch-size-multiple", "1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=300, cwd=str(tmp_path))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    inner = records(log)
    assert [r["num_updates"] for r in inner] == [1, 2, 3, 4]
    assert all(0 <= r["accuracy"] <= 1 and r["loss"] > 0 for r in inner)
    assert checkpoint_updates(save / "checkpoint_last.pt") == 4
    state = torch.load(str(save / "checkpoint_last.pt"), map_location="cpu", weights_only=False)
    assert state["cfg"]["model"]["_name"] == arch and state["cfg"]["model"]["encoder_layers"] == 2
