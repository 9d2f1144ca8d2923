"""``w2v2-manifest spm``: subword labels aligned with the splits, a fairseq-style dict."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from w2v2_manifests import ManifestError, SpmConfig, train_spm
from w2v2_manifests.cli import main

VOCAB = ["the", "cat", "sat", "on", "mat", "dog", "ran", "far", "away", "quickly", "slowly", "house"]


def _words(path: Path, lines: int, seed: int) -> list[str]:
    rand = random.Random(seed)
    text = [" ".join(rand.choice(VOCAB).upper() for _ in range(rand.randint(2, 7))) for _ in range(lines)]
    path.write_text("\n".join(text) + "\n")
    return text


def test_spm_labels_and_dict(tmp_path: Path) -> None:
    train = _words(tmp_path / "train.wrd", 300, 0)
    valid = _words(tmp_path / "valid.wrd", 40, 1)
    (tmp_path / "train.tsv").write_text("/root\n")  # not touched
    s = train_spm(SpmConfig(train=str(tmp_path / "train.wrd"), vocab_size=30))
    assert (tmp_path / "spm.model").exists() and (tmp_path / "spm.vocab").exists()
    for name, text in (("train", train), ("valid", valid)):
        spm_lines = (tmp_path / f"{name}.spm").read_text().splitlines()
        assert len(spm_lines) == len(text)  # still aligned with .wrd/.tsv
        # fairseq's post_process="sentencepiece" gives the words back
        assert [x.replace(" ", "").replace("\u2581", " ").strip() for x in spm_lines] == text
    entries = [line.rsplit(" ", 1) for line in (tmp_path / "dict.spm.txt").read_text().splitlines()]
    symbols = [sym for sym, _ in entries]
    assert not {"<unk>", "<s>", "</s>", "<pad>"} & set(symbols) and len(symbols) == len(set(symbols))
    assert len(symbols) == 30 - 3 == s.pieces  # vocab minus <unk> <s> </s>
    counts = Counter(p for line in (tmp_path / "train.spm").read_text().splitlines() for p in line.split())
    assert {sym: int(c) for sym, c in entries} == {sym: counts[sym] for sym in symbols}
    assert [int(c) for _, c in entries] == sorted((int(c) for _, c in entries), reverse=True)
    assert set(counts) <= set(symbols)
    first = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["spm", "--train", str(tmp_path / "train.wrd"), "--vocab-size", "30"]) == 0
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == first  # deterministic


def test_spm_errors_are_one_line_and_leave_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _words(tmp_path / "train.wrd", 20, 0)
    with pytest.raises(ManifestError, match=r"sentencepiece could not train \(Vocabulary size too high") as err:
        train_spm(SpmConfig(train=str(tmp_path / "train.wrd"), vocab_size=5000))
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.wrd"]
    assert main(["spm", "--train", str(tmp_path / "nope.wrd"), "--vocab-size", "10"]) == 2
    err_text = capsys.readouterr().err
    assert err_text.startswith("error: ") and "nope.wrd" in err_text and "Traceback" not in err_text
