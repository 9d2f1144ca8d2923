"""The raw-audio dataset: cropping, padding, batching, normalization (fairseq semantics)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import write_tone

from w2v2_plugin.data.raw_audio import FileAudioDataset


def _corpus(tmp_path: Path, seconds: list[float], sr: int = 16000, ext: str = "wav") -> Path:
    """Tones of the given lengths and a manifest ``train.tsv`` listing them in order."""
    rows = []
    for i, s in enumerate(seconds):
        path = write_tone(tmp_path / "audio" / f"u{i}.{ext}", s, sr=sr, seed=i)
        rows.append(f"u{i}.{ext}\t{sf.info(str(path)).frames}")
    manifest = tmp_path / "train.tsv"
    manifest.write_text(f"{tmp_path / 'audio'}\n" + "\n".join(rows) + "\n")
    return manifest


def _window_start(whole: np.ndarray, window: np.ndarray) -> int | None:
    """Offset at which ``window`` occurs in ``whole``, or None."""
    heads = np.lib.stride_tricks.sliding_window_view(whole, 32)
    for start in np.flatnonzero((heads == window[:32]).all(axis=1)):
        if np.array_equal(whole[start:start + len(window)], window):
            return int(start)
    return None


def test_sizes_and_min_sample_size_drop_is_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manifest = _corpus(tmp_path, [0.5, 0.1, 1.0, 0.05, 0.75])
    with caplog.at_level(logging.INFO):
        ds = FileAudioDataset(str(manifest), 16000, max_sample_size=12000, min_sample_size=4000)
    assert list(ds.sizes) == [8000, 16000, 12000]
    assert ds.skipped_indices == {1, 3}  # positions among utterance lines, as fairseq
    assert list(ds.line_numbers) == [2, 4, 6]
    assert "skipped 2 shorter than min_sample_size=4000" in caplog.text
    assert len(ds) == 3 and ds.size(1) == 12000 and ds.num_tokens(1) == 12000


def test_crop_batches_to_shortest_with_random_windows(tmp_path: Path) -> None:
    manifest = _corpus(tmp_path, [0.5, 1.0, 0.75])
    ds = FileAudioDataset(str(manifest), 16000, max_sample_size=10000)
    full = [ds[i]["source"] for i in range(3)]
    starts = set()
    np.random.seed(0)
    for _ in range(40):
        batch = ds.collater([ds[i] for i in range(3)])
        source = batch["net_input"]["source"]  # (batch, samples)
        assert source.shape == (3, 8000) and "padding_mask" not in batch["net_input"]
        assert torch.equal(batch["id"], torch.tensor([0, 1, 2]))
        assert torch.equal(source[0], full[0])  # the shortest is used whole
        # every cropped row is a contiguous window of its utterance
        start = _window_start(full[1].numpy(), source[1].numpy())
        assert start is not None
        starts.add(start)
    assert len(starts) > 20  # uniformly random offsets, not a fixed one
    assert max(starts) <= 16000 - 8000


def test_max_sample_size_crops_a_single_long_utterance(tmp_path: Path) -> None:
    ds = FileAudioDataset(str(_corpus(tmp_path, [2.0])), 16000, max_sample_size=5000)
    assert ds.collater([ds[0]])["net_input"]["source"].shape == (1, 5000)
    assert ds.size(0) == 5000


def test_padding_and_padding_mask(tmp_path: Path) -> None:
    manifest = _corpus(tmp_path, [0.5, 1.0, 2.0])
    ds = FileAudioDataset(str(manifest), 16000, max_sample_size=20000, pad=True)
    batch = ds.collater([ds[i] for i in range(3)])
    source, mask = batch["net_input"]["source"], batch["net_input"]["padding_mask"]
    assert source.shape == mask.shape == (3, 20000)  # the longest, cropped to max_sample_size
    assert mask[0, :8000].logical_not().all() and mask[0, 8000:].all()
    assert torch.equal(source[0, :8000], ds[0]["source"]) and (source[0, 8000:] == 0).all()
    assert mask[1, :16000].logical_not().all() and mask[1, 16000:].all()
    assert not mask[2].any()  # cropped, not padded
    assert ds.size(2) == 32000  # with padding the full length counts (fairseq semantics)


def test_normalize_gives_zero_mean_unit_variance(tmp_path: Path) -> None:
    ds = FileAudioDataset(str(_corpus(tmp_path, [0.5])), 16000, normalize=True)
    x = ds[0]["source"]
    assert abs(x.mean().item()) < 1e-5 and abs(x.std(unbiased=False).item() - 1) < 1e-3
    raw = FileAudioDataset(str(_corpus(tmp_path / "b", [0.5])), 16000)[0]["source"]
    assert abs(raw.std().item() - 1) > 0.5


@pytest.mark.parametrize("ext", ["flac", "ogg"])
def test_reads_flac_and_ogg(tmp_path: Path, ext: str) -> None:
    ds = FileAudioDataset(str(_corpus(tmp_path, [0.3, 0.4], ext=ext)), 16000)
    assert ds[1]["source"].shape == (6400,) and ds[1]["source"].dtype == torch.float32


def test_multichannel_is_averaged(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a" / "st.wav", 0.25, channels=2)
    (tmp_path / "m.tsv").write_text(f"{tmp_path / 'a'}\nst.wav\t4000\n")
    ds = FileAudioDataset(str(tmp_path / "m.tsv"), 16000)
    stereo, _ = sf.read(str(path), dtype="float32")
    np.testing.assert_allclose(ds[0]["source"].numpy(), stereo.mean(-1), atol=1e-6)


def test_ordered_indices_longest_first_with_random_ties(tmp_path: Path) -> None:
    lengths = [0.2, 0.5, 0.5, 0.5, 0.3, 1.0, 0.9]
    ds = FileAudioDataset(str(_corpus(tmp_path, lengths)), 16000, max_sample_size=12000)
    orders = set()
    for seed in range(10):
        np.random.seed(seed)
        order = ds.ordered_indices()
        capped = np.minimum(ds.sizes[order], 12000)
        assert sorted(order.tolist()) == list(range(7))
        assert (np.diff(capped) <= 0).all()  # longest (after cropping) first
        orders.add(tuple(order.tolist()))
    assert len(orders) > 1  # ties (5, 6 crop to the same size; 1-3 are equal) are shuffled
    assert FileAudioDataset(str(_corpus(tmp_path / "b", lengths)), 16000, shuffle=False).ordered_indices().tolist() \
        == list(range(7))


def test_batch_by_size_respects_max_tokens_and_keeps_every_utterance(tmp_path: Path) -> None:
    lengths = [0.25 + 0.05 * (i % 9) for i in range(27)]
    ds = FileAudioDataset(str(_corpus(tmp_path, lengths)), 16000, max_sample_size=9600)
    np.random.seed(1)
    indices = ds.ordered_indices()
    for multiple in (1, 8):
        batches = ds.batch_by_size(indices, max_tokens=40000, required_batch_size_multiple=multiple)
        seen = np.concatenate(batches)
        # fairseq 0.12.3 alone drops the last batch unless its size is a multiple of 8
        assert sorted(seen.tolist()) == list(range(27))
        for b in batches:
            assert len(b) * max(ds.num_tokens(i) for i in b) <= 40000
    np.testing.assert_array_equal(ds.num_tokens_vec(indices), [ds.num_tokens(i) for i in indices])


def test_buckets_pad_to_bucket_length(tmp_path: Path) -> None:
    manifest = _corpus(tmp_path, [0.25, 0.3, 0.5, 0.55, 1.0, 1.1])
    with pytest.raises(ValueError, match="enable_padding"):
        FileAudioDataset(str(manifest), 16000, num_buckets=2)
    ds = FileAudioDataset(str(manifest), 16000, pad=True, num_buckets=3)
    batch = ds.collater([ds[0], ds[1]])
    bucket = int(ds._bucketed_sizes[1])
    assert bucket >= 4800 and batch["net_input"]["source"].shape == (2, bucket)
    assert batch["net_input"]["padding_mask"][1, 4800:].all()
