"""``w2v2-manifest spm``: subword units with sentencepiece, as fairseq labels.

Trains a model on the training split's words (``train.wrd``), then encodes every split's
``.wrd`` into ``{split}.spm`` (pieces separated by spaces, one line per .wrd line, so still
aligned with ``{split}.tsv``) and writes ``dict.spm.txt``: every piece of the model except
sentencepiece's own control/unknown symbols, with its count in the encoded training split
(most frequent first; ties in model order). fairseq adds its own <s> <pad> </s> <unk>, so
those must not appear in the file. Decoding back to words is fairseq's
``post_process=sentencepiece`` (remove spaces, "▁" becomes a space).
"""
from __future__ import annotations

import glob
import os
import re
from collections import Counter
from typing import NamedTuple

import sentencepiece as spm

from w2v2_common.units import dict_file_name, write_dict_lines

from .config import SpmConfig
from .errors import ManifestError
from .writer import AtomicOutputs

SPM_DICT = dict_file_name("spm")


class SpmSummary(NamedTuple):
    model: str
    pieces: int  # dictionary entries
    lines: dict[str, int]  # split -> lines encoded
    unknown: int  # pieces outside the dictionary in the non-training splits

    def line(self) -> str:
        splits = ", ".join(f"{name}.spm {n} lines" for name, n in self.lines.items())
        unk = f" | {self.unknown} unknown piece(s) outside the training text" if self.unknown else ""
        return f"spm: {self.model} | {SPM_DICT} {self.pieces} units | {splits}{unk}"


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [line.rstrip("\n") for line in fh]
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read ({exc.strerror})") from None


def _split_files(cfg: SpmConfig, dest: str) -> dict[str, str]:
    """Split name -> its .wrd file: --splits, or every *.wrd in DEST (plus --train when it is there)."""
    train_split = os.path.basename(cfg.train)[:-len(".wrd")] if cfg.train.endswith(".wrd") else None
    if cfg.splits:
        split_files = {s.strip(): os.path.join(dest, s.strip() + ".wrd") for s in cfg.splits.split(",") if s.strip()}
    else:
        split_files = {os.path.basename(p)[:-len(".wrd")]: p
                       for p in sorted(glob.glob(os.path.join(glob.escape(dest), "*.wrd")))}
    if train_split is not None and train_split not in split_files and os.path.dirname(
            os.path.abspath(cfg.train)) == os.path.abspath(dest):
        split_files[train_split] = cfg.train
    for name, path in split_files.items():
        if not os.path.isfile(path):
            raise ManifestError(f"{path}: split {name!r} has no .wrd file")
    return split_files


def train_spm(cfg: SpmConfig) -> SpmSummary:
    if not os.path.isfile(cfg.train):
        raise ManifestError(f"{cfg.train}: --train file not found; make it with w2v2-manifest ROOT --dest DIR")
    if cfg.vocab_size < 1:
        raise ManifestError(f"--vocab-size {cfg.vocab_size}: must be positive")
    dest = cfg.dest or os.path.dirname(os.path.abspath(cfg.train))
    split_files = _split_files(cfg, dest)
    train_lines = _read_lines(cfg.train)
    if not any(line.strip() for line in train_lines):
        raise ManifestError(f"{cfg.train}: no text to train on")

    os.makedirs(dest, exist_ok=True)
    with AtomicOutputs(dest) as outputs:
        model_name, vocab_name = f"{cfg.prefix}.model", f"{cfg.prefix}.vocab"
        # Reserved through AtomicOutputs so that a failure removes them too.
        tmp_model, tmp_vocab = outputs.reserve(model_name), outputs.reserve(vocab_name)
        tmp_prefix = os.path.join(dest, f".{cfg.prefix}.train-{os.getpid()}")
        try:
            spm.SentencePieceTrainer.train(
                input=cfg.train, model_prefix=tmp_prefix, vocab_size=cfg.vocab_size,
                model_type=cfg.model_type, character_coverage=cfg.character_coverage,
                num_threads=cfg.threads, minloglevel=2)
        except (RuntimeError, OSError) as exc:
            for ext in (".model", ".vocab"):
                if os.path.exists(tmp_prefix + ext):
                    os.remove(tmp_prefix + ext)
            # drop sentencepiece's "INTERNAL: src/x.cc(744) [check]" prefix, keep its advice
            why = re.sub(r"^[A-Z_]+: \S+\(\d+\) \[.*?\] ", "", " ".join(str(exc).split()))
            raise ManifestError(f"{cfg.train}: sentencepiece could not train ({why})") from None
        os.replace(tmp_prefix + ".model", tmp_model)
        os.replace(tmp_prefix + ".vocab", tmp_vocab)
        sp = spm.SentencePieceProcessor(model_file=tmp_model)
        special = {i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i)}
        vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size()) if i not in special}

        counts: Counter[str] = Counter()
        lines: dict[str, int] = {}
        unknown = 0
        for name, path in split_files.items():
            is_train = os.path.abspath(path) == os.path.abspath(cfg.train)
            source = train_lines if is_train else _read_lines(path)
            fh = outputs.open(f"{name}.spm")
            for text in source:
                pieces = sp.encode(text, out_type=str)
                fh.write(" ".join(pieces) + "\n")
                if is_train:
                    counts.update(pieces)
                else:
                    unknown += sum(1 for p in pieces if p not in vocab)
            lines[name] = len(source)
        if not any(os.path.abspath(p) == os.path.abspath(cfg.train) for p in split_files.values()):
            counts.update(p for text in train_lines for p in sp.encode(text, out_type=str))
        write_dict_lines(outputs.open(SPM_DICT),
                         ((piece, counts[piece]) for piece in sorted(vocab, key=lambda p: (-counts[p], vocab[p]))))
        outputs.commit()
    return SpmSummary(os.path.join(dest, model_name), len(vocab), lines, unknown)
