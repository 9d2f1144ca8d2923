"""Synthetic CTC emissions from known text, for tests and the decoder benchmark.

Each unit of the reference occupies a few frames, separated by blank frames (always one
between repeated units, as CTC requires); every frame's log-probs are a softmax of Gaussian
noise plus a peak on the frame's unit. A *confusion* plants a wrong unit that beats the right
one on that unit's frames, the way an acoustic model mistakes a similar-sounding letter.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from w2v2_plugin.decoding.timestamps import WordSpan, word_spans
from w2v2_plugin.decoding.units import UnitDictionary


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
    # a trained CTC model never emits fairseq's <pad>, </s>, <unk>: keep them far below
    never = sorted(units.special_indices() - {blank})
    logits[:, never] -= 30.0
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


class SyntheticLanguage(NamedTuple):
    """A random vocabulary and a word-bigram chain that makes sentences predictable."""

    vocab: list[str]
    successors: np.ndarray  # (word, k) likely next words
    rng_seed: int

    def sentences(self, n: int, rng: np.random.Generator, min_len: int = 4, max_len: int = 12) -> list[str]:
        out = []
        k = self.successors.shape[1]
        zipf = 1.0 / np.arange(1, k + 1)
        zipf /= zipf.sum()
        for _ in range(n):
            w = int(rng.integers(len(self.vocab)))
            words = [w]
            for _ in range(int(rng.integers(min_len, max_len + 1)) - 1):
                if rng.random() < 0.1:  # a jump: not every transition is predictable
                    w = int(rng.integers(len(self.vocab)))
                else:
                    w = int(self.successors[w, rng.choice(k, p=zipf)])
                words.append(w)
            out.append(" ".join(self.vocab[i] for i in words))
        return out


def make_language(seed: int = 0, n_words: int = 300, alphabet: str = "ABCDEFGHIJKLMNOPRSTUVWY",
                  successors: int = 4, min_word: int = 2, max_word: int = 7) -> SyntheticLanguage:
    """Random words (a small alphabet and short words make many near neighbours: the letter
    confusions then turn words into other words, which only the LM context can undo)."""
    rng = np.random.default_rng(seed)
    vocab: set[str] = set()
    while len(vocab) < n_words:
        vocab.add("".join(rng.choice(list(alphabet), size=int(rng.integers(min_word, max_word + 1)))))
    words = sorted(vocab)
    succ = rng.integers(len(words), size=(len(words), successors))
    return SyntheticLanguage(words, succ, seed)


def confusable(text: str, units: UnitDictionary, rng: np.random.Generator, confusion_rate: float = 0.1,
               letters: str = "ABCDEFGHIJKLMNOPRSTUVWY", **kw: float) -> SyntheticUtterance:
    """Emissions for ``text`` where each letter is, with ``confusion_rate``, beaten by another."""
    seq = letter_units(text, units)
    bar = units.index("|")
    conf = {}
    for pos, u in enumerate(seq):
        if u != bar and rng.random() < confusion_rate:
            wrong = units.index(str(rng.choice([c for c in letters if units.index(c) != u])))
            conf[pos] = wrong
    return synthesize(units, seq, rng, confusions=conf, **kw)  # type: ignore[arg-type]  # reason: **kw holds synthesize's keyword arguments
