"""Bad input is reported up front, as one line naming the manifest file and line."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import soundfile as sf
from helpers import write_tone

from w2v2_plugin.data.manifest import ManifestError, check_audio_files, read_manifest
from w2v2_plugin.data.raw_audio import FileAudioDataset


@pytest.fixture()
def audio_dir(tmp_path: Path) -> Path:
    for i in range(3):
        write_tone(tmp_path / "audio" / f"u{i}.wav", 0.25, seed=i)
    return tmp_path / "audio"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.tsv"
    path.write_text(text)
    return path


def _error(manifest: Path, **kwargs: object) -> str:
    with pytest.raises(ManifestError) as info:
        FileAudioDataset(str(manifest), 16000, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message, message  # one line
    return message


def _where(manifest: Path, line: int) -> str:
    return re.escape(f"{manifest}:{line}: ")


@pytest.mark.parametrize(
    "body, line, what",
    [
        ("u0.wav 4000\n", 2, "2 tab-separated fields"),
        ("u0.wav\t4000\nu1.wav\t4000\textra\n", 3, "got 3 field"),
        ("u0.wav\tfour\n", 2, "non-negative integer"),
        ("u0.wav\t-5\n", 2, "non-negative integer"),
        ("u0.wav\t4000\n\nu1.wav\t4000\n", 3, "blank line"),
        ("u0.wav\t4000\nmissing.wav\t4000\n", 3, "does not exist"),
        ("u0.wav\t4000\nu1.wav\t3999\n", 3, "stale"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, audio_dir: Path, body: str, line: int, what: str) -> None:
    manifest = _write(tmp_path, f"{audio_dir}\n{body}")
    message = _error(manifest)
    assert re.match(_where(manifest, line), message), message
    assert what in message


def test_empty_manifest_and_root_problems(tmp_path: Path, audio_dir: Path) -> None:
    assert "empty manifest" in _error(_write(tmp_path, ""))
    assert "empty manifest" in _error(_write(tmp_path, "\n\n"))
    message = _error(_write(tmp_path, f"{audio_dir}\n"))
    assert re.match(_where(tmp_path / "train.tsv", 2), message) and "no utterances" in message
    message = _error(_write(tmp_path, f"{tmp_path}/nowhere\nu0.wav\t4000\n"))
    assert re.match(_where(tmp_path / "train.tsv", 1), message) and "does not exist" in message
    message = _error(_write(tmp_path, "u0.wav\t4000\nu1.wav\t4000\n"))
    assert re.match(_where(tmp_path / "train.tsv", 1), message) and "root directory" in message
    assert "manifest not found" in _error(tmp_path / "nope.tsv")


def test_trailing_blank_lines_are_fine(tmp_path: Path, audio_dir: Path) -> None:
    ds = FileAudioDataset(str(_write(tmp_path, f"{audio_dir}\nu0.wav\t4000\n\n\n")), 16000)
    assert len(ds) == 1


def test_unreadable_audio(tmp_path: Path, audio_dir: Path) -> None:
    (audio_dir / "junk.wav").write_bytes(b"this is not audio at all" * 10)
    manifest = _write(tmp_path, f"{audio_dir}\nu0.wav\t4000\njunk.wav\t4000\n")
    message = _error(manifest)
    assert re.match(_where(manifest, 3), message) and "cannot read audio file" in message and "junk.wav" in message


def test_wrong_sample_rate(tmp_path: Path, audio_dir: Path) -> None:
    write_tone(audio_dir / "low.wav", 0.5, sr=8000)
    manifest = _write(tmp_path, f"{audio_dir}\nu0.wav\t4000\nlow.wav\t4000\n")
    message = _error(manifest)
    assert re.match(_where(manifest, 3), message)
    assert "8000 Hz" in message and "16000 Hz" in message and "task.sample_rate" in message


def test_all_utterances_too_short(tmp_path: Path, audio_dir: Path) -> None:
    manifest = _write(tmp_path, f"{audio_dir}\nu0.wav\t4000\nu1.wav\t4000\n")
    message = _error(manifest, min_sample_size=16000)
    assert str(manifest) in message and "all 2 utterances are shorter than min_sample_size=16000" in message


def test_dropped_short_lines_are_not_checked(tmp_path: Path, audio_dir: Path) -> None:
    # a clip below min_sample_size is dropped (and counted), whatever its file looks like
    manifest = _write(tmp_path, f"{audio_dir}\nu0.wav\t4000\ngone.wav\t10\n")
    assert len(FileAudioDataset(str(manifest), 16000, min_sample_size=100)) == 1


def test_thread_pool_check_reports_first_bad_line_and_count(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    rows = []
    for i in range(150):
        write_tone(audio / f"u{i}.wav", 0.01, seed=i)
        rows.append(f"u{i}.wav\t160")
    for bad in (40, 90, 120):
        rows[bad] = f"missing{bad}.wav\t160"
    manifest = _write(tmp_path, f"{audio}\n" + "\n".join(rows) + "\n")
    parsed = read_manifest(str(manifest))
    with pytest.raises(ManifestError) as info:
        check_audio_files(parsed, 16000, num_threads=4)
    assert str(info.value).startswith(f"{manifest}:42: audio file {audio}/missing40.wav does not exist")
    assert "[2 more bad line(s): 92, 122]" in str(info.value)
    rows = [r for r in rows if not r.startswith("missing")]
    ok = read_manifest(str(_write(tmp_path, f"{audio}\n" + "\n".join(rows) + "\n")))
    summary = check_audio_files(ok, 16000, num_threads=4)
    assert summary.files == 147 and summary.threads == 4


def test_check_can_be_disabled_and_read_errors_still_name_the_line(tmp_path: Path, audio_dir: Path) -> None:
    manifest = _write(tmp_path, f"{audio_dir}\nu0.wav\t4000\nmissing.wav\t4000\n")
    ds = FileAudioDataset(str(manifest), 16000, check_audio=False)
    assert ds[0]["source"].shape == (4000,)
    sf.write(str(audio_dir / "u1.wav"), [0.0] * 100, 8000)  # changed after the check
    ds = FileAudioDataset(str(_write(tmp_path, f"{audio_dir}\nu1.wav\t100\n")), 16000, check_audio=False)
    with pytest.raises(ManifestError, match=_where(tmp_path / "train.tsv", 2) + ".*8000 Hz"):
        ds[0]
