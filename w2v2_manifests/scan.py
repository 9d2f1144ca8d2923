"""Find the audio files of a tree and read their headers, in parallel with bounded memory.

The walk is deterministic: directories and files are visited in sorted (code point) order,
each directory's files together (the per-directory transcript cache relies on that).
Hidden names (starting with ".") are skipped like fairseq's glob does, which also keeps
macOS "._x.flac" resource forks out. Symlinked directories are followed once each.

Header reads go through a process pool fed a few chunks at a time: at most
``workers * _WINDOW`` chunks are in flight, results come back in walk order, and each
result is handed on (and dropped) as soon as it arrives, so memory does not grow with the
number of files beyond the listing itself.
"""
from __future__ import annotations

import multiprocessing
import os
import posixpath
import signal
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import NamedTuple

from .audio import AudioInfo, probe

SIDECAR_EXTS = (".txt", ".lab")  # looked up in this order next to each audio file
TRANS_SUFFIX = ".trans.txt"  # LibriSpeech: one "UTTID TEXT" file per chapter directory
_WINDOW = 4  # chunks in flight per worker
_MAX_CHUNK = 256  # files per chunk


class FileEntry(NamedTuple):
    rel: str  # path relative to the root, "/"-separated
    sidecar: str | None  # relative path of its .txt/.lab transcript, if one exists


class Listing(NamedTuple):
    files: list[FileEntry]  # audio files in walk order
    trans_by_dir: dict[str, list[str]]  # directory (relative) -> its *.trans.txt files (relative)
    sidecars: int  # how many audio files have a sidecar transcript


class ProbeResult(NamedTuple):
    info: AudioInfo
    sidecar_text: str | None  # raw sidecar content, when asked for and present
    sidecar_error: str | None  # why the sidecar could not be read (e.g. not UTF-8)


def parse_exts(ext: str) -> tuple[str, ...]:
    """"flac,wav" -> (".flac", ".wav"); matching is case-insensitive."""
    exts = tuple("." + e.strip().lstrip(".").lower() for e in ext.split(",") if e.strip().lstrip("."))
    return exts


def walk(root: str, exts: Sequence[str]) -> Listing:
    """List audio files (by extension), LibriSpeech transcript files and sidecars under root."""
    files: list[FileEntry] = []
    trans_by_dir: dict[str, list[str]] = {}
    sidecars = 0
    seen_dirs: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen_dirs:  # a symlink loop or a second link to a dir
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir
        names = sorted(f for f in filenames if not f.startswith("."))
        present = set(names)
        trans = [posixpath.join(rel_dir, n) for n in names if n.endswith(TRANS_SUFFIX)]
        if trans:
            trans_by_dir[rel_dir] = trans
        for name in names:
            stem, ext = os.path.splitext(name)
            if ext.lower() not in exts:
                continue
            sidecar = next((stem + e for e in SIDECAR_EXTS if stem + e in present), None)
            if sidecar is not None and sidecar.endswith(TRANS_SUFFIX):
                sidecar = None  # "a.trans.flac" next to LibriSpeech's "a.trans.txt": not a sidecar
            sidecars += sidecar is not None
            files.append(FileEntry(posixpath.join(rel_dir, name),
                                   None if sidecar is None else posixpath.join(rel_dir, sidecar)))
    return Listing(files, trans_by_dir, sidecars)


def _read_sidecar(path: str) -> tuple[str | None, str | None]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        return None, f"cannot read ({exc.strerror or exc})"
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        return None, f"line {line}: not UTF-8 text (byte {raw[exc.start]:#04x}); save it as UTF-8"


def _probe_chunk(root: str, chunk: Sequence[FileEntry], decode: bool,
                 sidecars: bool) -> list[ProbeResult]:
    out = []
    for entry in chunk:
        info = probe(os.path.join(root, entry.rel), decode=decode)
        text = err = None
        if sidecars and entry.sidecar is not None:
            text, err = _read_sidecar(os.path.join(root, entry.sidecar))
        out.append(ProbeResult(info, text, err))
    return out


# Work handed to forked workers by reference: a forked child already holds the parent's
# file list, so a task is only (token, start, stop) and nothing large is pickled.
_SHARED: dict[int, tuple[str, Sequence[FileEntry], bool, bool]] = {}


_Flat = tuple[int, int, int, "str | None", "str | None", "str | None", "str | None"]


def _flat_chunk(root: str, chunk: Sequence[FileEntry], decode: bool, sidecars: bool) -> list[_Flat]:
    # Plain tuples cross the process boundary ~30x cheaper than NamedTuples (whose pickle
    # goes through copyreg), which matters when a file costs only tens of microseconds.
    return [(*r.info, r.sidecar_text, r.sidecar_error) for r in _probe_chunk(root, chunk, decode, sidecars)]


def _probe_shared(token: int, start: int, stop: int) -> list[_Flat]:
    root, files, decode, sidecars = _SHARED[token]
    return _flat_chunk(root, files[start:stop], decode, sidecars)


def _unflat(flat: _Flat) -> ProbeResult:
    return ProbeResult(AudioInfo(*flat[:5]), flat[5], flat[6])


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group: the parent handles it (cancels the pool,
    # removes its temporary files); workers dying on it would only add a broken-pool error.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_context() -> multiprocessing.context.BaseContext | None:
    # fork starts a worker in milliseconds with soundfile already imported and the file
    # list already in memory; spawn would cost more than a whole scan of a few thousand
    # files, so it is only the fallback where fork does not exist.
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return None


def probe_files(root: str, files: Sequence[FileEntry], workers: int = 1, decode: bool = False,
                sidecars: bool = False) -> Generator[ProbeResult, None, None]:
    """Yield one ProbeResult per file, in the order of ``files``.

    ``workers`` > 1 uses a process pool with a bounded window of chunks in flight. The
    workers start when the generator is first advanced: callers that start threads
    (a tqdm bar) should advance it first, so that no thread exists when they fork.
    """
    if workers <= 1 or len(files) <= _MAX_CHUNK:
        for start in range(0, len(files), _MAX_CHUNK):
            yield from _probe_chunk(root, files[start:start + _MAX_CHUNK], decode, sidecars)
        return
    size = max(1, min(_MAX_CHUNK, len(files) // (workers * _WINDOW)))
    starts = iter(range(0, len(files), size))
    ctx = _pool_context()
    token = id(files)
    if ctx is not None:
        _SHARED[token] = (root, files, decode, sidecars)  # before the first submit forks
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_ignore_sigint)
    pending: deque[Future[list[_Flat]]] = deque()
    try:
        def submit_next() -> None:
            start = next(starts, None)
            if start is None:
                return
            if ctx is not None:
                pending.append(pool.submit(_probe_shared, token, start, start + size))
            else:
                pending.append(pool.submit(_flat_chunk, root, files[start:start + size], decode, sidecars))

        for _ in range(workers * _WINDOW):
            submit_next()
        while pending:
            results = pending.popleft().result()
            submit_next()
            for flat in results:
                yield _unflat(flat)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _SHARED.pop(token, None)
