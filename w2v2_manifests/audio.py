"""Audio facts from file headers: frame count, sample rate, channels.

WAV (PCM / IEEE float, plain or WAVE_FORMAT_EXTENSIBLE) and FLAC headers are parsed
here in pure Python: it reads a few hundred bytes per file, several times faster than
opening the file with libsndfile (which ``soundfile.info`` does, and more). Anything the
fast path does not fully understand (other codecs, RF64, streamed WAVs whose data size is
missing, FLAC with an unknown sample count, ID3-prefixed FLAC, ...) goes to
``soundfile.SoundFile``, so the numbers always agree with what fairseq's loader
(soundfile) sees. ``decode=True`` additionally decodes every sample to catch corrupt bodies
that a header cannot reveal (e.g. a FLAC file cut short by a failed download).
"""
from __future__ import annotations

import os
import struct
from typing import NamedTuple

import soundfile as sf

# WAVE format tags whose frame count is simply data_bytes // block_align in libsndfile.
_WAV_PCM = 0x0001
_WAV_FLOAT = 0x0003
_WAV_EXTENSIBLE = 0xFFFE
_WAV_MAX_CHUNKS = 64  # stop walking chunk headers after this many: fall back to libsndfile
_DECODE_BLOCK = 1 << 18  # frames per read when decoding a whole file


class AudioInfo(NamedTuple):
    """What one file's header says, or why it could not be read."""

    frames: int
    sample_rate: int
    channels: int
    error_kind: str | None = None  # "unreadable" (I/O) | "corrupt" (format) | None
    error: str | None = None  # one-line detail when error_kind is set


def _fail(kind: str, detail: str) -> AudioInfo:
    return AudioInfo(0, 0, 0, kind, " ".join(detail.split()))


_HEAD = 4096  # bytes read up front: covers fmt + data chunk headers of nearly every WAV


def _wav_header(fd: int, head: bytes, size: int) -> AudioInfo | None:
    """Parse a RIFF/WAVE header; None when libsndfile should decide.

    ``head`` is the first bytes of the file; chunk headers past it are read with pread.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset = 12
    fmt: tuple[int, int, int, int, int] | None = None  # tag, channels, rate, block_align, bits
    for _ in range(_WAV_MAX_CHUNKS):
        chunk = head[offset:offset + 48] if offset + 48 <= len(head) else os.pread(fd, 48, offset)
        if len(chunk) < 8:
            return None  # no data chunk: libsndfile decides how broken it is
        cid, csize = chunk[:4], struct.unpack_from("<I", chunk, 4)[0]
        if cid == b"fmt ":
            body = chunk[8:8 + min(csize, 40)]
            if len(body) < 16:
                return None
            tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _WAV_EXTENSIBLE:
                if len(body) < 26:
                    return None
                tag = struct.unpack_from("<H", body, 24)[0]  # first two bytes of the sub-format GUID
            fmt = (tag, channels, rate, block_align, bits)
        elif cid == b"data":
            if fmt is None:
                return None
            tag, channels, rate, block_align, bits = fmt
            data_start = offset + 8
            if (tag not in (_WAV_PCM, _WAV_FLOAT) or channels < 1 or rate < 1
                    or bits not in (8, 16, 24, 32, 64)
                    or block_align != channels * (bits // 8)
                    or data_start + csize > size  # truncated or streamed: libsndfile adjusts
                    or (csize == 0 and size > data_start)):  # size never filled in by a streamer
                return None
            return AudioInfo(csize // block_align, rate, channels)
        offset += 8 + csize + (csize & 1)  # chunks are padded to an even length
    return None


def _flac_header(head: bytes) -> AudioInfo | None:
    """Parse FLAC's STREAMINFO block (first bytes of the file); None when libsndfile should decide."""
    # "fLaC" + 4-byte block header + 34-byte STREAMINFO
    if len(head) < 42 or head[:4] != b"fLaC" or (head[4] & 0x7F) != 0:
        return None
    if int.from_bytes(head[5:8], "big") != 34:
        return None
    # 20 bits sample rate, 3 bits channels-1, 5 bits bits-per-sample-1, 36 bits total samples
    packed = int.from_bytes(head[18:26], "big")
    rate = packed >> 44
    channels = ((packed >> 41) & 0x7) + 1
    total = packed & ((1 << 36) - 1)
    if rate == 0 or total == 0:  # 0 samples means "unknown" in FLAC
        return None
    return AudioInfo(total, rate, channels)


def _libsndfile(path: str) -> AudioInfo:
    try:
        with sf.SoundFile(path) as snd:
            return AudioInfo(int(snd.frames), int(snd.samplerate), int(snd.channels))
    except sf.LibsndfileError as exc:  # its str() repeats the whole path: keep the reason only
        return _fail("corrupt", f"not a readable audio file ({exc.error_string.rstrip('.')})")
    except (RuntimeError, TypeError, ValueError) as exc:
        return _fail("corrupt", f"not a readable audio file ({exc})")
    except OSError as exc:
        return _fail("unreadable", f"cannot open ({exc.strerror or exc})")


def _decode_all(path: str, header: AudioInfo) -> AudioInfo:
    """Decode every sample; a failure or a short read marks the file corrupt."""
    count = 0
    try:
        with sf.SoundFile(path) as snd:
            while True:
                block = snd.read(_DECODE_BLOCK, dtype="float32", always_2d=True)  # (frame, channel)
                if len(block) == 0:
                    break
                count += len(block)
    except sf.LibsndfileError as exc:
        return _fail("corrupt", f"decoding failed after {count} of {header.frames} frames "
                                f"({exc.error_string.rstrip('.')})")
    except (RuntimeError, TypeError, ValueError) as exc:
        return _fail("corrupt", f"decoding failed after {count} of {header.frames} frames ({exc})")
    except OSError as exc:
        return _fail("unreadable", f"cannot read ({exc.strerror or exc})")
    if count != header.frames:
        return _fail("corrupt", f"header says {header.frames} frames but {count} decode")
    return header


def probe(path: str, decode: bool = False) -> AudioInfo:
    """Frames, sample rate and channels of ``path`` from its header (see module docstring).

    Never raises for a bad file: the problem comes back in ``error_kind``/``error``.
    A 0-byte file reports 0 frames (libsndfile cannot even open one, but it is "empty",
    not "corrupt", from the user's point of view).
    """
    try:
        # os-level I/O: one open, fstat, read; file objects would add buffering and seeks
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return AudioInfo(0, 0, 0)
            head = os.read(fd, _HEAD)
            info = None
            if head[:4] == b"RIFF":
                info = _wav_header(fd, head, size)
            elif head[:4] == b"fLaC":
                info = _flac_header(head)
        finally:
            os.close(fd)
    except OSError as exc:
        return _fail("unreadable", f"cannot open ({exc.strerror or exc})")
    if info is None:
        info = _libsndfile(path)
    if decode and info.error_kind is None and info.frames > 0:
        info = _decode_all(path, info)
    return info
