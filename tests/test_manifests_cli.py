"""The command line: python -m w2v2_manifests, exit status 2 on bad input, no torch/fairseq import."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_tone

from w2v2_manifests.cli import main

REPO = Path(__file__).resolve().parents[1]
# Run the CLI with torch and fairseq made unimportable: manifests must not need them.
BLOCKED = ("import sys, runpy; sys.modules['torch'] = None; sys.modules['fairseq'] = None; "
           "sys.argv = ['w2v2-manifest'] + sys.argv[1:]; runpy.run_module('w2v2_manifests', run_name='__main__')")


def _tree(root: Path) -> None:
    for i in range(3):
        write_tone(root / "1" / "2" / f"1-2-{i:04d}.flac", 0.1, seed=i)
    (root / "1" / "2" / "1-2.trans.txt").write_text("".join(f"1-2-{i:04d} WORD {chr(65 + i)}\n" for i in range(3)))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKED, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_python_m_manifests_without_torch_or_fairseq(tmp_path: Path) -> None:
    _tree(tmp_path / "LS")
    proc = _run(str(tmp_path / "LS"), "--dest", str(tmp_path / "out"), "--valid-percent", "0", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("train: 3 files") and proc.stdout.count("\n") == 1  # one summary line
    assert (tmp_path / "out" / "train.ltr").read_text().splitlines()[0] == "W O R D | A |"
    proc = _run("spm", "--train", str(tmp_path / "out" / "train.wrd"), "--vocab-size", "8",
                "--model-type", "char")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "train.spm").exists() and (tmp_path / "out" / "dict.spm.txt").exists()


def test_import_does_not_pull_torch() -> None:
    code = ("import sys; import w2v2_manifests, w2v2_manifests.cli, w2v2_manifests.builder, w2v2_manifests.spm, w2v2_manifests.scan, "
            "w2v2_manifests.lhotse_input; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fairseq', 'torchaudio', 'lhotse')); "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_bad_files_exit_2_without_traceback(tmp_path: Path) -> None:
    _tree(tmp_path / "LS")
    (tmp_path / "LS" / "1" / "2" / "1-2-0009.flac").write_bytes(b"not audio at all" * 10)
    proc = _run(str(tmp_path / "LS"), "--dest", str(tmp_path / "out"), "--no-progress")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("error: 1 bad audio file(s)") and "--on-bad skip" in lines[0]
    assert lines[1:] == ["  1/2/1-2-0009.flac: corrupt,no_transcript: not a readable audio file "
                         "(Format not recognised); no transcript (looked for a *.trans.txt entry, .txt or .lab)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,needle", [
    (["{root}/nope", "--dest", "{out}"], "nope: not a directory"),
    (["{root}", "--dest", "{out}", "--valid-percent", "2"], "--valid-percent 2.0"),
    (["{root}", "--dest", "{out}", "--transcripts", "{root}/none.tsv"], "none.tsv: --transcripts file not found"),
    (["{root}", "--dest", "{out}", "--digits", "error", "--labels", "auto"], None),
])
def test_cli_errors_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                             needle: str | None) -> None:
    _tree(tmp_path / "LS")
    argv = [a.format(root=tmp_path / "LS", out=tmp_path / "out") for a in args] + ["--no-progress"]
    rc = main(argv)
    captured = capsys.readouterr()
    if needle is None:
        assert rc == 0 and "train: " in captured.out
        return
    assert rc == 2 and captured.err.count("\n") == 1 and needle in captured.err
    assert captured.err.startswith("error: ")
