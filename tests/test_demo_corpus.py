"""The demo corpus: text splits are disjoint and closed-vocabulary; synthesis is
deterministic, LibriSpeech-shaped, 16 kHz mono, and sized by real durations."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import soundfile as sf

from examples.demo.corpus import CorpusTextError, normalize, read_sentences, split_sentences
from examples.demo.speakers import make_speakers
from examples.demo.synth import SynthConfig, synthesize


def test_normalize_librispeech_style() -> None:
    assert normalize("The hunter's net -- well-made, he said!") == "THE HUNTER'S NET WELL MADE HE SAID"


def test_shipped_text_splits_disjoint_and_closed_vocabulary() -> None:
    sentences = read_sentences()
    assert len(sentences) > 1000
    splits = split_sentences(sentences)
    train = {s.words for s in splits.train}
    dev = {s.words for s in splits.dev}
    test = {s.words for s in splits.test}
    assert not (train & dev) and not (train & test) and not (dev & test)
    assert len(train) + len(dev) + len(test) == len(sentences)  # nothing dropped
    assert len(dev) >= 0.09 * len(sentences) and len(test) >= 0.09 * len(sentences)
    lm_vocab = {w for line in splits.lm_lines() for w in line.split()}
    assert all(w in lm_vocab for s in dev | test for w in s.split())
    assert set(splits.lm_lines()) == train  # the LM never sees dev/test sentences
    assert split_sentences(sentences) == splits  # deterministic


def test_bad_character_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("# comment\nA good line.\nIt cost 5 pounds.\n")
    with pytest.raises(CorpusTextError, match=r"bad\.txt:3: .*'5'"):
        read_sentences([path])


def test_speakers_disjoint() -> None:
    spk = make_speakers(24, 4, 4, seed=3)
    voices = [{s.voice for s in spk[k]} for k in ("train", "dev", "test")]
    assert not (voices[0] & voices[1]) and not (voices[0] & voices[2]) and not (voices[1] & voices[2])
    assert make_speakers(24, 4, 4, seed=3) == spk


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "corpus.json"}


def test_synthesis_small_deterministic(tmp_path: Path, have_espeak: bool) -> None:
    if not have_espeak:
        pytest.skip("espeak-ng/sox not installed")
    cfg = SynthConfig(out=str(tmp_path / "a"), unlabeled_hours=0.5 / 60, labeled_minutes=[0.25, 0.5],
                      dev_minutes=0.25, test_minutes=0.25, train_speakers=3, dev_speakers=1,
                      test_speakers=1, jobs=2)
    summary = synthesize(cfg, quiet=True)
    root = tmp_path / "a" / "LibriSpeech"
    assert set(summary["splits"]) == {"train-unlabeled", "train-0.5min", "train-0.25min", "dev", "test"}
    for name, info in summary["splits"].items():
        files = sorted((root / name).rglob("*.flac"))
        assert len(files) == info["utterances"] > 0
        seconds = sum(sf.info(str(f)).frames for f in files) / 16000
        assert seconds == pytest.approx(info["seconds"], abs=0.01)
        target = {"train-unlabeled": 30, "train-0.5min": 30}.get(name, 15)
        assert target <= seconds < target + 10  # shortest prefix reaching the target
        info0 = sf.info(str(files[0]))
        assert (info0.samplerate, info0.channels, info0.subtype) == (16000, 1, "PCM_16")
        # LibriSpeech layout: spk/chap/spk-chap-utt.flac and one trans.txt line per file.
        spk, chap, _ = files[0].stem.split("-")
        assert files[0].parent == root / name / spk / chap
        trans = {line.split(" ", 1)[0] for t in (root / name).rglob("*.trans.txt")
                 for line in t.read_text().splitlines()}
        assert trans == {f.stem for f in files}
    # The smaller labeled subset is a prefix of the larger one (nested, like libri-light).
    small = {f.name for f in (root / "train-0.25min").rglob("*.flac")}
    assert small < {f.name for f in (root / "train-0.5min").rglob("*.flac")}
    # Even the smallest labeled subset spells every character of the dev/test transcripts.
    small_chars = {c for t in (root / "train-0.25min").rglob("*.trans.txt")
                   for line in t.read_text().splitlines() for c in line.split(" ", 1)[1]}
    held_chars = {c for name in ("dev", "test") for t in (root / name).rglob("*.trans.txt")
                  for line in t.read_text().splitlines() for c in line.split(" ", 1)[1]}
    assert held_chars <= small_chars
    dev_words = set((tmp_path / "a" / "text" / "dev.txt").read_text().splitlines())
    assert not dev_words & set((tmp_path / "a" / "text" / "lm.txt").read_text().splitlines())
    # Same seed -> same bytes; a second call with the same config does nothing.
    synthesize(SynthConfig(**{**cfg.__dict__, "out": str(tmp_path / "b")}), quiet=True)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    before = (tmp_path / "a" / "corpus.json").stat().st_mtime_ns
    synthesize(cfg, quiet=True)
    assert (tmp_path / "a" / "corpus.json").stat().st_mtime_ns == before
