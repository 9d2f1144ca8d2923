"""The model's output units: a fairseq-format dictionary and how units spell text.

fairseq's ``Dictionary`` reserves ``<s> <pad> </s> <unk>`` at indices 0-3 and then reads one
``SYMBOL COUNT`` line per unit (``dict.ltr.txt``). wav2vec 2.0's CTC uses ``<s>`` (index 0) as
the blank unless the dictionary has ``<ctc_blank>``. Two kinds of unit sets are supported:

* letters, with ``|`` as the word boundary (``H E L L O | W O R L D |``);
* sentencepiece pieces, where ``▁`` starts a word (``▁HEL LO ▁WORLD``).

This module mirrors fairseq's loader (same indices for the same file, checked in the tests) but
reports bad lines as :class:`DecodingError` naming file and line.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from w2v2_common.units import (
    DICT_GLOB,
    LETTER_BOUNDARY,
    LTR_DICT,
    SP_BOUNDARY,
    SPECIALS,
    parse_dict_line,
    symbols_to_text,
)

from .errors import DecodingError, where

UnitKind = Literal["letter", "sentencepiece"]


@dataclass(frozen=True)
class UnitDictionary:
    """Unit symbols by index plus the indices the CTC decoders need."""

    symbols: tuple[str, ...]
    source: str = field(default="<memory>", metadata={"help": "file the units were read from"})
    # symbol -> index, derived from ``symbols`` (set in __post_init__ because the class is frozen)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(self.symbols)})

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> UnitDictionary:
        """Read a fairseq dictionary file (``SYMBOL COUNT [#fairseq:overwrite]`` lines)."""
        path = Path(path)
        if not path.is_file():
            raise DecodingError(f"{path}: unit dictionary not found; pass the model's dict.ltr.txt "
                                f"(or the fine-tuning data directory that holds it)")
        symbols = list(SPECIALS)
        seen = {s: i for i, s in enumerate(symbols)}
        with path.open(encoding="utf-8") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                entry = parse_dict_line(raw.rstrip("\r\n"))
                if entry is None:
                    raise DecodingError(f"{where(path, lineno)}: expected 'SYMBOL COUNT', got {raw.strip()!r}; "
                                        f"fix the line (fairseq dictionary format)")
                sym = entry.symbol
                if sym in seen and not entry.overwrite:
                    raise DecodingError(f"{where(path, lineno)}: duplicate unit {sym!r}; remove it or mark the "
                                        f"line '#fairseq:overwrite'")
                if sym not in seen:
                    seen[sym] = len(symbols)
                    symbols.append(sym)
        if len(symbols) == len(SPECIALS):
            raise DecodingError(f"{path}: unit dictionary has no units; it must list one 'SYMBOL COUNT' per line")
        return cls(tuple(symbols), str(path))

    @classmethod
    def from_symbols(cls, symbols: Iterable[str], source: str = "<memory>") -> UnitDictionary:
        """From a full symbol list (e.g. ``fairseq.data.Dictionary.symbols``), specials included."""
        return cls(tuple(symbols), source)

    @classmethod
    def from_units(cls, units: Iterable[str], source: str = "<memory>") -> UnitDictionary:
        """From the unit list only: fairseq's four specials are put first, as its loader does."""
        syms = list(SPECIALS)
        syms += [u for u in units if u not in SPECIALS]
        return cls(tuple(syms), source)

    # ---- lookups ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, sym: object) -> bool:
        return sym in self._index

    def index(self, sym: str) -> int:
        """Index of ``sym``; ``unk`` when absent (fairseq's behaviour)."""
        return self._index.get(sym, self.unk)

    @property
    def unk(self) -> int:
        return self._index.get("<unk>", 3)

    @property
    def eos(self) -> int:
        return self._index.get("</s>", 2)

    @property
    def blank(self) -> int:
        """CTC blank: ``<ctc_blank>`` if present, else ``<s>`` (index 0), as fairseq's CTC."""
        return self._index.get("<ctc_blank>", self._index.get("<s>", 0))

    @property
    def kind(self) -> UnitKind:
        """``letter`` if ``|`` is a unit, ``sentencepiece`` if some unit starts with ``▁``."""
        if LETTER_BOUNDARY in self:
            return "letter"
        if any(s.startswith(SP_BOUNDARY) for s in self.symbols):
            return "sentencepiece"
        raise DecodingError(f"{self.source}: units have no word boundary ('|' for letters, '▁' for "
                            f"sentencepiece); word-level decoding needs one")

    @property
    def silence(self) -> int:
        """The unit the decoders treat as silence between words.

        ``|`` for letters; a lone ``▁`` piece for sentencepiece if it exists; otherwise ``</s>``
        (never emitted by a CTC model, so silence then only comes from blanks), as fairseq does.
        """
        for sym in (LETTER_BOUNDARY, SP_BOUNDARY):
            if sym in self:
                return self.index(sym)
        return self.eos

    def special_indices(self) -> set[int]:
        """Indices that never produce text (fairseq specials, blank)."""
        return {self._index[s] for s in (*SPECIALS, "<ctc_blank>") if s in self}

    # ---- text ---------------------------------------------------------------------------
    def units_to_text(self, idxs: Sequence[int]) -> str:
        """Unit indices (already CTC-collapsed, no blanks) to words separated by single spaces."""
        specials = self.special_indices()
        pieces = [self.symbols[i] for i in idxs if i not in specials]
        return symbols_to_text(pieces)

    def ctc_collapse(self, frame_idxs: Sequence[int]) -> list[int]:
        """Merge repeats, then drop blanks: a CTC frame path to its unit sequence."""
        out: list[int] = []
        prev = -1
        blank = self.blank
        for i in frame_idxs:
            if i != prev and i != blank:
                out.append(int(i))
            prev = i
        return out


def resolve_dictionary(path: str | Path) -> UnitDictionary:
    """A dictionary file, or a directory holding ``dict.ltr.txt`` (or a single ``dict.*.txt``)."""
    p = Path(path)
    if p.is_dir():
        ltr = p / LTR_DICT
        if ltr.is_file():
            return UnitDictionary.load(ltr)
        cands = sorted(p.glob(DICT_GLOB))
        if len(cands) == 1:
            return UnitDictionary.load(cands[0])
        raise DecodingError(f"{p}: expected one dict.<labels>.txt in the directory, found "
                            f"{[c.name for c in cands] or 'none'}; pass the dictionary file itself")
    return UnitDictionary.load(p)
