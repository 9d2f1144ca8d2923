"""``w2v2-lm build``: word (or unit) n-gram LMs with KenLM, plus the matching lexicon.

Steps: normalise the corpus to the model's casing (when the unit dictionary is given) and
check that every word can be spelled in the model's units; ``lmplz`` (modified Kneser-Ney) to
ARPA; ``build_binary`` to a KenLM binary; the lexicon from the ARPA's unigrams, spelled in the
model's units; ``lm_info.json`` recording what was built from what. Every output is written to
a temp name and renamed, so an interrupted build never leaves a half-written file.
"""
from __future__ import annotations

import gzip
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, NamedTuple

from w2v2_common.fileio import mkstemp, write_text_atomic
from w2v2_common.units import LETTER_BOUNDARY, SPECIALS

from ..decoding.errors import DecodingError, where
from ..decoding.lexicon import Lexicon, Speller, build_lexicon, write_lexicon
from ..decoding.lm_files import KENLM_MAX_ORDER, inspect_lm
from ..decoding.units import UnitDictionary, resolve_dictionary
from .kenlm_tools import KenLMTools, find_kenlm_tools, run_build_binary, run_lmplz

LM_SPECIAL_WORDS = frozenset({"<s>", "</s>", "<unk>"})


@dataclass
class LMBuildConfig:
    """Inputs and knobs of ``w2v2-lm build``."""

    corpus: str = field(metadata={"help": "text corpus, one sentence per line (.gz allowed)"})
    out: str = field(metadata={"help": "output directory"})
    order: int = field(default=4, metadata={"help": f"n-gram order (KenLM here supports <= {KENLM_MAX_ORDER})"})
    dict: str | None = field(default=None, metadata={"help": "model's unit dictionary (dict.ltr.txt) or its "
                                                             "directory: sets casing and checks every unit"})
    spm_model: str | None = field(default=None, metadata={"help": "sentencepiece model, for sentencepiece units"})
    case: str = field(default="auto", metadata={"help": "auto (follow --dict) | upper | lower | keep"})
    unit_lm: bool = field(default=False, metadata={"help": "build a unit-level LM (for --decoder lexfree) "
                                                           "instead of a word LM + lexicon"})
    prune: tuple[int, ...] = field(default=(), metadata={"help": "lmplz --prune thresholds per order"})
    binary_type: str = field(default="trie", metadata={"help": "build_binary structure: trie | probing"})
    drop_oov_words: bool = field(default=False, metadata={"help": "leave words with units outside --dict out "
                                                                  "of the lexicon (counted) instead of failing"})
    memory: str = field(default="20%", metadata={"help": "lmplz -S memory budget"})
    kenlm_bin: str | None = field(default=None, metadata={"help": "directory with lmplz and build_binary"})


class LMBuildResult(NamedTuple):
    arpa: Path
    binary: Path
    lexicon: Path | None
    info: Path
    sentences: int
    tokens: int
    vocab: int
    lexicon_words: int
    dropped_words: int
    seconds: float


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _corpus_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with _open_text(path) as f:
            yield from enumerate(f, 1)
    except UnicodeDecodeError as e:
        raise DecodingError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8") from None


def _speller(cfg: LMBuildConfig) -> tuple[UnitDictionary | None, Speller | None]:
    if cfg.dict is None:
        if cfg.unit_lm:
            raise DecodingError("--unit-lm needs --dict (the units to build the LM over)")
        return None, None
    units = resolve_dictionary(cfg.dict)
    return units, Speller(units, cfg.spm_model, cfg.case)


def _check_build_inputs(cfg: LMBuildConfig, corpus: Path) -> None:
    if not corpus.is_file():
        raise DecodingError(f"{corpus}: corpus not found; pass a text file with one sentence per line")
    if not 1 <= cfg.order <= KENLM_MAX_ORDER:
        raise DecodingError(f"--order {cfg.order}: KenLM here supports orders 1..{KENLM_MAX_ORDER}; "
                            f"{'orders above need a rebuild with KENLM_MAX_ORDER raised' if cfg.order > 1 else ''}"
                            .rstrip("; "))
    if cfg.order == 1:
        raise DecodingError("--order 1: lmplz needs order >= 2")


class CorpusStats(NamedTuple):
    sentences: int
    tokens: int
    bad_words: dict[str, list[str]]  # word -> its units outside the model's dictionary


def _check_word(cfg: LMBuildConfig, corpus: Path, lineno: int, word: str, speller: Speller | None) -> list[str]:
    """The word's units outside the dictionary (raising unless they may be dropped)."""
    if word in LM_SPECIAL_WORDS or word in SPECIALS:
        raise DecodingError(f"{where(corpus, lineno)}: the corpus contains the reserved token "
                            f"{word!r}; remove it")
    if speller is None:
        return []
    bad = speller.unknown_units(speller.spell(word))
    if bad and (not cfg.drop_oov_words or cfg.unit_lm):
        raise DecodingError(
            f"{where(corpus, lineno)}: word {word!r} uses unit(s) {sorted(set(bad))} that "
            f"are not in the model's dictionary {speller.units.source}; normalise the corpus"
            f"{'' if cfg.unit_lm else ' or pass --drop-oov-words'}")
    return bad


def write_normalized_corpus(cfg: LMBuildConfig, corpus: Path, f: IO[str], speller: Speller | None,
                            progress: bool) -> CorpusStats:
    """lmplz's input: the corpus in the model's casing (words, or units with ``unit_lm``),
    every new word checked against the model's units on its first line."""
    from tqdm import tqdm

    seen: set[str] = set()
    bad_words: dict[str, list[str]] = {}
    n_sent = n_tok = 0
    for lineno, line in tqdm(_corpus_lines(corpus), desc="corpus", unit=" lines", disable=not progress,
                             mininterval=1.0):
        words = line.split()
        if not words:
            continue
        if speller is not None:
            words = [speller.normalize(w) for w in words]
        for w in words:
            if w not in seen:
                seen.add(w)
                bad = _check_word(cfg, corpus, lineno, w, speller)
                if bad:
                    bad_words[w] = bad
        if cfg.unit_lm and speller is not None:  # (--unit-lm without --dict was refused before)
            f.write(" ".join(u for w in words for u in speller.spell(w)) + "\n")
            n_tok += sum(len(speller.spell(w)) for w in words)
        else:
            f.write(" ".join(words) + "\n")
            n_tok += len(words)
        n_sent += 1
    return CorpusStats(n_sent, n_tok, bad_words)


def _run_kenlm(cfg: LMBuildConfig, tools: KenLMTools, corpus: Path, out: Path, speller: Speller | None,
               progress: bool) -> tuple[Path, Path, CorpusStats]:
    """Normalised corpus -> lmplz -> ARPA -> build_binary; returns (arpa, binary, stats)."""
    # A scratch file in the output dir (same disk as the outputs), removed at the end.
    fd, tmp = mkstemp(dir=str(out), prefix=".corpus.norm.txt.", suffix=".tmp")
    norm_path = Path(tmp)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            stats = write_normalized_corpus(cfg, corpus, f, speller, progress)
        if stats.sentences == 0:
            raise DecodingError(f"{corpus}: corpus has no words; it needs one sentence per line")
        stem = f"{cfg.order}gram" + (".units" if cfg.unit_lm else "")
        arpa, binary = out / f"{stem}.arpa", out / f"{stem}.bin"
        with tempfile.TemporaryDirectory(dir=out, prefix=".lmplz.") as tmpd:
            run_lmplz(tools, norm_path, arpa, cfg.order, cfg.memory, cfg.prune, Path(tmpd))
        run_build_binary(tools, arpa, binary, cfg.binary_type)
    finally:
        norm_path.unlink(missing_ok=True)
    return arpa, binary, stats


def _write_word_lexicon(cfg: LMBuildConfig, corpus: Path, out: Path, vocab: list[str],
                        speller: Speller | None) -> tuple[Path, int]:
    """lexicon.txt for the LM's vocabulary, spelled in the model's units; (path, words)."""
    if speller is not None:  # words with units outside --dict were counted in the corpus pass
        lexicon = build_lexicon(vocab, speller, on_unknown=lambda w, bad: None)
    else:  # no dictionary: letters as written, checked against the units at decoding time
        lexicon = Lexicon({w: ((*w, LETTER_BOUNDARY),) for w in vocab})
    if len(lexicon) == 0:
        raise DecodingError(f"{corpus}: no corpus word can be spelled in the units of {cfg.dict}; "
                            f"the corpus and the model use different alphabets")
    lexicon_path = out / "lexicon.txt"
    write_lexicon(lexicon_path, lexicon)
    return lexicon_path, len(lexicon)


def build_lm(cfg: LMBuildConfig, progress: bool = True) -> LMBuildResult:
    """Build ARPA + binary (+ lexicon) into ``cfg.out``; see the module docstring."""
    t0 = time.perf_counter()
    corpus = Path(cfg.corpus)
    _check_build_inputs(cfg, corpus)
    tools = find_kenlm_tools(cfg.kenlm_bin)  # fail before the long corpus pass
    units, speller = _speller(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    arpa, binary, stats = _run_kenlm(cfg, tools, corpus, out, speller, progress)
    info = inspect_lm(arpa)
    vocab = sorted(w for w in (info.vocab or ()) if w not in LM_SPECIAL_WORDS)
    lexicon_path, n_lex = (None, 0) if cfg.unit_lm else _write_word_lexicon(cfg, corpus, out, vocab, speller)

    record = {
        "config": asdict(cfg), "arpa": str(arpa), "binary": str(binary),
        "lexicon": str(lexicon_path) if lexicon_path else None, "order": info.order, "counts": list(info.counts),
        "sentences": stats.sentences, "tokens": stats.tokens, "vocab": len(vocab), "lexicon_words": n_lex,
        "dropped_words": sorted(stats.bad_words), "units": units.source if units else None,
        "unit_kind": units.kind if units else "letter (no --dict given)",
    }
    info_path = out / ("lm_info.units.json" if cfg.unit_lm else "lm_info.json")
    write_text_atomic(info_path, json.dumps(record, indent=2))
    return LMBuildResult(arpa, binary, lexicon_path, info_path, stats.sentences, stats.tokens, len(vocab), n_lex,
                         len(stats.bad_words), time.perf_counter() - t0)
