"""Recognise and sanity-check n-gram LM files before KenLM sees them.

KenLM aborts the process (or throws from C++) on a file it cannot read, on an order above its
compiled maximum, or on an unfinished binary. These checks turn each case into one
:class:`DecodingError` line naming the file and the fix.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import DecodingError, where

# KENLM_MAX_ORDER of the KenLM compiled into the flashlight-text wheel (and of the lmplz /
# build_binary that tools/build_kenlm.sh builds): KenLM's default, 6.
KENLM_MAX_ORDER = 6

_MAGIC_BEFORE_VERSION = b"mmap lm http://kheafield.com/code format version"
_MAGIC_V5 = b"mmap lm http://kheafield.com/code format version 5\n\0"
_MAGIC_INCOMPLETE = b"mmap lm http://kheafield.com/code incomplete\n"
# The binary header is a ``Sanity`` struct (magic padded to 8 bytes, 3 floats, 3 uint32,
# 1 uint64 = 88 bytes on every 64-bit ABI) followed by ``FixedWidthParameters`` whose first
# byte is the order; the 20-byte struct is followed by one uint64 count per order
# (lm/binary_format.{hh,cc} in KenLM).
_SANITY_SIZE = ((len(_MAGIC_V5) + 1 - 1) // 8 + 1) * 8 + 3 * 4 + 3 * 4 + 8

LMFormat = Literal["arpa", "binary"]


@dataclass(frozen=True)
class LMInfo:
    """What the file is, its order and (ARPA only) its unigram vocabulary."""

    path: str
    format: LMFormat
    order: int
    counts: tuple[int, ...] = ()
    vocab: frozenset[str] | None = None


def inspect_lm(path: str | Path, read_vocab: bool = True) -> LMInfo:
    """Identify ``path`` as ARPA or KenLM binary and read its order; raise on anything else."""
    path = Path(path)
    if not path.is_file():
        raise DecodingError(f"{path}: language model not found; build one with 'w2v2-lm build CORPUS --out DIR'")
    with path.open("rb") as f:
        head = f.read(4096)
    if head.startswith(b"\x1f\x8b"):
        raise DecodingError(f"{path}: gzip-compressed LM; decompress it (gunzip) or convert it with "
                            f"build_binary")
    if head.startswith(_MAGIC_INCOMPLETE):
        raise DecodingError(f"{path}: KenLM binary that did not finish building; rerun build_binary")
    if head.startswith(_MAGIC_BEFORE_VERSION):
        if not head.startswith(_MAGIC_V5):
            raise DecodingError(f"{path}: KenLM binary of another format version; rebuild it from the ARPA "
                                f"with this project's build_binary")
        if len(head) <= _SANITY_SIZE:
            raise DecodingError(f"{path}: truncated KenLM binary; rebuild it with build_binary")
        order = head[_SANITY_SIZE]
        n_counts = min(order, (len(head) - _SANITY_SIZE - 20) // 8)
        counts = struct.unpack_from(f"<{n_counts}Q", head, _SANITY_SIZE + 20) if n_counts > 0 else ()
        info = LMInfo(str(path), "binary", int(order), tuple(int(c) for c in counts))
    else:
        info = _inspect_arpa(path, read_vocab)
    if info.order < 1:
        raise DecodingError(f"{path}: LM has order {info.order}; the file is damaged, rebuild it")
    if info.order > KENLM_MAX_ORDER:
        raise DecodingError(f"{path}: {info.order}-gram LM but KenLM here is compiled for at most "
                            f"{KENLM_MAX_ORDER}-grams; rebuild with --order {KENLM_MAX_ORDER} or lower")
    return info


def _inspect_arpa(path: Path, read_vocab: bool) -> LMInfo:
    """Parse the ARPA header (``\\data\\`` + ``ngram N=count``) and optionally the unigrams."""
    not_lm = (f"{path}: not an ARPA or KenLM binary language model; build one with "
              f"'w2v2-lm build' (or lmplz + build_binary)")
    counts: dict[int, int] = {}
    vocab: set[str] = set()
    try:
        with path.open(encoding="utf-8") as f:
            lineno = 0
            for raw in f:  # skip free text before \data\ (lmplz writes none; SRILM may)
                lineno += 1
                if raw.strip() == "\\data\\":
                    break
                if lineno > 1000:
                    raise DecodingError(not_lm)
            else:
                raise DecodingError(not_lm)
            for raw in f:
                lineno += 1
                line = raw.strip()
                if not line:
                    if counts:
                        break
                    continue
                if not line.startswith("ngram "):
                    raise DecodingError(f"{where(path, lineno)}: expected 'ngram N=COUNT' in the ARPA header, "
                                        f"got {line[:40]!r}; the file is damaged, rebuild it")
                try:
                    n, c = line[len("ngram "):].split("=")
                    counts[int(n)] = int(c)
                except ValueError:
                    raise DecodingError(f"{where(path, lineno)}: bad ARPA header line {line[:40]!r}; "
                                        f"rebuild the LM") from None
            if not counts:
                raise DecodingError(f"{path}: ARPA file has no 'ngram N=COUNT' lines; rebuild the LM")
            if read_vocab:
                for raw in f:
                    lineno += 1
                    if raw.strip() == "\\1-grams:":
                        break
                else:
                    raise DecodingError(f"{path}: ARPA file has no \\1-grams: section; rebuild the LM")
                for raw in f:
                    lineno += 1
                    fields = raw.split("\t")
                    if len(fields) < 2:
                        if raw.strip() == "" or raw.startswith("\\"):
                            break
                        raise DecodingError(f"{where(path, lineno)}: ARPA unigram line must be "
                                            f"'LOGPROB<TAB>WORD[<TAB>BACKOFF]'; rebuild the LM")
                    vocab.add(fields[1].strip())
    except UnicodeDecodeError:
        raise DecodingError(not_lm) from None
    order = max(counts)
    if sorted(counts) != list(range(1, order + 1)):
        raise DecodingError(f"{path}: ARPA header lists n-gram orders {sorted(counts)}, expected 1..{order}; "
                            f"rebuild the LM")
    return LMInfo(str(path), "arpa", order, tuple(counts[n] for n in range(1, order + 1)),
                  frozenset(vocab) if read_vocab else None)
