"""A cache of the frozen feature encoder's output for CTC fine-tuning (a plugin-only option).

The paper's fine-tuning recipe freezes the feature encoder (``feature_grad_mult=0``): Z = f(X)
is then a fixed function of each (padded) waveform, yet fairseq recomputes it for every batch,
every epoch and every validation. On a CPU that forward pass is about a third of a tiny model's
fine-tuning step, and low-resource fine-tuning (10 minutes to 10 hours of labels) runs many
epochs over the same utterances. :class:`FrozenFeatureCache` keeps Z per batch row, keyed by
the row's content, so a row already seen is looked up instead of recomputed.

Why keyed by content and not by utterance id: the model only sees the padded batch. A row's
key is the digest of its samples (its padding included: the first block's group norm
normalizes over the padded length, so one utterance padded to two lengths has two Zs), its
length, dtype and device, and the autocast state (bf16 and fp32 give different Zs). A hit is
therefore the same function of the same input; rows computed in different batches agree to
float rounding (oneDNN may block a conv differently for another batch size; tests state the
tolerance). The cache also notes the encoder's weights (storage and in-place version of
each parameter): any change, such as loading a checkpoint, empties it.

Memory: at most ``max_mb`` of stored rows. When full it stops adding (it does not evict):
epochs visit the same rows in a cycle, where evicting the oldest row would miss every time.
"""
from __future__ import annotations

import hashlib
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

RowKey = tuple[str, str, bool, str, int, bytes]


class FrozenFeatureCache:
    """Z rows of a frozen feature encoder, looked up by the content of each input row.

    Args:
        max_mb: the most memory the stored rows may take, in MiB (> 0).
    """

    def __init__(self, max_mb: float) -> None:
        if max_mb <= 0:
            raise ValueError(f"max_mb must be > 0, got {max_mb}")
        self.max_bytes = int(max_mb * 2 ** 20)
        self.stored_bytes = 0
        self.hits = 0
        self.misses = 0
        self._rows: dict[RowKey, torch.Tensor] = {}
        self._weights: tuple[tuple[int, int], ...] | None = None
        self._full_reported = False

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        self._rows.clear()
        self.stored_bytes = 0
        self._full_reported = False

    def features(self, encoder: nn.Module, source: torch.Tensor) -> torch.Tensor:
        """Z for a batch: (batch, sample) -> (batch, frame, C), without a graph.

        The rows not stored yet run through ``encoder`` as one sub-batch of the same padded
        length (the whole batch, uncopied, when none is stored: every batch of a first epoch).
        """
        self._check_weights(encoder)
        keys = row_keys(source)
        rows: list[torch.Tensor | None] = [self._rows.get(k) for k in keys]
        missing = [i for i, row in enumerate(rows) if row is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            with torch.no_grad():
                fresh = encoder(source if len(missing) == len(keys) else source[missing])  # (missing, frame, C)
            for j, i in enumerate(missing):
                rows[i] = fresh[j]
                self._store(keys[i], fresh[j])
        return torch.stack([row for row in rows if row is not None])

    def _store(self, key: RowKey, row: torch.Tensor) -> None:
        size = row.numel() * row.element_size()
        if self.stored_bytes + size > self.max_bytes:
            if not self._full_reported:
                logger.info("feature cache full: %d rows, %.0f MiB (model.feature_cache_mb); rows not "
                            "stored are computed each time", len(self._rows), self.stored_bytes / 2 ** 20)
                self._full_reported = True
            return
        self._rows[key] = row.clone()  # a copy: a view would keep the whole batch's storage alive
        self.stored_bytes += size

    def _check_weights(self, encoder: nn.Module) -> None:
        weights = tuple((p.data_ptr(), p._version) for p in encoder.parameters())
        if weights != self._weights:
            if self._weights is not None:
                logger.info("feature encoder weights changed: feature cache emptied")
            self.clear()
            self._weights = weights


def row_keys(source: torch.Tensor) -> list[RowKey]:
    """One key per row of ``source`` (batch, sample): device, dtype, autocast state, length and
    a 128-bit digest of the row's bytes."""
    device = source.device.type
    autocast = torch.is_autocast_enabled(device)
    autocast_dtype = str(torch.get_autocast_dtype(device)) if autocast else ""
    host = source.detach().to("cpu").contiguous().view(torch.uint8).numpy()  # (batch, bytes)
    return [(device, str(source.dtype), autocast, autocast_dtype, source.size(1),
             hashlib.blake2b(host[i].data, digest_size=16).digest()) for i in range(source.size(0))]


def drop_feature_caches(model: nn.Module) -> None:
    """Switch the cache off in every submodule of ``model`` that holds one (inference sees each
    utterance once: a cache would only cost hashing and memory)."""
    for module in model.modules():
        if isinstance(getattr(module, "frozen_feature_cache", None), FrozenFeatureCache):
            setattr(module, "frozen_feature_cache", None)  # noqa: B010  (an attribute of some modules only)
