"""Reading and checking fairseq ``.tsv`` audio manifests.

Format (fairseq's, produced by ``w2v2-manifest`` or fairseq's ``wav2vec_manifest.py``)::

    /absolute/audio/root            <- line 1: the directory paths below are relative to
    speaker1/utt1.flac<TAB>123520   <- then one utterance a line: path, number of samples
    speaker1/utt2.flac<TAB>98080

Everything that can go wrong with a manifest is found here, *before* training starts, and
reported as one line ``MANIFEST:LINE: what is wrong; what to do`` (a :class:`ManifestError`,
the manifest tool's own: :mod:`w2v2_manifests.errors`).
The audio check reads file headers only (``soundfile.info``), in a thread pool because the
cost is file-system latency, not CPU (libsndfile releases the GIL).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import soundfile as sf

from w2v2_manifests.errors import ManifestError

from ..distributed import is_main_process

__all__ = ["AudioCheckSummary", "Manifest", "ManifestEntry", "ManifestError", "check_audio_files", "read_manifest"]

logger = logging.getLogger(__name__)

# Below this many files the check finishes in well under a second: no progress bar.
_PROGRESS_MIN_FILES = 5000


@dataclass(frozen=True)
class ManifestEntry:
    """One utterance line of a manifest."""

    line: int  # 1-based line number in the manifest file (line 1 is the root)
    path: str  # as written in the manifest, relative to the root
    frames: int  # number of samples the manifest claims


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest: the root directory and its utterance lines, in file order."""

    path: str
    root: str
    entries: tuple[ManifestEntry, ...]

    def audio_path(self, entry: ManifestEntry) -> str:
        return os.path.join(self.root, entry.path)

    def where(self, line: int) -> str:
        """``file:line`` prefix used in every error message."""
        return f"{self.path}:{line}"


class AudioCheckSummary(NamedTuple):
    """What :func:`check_audio_files` saw."""

    files: int
    seconds: float
    threads: int


def read_manifest(path: str) -> Manifest:
    """Parse a manifest; raise :class:`ManifestError` naming the line on any malformed line.

    Blank lines at the very end of the file are tolerated (editors add them); a blank line
    between utterances is an error, because fine-tuning label files are aligned by position.
    """
    if not os.path.isfile(path):
        raise ManifestError(
            f"{path}: manifest not found; write one with `w2v2-manifest` "
            f"(line 1 the audio root, then PATH<TAB>NUM_SAMPLES per utterance)"
        )
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not a UTF-8 text file ({e}); is this really a .tsv manifest?") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ManifestError(
            f"{path}:1: empty manifest; line 1 must be the audio root directory, "
            f"then one PATH<TAB>NUM_SAMPLES line per utterance"
        )
    root = lines[0].strip()
    if not root or "\t" in root:
        raise ManifestError(
            f"{path}:1: line 1 must be the audio root directory (a single path), got {lines[0]!r}"
        )
    if not os.path.isdir(root):
        raise ManifestError(
            f"{path}:1: audio root directory {root!r} does not exist; fix line 1 of the manifest"
        )
    entries: list[ManifestEntry] = []
    for lineno, raw in enumerate(lines[1:], start=2):
        text = raw.strip()
        if not text:
            raise ManifestError(f"{path}:{lineno}: blank line between utterances; remove it")
        fields = text.split("\t")
        if len(fields) != 2:
            raise ManifestError(
                f"{path}:{lineno}: expected PATH<TAB>NUM_SAMPLES (2 tab-separated fields), "
                f"got {len(fields)} field(s) in {text!r}"
            )
        rel, frames_text = fields
        try:
            frames = int(frames_text)
        except ValueError:
            frames = -1
        if frames < 0 or not rel:
            raise ManifestError(
                f"{path}:{lineno}: expected PATH<TAB>NUM_SAMPLES with a non-negative integer "
                f"sample count, got {text!r}"
            )
        entries.append(ManifestEntry(line=lineno, path=rel, frames=frames))
    if not entries:
        raise ManifestError(
            f"{path}:2: manifest lists no utterances (only the root line); "
            f"add PATH<TAB>NUM_SAMPLES lines"
        )
    return Manifest(path=path, root=root, entries=tuple(entries))


def _probe(audio_path: str, expected_frames: int, sample_rate: int) -> str | None:
    """Return what is wrong with one audio file (header only), or None if it is fine."""
    if not os.path.isfile(audio_path):
        return f"audio file {audio_path} does not exist; fix the path or line 1 (the root)"
    try:
        info = sf.info(audio_path)
    except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return (
            f"cannot read audio file {audio_path} ({first}); "
            f"re-encode it as wav/flac/ogg (e.g. `sox IN -r {sample_rate} -c 1 OUT.flac`)"
        )
    if info.samplerate != sample_rate:
        return (
            f"{audio_path} has sample rate {info.samplerate} Hz but the task expects "
            f"{sample_rate} Hz (task.sample_rate); resample it "
            f"(e.g. `sox IN -r {sample_rate} OUT.flac`) and regenerate the manifest"
        )
    if info.frames != expected_frames:
        return (
            f"the manifest says {expected_frames} samples but {audio_path} has {info.frames}; "
            f"the manifest is stale: regenerate it with `w2v2-manifest`"
        )
    if info.frames == 0:
        return f"{audio_path} is empty (0 samples); remove its line from the manifest"
    return None


def _default_threads() -> int:
    # Header reads wait on the file system, so more threads than cores pays off on NFS/Lustre.
    return min(32, 4 * (os.cpu_count() or 1))


def check_audio_files(
    manifest: Manifest,
    sample_rate: int,
    entries: Sequence[ManifestEntry] | None = None,
    num_threads: int | None = None,
) -> AudioCheckSummary:
    """Check that every audio file exists, opens, has ``sample_rate`` and the stated length.

    Raises :class:`ManifestError` for the first bad line (in file order), saying how many
    other lines are bad too, so one run lists the size of the problem.
    """
    todo: Sequence[ManifestEntry] = manifest.entries if entries is None else entries
    threads = max(1, num_threads or _default_threads())
    start = time.perf_counter()

    def probe(entry: ManifestEntry) -> str | None:
        return _probe(manifest.audio_path(entry), entry.frames, sample_rate)

    problems: Iterable[str | None]
    if len(todo) < 64 or threads == 1:
        problems = map(probe, todo)
        results = list(problems)
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="w2v2-audio-check") as pool:
            # chunksize keeps the scheduling overhead small for 100k+ files
            problems = pool.map(probe, todo, chunksize=64)
            if len(todo) >= _PROGRESS_MIN_FILES and is_main_process():
                from tqdm import tqdm

                problems = tqdm(problems, total=len(todo), desc=f"checking {os.path.basename(manifest.path)}",
                                unit="file", mininterval=1.0)
            results = list(problems)
    bad = [(entry, msg) for entry, msg in zip(todo, results, strict=True) if msg is not None]
    if bad:
        entry, msg = bad[0]
        more = ""
        if len(bad) > 1:
            shown = ", ".join(str(e.line) for e, _ in bad[1:6])
            etc = ", ..." if len(bad) > 6 else ""
            more = f" [{len(bad) - 1} more bad line(s): {shown}{etc}]"
        raise ManifestError(f"{manifest.where(entry.line)}: {msg}{more}")
    return AudioCheckSummary(files=len(todo), seconds=time.perf_counter() - start, threads=threads)
