"""Raw-waveform datasets for wav2vec 2.0 with fairseq's ``FileAudioDataset`` semantics.

- Training crops: without padding (pretraining) every batch is cropped to its shortest
  utterance (at most ``max_sample_size``) at a uniformly random offset per utterance; with
  padding (fine-tuning, ``enable_padding``) it is zero-padded to its longest one (at most
  ``max_sample_size``) and ``padding_mask`` marks the padded samples (True = padding).
- Utterances shorter than ``min_sample_size`` are dropped when the dataset is built and the
  count is logged; nothing else is dropped: any other bad line is an error up front.
- ``ordered_indices`` sorts by (cropped) length, longest first, ties broken at random, so
  fairseq's ``batch_by_size`` fills batches up to ``max_tokens`` from similar lengths.
- Optional per-utterance normalization to zero mean and unit variance.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from fairseq.data import FairseqDataset
from fairseq.data.text_compressor import TextCompressionLevel, TextCompressor

from w2v2_manifests.errors import ManifestError

from .manifest import Manifest, check_audio_files, read_manifest

logger = logging.getLogger(__name__)

Sample = dict[str, Any]


class RawAudioDataset(FairseqDataset):
    """Batching, cropping and padding of 1-D waveforms; subclasses say where audio comes from."""

    def __init__(
        self,
        sample_rate: int,
        max_sample_size: int | None = None,
        min_sample_size: int | None = None,
        shuffle: bool = True,
        pad: bool = False,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.max_sample_size = max_sample_size if max_sample_size is not None else sys.maxsize
        self.min_sample_size = min_sample_size
        self.shuffle = shuffle
        self.pad = pad
        self.normalize = normalize
        self.sizes: np.ndarray = np.zeros(0, dtype=np.int64)  # samples per utterance
        self.num_buckets = 0

    # -- reading -------------------------------------------------------------------------
    def __getitem__(self, index: int) -> Sample:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.sizes)

    def postprocess(self, wav: torch.Tensor, sample_rate: int, where: str) -> torch.Tensor:
        """Mono-mix, check the rate, normalize: (samples,) or (samples, channels) -> (samples,)."""
        if wav.dim() == 2:
            wav = wav.mean(-1)  # fairseq's behaviour for multi-channel files: average them
        if sample_rate != self.sample_rate:
            raise ManifestError(
                f"{where}: sample rate {sample_rate} Hz, the task expects {self.sample_rate} Hz; "
                f"resample the audio and regenerate the manifest"
            )
        if self.normalize:
            with torch.no_grad():
                wav = F.layer_norm(wav, wav.shape)  # zero mean, unit variance per utterance
        return wav

    # -- batching ------------------------------------------------------------------------
    def crop_to_max_size(self, wav: torch.Tensor, target_size: int) -> torch.Tensor:
        """A random window of ``target_size`` samples (uniform start), or ``wav`` if shorter."""
        size = wav.size(0)
        diff = size - target_size
        if diff <= 0:
            return wav
        # np.random: fairseq seeds it per epoch/update, which makes crops reproducible
        start = np.random.randint(0, diff + 1)
        return wav[start:start + target_size]

    def collater(self, samples: list[Sample]) -> Sample:
        samples = [s for s in samples if s["source"] is not None]
        if not samples:
            return {}
        sources = [s["source"] for s in samples]
        sizes = [len(s) for s in sources]
        if self.pad:
            target_size = min(max(sizes), self.max_sample_size)
        else:
            target_size = min(min(sizes), self.max_sample_size)

        collated = sources[0].new_zeros(len(sources), target_size)  # (batch, samples)
        padding_mask = torch.zeros(collated.shape, dtype=torch.bool) if self.pad else None
        for i, (source, size) in enumerate(zip(sources, sizes, strict=True)):
            diff = size - target_size
            if diff == 0:
                collated[i] = source
            elif diff < 0:
                assert padding_mask is not None  # noqa: S101 - only reachable with pad=True
                collated[i, :size] = source
                padding_mask[i, size:] = True
            else:
                collated[i] = self.crop_to_max_size(source, target_size)

        net_input: Sample = {"source": collated}
        if padding_mask is not None:
            net_input["padding_mask"] = padding_mask
        if self.num_buckets > 0:
            # pad up to the bucket's length so that only num_buckets shapes occur (TPU/XLA)
            bucket = max(int(self._bucketed_sizes[s["id"]]) for s in samples)
            num_pad = bucket - collated.size(-1)
            if num_pad > 0:
                if padding_mask is None:
                    raise AssertionError("set_bucket_info refuses buckets without pad, so there is a padding mask")
                net_input["source"] = F.pad(collated, (0, num_pad), value=0.0)
                net_input["padding_mask"] = F.pad(padding_mask, (0, num_pad), value=True)
        return {"id": torch.LongTensor([s["id"] for s in samples]), "net_input": net_input}

    def num_tokens(self, index: int) -> int:
        return self.size(index)

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`num_tokens` (fairseq's batch_by_size uses it when present)."""
        sizes = self.sizes[indices]
        return sizes if self.pad else np.minimum(sizes, self.max_sample_size)

    def batch_by_size(
        self,
        indices: np.ndarray,
        max_tokens: int | None = None,
        max_sentences: int | None = None,
        required_batch_size_multiple: int = 1,
    ) -> list[np.ndarray]:
        """fairseq's batching, minus its silent drop of the last batch.

        fairseq 0.12.3's ``data_utils.batch_by_size`` discards the final batch when its size
        is not a multiple of ``required_batch_size_multiple`` (8 by default): a small valid
        set then has no batch at all. Batches are consecutive runs of ``indices``, so the
        dropped one is the tail; it already satisfies max_tokens/max_sentences.
        """
        batches = list(super().batch_by_size(indices, max_tokens, max_sentences, required_batch_size_multiple))
        batched = sum(len(b) for b in batches)
        if batched < len(indices):
            batches.append(np.asarray(indices[batched:], dtype=np.int64))
        return batches

    def size(self, index: int) -> int:
        """Samples this utterance contributes to a batch (what max_tokens counts)."""
        if self.pad:
            return int(self.sizes[index])
        return int(min(self.sizes[index], self.max_sample_size))

    def ordered_indices(self) -> np.ndarray:
        """Longest first (after cropping), random among equal lengths; file order if not shuffling."""
        if not self.shuffle:
            return np.arange(len(self))
        order = [np.random.permutation(len(self)), np.minimum(self.sizes, self.max_sample_size)]
        return np.lexsort(order)[::-1]

    def set_bucket_info(self, num_buckets: int) -> None:
        self.num_buckets = num_buckets
        if num_buckets > 0:
            if not self.pad:
                raise ValueError("num_batch_buckets > 0 needs padding: set task.enable_padding=true")
            collated_sizes = np.minimum(self.sizes, self.max_sample_size)
            # bucket edges at length percentiles (fairseq's get_buckets, which numpy 2 broke)
            edges = np.percentile(collated_sizes, np.linspace(0, 100, num_buckets + 1), method="lower")
            self.buckets = np.unique(edges[1:]).astype(np.int64)
            # each utterance is padded up to the smallest bucket edge that holds it
            self._bucketed_sizes = self.buckets[np.searchsorted(self.buckets, collated_sizes, side="left")]
            logger.info(f"{len(self.buckets)} bucket(s) for the audio dataset: {self.buckets}")

    def filter_indices_by_size(self, indices: np.ndarray, max_sizes: Any) -> tuple[np.ndarray, list[int]]:
        # Long utterances are cropped, never filtered out (fairseq does the same).
        return indices, []


class FileAudioDataset(RawAudioDataset):
    """Audio files listed in a ``.tsv`` manifest, checked when the dataset is built.

    Attributes the fine-tuning task relies on (as in fairseq): ``skipped_indices`` holds the
    0-based positions (among the manifest's utterance lines) of utterances dropped for being
    shorter than ``min_sample_size``, so label files can be aligned; ``line_numbers`` maps
    each kept utterance to its manifest line for error messages.
    """

    def __init__(
        self,
        manifest_path: str,
        sample_rate: int,
        max_sample_size: int | None = None,
        min_sample_size: int | None = None,
        shuffle: bool = True,
        pad: bool = False,
        normalize: bool = False,
        num_buckets: int = 0,
        text_compression_level: TextCompressionLevel = TextCompressionLevel.none,
        check_audio: bool = True,
        check_threads: int | None = None,
    ) -> None:
        super().__init__(
            sample_rate=sample_rate,
            max_sample_size=max_sample_size,
            min_sample_size=min_sample_size,
            shuffle=shuffle,
            pad=pad,
            normalize=normalize,
        )
        start = time.perf_counter()
        manifest: Manifest = read_manifest(manifest_path)
        self.manifest_path = manifest_path
        self.root_dir = manifest.root
        self.skipped_indices: set[int] = set()
        kept = []
        for i, entry in enumerate(manifest.entries):
            if min_sample_size is not None and entry.frames < min_sample_size:
                self.skipped_indices.add(i)
            else:
                kept.append(entry)
        total = len(manifest.entries)
        if not kept:
            raise ManifestError(
                f"{manifest_path}: all {total} utterances are shorter than "
                f"min_sample_size={min_sample_size} samples; lower task.min_sample_size"
            )
        # file names can be stored compressed to save memory on huge manifests (fairseq's option)
        self.text_compressor = TextCompressor(level=text_compression_level)
        self.fnames: list[bytes] = [self.text_compressor.compress(e.path) for e in kept]
        self.line_numbers = np.array([e.line for e in kept], dtype=np.int64)
        self.sizes = np.array([e.frames for e in kept], dtype=np.int64)
        checked = ""
        if check_audio:
            summary = check_audio_files(manifest, sample_rate, entries=kept, num_threads=check_threads)
            checked = f"; {summary.files} audio headers checked in {summary.seconds:.1f} s"
        skipped = len(self.skipped_indices)
        hours = float(self.sizes.sum()) / sample_rate / 3600
        logger.info(
            f"{manifest_path}: loaded {len(kept)} utterances ({hours:.2f} h), "
            f"skipped {skipped} shorter than min_sample_size={min_sample_size}{checked} "
            f"(built in {time.perf_counter() - start:.1f} s)"
        )
        self.set_bucket_info(num_buckets)

    def where(self, index: int) -> str:
        return f"{self.manifest_path}:{int(self.line_numbers[index])}"

    def __getitem__(self, index: int) -> Sample:
        path = os.path.join(self.root_dir, self.text_compressor.decompress(self.fnames[index]))
        wav = None
        last_error: Exception | None = None
        for attempt in range(3):
            # network file systems fail transiently; fairseq retries the same way
            try:
                wav, sr = sf.read(path, dtype="float32")
                break
            except Exception as e:  # noqa: BLE001 - re-raised below with the manifest line
                last_error = e
                logger.warning(f"{self.where(index)}: failed to read {path} ({e}); retry {attempt + 1}/3")
                time.sleep(attempt)
        if wav is None:
            raise ManifestError(f"{self.where(index)}: cannot read {path} ({last_error})")
        source = torch.from_numpy(wav)  # (samples,) or (samples, channels)
        return {"id": index, "source": self.postprocess(source, sr, f"{self.where(index)}: {path}")}
