"""Synthetic CTC emissions from known text, for tests and the decoder benchmark.

Each unit of the reference occupies a few frames, separated by blank frames (always one
between repeated units, as CTC requires); every frame's log-probs are a softmax of Gaussian
noise plus a peak on the frame's unit. A *confusion* plants a wrong unit that beats the right
one on that unit's frames, the way an acoustic model mistakes a similar-sounding letter.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np

from .timestamps import WordSpan, word_spans
from .units import UnitDictionary


class SyntheticUtterance(NamedTuple):
    emissions: np.ndarray  # (frame, unit) float32 log-probs
    frames: np.ndarray  # (frame,) the unit each frame was generated from
    spans: list[WordSpan]  # the reference words and their frames


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def synthesize(units: UnitDictionary, unit_seq: Sequence[int], rng: np.random.Generator,
               confusions: Mapping[int, int] | None = None, peak: float = 8.0, noise: float = 1.0,
               margin: float = 1.5, max_unit_frames: int = 3, max_blank_frames: int = 2,
               lead_blank_frames: int = 2) -> SyntheticUtterance:
    """Emissions for ``unit_seq``; ``confusions`` maps a position in ``unit_seq`` to the unit that
    wins its frames by ``margin`` (the right unit stays second)."""
    confusions = dict(confusions or {})
    blank = units.blank
    frames: list[int] = [blank] * lead_blank_frames
    wrong: list[int] = [-1] * lead_blank_frames
    for pos, u in enumerate(unit_seq):
        n_blank = int(rng.integers(0, max_blank_frames + 1))
        if frames and frames[-1] == u:
            n_blank = max(n_blank, 1)
        frames += [blank] * n_blank
        wrong += [-1] * n_blank
        n = int(rng.integers(1, max_unit_frames + 1))
        frames += [u] * n
        wrong += [confusions.get(pos, -1)] * n
    frames += [blank] * lead_blank_frames
    wrong += [-1] * lead_blank_frames
    path = np.asarray(frames, dtype=np.int64)  # (frame,)
    logits = noise * rng.standard_normal((len(frames), len(units)))  # (frame, unit)
    logits[np.arange(len(frames)), path] += peak
    for t, w in enumerate(wrong):
        if w >= 0:
            logits[t, w] += peak + margin
    em = log_softmax(logits).astype(np.float32)
    return SyntheticUtterance(em, path, word_spans(path.tolist(), units))


def letter_units(text: str, units: UnitDictionary) -> list[int]:
    """Letters of ``text`` with ``|`` after every word (fairseq's .ltr format)."""
    out: list[int] = []
    for word in text.split():
        out += [units.index(c) for c in word] + [units.index("|")]
    return out
