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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Iterator, NamedTuple

from w2v2_common.fileio import mkstemp
from .errors import DecodingError, where
from .kenlm_tools import find_kenlm_tools, run_build_binary, run_lmplz
from .lexicon import Lexicon, Speller, build_lexicon, write_lexicon
from .lm_files import KENLM_MAX_ORDER, inspect_lm
from .units import LETTER_BOUNDARY, SPECIALS, UnitDictionary, resolve_dictionary

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
            for lineno, line in enumerate(f, 1):
                yield lineno, line
    except UnicodeDecodeError as e:
        raise DecodingError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8") from None


def _speller(cfg: LMBuildConfig) -> tuple[UnitDictionary | None, Speller | None]:
    if cfg.dict is None:
        if cfg.unit_lm:
            raise DecodingError("--unit-lm needs --dict (the units to build the LM over)")
        return None, None
    units = resolve_dictionary(cfg.dict)
    return units, Speller(units, cfg.spm_model, cfg.case)


def _atomic_text(path: Path) -> tuple[IO[str], Path]:
    fd, tmp = mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    return os.fdopen(fd, "w", encoding="utf-8"), Path(tmp)


def build_lm(cfg: LMBuildConfig, progress: bool = True) -> LMBuildResult:
    """Build ARPA + binary (+ lexicon) into ``cfg.out``; see the module docstring."""
    t0 = time.perf_counter()
    corpus = Path(cfg.corpus)
    if not corpus.is_file():
        raise DecodingError(f"{corpus}: corpus not found; pass a text file with one sentence per line")
    if not 1 <= cfg.order <= KENLM_MAX_ORDER:
        raise DecodingError(f"--order {cfg.order}: KenLM here supports orders 1..{KENLM_MAX_ORDER}; "
                            f"{'orders above need a rebuild with KENLM_MAX_ORDER raised' if cfg.order > 1 else ''}"
                            .rstrip("; "))
    if cfg.order == 1:
        raise DecodingError("--order 1: lmplz needs order >= 2")
    tools = find_kenlm_tools(cfg.kenlm_bin)  # fail before the long corpus pass
    units, speller = _speller(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. Normalised corpus for lmplz (a temp file in the output dir, removed at the end).
    first_line: dict[str, int] = {}
    bad_words: dict[str, list[str]] = {}
    n_sent = n_tok = 0
    f, norm_path = _atomic_text(out / "corpus.norm.txt")
    try:
        from tqdm import tqdm

        with f:
            for lineno, line in tqdm(_corpus_lines(corpus), desc="corpus", unit=" lines", disable=not progress,
                                     mininterval=1.0):
                words = line.split()
                if not words:
                    continue
                if speller is not None:
                    words = [speller.normalize(w) for w in words]
                for w in words:
                    if w in LM_SPECIAL_WORDS or w in SPECIALS:
                        raise DecodingError(f"{where(corpus, lineno)}: the corpus contains the reserved token "
                                            f"{w!r}; remove it")
                    if w not in first_line:
                        first_line[w] = lineno
                        if speller is not None:
                            bad = speller.unknown_units(speller.spell(w))
                            if bad:
                                bad_words[w] = bad
                                if not cfg.drop_oov_words or cfg.unit_lm:
                                    raise DecodingError(
                                        f"{where(corpus, lineno)}: word {w!r} uses unit(s) {sorted(set(bad))} that "
                                        f"are not in the model's dictionary {units.source}; normalise the corpus"
                                        f"{'' if cfg.unit_lm else ' or pass --drop-oov-words'}")
                if cfg.unit_lm:
                    assert speller is not None
                    f.write(" ".join(u for w in words for u in speller.spell(w)) + "\n")
                    n_tok += sum(len(speller.spell(w)) for w in words)
                else:
                    f.write(" ".join(words) + "\n")
                    n_tok += len(words)
                n_sent += 1
        if n_sent == 0:
            raise DecodingError(f"{corpus}: corpus has no words; it needs one sentence per line")

        # 2. lmplz -> ARPA, build_binary -> binary.
        stem = f"{cfg.order}gram" + (".units" if cfg.unit_lm else "")
        arpa, binary = out / f"{stem}.arpa", out / f"{stem}.bin"
        with tempfile.TemporaryDirectory(dir=out, prefix=".lmplz.") as tmpd:
            run_lmplz(tools, norm_path, arpa, cfg.order, cfg.memory, cfg.prune, Path(tmpd))
        run_build_binary(tools, arpa, binary, cfg.binary_type)
    finally:
        norm_path.unlink(missing_ok=True)
    info = inspect_lm(arpa)

    # 3. Lexicon from the LM's vocabulary (word LMs only).
    lexicon_path: Path | None = None
    n_lex = 0
    vocab = sorted(w for w in (info.vocab or ()) if w not in LM_SPECIAL_WORDS)
    if not cfg.unit_lm:
        if speller is not None:  # words with units outside --dict were counted in step 1
            lexicon = build_lexicon(vocab, speller, on_unknown=lambda w, bad: None)
        else:  # no dictionary: letters as written, checked against the units at decoding time
            lexicon = Lexicon({w: ((*w, LETTER_BOUNDARY),) for w in vocab})
        if len(lexicon) == 0:
            raise DecodingError(f"{corpus}: no corpus word can be spelled in the units of {cfg.dict}; "
                                f"the corpus and the model use different alphabets")
        lexicon_path = out / "lexicon.txt"
        write_lexicon(lexicon_path, lexicon)
        n_lex = len(lexicon)

    # 4. What was built, from what.
    record = {
        "config": asdict(cfg), "arpa": str(arpa), "binary": str(binary),
        "lexicon": str(lexicon_path) if lexicon_path else None, "order": info.order, "counts": list(info.counts),
        "sentences": n_sent, "tokens": n_tok, "vocab": len(vocab), "lexicon_words": n_lex,
        "dropped_words": sorted(bad_words), "units": units.source if units else None,
        "unit_kind": units.kind if units else "letter (no --dict given)",
    }
    info_path = out / ("lm_info.units.json" if cfg.unit_lm else "lm_info.json")
    jf, jtmp = _atomic_text(info_path)
    with jf:
        json.dump(record, jf, indent=2)
    os.replace(jtmp, info_path)
    return LMBuildResult(arpa, binary, lexicon_path, info_path, n_sent, n_tok, len(vocab), n_lex,
                         len(bad_words), time.perf_counter() - t0)
