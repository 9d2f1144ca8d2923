"""All-or-nothing output files: written under temporary names in DEST, renamed at the end.

A run that fails or is interrupted (exception, Ctrl-C) removes its temporary files and
leaves DEST exactly as it was. The temporary names are hidden (``.NAME.tmp-PID``) and live
in DEST itself, so the final ``os.replace`` is a same-directory rename.
"""
from __future__ import annotations

import filecmp
import os
from types import TracebackType
from typing import TextIO


class AtomicOutputs:
    """A set of text files that appear in ``dest`` together, or not at all."""

    def __init__(self, dest: str) -> None:
        self.dest = dest
        self._files: dict[str, tuple[str, TextIO | None]] = {}  # final name -> (temp path, handle)
        self._done = False

    def open(self, name: str) -> TextIO:
        """A writable text handle for ``dest/name`` (UTF-8, "\\n" line ends)."""
        if name in self._files:
            return self._files[name][1]
        tmp = os.path.join(self.dest, f".{name}.tmp-{os.getpid()}")
        fh = open(tmp, "w", encoding="utf-8", newline="\n")
        self._files[name] = (tmp, fh)
        return fh

    def reserve(self, name: str) -> str:
        """A temporary path for ``dest/name`` that another tool fills (e.g. sentencepiece)."""
        tmp = os.path.join(self.dest, f".{name}.tmp-{os.getpid()}")
        self._files[name] = (tmp, None)
        return tmp

    def temp_path(self, name: str) -> str:
        return self._files[name][0]

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
                continue
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        for name, (tmp, _fh) in self._files.items():
            os.replace(tmp, os.path.join(self.dest, name))
        for name in remove:
            path = os.path.join(self.dest, name)
            if os.path.exists(path):
                os.remove(path)
        self._done = True

    def abort(self) -> None:
        """Close and delete every temporary file; DEST keeps its previous contents."""
        for tmp, fh in self._files.values():
            if fh is not None:
                fh.close()
            if os.path.exists(tmp):
                os.remove(tmp)
        self._files.clear()
        self._done = True

    def __enter__(self) -> "AtomicOutputs":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._done:
            self.abort()
