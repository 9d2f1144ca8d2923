"""w2v2-lm: KenLM builds (ARPA + binary + lexicon), unit LMs, checks and one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from w2v2_plugin.cli.lm import main as lm_main
from w2v2_plugin.decoding.lexicon import load_lexicon
from w2v2_plugin.decoding.lm_files import inspect_lm
from w2v2_plugin.decoding.units import UnitDictionary
from w2v2_plugin.lm.kenlm_tools import have_kenlm_tools

pytestmark = pytest.mark.skipif(not have_kenlm_tools(), reason="lmplz/build_binary missing: run `make kenlm`")
LETTERS = list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")
CORPUS = "the cat sat on the mat\nthe dog's hat\n\na cat and a dog\n"


@pytest.fixture()
def files(tmp_path: Path) -> dict:
    d = tmp_path / "dict.ltr.txt"
    d.write_text("".join(f"{s} 1\n" for s in ["|", *LETTERS]))
    c = tmp_path / "corpus.txt"
    c.write_text(CORPUS * 3)
    return {"dict": d, "corpus": c, "out": tmp_path / "lm"}


def _no_temp_files(out: Path) -> bool:
    return not [p for p in out.iterdir() if p.name.startswith(".")]


def test_build_word_lm(files: dict, capsys) -> None:
    out = files["out"]
    assert lm_main(["build", str(files["corpus"]), "--order", "3", "--dict", str(files["dict"]), "--out", str(out),
                    "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "3-gram word LM: 9 sentences" in printed and "vocabulary 10" in printed
    arpa, binary = inspect_lm(out / "3gram.arpa"), inspect_lm(out / "3gram.bin")
    assert (arpa.format, arpa.order, binary.format, binary.order) == ("arpa", 3, "binary", 3)
    assert arpa.counts == binary.counts
    # the corpus was upper-cased to the dictionary's letters; the lexicon spells words + "|"
    assert {"THE", "DOG'S", "<unk>"} <= set(arpa.vocab)
    lex = load_lexicon(out / "lexicon.txt", UnitDictionary.load(files["dict"]))
    assert lex.entries["DOG'S"] == (("D", "O", "G", "'", "S", "|"),)
    assert sorted(lex.entries) == sorted(w for w in arpa.vocab if w not in ("<s>", "</s>", "<unk>"))
    info = json.loads((out / "lm_info.json").read_text())
    assert info["order"] == 3 and info["lexicon_words"] == 10 and info["dropped_words"] == []
    assert _no_temp_files(out)
    # and the check command accepts the pair
    assert lm_main(["check", "--lm", str(out / "3gram.bin"), "--lexicon", str(out / "lexicon.txt"),
                    "--dict", str(files["dict"])]) == 0
    assert "ok: " in capsys.readouterr().out


def test_build_unit_lm_for_lexfree(files: dict, capsys) -> None:
    out = files["out"]
    assert lm_main(["build", str(files["corpus"]), "--order", "5", "--dict", str(files["dict"]), "--unit-lm",
                    "--out", str(out), "--quiet"]) == 0
    info = inspect_lm(out / "5gram.units.arpa")
    assert info.order == 5 and {"|", "T", "H", "'"} <= set(info.vocab)
    assert not (out / "lexicon.txt").exists()
    assert lm_main(["check", "--lm", str(out / "5gram.units.bin"), "--dict", str(files["dict"])]) == 0
    assert "usable with --decoder lexfree" in capsys.readouterr().out


def test_oov_units_fail_or_are_dropped_and_counted(files: dict, capsys) -> None:
    files["corpus"].write_text(CORPUS + "a naïve cat\n")
    argv = ["build", str(files["corpus"]), "--order", "3", "--dict", str(files["dict"]), "--out", str(files["out"]),
            "--quiet"]
    assert lm_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"w2v2-lm: error: {files['corpus']}:5: word 'NAÏVE' uses unit(s) ['Ï'] that are not in the "
                   f"model's dictionary {files['dict']}; normalise the corpus or pass --drop-oov-words")
    assert not (files["out"] / "3gram.arpa").exists() and _no_temp_files(files["out"])
    assert lm_main(argv + ["--drop-oov-words"]) == 0
    assert "1 word types left out of the lexicon" in capsys.readouterr().out
    lex = load_lexicon(files["out"] / "lexicon.txt")
    assert "NAÏVE" not in lex.entries and "CAT" in lex.entries


@pytest.mark.parametrize("argv_extra,message", [
    (["--order", "7"], "--order 7: KenLM here supports orders 1..6"),
    (["--order", "1"], "--order 1: lmplz needs order >= 2"),
    (["--kenlm-bin", "/nonexistent"], "/nonexistent: no executable lmplz and build_binary there (--kenlm-bin); "
                                      "build them once with 'make kenlm'"),
])
def test_build_errors(files: dict, capsys, argv_extra: list[str], message: str) -> None:
    rc = lm_main(["build", str(files["corpus"]), "--out", str(files["out"]), "--quiet", *argv_extra])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_missing_and_empty_corpus(files: dict, tmp_path: Path, capsys) -> None:
    assert lm_main(["build", str(tmp_path / "nope.txt"), "--out", str(files["out"])]) == 2
    assert "nope.txt: corpus not found" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("\n \n")
    assert lm_main(["build", str(tmp_path / "empty.txt"), "--out", str(files["out"]), "--quiet"]) == 2
    assert "empty.txt: corpus has no words" in capsys.readouterr().err


def test_kenlm_tools_missing_says_how_to_get_them(files: dict, tmp_path: Path, monkeypatch, capsys) -> None:
    import w2v2_plugin.lm.kenlm_tools as kt

    monkeypatch.setattr(kt, "DEFAULT_BIN", tmp_path / "no-kenlm")
    monkeypatch.delenv("KENLM_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert lm_main(["build", str(files["corpus"]), "--out", str(files["out"])]) == 2
    err = capsys.readouterr().err
    assert "lmplz/build_binary not found" in err and "make kenlm" in err and "build_kenlm.sh" in err


def test_check_reports_mismatch(files: dict, tmp_path: Path, capsys) -> None:
    out = files["out"]
    assert lm_main(["build", str(files["corpus"]), "--order", "3", "--out", str(out), "--quiet"]) == 0  # no --dict
    capsys.readouterr()
    # without --dict the words keep the corpus' lower case: the uppercase model cannot spell them
    assert lm_main(["check", "--lm", str(out / "3gram.arpa"), "--lexicon", str(out / "lexicon.txt"),
                    "--dict", str(files["dict"])]) == 2
    assert "lexicon.txt:1: unit " in capsys.readouterr().err
