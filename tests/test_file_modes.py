"""Every file the tools write ends with the umask's usual mode, not mkstemp's 0600.

The umask is set to 027 here (not the common 022), so a hard-coded 0644 would fail too:
files must be 0640 (``0o666 & ~umask``), output directories 0750.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from helpers import write_tone
from test_conversion_ctc import LETTERS, fairseq_ctc, letter_dictionary, save_fairseq_ctc, save_fairseq_wav2vec2

from w2v2_common.fileio import mkdtemp, mkstemp, plain_dir_mode, plain_file_mode
from w2v2_plugin.cli.convert import main as convert_main
from w2v2_plugin.cli.infer import main as infer_main
from w2v2_plugin.cli.lm import main as lm_main
from w2v2_plugin.lm.kenlm_tools import have_kenlm_tools

UMASK = 0o027
FILE, DIR = 0o640, 0o750


@pytest.fixture()
def umask027():
    old = os.umask(UMASK)
    try:
        yield
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def assert_modes(paths: list[Path]) -> None:
    assert paths
    wrong = {str(p): oct(mode(p)) for p in paths if mode(p) != (DIR if p.is_dir() else FILE)}
    assert not wrong, wrong


def test_helpers_follow_the_umask(tmp_path: Path, umask027) -> None:
    assert plain_file_mode() == FILE and plain_dir_mode() == DIR
    fd, tmp = mkstemp(dir=str(tmp_path))
    os.close(fd)
    assert_modes([Path(tmp), Path(mkdtemp(dir=str(tmp_path)))])
    with open(tmp_path / "plain.txt", "w") as f:  # what the helpers imitate
        f.write("x")
    assert mode(tmp_path / "plain.txt") == plain_file_mode()


def test_convert_infer_lm_and_manifest_outputs(tmp_path: Path, umask027, capsys) -> None:
    d = letter_dictionary()
    pre = save_fairseq_wav2vec2(tmp_path / "pretrained.pt")
    ft = save_fairseq_ctc(fairseq_ctc(pre, d), d, tmp_path / "ft.pt")
    written: list[Path] = []

    # w2v2-convert: the .pt and the .safetensors
    assert convert_main([str(ft), str(tmp_path / "conv" / "w2v2_ctc.pt"), "--safetensors"]) == 0
    written += [tmp_path / "conv" / "w2v2_ctc.pt", tmp_path / "conv" / "w2v2_ctc.safetensors"]
    assert convert_main([str(pre), str(tmp_path / "conv" / "w2v2.pt")]) == 0
    written.append(tmp_path / "conv" / "w2v2.pt")

    # w2v2-infer: hypos/summary, and the emission cache (index.jsonl, meta.json, em/*.npy)
    data = tmp_path / "data"
    lines = [str(data)]
    for i, secs in enumerate((0.6, 0.9)):
        write_tone(data / f"u{i}.wav", secs, seed=i)
        lines.append(f"u{i}.wav\t{int(secs * 16000)}")
    (data / "dev.tsv").write_text("\n".join(lines) + "\n")
    (data / "dev.wrd").write_text("THE CAT\nA DOG\n")
    (data / "dict.ltr.txt").write_text("".join(f"{c} 1\n" for c in LETTERS))
    out, em = tmp_path / "out", tmp_path / "em"
    assert infer_main([str(data), "--subset", "dev", "--path", str(tmp_path / "conv" / "w2v2_ctc.pt"),
                       "--results-path", str(out), "--save-emissions", str(em), "--workers", "1", "--quiet",
                       "--device", "cpu"]) == 0
    written += [out / "hypos.dev.jsonl", out / "summary.dev.json", em / "index.jsonl", em / "meta.json",
                *sorted((em / "em").glob("*.npy"))]

    if have_kenlm_tools():
        # w2v2-lm build: lexicon.txt and lm_info.json (and the ARPA/binary KenLM writes)
        (tmp_path / "corpus.txt").write_text("THE CAT SAT\nA DOG SAT\nTHE DOG\n" * 3)
        lm = tmp_path / "lm"
        assert lm_main(["build", str(tmp_path / "corpus.txt"), "--order", "2", "--dict",
                        str(data / "dict.ltr.txt"), "--out", str(lm), "--quiet"]) == 0
        written += [lm / "lexicon.txt", lm / "lm_info.json", lm / "2gram.arpa", lm / "2gram.bin"]
        # w2v2-infer --tune: tuned.json (and outputs named after the cached split)
        tuned = tmp_path / "tuned"
        assert infer_main(["--emissions", str(em), "--decoder", "kenlm", "--lm", str(lm / "2gram.bin"),
                           "--lexicon", str(lm / "lexicon.txt"), "--beam", "5", "--tune", "--tune-trials", "2",
                           "--tune-method", "random", "--results-path", str(tuned), "--workers", "1",
                           "--quiet"]) == 0
        written += [tuned / "tuned.json", tuned / "hypos.dev.jsonl", tuned / "summary.dev.json"]

    # w2v2-manifest (AtomicOutputs)
    from w2v2_manifests.cli import main as manifest_main

    root = tmp_path / "corpus"
    for i in range(2):
        write_tone(root / "1" / "2" / f"1-2-{i:04d}.flac", 0.1, seed=i)
    (root / "1" / "2" / "1-2.trans.txt").write_text("".join(f"1-2-{i:04d} WORD {chr(65 + i)}\n" for i in range(2)))
    assert manifest_main([str(root), "--dest", str(tmp_path / "manifest"), "--valid-percent", "0",
                          "--workers", "1"]) == 0
    written += sorted(p for p in (tmp_path / "manifest").iterdir() if p.is_file())
    capsys.readouterr()
    assert_modes(written)
    for directory in (tmp_path / "conv", out, em, tmp_path / "manifest"):
        assert not [p.name for p in directory.iterdir() if p.name.startswith(".")]  # no temp files left


def test_hf_export_directory(tmp_path: Path, umask027, capsys) -> None:
    pytest.importorskip("transformers")
    d = letter_dictionary()
    pre = save_fairseq_wav2vec2(tmp_path / "pretrained.pt")
    ft = save_fairseq_ctc(fairseq_ctc(pre, d), d, tmp_path / "ft.pt")
    hf = tmp_path / "hf"
    assert convert_main([str(ft), "--to-hf", str(hf)]) == 0
    capsys.readouterr()
    assert_modes([hf, *sorted(hf.iterdir())])
