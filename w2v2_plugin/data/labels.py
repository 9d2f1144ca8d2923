"""Transcripts for CTC fine-tuning: label files, target dictionaries, up-front checks.

Layout (fairseq's, documented here because fairseq does not):

* ``{split}.tsv``: the audio manifest (first line the root directory, then one
  ``relative/path.wav<TAB>num_samples`` line per utterance).
* ``{split}.{labels}``: one transcript per manifest entry, same order, same count.
  For letters (``labels: ltr``) each line is space-separated characters with ``|`` as the
  word boundary, e.g. ``H E L L O | W O R L D |``; ``dict.ltr.txt`` lists the symbols
  (``<symbol> <count>`` per line; fairseq prepends ``<s> <pad> </s> <unk>``, and ``<s>``,
  index 0, is the CTC blank).
* Sentencepiece units: ``{split}.wrd`` holds plain words; with ``sentencepiece_model`` set
  the words are encoded into pieces here and the unit dictionary is derived from the model,
  so no ``dict.wrd.txt`` is needed.

Everything that can be wrong with these files is checked when the split is loaded, before
the first update, and reported as one line naming the file and line (:class:`LabelError`).
"""
from __future__ import annotations

import collections
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from fairseq.data import Dictionary

from w2v2_common.errors import W2v2Error
from w2v2_common.units import is_blank_label, parse_dict_line


class LabelError(W2v2Error, ValueError):
    """Bad transcripts or dictionary; the message names the file and says what to do."""


# --------------------------------------------------------------------------- dictionary


def load_dictionary(path: str) -> Dictionary:
    """fairseq ``Dictionary.load`` with one-line errors naming the file and line."""
    if not os.path.isfile(path):
        raise LabelError(
            f"{path}: target dictionary not found; create it (one '<symbol> <count>' per line, "
            f"e.g. from the training transcripts) or point task.target_dictionary at its folder")
    d = Dictionary()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                raise LabelError(f"{path}:{lineno}: empty line in the dictionary; remove it")
            # fairseq's "#fairseq:overwrite" flag is not accepted: a training dictionary
            # lists each symbol once (see the duplicate check below)
            entry = parse_dict_line(line, allow_overwrite=False)
            if entry is None:
                raise LabelError(
                    f"{path}:{lineno}: expected '<symbol> <count>', got {line!r}")
            sym, count = entry.symbol, entry.count
            if sym in d.indices:
                raise LabelError(f"{path}:{lineno}: symbol {sym!r} listed twice; keep one")
            d.add_symbol(sym, n=count)
    if len(d) == d.nspecial:
        raise LabelError(f"{path}: the dictionary lists no symbols")
    return d


def dictionary_to_state(d: Dictionary) -> dict[str, Any]:
    """Plain-data form of a Dictionary (lists, ints, strs) so checkpoints load with
    ``torch.load(weights_only=True)``; fairseq pickles the Dictionary object itself."""
    return {
        "symbols": list(d.symbols),
        "count": [int(c) for c in d.count],
        "bos": d.bos_word, "pad": d.pad_word, "eos": d.eos_word, "unk": d.unk_word,
        "nspecial": int(d.nspecial),
    }


def dictionary_from_state(state: dict[str, Any] | Dictionary) -> Dictionary:
    """Inverse of :func:`dictionary_to_state` (a Dictionary object passes through, for
    checkpoints written by fairseq itself)."""
    if isinstance(state, Dictionary):
        return state
    d = Dictionary(bos=state["bos"], pad=state["pad"], eos=state["eos"], unk=state["unk"],
                   add_special_symbols=False)
    for sym, count in zip(state["symbols"], state["count"], strict=False):
        d.add_symbol(sym, n=count, overwrite=True)
    d.bos_index, d.pad_index = d.indices[state["bos"]], d.indices[state["pad"]]
    d.eos_index, d.unk_index = d.indices[state["eos"]], d.indices[state["unk"]]
    d.nspecial = state["nspecial"]
    return d


# ------------------------------------------------------------------------ sentencepiece


class SentencePieceUnits:
    """Words <-> sentencepiece units, and the unit dictionary derived from the model."""

    def __init__(self, model_path: str) -> None:
        if not os.path.isfile(model_path):
            raise LabelError(f"{model_path}: sentencepiece model not found; "
                             f"train one with spm_train or fix task.sentencepiece_model")
        import sentencepiece as spm

        self.path = model_path
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(model_path)
        except Exception as e:  # noqa: BLE001 - sentencepiece raises bare OSError/RuntimeError
            raise LabelError(f"{model_path}: not a sentencepiece model ({e})") from None

    def dictionary(self) -> Dictionary:
        """fairseq specials first (``<s>`` = CTC blank), then every normal piece in the
        model's id order; control pieces and the model's own unknown piece are left out
        because the Dictionary has its own."""
        d = Dictionary()
        for i in range(self.sp.GetPieceSize()):
            if self.sp.IsControl(i) or self.sp.IsUnknown(i):
                continue
            piece = self.sp.IdToPiece(i)
            if piece not in d.indices:
                d.add_symbol(piece, n=1)
        return d

    def encode(self, words: str) -> str:
        """``"hello world"`` -> ``"▁hel lo ▁world"`` (space-separated pieces)."""
        return " ".join(self.sp.EncodeAsPieces(words.strip()))

    def unknown_chars(self, chars: Iterable[str]) -> set[str]:
        """Characters the model cannot represent (they would become its unknown piece)."""
        unk = self.sp.unk_id()
        return {c for c in chars if not c.isspace() and unk in self.sp.EncodeAsIds(c)}


# ------------------------------------------------------------------------- label files


def count_manifest_entries(manifest_path: str) -> int:
    """Entries in a ``.tsv`` manifest (all lines after the root-directory line)."""
    with open(manifest_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return max(len(lines) - 1, 0)


def read_label_lines(label_path: str, manifest_path: str, num_entries: int | None = None
                     ) -> list[str]:
    """All lines of a label file, checked to be one non-empty transcript per manifest entry.

    ``num_entries`` defaults to the manifest's entry count; the returned list is aligned with
    the manifest's entry order (line i -> entry i).
    """
    if not os.path.isfile(label_path):
        raise LabelError(f"{label_path}: label file not found; it must sit next to "
                         f"{os.path.basename(manifest_path)} with one transcript per audio file")
    if num_entries is None:
        num_entries = count_manifest_entries(manifest_path)
    with open(label_path, encoding="utf-8") as f:
        try:
            text = f.read()
        except UnicodeDecodeError as e:
            raise LabelError(f"{label_path}: not UTF-8 text ({e.reason} at byte {e.start}); "
                             f"re-encode it as UTF-8") from None
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()  # trailing newlines/blank lines end the file (as for manifests)
    if len(lines) != num_entries:
        more_or_fewer = "more" if len(lines) > num_entries else "fewer"
        raise LabelError(
            f"{label_path}: {len(lines)} transcript lines but {manifest_path} has "
            f"{num_entries} audio entries ({more_or_fewer} labels than audio); the files must "
            f"be line-aligned: one transcript per manifest entry, in the same order")
    for i, line in enumerate(lines):
        if is_blank_label(line):
            raise LabelError(
                f"{label_path}:{i + 1}: empty transcript (manifest entry {i + 1}); CTC needs "
                f"at least one label per utterance: remove the entry from both files or add its text")
    return lines


class UnknownSymbol(NamedTuple):
    symbol: str
    count: int  # type: ignore[assignment]  # reason: a public field name; NamedTuple allows shadowing tuple.count
    first_line: int  # 1-based line in the label file


def find_unknown_symbols(lines: Sequence[str], known: set[str] | Dictionary,
                         by_char: bool = False) -> list[UnknownSymbol]:
    """Symbols (space-separated tokens, or characters with ``by_char``) absent from
    ``known``, most frequent first."""
    counts: collections.Counter[str] = collections.Counter()
    first: dict[str, int] = {}
    contains = known.indices.__contains__ if isinstance(known, Dictionary) else known.__contains__
    for lineno, line in enumerate(lines, 1):
        tokens = [c for c in line if not c.isspace()] if by_char else line.split()
        for tok in tokens:
            if not contains(tok):
                counts[tok] += 1
                first.setdefault(tok, lineno)
    return [UnknownSymbol(s, n, first[s]) for s, n in counts.most_common()]


def describe_unknown(unknown: Sequence[UnknownSymbol], limit: int = 10) -> str:
    parts = [f"{u.symbol!r} x{u.count} (first on line {u.first_line})" for u in unknown[:limit]]
    if len(unknown) > limit:
        parts.append(f"... and {len(unknown) - limit} more")
    return ", ".join(parts)


@dataclass
class LabelSet:
    """A split's transcripts, ready for ``AddTargetDataset``."""

    lines: list[str]  # one label string per manifest entry (units for spm)
    path: str


def load_labels(label_path: str, manifest_path: str, dictionary: Dictionary, dict_name: str,
                spm: SentencePieceUnits | None = None, num_entries: int | None = None) -> LabelSet:
    """Read and check a split's transcripts against the target dictionary.

    Raises :class:`LabelError` for a count mismatch, an empty transcript, or symbols the
    dictionary does not have (each unknown symbol listed with its count and first line).
    """
    lines = read_label_lines(label_path, manifest_path, num_entries)
    if spm is not None:
        chars = {c for line in lines for c in line}
        bad = spm.unknown_chars(chars)
        if bad:
            unknown = [u for u in find_unknown_symbols(lines, set(), by_char=True)
                       if u.symbol in bad]
            raise LabelError(
                f"{label_path}: {len(unknown)} characters cannot be encoded by sentencepiece "
                f"model {spm.path}: {describe_unknown(unknown)}; normalise the transcripts or "
                f"retrain the model on them")
        lines = [spm.encode(line) for line in lines]
    unknown = find_unknown_symbols(lines, dictionary)
    if unknown:
        raise LabelError(
            f"{label_path}: {len(unknown)} symbols are not in {dict_name}: "
            f"{describe_unknown(unknown)}; add them to the dictionary or normalise the transcripts")
    return LabelSet(lines=lines, path=label_path)


class LabelEncoder:
    """Label string -> LongTensor of dictionary indices (no EOS: CTC targets)."""

    def __init__(self, dictionary: Dictionary) -> None:
        self.dictionary = dictionary

    def __call__(self, label: str) -> torch.Tensor:
        return self.dictionary.encode_line(label, append_eos=False, add_if_not_exist=False)


def label_len(label: str) -> int:
    """Number of units in a label string (used for size-based batching/filtering)."""
    return len(label.split())
