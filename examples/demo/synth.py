"""Synthesize the demo corpus with espeak-ng + sox, in LibriSpeech layout.

    python -m examples.demo.synth --out demo_out/corpus            # default sizes
    python -m examples.demo.synth --out /tmp/c --quick             # smoke-test sizes

Writes ``OUT/LibriSpeech/{split}/{speaker}/{chapter}/{speaker}-{chapter}-{utt:04d}.flac`` (16 kHz
mono 16-bit) with ``{speaker}-{chapter}.trans.txt`` beside them, for the splits
``train-unlabeled`` (pretraining audio; transcripts written but unused, as for LS-960),
``train-10min`` / ``train-1h`` / ... (labeled subsets, nested like libri-light's: each smaller
one is a prefix of the larger), ``dev`` and ``test`` (held-out sentences AND held-out
speakers). ``OUT/text/lm.txt`` is the LM text (train sentences only), ``OUT/corpus.json``
the config and the measured sizes. Deterministic for a seed; a second run with the same
config finds ``corpus.json`` and does nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing import Pool
from pathlib import Path
from typing import NamedTuple

import soundfile as sf
from tqdm import tqdm

from w2v2_common.fileio import atomic_path, write_text_atomic

from .corpus import CorpusTextError, Sentence, TextSplits, read_sentences, split_sentences
from .speakers import Speaker, make_speakers

SAMPLE_RATE = 16000
# Rough seconds per word at espeak-ng's rate r (words/minute) plus a fixed lead/tail; only
# used to plan how many utterances to synthesize per round: sizes are cut on real durations.
_PAUSE_S = 0.45


@dataclass
class SynthConfig:
    out: str = field(default="demo_out/corpus", metadata={"help": "output folder"})
    seed: int = field(default=0, metadata={"help": "fixes sentences, speakers, order"})
    unlabeled_hours: float = field(default=3.0, metadata={"help": "pretraining audio (hours)"})
    labeled_minutes: list[float] = field(
        default_factory=lambda: [10.0, 60.0],
        metadata={"help": "labeled training subsets (minutes); nested, smaller in larger"})
    dev_minutes: float = field(default=8.0, metadata={"help": "dev audio (minutes)"})
    test_minutes: float = field(default=8.0, metadata={"help": "test audio (minutes)"})
    train_speakers: int = field(default=24, metadata={"help": "speakers of the train splits"})
    dev_speakers: int = field(default=4, metadata={"help": "held-out dev speakers"})
    test_speakers: int = field(default=4, metadata={"help": "held-out test speakers"})
    jobs: int = field(default=2, metadata={"help": "parallel synthesis processes"})


QUICK = dict(unlabeled_hours=0.25, labeled_minutes=[10.0], dev_minutes=3.0, test_minutes=3.0)


class Utterance(NamedTuple):
    split: str
    speaker: Speaker
    chapter: int
    index: int
    sentence: Sentence

    @property
    def uid(self) -> str:
        return f"{self.speaker.id}-{self.chapter}-{self.index:04d}"

    def path(self, root: Path) -> Path:
        return root / self.split / str(self.speaker.id) / str(self.chapter) / f"{self.uid}.flac"

    def estimated_seconds(self) -> float:
        return len(self.sentence.words.split()) * 60.0 / self.speaker.rate * 0.9 + _PAUSE_S


class SplitResult(NamedTuple):
    name: str
    utterances: int
    seconds: float
    speakers: int


def split_name(minutes: float) -> str:
    """60 -> 'train-1h', 10 -> 'train-10min', 7.5 -> 'train-7.5min'."""
    if minutes >= 60 and minutes % 60 == 0:
        return f"train-{int(minutes // 60)}h"
    return f"train-{minutes:g}min"


def _speak(job: tuple[str, list[str], str]) -> int:
    """One utterance: espeak-ng -> sox (16 kHz mono 16 bit flac). Returns its sample count.

    Written to a temporary name and renamed, so an interrupted run leaves no half file.
    ``sox -R`` (repeatable) and ``-D`` (no dither) keep the bytes identical run to run.
    """
    text, espeak_args, dest = job
    with atomic_path(dest) as tmp:
        # argv lists (no shell) of the tools `make sysdeps` installs on PATH
        espeak = subprocess.Popen(["espeak-ng", *espeak_args, "--stdout", text],  # noqa: S603,S607
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        sox = subprocess.run(["sox", "-R", "-D", "-t", "wav", "-", "-t", "flac", "-r", str(SAMPLE_RATE),  # noqa: S603,S607
                              "-c", "1", "-b", "16", tmp], stdin=espeak.stdout, capture_output=True)
        espeak.stdout.close()  # type: ignore[union-attr]  # reason: stdout=PIPE, so never None
        err = espeak.stderr.read().decode() if espeak.stderr else ""
        if espeak.wait() != 0 or sox.returncode != 0:
            raise RuntimeError(f"synthesis of {dest} failed: {err.strip()} {sox.stderr.decode().strip()}")
    return sf.info(dest).frames


def alphabet_first(order: list[int], sentences: list[Sentence]) -> list[int]:
    """``order`` with a few sentences that together use every character of all ``sentences``
    moved to the front (greedy cover, in ``order``'s order), so even the smallest labeled
    subset holds the whole alphabet and its dict.ltr.txt covers dev/test."""
    missing = {c for s in sentences for c in s.words.replace(" ", "")}
    front: list[int] = []
    while missing:
        best = max(order, key=lambda i: len(missing & set(sentences[i].words)))
        if not missing & set(sentences[best].words):
            break
        front.append(best)
        missing -= set(sentences[best].words)
    return front + [i for i in order if i not in set(front)]


def _plan(split: str, sentences: list[Sentence], speakers: list[Speaker], seed: int,
          cycle_speakers: bool, cover_alphabet: bool = False) -> Iterator[Utterance]:
    """Endless (sentence, speaker) stream of one split, deterministic for the seed.

    Sentences go round in reshuffled passes (each sentence once per pass); speakers are drawn
    at random for train splits and taken in turn for dev/test (even speaker balance).
    """
    rng = random.Random(f"{seed}-{split}")  # noqa: S311  # reason: a reproducible draw, not a secret
    per_speaker: dict[int, int] = {}
    # Chapter code per split kind; labeled subsets keep their source's ids (same audio).
    split_code = {"train-unlabeled": 1, "dev": 8, "test": 9}.get(split, 2)
    k = 0
    first = True
    while True:
        order = list(range(len(sentences)))
        rng.shuffle(order)
        if first and cover_alphabet:
            order = alphabet_first(order, sentences)
        first = False
        for i in order:
            spk = speakers[k % len(speakers)] if cycle_speakers else rng.choice(speakers)
            k += 1
            index = per_speaker.get(spk.id, 0)
            per_speaker[spk.id] = index + 1
            # One chapter per (split, speaker): chapter ids are unique across the corpus.
            yield Utterance(split, spk, split_code * 1000 + spk.id, index, sentences[i])


def _synthesize_until(stream: Iterator[Utterance], seconds: float, root: Path, pool: Pool | None,
                      desc: str) -> list[tuple[Utterance, float]]:
    """Synthesize utterances from ``stream`` until their real duration reaches ``seconds``;
    the shortest prefix that does is kept, files beyond it deleted."""
    done: list[tuple[Utterance, float]] = []
    total = 0.0
    bar = tqdm(total=round(seconds / 60, 1), desc=desc, unit="min", leave=False,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} min [{elapsed}]")
    while total < seconds:
        batch: list[Utterance] = []
        estimate = 0.0
        while total + estimate < seconds * 1.02 or not batch:
            utt = next(stream)
            batch.append(utt)
            estimate += utt.estimated_seconds()
        jobs = [(u.sentence.text, u.speaker.espeak_args(), str(u.path(root))) for u in batch]
        frames = pool.imap(_speak, jobs, chunksize=4) if pool else map(_speak, jobs)
        for utt, n in zip(batch, frames, strict=False):
            dur = n / SAMPLE_RATE
            if total >= seconds:  # over the target: this one is not part of the split
                utt.path(root).unlink()
                continue
            done.append((utt, dur))
            total += dur
            bar.update(round(min(total, seconds) / 60, 1) - bar.n)
    bar.close()
    return done


def _write_transcripts(utts: list[tuple[Utterance, float]], root: Path, split: str) -> None:
    chapters: dict[Path, list[str]] = {}
    for utt, _ in utts:
        folder = root / split / str(utt.speaker.id) / str(utt.chapter)
        chapters.setdefault(folder / f"{utt.speaker.id}-{utt.chapter}.trans.txt", []).append(
            f"{utt.uid} {utt.sentence.words}")
    for path, lines in chapters.items():
        write_text_atomic(path, "\n".join(sorted(lines)) + "\n")


def _link_subset(utts: list[tuple[Utterance, float]], root: Path, split: str) -> None:
    """Make ``split`` hold the same files as the utterances given (hard links; copy if the
    file system refuses), renaming the split folder in the paths."""
    for utt, _ in utts:
        src = utt.path(root)
        dest = utt._replace(split=split).path(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)


def _identity(cfg: SynthConfig) -> dict:
    """The config fields that decide the corpus' content (not where it is, nor how many
    processes made it)."""
    return asdict(cfg) | {"out": None, "jobs": None}


def synthesize(cfg: SynthConfig, quiet: bool = False) -> dict:
    """Build the corpus described by ``cfg`` (or find it already built). Returns the summary
    stored in ``corpus.json``."""
    out = Path(cfg.out)
    stamp = out / "corpus.json"
    if stamp.exists():
        old = json.loads(stamp.read_text())
        if old.get("config") == _identity(cfg):
            if not quiet:
                print(f"synth: {stamp} matches this config; corpus already built, nothing to do")
            return old
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found on PATH; install it (apt-get install espeak-ng sox) "
                               "or run `make sysdeps`")
    start = time.time()
    text: TextSplits = split_sentences(read_sentences(), seed=0)  # fixed: same LM for every seed
    speakers = make_speakers(cfg.train_speakers, cfg.dev_speakers, cfg.test_speakers, cfg.seed)
    root = out / "LibriSpeech"
    if root.exists():
        shutil.rmtree(root)  # a previous, different config: rebuild from nothing
    stamp.unlink(missing_ok=True)
    (out / "text").mkdir(parents=True, exist_ok=True)
    for name, lines in (("lm.txt", text.lm_lines()), ("train.txt", text.lm_lines()),
                        ("dev.txt", [s.words for s in text.dev]),
                        ("test.txt", [s.words for s in text.test])):
        write_text_atomic(out / "text" / name, "\n".join(lines) + "\n")

    results: list[SplitResult] = []
    pool = Pool(cfg.jobs) if cfg.jobs > 1 else None
    try:
        def run(split: str, sentences: list[Sentence], spk: list[Speaker], minutes: float,
                cycle: bool, cover: bool = False) -> list[tuple[Utterance, float]]:
            stream = _plan(split, sentences, spk, cfg.seed, cycle, cover)
            utts = _synthesize_until(stream, minutes * 60, root, pool, split)
            _write_transcripts(utts, root, split)
            results.append(SplitResult(split, len(utts), sum(d for _, d in utts),
                                       len({u.speaker.id for u, _ in utts})))
            return utts

        run("train-unlabeled", text.train, speakers["train"], cfg.unlabeled_hours * 60, False)
        sizes = sorted(cfg.labeled_minutes)
        if sizes:
            largest = split_name(sizes[-1])
            labeled = run(largest, text.train, speakers["train"], sizes[-1], False, cover=True)
            for minutes in sizes[:-1]:
                name = split_name(minutes)
                n, total = 0, 0.0
                while total < minutes * 60 and n < len(labeled):  # nested: a prefix
                    total += labeled[n][1]
                    n += 1
                subset = [(u._replace(split=name), d) for u, d in labeled[:n]]
                _link_subset(labeled[:n], root, name)
                _write_transcripts(subset, root, name)
                results.append(SplitResult(name, n, total, len({u.speaker.id for u, _ in subset})))
        run("dev", text.dev, speakers["dev"], cfg.dev_minutes, True)
        run("test", text.test, speakers["test"], cfg.test_minutes, True)
    finally:
        if pool:
            pool.close()
            pool.join()

    elapsed = time.time() - start
    summary = {
        "config": _identity(cfg),
        "splits": {r.name: {"utterances": r.utterances, "seconds": round(r.seconds, 2),
                            "hours": round(r.seconds / 3600, 3),
                            "speakers": r.speakers} for r in results},
        "sentences": {"train": len(text.train), "dev": len(text.dev), "test": len(text.test)},
        "speakers": {k: [s._asdict() for s in v] for k, v in speakers.items()},
        "seconds": round(elapsed, 1),
    }
    write_text_atomic(stamp, json.dumps(summary, indent=1) + "\n")
    if not quiet:
        parts = [f"{r.name} {r.seconds / 3600:.2f} h" if r.seconds >= 3600 else
                 f"{r.name} {r.seconds / 60:.1f} min" for r in results]
        n_utts = sum(r.utterances for r in results if not r.name.startswith("train-") or
                     r.name in ("train-unlabeled", split_name(max(cfg.labeled_minutes or [0]))))
        print(f"synth: {', '.join(parts)}; {n_utts} utterances synthesized, "
              f"{sum(len(v) for v in speakers.values())} speakers, {len(text.train)} LM sentences; "
              f"{elapsed:.0f} s with {cfg.jobs} processes -> {root}")
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m examples.demo.synth", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = SynthConfig()
    for f in SynthConfig.__dataclass_fields__.values():
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, list):
            p.add_argument(flag, type=float, nargs="*", default=default, help=f.metadata["help"])
        else:
            p.add_argument(flag, type=type(default), default=default,
                           help=f"{f.metadata['help']} (default: {default})")
    p.add_argument("--quick", action="store_true",
                   help="smoke-test sizes: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    return p


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    values = {k: getattr(args, k) for k in SynthConfig.__dataclass_fields__}
    if args.quick:
        values.update(QUICK)
    return SynthConfig(**values)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        synthesize(config_from_args(args))
    except (CorpusTextError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
