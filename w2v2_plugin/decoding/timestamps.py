"""Word boundaries and times from a CTC frame path.

A frame path has one unit per emission frame (blanks and repeats included): the Viterbi argmax
path, or the token path flashlight's beam search returns. A word starts at the first frame of
its first unit and ends after the last frame of its last unit (repeats of that unit extend
it); with a 20 ms frame stride, frame ``f`` starts at ``f * 0.02`` s.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from w2v2_common.units import LETTER_BOUNDARY, SP_BOUNDARY

from .units import UnitDictionary


class WordSpan(NamedTuple):
    """A word and its frames: ``start`` inclusive, ``end`` exclusive."""

    word: str
    start: int
    end: int

    def seconds(self, frame_seconds: float, offset: float = 0.0) -> tuple[float, float]:
        return (round(offset + self.start * frame_seconds, 3), round(offset + self.end * frame_seconds, 3))


def word_spans(frames: Sequence[int], units: UnitDictionary) -> list[WordSpan]:
    """Split a frame path into words (``|`` / silence, or a ``▁``-initial piece, start a new word)."""
    blank, silence = units.blank, units.silence
    specials = units.special_indices()
    spans: list[WordSpan] = []
    pieces: list[str] = []
    start = end = 0
    in_run = False  # the current frame run is a unit that belongs to the open word

    def close() -> None:
        nonlocal pieces
        word = "".join(pieces).replace(LETTER_BOUNDARY, "").replace(SP_BOUNDARY, "")
        if word:
            spans.append(WordSpan(word, start, end))
        pieces = []

    prev = None
    for t, tok in enumerate(frames):
        tok = int(tok)
        if tok == prev:
            if in_run:
                end = t + 1
            continue
        prev = tok
        in_run = False
        if tok == blank:
            continue
        if tok == silence or tok in specials:
            close()
            continue
        sym = units.symbols[tok]
        if sym == LETTER_BOUNDARY or sym.startswith(SP_BOUNDARY):
            close()
            if sym == LETTER_BOUNDARY or sym == SP_BOUNDARY:
                continue
        if not pieces:
            start = t
        pieces.append(sym)
        end = t + 1
        in_run = True
    close()
    return spans
