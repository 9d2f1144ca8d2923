"""All-or-nothing output files: written under temporary names in DEST, renamed at the end.

A run that fails or is interrupted (exception, Ctrl-C) removes its temporary files and
leaves DEST exactly as it was. The temporary names are hidden (``.NAME.XXXXXXXX.tmp``, from
:func:`w2v2_common.fileio.mkstemp`, so they get a plain file's mode) and live beside their
final names, so the final ``os.replace`` is a same-directory rename. A folder of files
(``reserve_dir``: audio segments) is filled under a hidden temporary name beside its final
place and swapped in at commit, the previous folder deleted after every rename succeeded.

Unlike :func:`w2v2_common.fileio.atomic_path` (one file), the files here are committed
together, after all of them were written, and :meth:`AtomicOutputs.unchanged` can compare
each with the file it replaces before that.
"""
from __future__ import annotations

import filecmp
import os
import shutil
from types import TracebackType
from typing import TextIO

from w2v2_common.fileio import mkdtemp, mkstemp, plain_file_mode


class AtomicOutputs:
    """A set of text files that appear in ``dest`` together, or not at all."""

    def __init__(self, dest: str) -> None:
        self.dest = dest
        self._files: dict[str, tuple[str, TextIO | None]] = {}  # final name -> (temp path, handle)
        self._dirs: dict[str, str] = {}  # final folder name (may hold "/") -> temp folder path
        self._made: list[str] = []  # parent folders made by reserve_dir (removed again if empty)
        self._done = False

    def open(self, name: str) -> TextIO:
        """A writable text handle for ``dest/name`` (UTF-8, "\\n" line ends)."""
        if name in self._files:
            handle = self._files[name][1]
            if handle is None:  # a programming error, not a user's: reserve() hands the file to a tool
                raise RuntimeError(f"AtomicOutputs: {name} was reserve()d for another tool, it cannot be open()ed")
            return handle
        tmp = self._new_temp_file(name)
        fh = open(tmp, "w", encoding="utf-8", newline="\n")
        self._files[name] = (tmp, fh)
        return fh

    def reserve(self, name: str) -> str:
        """A temporary path for ``dest/name`` that another tool fills (e.g. sentencepiece);
        it exists (empty) already, so the tool may replace it."""
        tmp = self._new_temp_file(name)
        self._files[name] = (tmp, None)
        return tmp

    def _new_temp_file(self, name: str) -> str:
        directory, base = os.path.split(os.path.join(self.dest, name))
        fd, tmp = mkstemp(dir=directory, prefix=f".{base}.", suffix=".tmp")
        os.close(fd)
        return tmp

    def reserve_dir(self, name: str) -> str:
        """An empty temporary folder that becomes ``dest/name`` at commit, replacing what was
        there; if it is still empty then, ``dest/name`` is removed instead (nothing to hold)."""
        final = os.path.join(self.dest, name)
        parent, base = os.path.split(final)
        missing = []
        while parent and not os.path.isdir(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        for folder in reversed(missing):
            os.mkdir(folder)
            self._made.append(folder)
        tmp = mkdtemp(dir=os.path.dirname(final), prefix=f".{base}.")
        self._dirs[name] = tmp
        return tmp

    def unchanged(self, name: str) -> bool:
        """True when ``dest/name`` already exists with exactly the bytes being written."""
        tmp, fh = self._files[name]
        if fh is not None:
            fh.flush()
        final = os.path.join(self.dest, name)
        return os.path.isfile(final) and filecmp.cmp(tmp, final, shallow=False)

    def names(self) -> list[str]:
        return list(self._files)

    def commit(self, remove: list[str] | tuple[str, ...] = ()) -> None:
        """Flush, fsync and rename every file into place; then delete ``remove`` (stale files)."""
        for tmp, fh in self._files.values():
            if fh is None:  # filled by another tool: sync it through a fresh descriptor
                fd = os.open(tmp, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
                os.chmod(tmp, plain_file_mode())  # the tool may have created its file 0600
                continue
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        old_dirs = []
        for name, tmp in self._dirs.items():
            final = os.path.join(self.dest, name)
            if os.path.isdir(final):
                old = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.old-{os.getpid()}")
                os.replace(final, old)
                old_dirs.append(old)
            if os.listdir(tmp):
                os.replace(tmp, final)
            else:
                os.rmdir(tmp)
        for name, (tmp, _fh) in self._files.items():
            os.replace(tmp, os.path.join(self.dest, name))
        for name in remove:
            path = os.path.join(self.dest, name)
            if os.path.exists(path):
                os.remove(path)
        for old in old_dirs:
            shutil.rmtree(old)
        self._remove_empty_parents()
        self._done = True

    def _remove_empty_parents(self) -> None:
        for name in self._dirs:  # e.g. dest/segments once its last split folder went
            parent = os.path.dirname(os.path.join(self.dest, name))
            while os.path.abspath(parent) != os.path.abspath(self.dest) and os.path.isdir(parent) \
                    and not os.listdir(parent):
                os.rmdir(parent)
                parent = os.path.dirname(parent)

    def abort(self) -> None:
        """Close and delete every temporary file; DEST keeps its previous contents."""
        for tmp, fh in self._files.values():
            if fh is not None:
                fh.close()
            if os.path.exists(tmp):
                os.remove(tmp)
        self._files.clear()
        for tmp in self._dirs.values():
            shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(self._made):
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        self._dirs.clear()
        self._done = True

    def __enter__(self) -> AtomicOutputs:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._done:
            self.abort()
