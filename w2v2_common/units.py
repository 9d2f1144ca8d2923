"""The fairseq unit formats: ``dict.*.txt`` dictionaries, word boundaries, letters <-> text.

One owner for what the manifest generator writes, the fine-tuning task reads and the decoders
decode (fairseq documents none of it):

* a dictionary file ``dict.<labels>.txt`` holds one ``SYMBOL COUNT`` line per unit (fairseq
  also accepts a trailing ``#fairseq:overwrite``); fairseq's loader puts :data:`SPECIALS` at
  indices 0-3 before them, and ``<s>`` (index 0) is the CTC blank;
* letter labels (``.ltr``) are space-separated characters with :data:`LETTER_BOUNDARY` after
  every word (``H E L L O | W O R L D |``);
* sentencepiece pieces start a word with :data:`SP_BOUNDARY` (``▁HEL LO ▁WORLD``).

Each reader keeps its own policy (blank lines, duplicates) and messages; the line syntax and
the symbols are defined here only. Standard library only: ``w2v2_manifests`` uses it.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, TextIO

SPECIALS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>")
LETTER_BOUNDARY = "|"
SP_BOUNDARY = "\u2581"  # "▁", sentencepiece's word-start marker
OVERWRITE_FLAG = "#fairseq:overwrite"
LTR_DICT = "dict.ltr.txt"
DICT_GLOB = "dict.*.txt"


def dict_file_name(labels: str) -> str:
    """The dictionary file of a label kind: ``ltr`` -> ``dict.ltr.txt``."""
    return f"dict.{labels}.txt"


class DictLine(NamedTuple):
    symbol: str
    count: int  # type: ignore[assignment]  # reason: a public field name; NamedTuple allows shadowing tuple.count
    overwrite: bool  # the line ended with #fairseq:overwrite


def parse_dict_line(line: str, allow_overwrite: bool = True) -> DictLine | None:
    """One dictionary line (its line end already removed) as ``(symbol, count, overwrite)``;
    ``None`` when it is not ``SYMBOL COUNT`` (the caller words the error, naming file and line).
    Trailing blanks are ignored; the symbol is everything before the last space."""
    line = line.rstrip()
    overwrite = False
    if allow_overwrite and line.endswith(OVERWRITE_FLAG):
        overwrite = True
        line = line[: -len(OVERWRITE_FLAG)].rstrip()
    parts = line.rsplit(" ", 1)
    if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
        return None
    return DictLine(parts[0], int(parts[1]), overwrite)


def read_dict_symbols(path: str) -> set[str]:
    """The symbols a dictionary file lists, leniently (a malformed line counts with the text
    before its last space): for reports about a file this tool wrote, not for training."""
    symbols: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            parsed = parse_dict_line(raw.rstrip("\r\n"))
            symbols.add(parsed.symbol if parsed is not None else raw.rsplit(" ", 1)[0])
    return symbols


def write_dict_lines(fh: TextIO, entries: Iterable[tuple[str, int]]) -> None:
    """``SYMBOL COUNT`` lines in the given order (fairseq adds :data:`SPECIALS` itself)."""
    for symbol, count in entries:
        fh.write(f"{symbol} {count}\n")


def to_letters(words: str) -> str:
    """fairseq's letter format: "HELLO WORLD" -> "H E L L O | W O R L D |".

    Each word's characters separated by spaces, "|" after every word (including the last),
    exactly what fairseq's examples/wav2vec/libri_labels.py writes.
    """
    return " ".join(" ".join(word) + " " + LETTER_BOUNDARY for word in words.split())


def symbols_to_text(pieces: Sequence[str]) -> str:
    """Join unit symbols into text: ``|`` and ``▁`` become spaces (fairseq's post_process)."""
    text = "".join(pieces).replace(LETTER_BOUNDARY, " ").replace(SP_BOUNDARY, " ")
    return " ".join(text.split())


def is_blank_label(label: str) -> bool:
    """True for a label line with no unit besides word boundaries (nothing to train on)."""
    return not label.replace(LETTER_BOUNDARY, " ").strip()
