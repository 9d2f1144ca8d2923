"""common.tensorboard_logdir: a short real fairseq-hydra-train run writes TensorBoard event
files holding the scalars a user looks at, read back with tensorboard's own reader.

Tiny tone corpora (tests/test_finetuning_task.py) and a few updates keep each run short.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from test_conversion_ctc import save_fairseq_wav2vec2
from test_finetuning_task import write_corpus
from test_finetuning_train import REPO, hydra_train

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

PRETRAIN_CONFIG = REPO / "examples" / "wav2vec2" / "config" / "pretraining"
SECONDS = (1.2, 1.5, 1.3, 1.6)  # over tiny_cpu pretraining's 0.5 s minimum


def scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of the event files in one writer's folder."""
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def corpus(root: Path) -> Path:
    write_corpus(root, seconds=SECONDS)
    write_corpus(root, seconds=SECONDS, split="valid")
    return root


def test_pretraining_writes_contrastive_scalars(tmp_path: Path) -> None:
    data = corpus(tmp_path / "data")
    tb = tmp_path / "tb"
    res = hydra_train("tiny_cpu", tmp_path / "ckpt", f"task.data={data}", f"common.tensorboard_logdir={tb}",
                      "optimization.max_update=3", "common.log_interval=1", "dataset.disable_validation=true",
                      "checkpoint.no_save=true", "task.max_sample_size=16000", "dataset.max_tokens=64000",
                      config_dir=PRETRAIN_CONFIG, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    inner = scalars(tb / "train_inner")
    for tag in ("loss", "accuracy", "code_perplexity", "temp"):
        assert [step for step, _ in inner.get(tag, [])] == [1, 2, 3], (tag, sorted(inner))
    assert {"prob_perplexity", "loss_0", "loss_1", "loss_2", "lr", "gnorm", "wps"} <= set(inner), sorted(inner)
    assert all(0 <= v <= 1 for _, v in inner["accuracy"])
    assert all(0 < v <= 2 for _, v in inner["temp"])
    assert "loss" in scalars(tb / "train")  # the end-of-epoch summary has its own folder


def test_finetuning_writes_loss_and_valid_error_rates(tmp_path: Path) -> None:
    data = corpus(tmp_path / "data")
    pre = save_fairseq_wav2vec2(tmp_path / "pre.pt")
    tb = tmp_path / "tb"
    res = hydra_train("tiny_cpu", tmp_path / "ckpt", f"task.data={data}", f"model.w2v_path={pre}",
                      f"common.tensorboard_logdir={tb}", "common.log_interval=1",
                      "optimization.max_update=2", "model.mask_channel_length=8",
                      "model.freeze_finetune_updates=1", "checkpoint.no_save=true",
                      "dataset.validate_interval_updates=2", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [step for step, _ in scalars(tb / "train_inner")["loss"]] == [1, 2]
    valid = scalars(tb / "valid")
    for tag in ("loss", "uer", "wer"):
        assert [step for step, _ in valid.get(tag, [])] == [2], (tag, sorted(valid))
    assert 0 <= valid["wer"][0][1] and 0 <= valid["uer"][0][1]
