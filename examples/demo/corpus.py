"""The demo's text: prose files shipped in ``examples/demo/text/`` -> sentences -> splits.

Every sentence lands in exactly one of train / dev / test (by its normalized text, so the
splits are disjoint as strings). The LM text is the train sentences only: dev and test
sentences never reach the n-gram LM. Held-out sentences are chosen among those whose words
all still occur in the remaining (LM) text, i.e. the test vocabulary is closed, as it nearly
is for LibriSpeech test-clean against its 200k-word LM lexicon; a sentence whose words would
be out of vocabulary stays in train.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

TEXT_DIR = Path(__file__).resolve().parent / "text"

# Characters a prose file may contain; anything else (digits, quotes, abbreviations' odd
# marks) is refused so that what espeak-ng says and what the transcript says cannot differ.
_ALLOWED = re.compile(r"^[A-Za-z .,;:!?'\-]*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class CorpusTextError(ValueError):
    """A prose file holds something the demo cannot speak and transcribe identically."""


class Sentence(NamedTuple):
    text: str        # as written (punctuation kept: espeak-ng uses it for prosody)
    words: str       # normalized transcript: upper case A-Z and apostrophe, single spaces
    source: str      # "file:line" of the paragraph it came from


@dataclass(frozen=True)
class TextSplits:
    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]

    def lm_lines(self) -> list[str]:
        """The LM training text: normalized train sentences, one per line."""
        return [s.words for s in self.train]


def normalize(text: str) -> str:
    """LibriSpeech-style transcript: upper case, letters and apostrophes, words by one space."""
    text = text.upper().replace("-", " ")
    text = re.sub(r"[^A-Z' ]", " ", text)
    words = [w.strip("'") for w in text.split()]
    return " ".join(w for w in words if w)


def read_sentences(paths: list[Path] | None = None) -> list[Sentence]:
    """Sentences of the prose files in file order; '#' lines are comments, blank lines end
    paragraphs. Duplicate sentences (same normalized words) are kept once."""
    paths = sorted(TEXT_DIR.glob("*.txt")) if paths is None else paths
    if not paths:
        raise CorpusTextError(f"{TEXT_DIR}: no *.txt prose files; the demo corpus ships them there")
    sentences: list[Sentence] = []
    seen: set[str] = set()
    for path in paths:
        paragraph: list[str] = []
        start = 0
        lines = path.read_text(encoding="utf-8").splitlines() + [""]
        for lineno, line in enumerate(lines, 1):
            line = line.strip()
            if line.startswith("#"):
                continue
            if line and not _ALLOWED.match(line):
                bad = sorted(set(c for c in line if not _ALLOWED.match(c)))
                raise CorpusTextError(
                    f"{path}:{lineno}: character(s) {''.join(bad)!r} not allowed in demo prose; "
                    "spell numbers and symbols out in words")
            if line:
                if not paragraph:
                    start = lineno
                paragraph.append(line)
                continue
            for chunk in _SENTENCE_END.split(" ".join(paragraph)):
                words = normalize(chunk)
                if words and words not in seen:
                    seen.add(words)
                    sentences.append(Sentence(chunk.strip(), words, f"{path.name}:{start}"))
            paragraph = []
    return sentences


def split_sentences(sentences: list[Sentence], dev_fraction: float = 0.1,
                    test_fraction: float = 0.1, seed: int = 0) -> TextSplits:
    """Hold out dev and test sentences (deterministic for ``seed``) with a closed vocabulary.

    Candidates are visited in a seeded random order; one is held out only if each of its
    words keeps at least one occurrence in the sentences still in train. Dev and test take
    turns so both see the same kind of sentences.
    """
    n_dev = round(dev_fraction * len(sentences))
    n_test = round(test_fraction * len(sentences))
    counts: Counter[str] = Counter(w for s in sentences for w in s.words.split())
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    dev: list[int] = []
    test: list[int] = []
    for i in order:
        if len(dev) >= n_dev and len(test) >= n_test:
            break
        own = Counter(sentences[i].words.split())
        if any(counts[w] - k < 1 for w, k in own.items()):
            continue  # holding it out would make one of its words unknown to the LM
        counts.subtract(own)
        target = dev if (len(dev) <= len(test) and len(dev) < n_dev) or len(test) >= n_test else test
        target.append(i)
    held = set(dev) | set(test)
    return TextSplits(train=[s for i, s in enumerate(sentences) if i not in held],
                      dev=[sentences[i] for i in sorted(dev)],
                      test=[sentences[i] for i in sorted(test)])
