"""Lexicons: each word with its spelling(s) in the model's units.

File format (fairseq / flashlight): one ``WORD<TAB>UNIT UNIT ...`` line per spelling; a word
may have several lines. Letter lexicons end each spelling with ``|`` (the word boundary the
model emits after every word), e.g. ``HELLO\tH E L L O |``; sentencepiece lexicons spell the
word with its pieces, e.g. ``HELLO\t▁HEL LO``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from w2v2_common.fileio import atomic_text
from w2v2_common.units import LETTER_BOUNDARY, SP_BOUNDARY

from .errors import DecodingError, where
from .units import UnitDictionary


@dataclass(frozen=True)
class Lexicon:
    """Word -> spellings (lists of unit symbols), in file order."""

    entries: Mapping[str, tuple[tuple[str, ...], ...]]
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.entries)

    def words(self) -> list[str]:
        return list(self.entries)


def load_lexicon(path: str | Path, units: UnitDictionary | None = None) -> Lexicon:
    """Read and check a lexicon; with ``units``, every unit of every spelling must be in it."""
    path = Path(path)
    if not path.is_file():
        raise DecodingError(f"{path}: lexicon not found; build one with 'w2v2-lm build' (writes lexicon.txt)")
    entries: dict[str, list[tuple[str, ...]]] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            fields = raw.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise DecodingError(f"{where(path, lineno)}: word {fields[0]!r} has no spelling; expected "
                                    f"'WORD<TAB>UNIT UNIT ...'")
            word, spelling = fields[0], tuple(fields[1:])
            if units is not None:
                for u in spelling:
                    if u not in units or units.index(u) in units.special_indices():
                        raise DecodingError(
                            f"{where(path, lineno)}: unit {u!r} of word {word!r} is not in the model's "
                            f"dictionary {units.source}; rebuild the lexicon with that dictionary "
                            f"('w2v2-lm build --dict ...')")
            entries.setdefault(word, []).append(spelling)
    if not entries:
        raise DecodingError(f"{path}: lexicon is empty; build one with 'w2v2-lm build'")
    return Lexicon({w: tuple(s) for w, s in entries.items()}, str(path))


def write_lexicon(path: str | Path, lexicon: Lexicon | Mapping[str, Sequence[Sequence[str]]]) -> None:
    """Write atomically (temp file + rename)."""
    entries = lexicon.entries if isinstance(lexicon, Lexicon) else lexicon
    with atomic_text(path) as f:
        for word, spellings in entries.items():
            for sp in spellings:
                f.write(f"{word}\t{' '.join(sp)}\n")


class Speller:
    """Spells words in the model's units (letters + ``|``, or sentencepiece pieces)."""

    def __init__(self, units: UnitDictionary, spm_model: str | Path | None = None,
                 case: str = "auto") -> None:
        self.units = units
        self.kind = units.kind
        self._sp = None
        if self.kind == "sentencepiece":
            if spm_model is None:
                raise DecodingError(f"{units.source}: sentencepiece units need the sentencepiece model that "
                                    f"made them to spell words; pass --spm-model")
            import sentencepiece as spm  # local: only needed for sentencepiece units

            self._sp = spm.SentencePieceProcessor(model_file=str(spm_model))
        self.case = self._detect_case(units) if case == "auto" else case
        if self.case not in ("upper", "lower", "keep"):
            raise DecodingError(f"case must be one of auto, upper, lower, keep (got {case!r})")

    @staticmethod
    def _detect_case(units: UnitDictionary) -> str:
        """Follow the dictionary: all-uppercase letters -> upper, all-lowercase -> lower."""
        letters = "".join(s for s in units.symbols if not s.startswith("<")).replace(SP_BOUNDARY, "")
        alpha = [c for c in letters if c.isalpha()]
        if alpha and all(c.isupper() for c in alpha):
            return "upper"
        if alpha and all(c.islower() for c in alpha):
            return "lower"
        return "keep"

    def normalize(self, word: str) -> str:
        return word.upper() if self.case == "upper" else word.lower() if self.case == "lower" else word

    def spell(self, word: str) -> tuple[str, ...]:
        """Units for ``word`` (already normalized)."""
        if self._sp is not None:
            return tuple(self._sp.encode(word, out_type=str))
        return tuple(word) + (LETTER_BOUNDARY,)

    def unknown_units(self, spelling: Iterable[str]) -> list[str]:
        specials = self.units.special_indices()
        return [u for u in spelling if u not in self.units or self.units.index(u) in specials]


def build_lexicon(words: Iterable[str], speller: Speller,
                  on_unknown: Callable[[str, list[str]], None]) -> Lexicon:
    """Spell each word; words with units outside the dictionary go to ``on_unknown``."""
    entries: dict[str, tuple[tuple[str, ...], ...]] = {}
    for w in words:
        if w in entries:
            continue
        sp = speller.spell(w)
        bad = speller.unknown_units(sp)
        if bad or not sp:
            on_unknown(w, bad)
            continue
        entries[w] = (sp,)
    return Lexicon(entries)
