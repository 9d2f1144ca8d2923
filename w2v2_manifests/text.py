"""Transcript normalization and the fairseq letter format.

The rules (also in manifests/README.md), applied in this order:

1. Unicode NFC (canonical composition: "e" + combining acute becomes "é"; nothing else).
2. Control characters (tabs, newlines, ...) become spaces.
3. ``punctuation="strip"`` (default): typographic apostrophes (’ ‘ ʼ) become ``'``; then
   every character in a Unicode punctuation (P*) or symbol (S*) category except ``'``
   becomes a space, so "well-known" -> "well known" and "$5" -> "5". Tokens made only of
   apostrophes are dropped. ``punctuation="keep"`` leaves every character as it is.
4. ``case="upper"`` (default, LibriSpeech's convention), ``"lower"`` or ``"keep"``.
5. Runs of whitespace collapse to one space; leading/trailing whitespace goes.
6. Digits stay as they are (``digits="keep"``); ``digits="error"`` rejects any transcript
   with a digit, naming the file and line, so numbers can be written out as words upstream.
7. A ``|`` left in the text is an error: it is the word boundary of the .ltr format.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from w2v2_common.errors import W2v2Error
from w2v2_common.units import LETTER_BOUNDARY, to_letters

# to_letters is re-exported: w2v2_manifests' public API has always offered it here.
__all__ = ["CASE_CHOICES", "DIGITS_CHOICES", "PUNCTUATION_CHOICES", "NormalizationError", "TextConfig", "normalize",
           "to_letters"]

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})

CASE_CHOICES = ("upper", "lower", "keep")
PUNCTUATION_CHOICES = ("strip", "keep")
DIGITS_CHOICES = ("keep", "error")


class NormalizationError(W2v2Error, ValueError):
    """The text cannot be used as given; the caller adds the file and line."""


@dataclass(frozen=True)
class TextConfig:
    case: str = field(default="upper", metadata={
        "help": "letter case of the labels: upper (LibriSpeech), lower or keep",
        "choices": CASE_CHOICES})
    punctuation: str = field(default="strip", metadata={
        "help": "strip: punctuation and symbols become spaces, apostrophes stay; "
                "keep: text kept as written",
        "choices": PUNCTUATION_CHOICES})
    digits: str = field(default="keep", metadata={
        "help": "keep: digits stay as written; error: stop at any transcript with a digit",
        "choices": DIGITS_CHOICES})


def _strip_char(ch: str) -> str:
    if ch == "'":
        return ch
    cat = unicodedata.category(ch)
    return " " if cat[0] in "PS" else ch


def normalize(text: str, cfg: TextConfig) -> str:
    """Apply the module's rules to one transcript; raise NormalizationError if unusable."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)
    if cfg.punctuation == "strip":
        text = "".join(_strip_char(ch) for ch in text.translate(_APOSTROPHES))
        words = [w for w in text.split() if w.strip("'")]
    else:
        words = text.split()
    text = " ".join(words)
    if cfg.case == "upper":
        text = text.upper()
    elif cfg.case == "lower":
        text = text.lower()
    if cfg.digits == "error":
        digits = sorted({ch for ch in text if unicodedata.category(ch) == "Nd"})
        if digits:
            raise NormalizationError(
                f"contains digits ({''.join(digits)}); write numbers out as words or use --digits keep")
    if LETTER_BOUNDARY in text:
        raise NormalizationError(
            "contains '|', the word-boundary symbol of .ltr labels; remove it or use --punctuation strip")
    return text
