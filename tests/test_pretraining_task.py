"""Task w2v2_pretraining: fairseq's config fields, dataset loading, hooks, clear refusals."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from fairseq.data import SubsampleDataset
from fairseq.tasks import TASK_REGISTRY
from fairseq.tasks.audio_pretraining import AudioPretrainingConfig
from helpers import write_tone

from w2v2_plugin.data.manifest import ManifestError
from w2v2_plugin.data.raw_audio import FileAudioDataset
from w2v2_plugin.tasks.pretraining import W2v2PretrainingConfig, W2v2PretrainingTask


def _data(tmp_path: Path, n: int = 6) -> Path:
    rows = []
    for i in range(n):
        path = write_tone(tmp_path / "audio" / f"u{i}.wav", 0.2 + 0.05 * i, seed=i)
        rows.append(f"u{i}.wav\t{sf.info(str(path)).frames}")
    for split in ("train", "valid"):
        (tmp_path / f"{split}.tsv").write_text(f"{tmp_path / 'audio'}\n" + "\n".join(rows) + "\n")
    return tmp_path


def _task(data: Path, **overrides: Any) -> W2v2PretrainingTask:
    cfg = W2v2PretrainingConfig(data=str(data), tpu=False, seed=1, **overrides)
    return W2v2PretrainingTask.setup_task(cfg)


def test_registered_with_fairseqs_field_names_and_defaults() -> None:
    assert TASK_REGISTRY["w2v2_pretraining"] is W2v2PretrainingTask
    ours = {f.name: f for f in dataclasses.fields(W2v2PretrainingConfig)}
    for theirs in dataclasses.fields(AudioPretrainingConfig):
        assert theirs.name in ours, theirs.name
        if theirs.default is not dataclasses.MISSING and theirs.name != "precompute_mask_config":
            assert ours[theirs.name].default == theirs.default, theirs.name
    # fairseq 0.12.2's fields too (older yamls and checkpoints carry them)
    assert {"precompute_mask_indices", "inferred_w2v_config"} <= set(ours)


def test_load_dataset_builds_cropping_dataset(tmp_path: Path) -> None:
    task = _task(_data(tmp_path), max_sample_size=4000, min_sample_size=3500, normalize=True)
    task.load_dataset("train")
    ds = task.dataset("train")
    assert isinstance(ds, FileAudioDataset)
    assert not ds.pad and ds.normalize and ds.max_sample_size == 4000 and len(ds) == 5
    assert task.max_positions()[0] > 10**9


def test_labels_or_enable_padding_turn_padding_on(tmp_path: Path) -> None:
    data = _data(tmp_path)
    task = _task(data, enable_padding=True)
    task.load_dataset("valid")
    assert task.dataset("valid").pad
    task = _task(data, labels="ltr")
    task.load_dataset("valid")
    assert task.dataset("valid").pad


def test_subsample_and_subclass_hook(tmp_path: Path) -> None:
    data = _data(tmp_path)

    class Tagged(W2v2PretrainingTask):
        wrapped: list[str] = []

        def wrap_dataset(self, split: str, dataset: FileAudioDataset, task_cfg: Any) -> Any:
            self.wrapped.append(split)
            return dataset

    task = Tagged.setup_task(W2v2PretrainingConfig(data=str(data), tpu=False, seed=1, subsample=0.5))
    task.load_dataset("train")
    assert Tagged.wrapped == ["train"]
    ds = task.dataset("train")
    assert isinstance(ds, SubsampleDataset) and len(ds) == 3
    assert len(set(np.asarray(ds.indices).tolist())) == 3


@pytest.mark.parametrize(
    "overrides, what",
    [
        ({"binarized_dataset": True}, "binarized_dataset"),
        ({"multi_corpus_keys": "a,b"}, "multi_corpus_keys"),
        ({"precompute_mask_indices": True}, "precompute_mask_indices"),
    ],
)
def test_unsupported_fairseq_options_are_refused(tmp_path: Path, overrides: dict[str, Any], what: str) -> None:
    with pytest.raises(ValueError, match=what):
        _task(tmp_path, **overrides)


def test_bad_data_stops_load_dataset(tmp_path: Path) -> None:
    data = _data(tmp_path)
    (data / "train.tsv").write_text(f"{data / 'audio'}\nu0.wav\t3200\nmissing.wav\t100\n")
    with pytest.raises(ManifestError, match=r"train\.tsv:3: audio file .*missing\.wav does not exist"):
        _task(data).load_dataset("train")
    with pytest.raises(ManifestError, match=r"test\.tsv: manifest not found"):
        _task(data).load_dataset("test")


def test_post_save_script_gets_a_frozen_copy(tmp_path: Path) -> None:
    data = _data(tmp_path)
    marker = tmp_path / "ran.txt"
    script = tmp_path / "eval.sh"
    script.write_text(f"#!/bin/sh\necho \"$1\" > {marker}\n")
    script.chmod(0o755)
    ckpt = tmp_path / "checkpoint_last.pt"
    ckpt.write_bytes(b"weights")
    _task(data).post_save(str(ckpt), 7)  # no script: nothing happens
    assert not (tmp_path / "checkpoint_eval_7.pt").exists()
    _task(data, post_save_script=str(script)).post_save(str(ckpt), 7)
    assert (tmp_path / "checkpoint_eval_7.pt").read_bytes() == b"weights"
    assert marker.read_text().strip() == str(tmp_path / "checkpoint_eval_7.pt")
