"""Word and character error rates (Levenshtein distance, as fairseq and sclite count them)."""
from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import editdistance


class ErrorCounts(NamedTuple):
    word_errors: int
    words: int
    char_errors: int
    chars: int

    def __add__(self, other: ErrorCounts) -> ErrorCounts:  # type: ignore[override]  # reason: tuple.__add__ concatenates; this adds counts
        return ErrorCounts(*(a + b for a, b in zip(self, other, strict=False)))


def count_errors(hyp: str, ref: str) -> ErrorCounts:
    """Edits between word lists, and between character strings (single spaces included)."""
    hw, rw = hyp.split(), ref.split()
    hc, rc = " ".join(hw), " ".join(rw)
    return ErrorCounts(editdistance.eval(hw, rw), len(rw), editdistance.eval(hc, rc), len(rc))


def total(counts: Iterable[ErrorCounts]) -> ErrorCounts:
    out = ErrorCounts(0, 0, 0, 0)
    for c in counts:
        out = out + c
    return out


def rates(c: ErrorCounts) -> tuple[float, float]:
    """(WER %, CER %); 0 references -> nan."""
    wer = 100.0 * c.word_errors / c.words if c.words else float("nan")
    cer = 100.0 * c.char_errors / c.chars if c.chars else float("nan")
    return wer, cer
