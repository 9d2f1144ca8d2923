"""Transcript normalization rules and the .ltr letter format."""
from __future__ import annotations

import pytest

from w2v2_manifests.text import NormalizationError, TextConfig, normalize, to_letters

DEFAULT = TextConfig()


@pytest.mark.parametrize("raw,expect", [
    ("hello world", "HELLO WORLD"),
    ("  Well-known,   isn't it?\t“Yes”—$5!  ", "WELL KNOWN ISN'T IT YES 5"),
    ("rock ’n’ roll", "ROCK 'N' ROLL"),  # typographic apostrophes become '
    ("' quoted ' words", "QUOTED WORDS"),  # tokens made only of apostrophes go
    ("cafe\u0301 a/b", "CAFÉ A B"),  # NFC composes; / is punctuation
    ("ROOM 101", "ROOM 101"),  # digits stay
    ("", ""),
])
def test_default_rules(raw: str, expect: str) -> None:
    assert normalize(raw, DEFAULT) == expect


def test_case_and_punctuation_options() -> None:
    assert normalize("Hello, World", TextConfig(case="lower")) == "hello world"
    assert normalize("Hello, World", TextConfig(case="keep")) == "Hello World"
    assert normalize("Hello, World!", TextConfig(punctuation="keep")) == "HELLO, WORLD!"


def test_errors() -> None:
    with pytest.raises(NormalizationError, match=r"contains digits \(12\)"):
        normalize("route 21", TextConfig(digits="error"))
    with pytest.raises(NormalizationError, match="word-boundary"):
        normalize("a | b", TextConfig(punctuation="keep"))
    assert normalize("a | b", DEFAULT) == "A B"  # strip removes it like any symbol


@pytest.mark.parametrize("words", ["HELLO WORLD", "A", "IT'S OK", "CAFÉ AU LAIT"])
def test_letters_match_fairseq_libri_labels(words: str) -> None:
    # examples/wav2vec/libri_labels.py: " ".join(list(text.replace(" ", "|"))) + " |"
    assert to_letters(words) == " ".join(list(words.replace(" ", "|"))) + " |"


def test_letters_example() -> None:
    assert to_letters("HELLO WORLD") == "H E L L O | W O R L D |"
