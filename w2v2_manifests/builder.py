"""Turn a folder of audio into fairseq manifests and labels (the default subcommand).

Outputs in DEST, for each split written (``train``/``--split-name`` and ``valid``):
``{split}.tsv``, and with transcripts ``{split}.wrd`` + ``{split}.ltr`` (line-aligned with the
.tsv), ``{split}.skipped.tsv`` with ``--on-bad skip``; ``dict.ltr.txt`` from the train split.
Formats: manifests/README.md.
"""
from __future__ import annotations

import os
import random
import sys
from collections import Counter
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO

from tqdm import tqdm

from w2v2_common.units import LTR_DICT, read_dict_symbols, write_dict_lines

from .config import ManifestConfig
from .errors import BadFilesError, ManifestError, TranscriptError
from .scan import FileEntry, Listing, ProbeResult, parse_exts, probe_files, walk
from .text import NormalizationError, TextConfig, normalize, to_letters
from .transcripts import LibriSpeechTranscripts, TableTranscripts, Transcript, sidecar_transcript
from .writer import AtomicOutputs

VALID_SPLIT = "valid"
TRAIN_SPLIT = "train"
# Label files a split may have; any not written by this run is removed when the split's
# lines change (they would no longer line up with the new .tsv).
LABEL_SUFFIXES = (".wrd", ".ltr", ".spm")
# Bad-file reasons, in the order they are checked (README lists them).
# no_recording and bad_segment come from lhotse manifests only.
REASONS = ("bad_path", "no_recording", "bad_segment", "unreadable", "corrupt", "empty", "sample_rate",
           "channels", "no_transcript", "empty_transcript")


class SplitSummary(NamedTuple):
    name: str
    files: int
    seconds: float


@dataclass
class BuildSummary:
    """What a run wrote and left out; ``line()`` is the one-line report the CLI prints."""

    dest: str
    splits: list[SplitSummary]
    labels: str  # transcript source, or "none (...)"
    label_sources: Counter[str] = field(default_factory=Counter)  # kind -> lines written
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> files
    skipped_files: int = 0
    unused_transcripts: int = 0
    unused_examples: list[str] = field(default_factory=list)  # "id (file:line)", the first few
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        parts = [f"{s.name}: {s.files} files, {s.seconds / 3600:.2f} h" for s in self.splits]
        if self.skipped_files:
            why = ", ".join(f"{r} {self.skipped[r]}" for r in REASONS if self.skipped[r])
            parts.append(f"skipped {self.skipped_files} ({why})")
        else:
            parts.append("skipped 0")
        if self.label_sources:
            parts.append("labels: " + ", ".join(f"{n} from {kind}" for kind, n in sorted(self.label_sources.items())))
        else:
            parts.append(f"labels: {self.labels}")
        if self.unused_transcripts:
            more = ", ..." if self.unused_transcripts > len(self.unused_examples) else ""
            parts.append(f"{self.unused_transcripts} transcript(s) matched no audio file: "
                         + ", ".join(self.unused_examples) + more)
        parts.extend(self.notes)
        return f"{' | '.join(parts)} -> {self.dest}"


class _SplitOut:
    """Open handles and running totals of one split."""

    def __init__(self, outputs: AtomicOutputs, name: str, root: str, labels: bool, skip: bool) -> None:
        self.name = name
        self.tsv = outputs.open(f"{name}.tsv")
        self.tsv.write(root + "\n")
        self.wrd: TextIO | None = outputs.open(f"{name}.wrd") if labels else None
        self.ltr: TextIO | None = outputs.open(f"{name}.ltr") if labels else None
        self.skipped: TextIO | None = None
        if skip:
            self.skipped = outputs.open(f"{name}.skipped.tsv")
            self.skipped.write(root + "\n")
        self.files = 0
        self.seconds = 0.0
        self.letters: Counter[str] = Counter()

    def add(self, rel: str, frames: int, sample_rate: int, words: str | None) -> None:
        self.tsv.write(f"{rel}\t{frames}\n")
        self.files += 1
        self.seconds += frames / sample_rate
        if words is not None and self.wrd is not None and self.ltr is not None:
            letters = to_letters(words)
            self.wrd.write(words + "\n")
            self.ltr.write(letters + "\n")
            self.letters.update(letters.split())


def check_common(cfg: ManifestConfig | Any) -> None:
    """The checks every source shares: the split draw, the sample rate, the split name."""
    if not 0.0 <= cfg.valid_percent <= 1.0:
        raise ManifestError(f"--valid-percent {cfg.valid_percent}: must be a fraction between 0 and 1 "
                            "(0.01 = 1%, as in fairseq)")
    if cfg.sample_rate < 0:
        raise ManifestError(f"--sample-rate {cfg.sample_rate}: must be positive (or 0 for any)")
    names = {cfg.split_name} | ({VALID_SPLIT} if cfg.valid_percent > 0 else set())
    if not cfg.split_name or any(c in cfg.split_name for c in "/\\\t\n") or cfg.split_name.startswith("."):
        raise ManifestError(f"--split-name {cfg.split_name!r}: must be a plain file name stem")
    if cfg.valid_percent > 0 and cfg.split_name == VALID_SPLIT:
        raise ManifestError("--split-name valid clashes with the valid split; use --valid-percent 0 "
                            f"or another name ({sorted(names)})")


def split_names_of(cfg: ManifestConfig | Any) -> list[str]:
    return [cfg.split_name] + ([VALID_SPLIT] if cfg.valid_percent > 0 else [])


def _check_config(cfg: ManifestConfig) -> tuple[str, tuple[str, ...]]:
    root = os.path.realpath(cfg.root)
    if not os.path.isdir(root):
        raise ManifestError(f"{cfg.root}: not a directory; give the folder that holds the audio")
    check_common(cfg)
    exts = parse_exts(cfg.ext)
    if not exts:
        raise ManifestError(f"--ext {cfg.ext!r}: give at least one extension, e.g. flac or flac,wav")
    if cfg.workers < 1:
        raise ManifestError(f"--workers {cfg.workers}: must be at least 1")
    if cfg.transcripts is not None and not os.path.isfile(cfg.transcripts):
        raise ManifestError(f"{cfg.transcripts}: --transcripts file not found")
    return root, exts


def _transcript_source(cfg: ManifestConfig, root: str,
                       listing: Listing) -> LibriSpeechTranscripts | TableTranscripts | str:
    """The table, the LibriSpeech/sidecar lookup, or a string saying why there are no labels."""
    if cfg.labels == "none":
        return "none (--labels none)"
    if cfg.transcripts is not None:
        return TableTranscripts(cfg.transcripts, root)
    if listing.trans_by_dir or listing.sidecars:
        return LibriSpeechTranscripts(root, listing.trans_by_dir)
    return "none (no *.trans.txt, .txt or .lab transcripts found)"


def _existing_dict_symbols(path: str) -> set[str] | None:
    return read_dict_symbols(path) if os.path.isfile(path) else None


def write_dict(fh: TextIO, counts: Counter[str]) -> None:
    """fairseq dictionary: "SYMBOL COUNT" lines, most frequent first, ties by code point."""
    write_dict_lines(fh, sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _kind(t: Transcript, cfg: ManifestConfig) -> str:
    if cfg.transcripts is not None:
        return "--transcripts"
    return "sidecar" if t.line is None else "*.trans.txt"


def _where(t: Transcript) -> str:
    return t.source if t.line is None else f"{t.source}:{t.line}"


def _printable(rel: str) -> str:
    """A path as one TSV field: tabs and line breaks escaped (only bad_path files have them)."""
    return rel.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


Source = LibriSpeechTranscripts | TableTranscripts


def _check(entry: FileEntry, res: ProbeResult, root: str, cfg: ManifestConfig, source: Source | str,
           text_cfg: TextConfig) -> tuple[list[tuple[str, str]], Transcript | None, str | None]:
    """One file's bad-file reasons (code, detail), its transcript and its normalized words."""
    info = res.info
    reasons: list[tuple[str, str]] = []
    if any(c in entry.rel for c in "\t\n\r"):
        reasons.append(("bad_path", "the name holds a tab or line break, which a .tsv cannot"))
    if info.error_kind is not None:
        reasons.append((info.error_kind, info.error or ""))
    elif info.frames == 0:
        reasons.append(("empty", "0 frames"))
    else:
        if cfg.sample_rate and info.sample_rate != cfg.sample_rate:
            reasons.append(("sample_rate", f"{info.sample_rate} Hz, expected {cfg.sample_rate}"))
        if info.channels != 1:
            reasons.append(("channels", f"{info.channels} channels, expected 1 (mono)"))
    if isinstance(source, str):  # no labels this run
        return reasons, None, None
    # Transcripts are looked up for bad files too, so that unused entries are counted right.
    found = source.lookup(entry.rel)
    if found is None and res.sidecar_error is not None:
        raise TranscriptError(os.path.join(root, entry.sidecar or ""), None, res.sidecar_error)
    if found is None and res.sidecar_text is not None and entry.sidecar is not None:
        found = sidecar_transcript(res.sidecar_text, os.path.join(root, entry.sidecar))
    if found is None:
        where = "it in --transcripts" if cfg.transcripts else "a *.trans.txt entry, .txt or .lab"
        reasons.append(("no_transcript", f"no transcript (looked for {where})"))
        return reasons, None, None
    try:
        words = normalize(found.text, text_cfg)
    except NormalizationError as exc:
        raise TranscriptError(found.source, found.line, str(exc)) from None
    if not words:
        reasons.append(("empty_transcript", f"empty transcript at {_where(found)}"))
    return reasons, found, words


class Record(NamedTuple):
    """One utterance as a source hands it to :func:`write_manifests`."""

    rel: str  # path in the .tsv, relative to the root; for a bad one, the name listed
    split: str
    frames: int
    sample_rate: int
    reasons: list[tuple[str, str]]  # (code, detail); empty: the utterance is written
    words: str | None  # normalized transcript (None: no labels)
    label_kind: str | None  # counted in the summary's "labels: N from KIND"


def write_manifests(cfg: ManifestConfig | Any, root: str, labels: bool, summary: BuildSummary,
                    records: Callable[[AtomicOutputs], Generator[Record, None, None]],
                    bad_what: str | None = None) -> BuildSummary:
    """Write every split's .tsv (and labels, skipped list, dictionary) from a source's records,
    all at once or not at all. ``records(outputs)`` may reserve more outputs of its own (audio
    segments); ``bad_what`` names the items in the --on-bad error (default: audio files under root)."""
    skip = cfg.on_bad == "skip"
    split_names = split_names_of(cfg)
    bad: list[tuple[str, str]] = []
    dest_existed = os.path.isdir(cfg.dest)
    try:
        os.makedirs(cfg.dest, exist_ok=True)
    except OSError as exc:
        raise ManifestError(f"{cfg.dest}: cannot create the output directory ({exc.strerror})") from None
    try:
        with AtomicOutputs(cfg.dest) as outputs:
            outs = {name: _SplitOut(outputs, name, root, labels, skip) for name in split_names}
            with closing(records(outputs)) as recs:
                for rec in recs:
                    out = outs[rec.split]
                    if rec.reasons:
                        codes = ",".join(code for code, _ in rec.reasons)
                        detail = "; ".join(d for _, d in rec.reasons)
                        shown = _printable(rec.rel)
                        bad.append((shown, f"{codes}: {detail}"))
                        summary.skipped.update(code for code, _ in rec.reasons)
                        if out.skipped is not None:
                            out.skipped.write(f"{shown}\t{codes}\t{detail}\n")
                        continue
                    out.add(rec.rel, rec.frames, rec.sample_rate, rec.words)
                    if rec.label_kind is not None:
                        summary.label_sources[rec.label_kind] += 1
            if bad and not skip:
                raise BadFilesError(root, bad, bad_what)
            summary.skipped_files = len(bad)

            remove = _finish_outputs(cfg, outputs, outs, labels, summary)
            outputs.commit(remove)
            summary.removed = remove
    except BaseException:
        if not dest_existed and os.path.isdir(cfg.dest) and not os.listdir(cfg.dest):
            os.rmdir(cfg.dest)  # we made it and wrote nothing: leave no trace
        raise
    summary.splits = [SplitSummary(o.name, o.files, o.seconds) for o in outs.values()]
    if summary.skipped_files:
        summary.notes.append("listed in " + ", ".join(f"{n}.skipped.tsv" for n in split_names))
    return summary


def build(cfg: ManifestConfig) -> BuildSummary:
    """Scan ``cfg.root`` and write the manifests; raise ManifestError on bad input."""
    root, exts = _check_config(cfg)
    text_cfg: TextConfig = cfg.text_config()
    listing = walk(root, exts)
    files = [e for e in listing.files
             if not cfg.path_must_contain or cfg.path_must_contain in os.path.join(root, e.rel)]
    if not files:
        raise ManifestError(f"{cfg.root}: no *{'/*'.join(exts)} files found"
                            + (f" whose path contains {cfg.path_must_contain!r}" if cfg.path_must_contain else ""))
    # One draw per file in walk order, bad files included, so a file's split does not
    # depend on which other files turn out to be bad (fairseq: train when draw > fraction).
    rand = random.Random(cfg.seed)  # noqa: S311  # reason: a reproducible split, not a secret
    split_of = [cfg.split_name if rand.random() > cfg.valid_percent else VALID_SPLIT for _ in files]

    source = _transcript_source(cfg, root, listing)
    labels = not isinstance(source, str)
    summary = BuildSummary(dest=cfg.dest, splits=[],
                           labels=source if isinstance(source, str) else
                           ("--transcripts " + cfg.transcripts if cfg.transcripts else "*.trans.txt/.txt/.lab"))

    def records(_outputs: AtomicOutputs) -> Generator[Record, None, None]:
        probes = probe_files(root, files, workers=cfg.workers, decode=cfg.decode,
                             sidecars=labels and cfg.transcripts is None)
        results = closing(probes)
        first = next(probes, None)  # starts the worker pool before tqdm starts a thread
        with results, tqdm(total=len(files), unit="file", desc="scanning", disable=not cfg.progress,
                           file=sys.stderr, mininterval=0.5) as bar:
            for i, entry in enumerate(files):
                res = first if i == 0 else next(probes)
                if res is None:  # a bug: probe_files yields one result per file
                    raise AssertionError(f"no probe result for {entry}")
                reasons, found, words = _check(entry, res, root, cfg, source, text_cfg)
                bar.update(1)
                yield Record(entry.rel, split_of[i], res.info.frames, res.info.sample_rate, reasons, words,
                             None if found is None else _kind(found, cfg))
        if not isinstance(source, str):
            source.finish()
            summary.unused_transcripts = source.unused
            summary.unused_examples = source.unused_examples

    return write_manifests(cfg, root, labels, summary, records)


def _finish_outputs(cfg: ManifestConfig, outputs: AtomicOutputs, outs: dict[str, _SplitOut],
                    labels: bool, summary: BuildSummary) -> list[str]:
    """Write the dictionary, decide which stale files go; returns the names to remove."""
    dest = cfg.dest
    if labels and cfg.split_name == TRAIN_SPLIT:
        write_dict(outputs.open(LTR_DICT), outs[TRAIN_SPLIT].letters)
    elif labels:
        known = _existing_dict_symbols(os.path.join(dest, LTR_DICT))
        letters: Counter[str] = Counter()
        for o in outs.values():
            letters.update(o.letters)
        if known is None:
            summary.notes.append(f"no {LTR_DICT} written (it comes from a split named 'train')")
        else:
            missing = sorted(set(letters) - known)
            if missing:
                summary.notes.append(f"{len(missing)} letter(s) not in {LTR_DICT}, they map to <unk>: "
                                     + " ".join(missing))
    remove: list[str] = []
    for name in outs:
        same_lines = outputs.unchanged(f"{name}.tsv")
        # Without new labels the old .wrd stays, so its .spm stays aligned with it too.
        words_same = same_lines and (not labels or outputs.unchanged(f"{name}.wrd"))
        for suffix in LABEL_SUFFIXES:
            fname = f"{name}{suffix}"
            if fname in outputs.names() or not os.path.exists(os.path.join(dest, fname)):
                continue
            # .spm stays valid only if both the lines and the words are unchanged.
            keep = words_same if suffix == ".spm" else same_lines
            if not keep:
                remove.append(fname)
        stale_skipped = f"{name}.skipped.tsv"
        if stale_skipped not in outputs.names() and os.path.exists(os.path.join(dest, stale_skipped)):
            remove.append(stale_skipped)
    if remove:
        summary.notes.append("removed stale " + ", ".join(remove))
    return remove
