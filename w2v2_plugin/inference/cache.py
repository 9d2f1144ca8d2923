"""Emissions saved to disk, so re-decoding (other LM, weights, beam) never reruns the model.

Layout of a cache directory::

    meta.json      units (symbol list), frame_seconds, sample_rate, checkpoint, split (the
                   manifest split, or "inputs": w2v2-infer --emissions names its outputs after it)
    index.jsonl    one line per utterance: id, ref, seconds, frames, file
    em/000000.npy  (frame, unit) float32 log-probs

``index.jsonl`` and ``meta.json`` are written last (temp file + rename): a directory without
them is an unfinished cache and is refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from w2v2_common.fileio import atomic_path, write_text_atomic

from ..decoding.errors import DecodingError
from ..decoding.units import UnitDictionary


def jsonable(obj: Any) -> Any:
    """Replace non-finite floats (e.g. ``unk_weight=-inf``) by strings: strict JSON has none."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


@dataclass
class CacheEntry:
    id: str
    ref: str | None
    seconds: float
    frames: int
    file: str  # relative to the cache directory


class EmissionCache:
    """Write with :meth:`create` / :meth:`add` / :meth:`finish`; read with :meth:`open`."""

    def __init__(self, root: Path, units: UnitDictionary, frame_seconds: float, meta: dict[str, Any],
                 entries: list[CacheEntry]) -> None:
        self.root, self.units, self.frame_seconds, self.meta, self.entries = root, units, frame_seconds, meta, entries
        self._slots: list[CacheEntry | None] = list(entries)

    @classmethod
    def create(cls, root: str | Path, units: UnitDictionary, frame_seconds: float, **meta: Any) -> EmissionCache:
        root = Path(root)
        (root / "em").mkdir(parents=True, exist_ok=True)
        for stale in ("index.jsonl", "meta.json"):  # an overwritten cache is unfinished until finish()
            (root / stale).unlink(missing_ok=True)
        return cls(root, units, frame_seconds, dict(meta), [])

    def add(self, index: int, utt_id: str, ref: str | None, seconds: float, emissions: np.ndarray) -> CacheEntry:
        """Store utterance number ``index`` (entries are kept in input order, whatever the
        order the model processed them in)."""
        rel = f"em/{index:06d}.npy"
        # through a handle: given a path not ending in .npy, np.save would append ".npy"
        with atomic_path(self.root / rel) as tmp, open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(emissions, dtype=np.float32))
        entry = CacheEntry(utt_id, ref, float(seconds), int(emissions.shape[0]), rel)
        while len(self._slots) <= index:
            self._slots.append(None)
        self._slots[index] = entry
        return entry

    def path(self, i: int) -> Path:
        return self.root / self.entries[i].file

    def load(self, i: int) -> np.ndarray:
        return np.load(self.path(i))

    def finish(self) -> None:
        missing = [i for i, e in enumerate(self._slots) if e is None]
        if missing:
            raise DecodingError(f"{self.root}: emissions of utterance(s) {missing[:5]} were never stored")
        self.entries = [e for e in self._slots if e is not None]
        write_text_atomic(self.root / "index.jsonl",
                          "".join(json.dumps(e.__dict__, ensure_ascii=False) + "\n" for e in self.entries))
        meta = dict(self.meta, units=list(self.units.symbols), frame_seconds=self.frame_seconds)
        write_text_atomic(self.root / "meta.json", json.dumps(meta, indent=2, ensure_ascii=False))

    @classmethod
    def open(cls, root: str | Path) -> EmissionCache:
        root = Path(root)
        meta_path, index_path = root / "meta.json", root / "index.jsonl"
        if not meta_path.is_file() or not index_path.is_file():
            raise DecodingError(f"{root}: not a finished emission cache (meta.json/index.jsonl missing); "
                                f"write one with 'w2v2-infer ... --save-emissions {root}'")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        units = UnitDictionary.from_symbols(meta["units"], source=f"{meta_path} (units)")
        entries = []
        for lineno, line in enumerate(index_path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    entries.append(CacheEntry(**json.loads(line)))
                except (TypeError, ValueError):
                    raise DecodingError(f"{index_path}:{lineno}: damaged index line; recompute the emissions") from None
        return cls(root, units, float(meta["frame_seconds"]), meta, entries)
