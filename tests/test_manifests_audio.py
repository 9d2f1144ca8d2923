"""Header probing: the fast WAV/FLAC parsers agree with soundfile, bad files are classified."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import write_tone

from w2v2_manifests.audio import AudioInfo, _flac_header, _wav_header, probe

WAV_SUBTYPES = ["PCM_16", "PCM_24", "PCM_32", "PCM_U8", "FLOAT", "DOUBLE", "ULAW", "IMA_ADPCM"]


def _wav_header_of(path: Path, head: int = 4096) -> AudioInfo | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        return _wav_header(fd, os.read(fd, head), os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _reference(path: Path) -> tuple[int, int, int]:
    info = sf.info(str(path))
    return info.frames, info.samplerate, info.channels


@pytest.mark.parametrize("subtype", WAV_SUBTYPES)
@pytest.mark.parametrize("channels", [1, 2])
def test_wav_matches_soundfile(tmp_path: Path, subtype: str, channels: int) -> None:
    for seconds in (0.0, 0.0001, 0.3337):
        path = write_tone(tmp_path / f"{seconds}.wav", seconds, sr=22050, channels=channels, subtype=subtype)
        got = probe(str(path))
        assert got.error is None
        assert (got.frames, got.sample_rate, got.channels) == _reference(path)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_S8"])
@pytest.mark.parametrize("channels", [1, 2])
def test_flac_matches_soundfile_and_takes_fast_path(tmp_path: Path, subtype: str, channels: int) -> None:
    for seconds in (0.0001, 0.3337, 1.7):
        path = write_tone(tmp_path / f"{seconds}.flac", seconds, sr=16000, channels=channels, subtype=subtype)
        got = probe(str(path))
        assert (got.frames, got.sample_rate, got.channels) == _reference(path)
        assert _flac_header(path.read_bytes()[:4096]) == got  # parsed from STREAMINFO, no libsndfile


def test_fast_paths_and_fallbacks(tmp_path: Path) -> None:
    pcm = write_tone(tmp_path / "pcm.wav", 0.5, subtype="PCM_16")
    assert _wav_header_of(pcm) == (8000, 16000, 1, None, None)
    wavex = tmp_path / "x.wav"
    sf.write(str(wavex), np.zeros((100, 4), np.float32), 16000, format="WAVEX", subtype="PCM_24")
    assert _wav_header_of(wavex) == (100, 16000, 4, None, None)
    # A WAV cut short: libsndfile trims the frame count to what is there; so do we (fallback).
    cut = tmp_path / "cut.wav"
    cut.write_bytes(pcm.read_bytes()[:1000])
    assert _wav_header_of(cut) is None
    assert probe(str(cut))[:3] == _reference(cut)
    ogg = tmp_path / "a.ogg"
    sf.write(str(ogg), np.zeros(1600, np.float32), 16000, format="OGG", subtype="VORBIS")
    assert probe(str(ogg))[:3] == _reference(ogg)


def test_bad_files_are_classified(tmp_path: Path) -> None:
    garbage = tmp_path / "g.flac"
    garbage.write_bytes(os.urandom(4000))
    got = probe(str(garbage))
    assert got.error_kind == "corrupt" and "not a readable audio file" in got.error and "\n" not in got.error
    fake_riff = tmp_path / "r.wav"
    fake_riff.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    assert probe(str(fake_riff)).error_kind == "corrupt"
    empty = tmp_path / "e.wav"
    empty.write_bytes(b"")
    assert probe(str(empty)) == (0, 0, 0, None, None)
    assert probe(str(write_tone(tmp_path / "z.wav", 0.0))).frames == 0
    assert probe(str(tmp_path)).error_kind == "unreadable"  # a directory: open() fails
    assert probe(str(tmp_path / "missing.wav")).error_kind == "unreadable"


def test_decode_catches_corrupt_body_behind_valid_header(tmp_path: Path) -> None:
    full = write_tone(tmp_path / "full.flac", 1.0)
    cut = tmp_path / "cut.flac"
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    assert probe(str(cut)).error is None  # the header alone looks fine
    bad = probe(str(cut), decode=True)
    assert bad.error_kind == "corrupt" and "decod" in bad.error
    assert probe(str(full), decode=True) == probe(str(full))


def _riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"WAVE" + b"".join(cid + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
                              for cid, data in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_wav_chunks_beyond_first_read_and_odd_padding(tmp_path: Path) -> None:
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    samples = np.arange(1001, dtype="<i2").tobytes()
    for extra in (b"x" * 5001, b"odd"):  # a big LIST chunk pushes "data" past the first read
        path = tmp_path / f"w{len(extra)}.wav"
        path.write_bytes(_riff([(b"fmt ", fmt), (b"LIST", extra), (b"data", samples)]))
        assert _wav_header_of(path) == (1001, 16000, 1, None, None)
        assert probe(str(path))[:3] == _reference(path)
