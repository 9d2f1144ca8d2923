"""Atomic file writes, ending with the mode a plain ``open()`` gives.

:func:`atomic_path` is the one atomic writer: every output file of the plugin and of the
manifest generator is written under a temporary name beside its final place and renamed
into it, so that a failure or Ctrl-C never leaves a half-written file.

``tempfile.mkstemp`` creates its file 0600 (and ``mkdtemp`` its directory 0700), so a file
written through it and renamed into place would stay unreadable to the other users of a
shared machine. Every atomic writer of the plugin takes its temporary file from
:func:`mkstemp`, which sets the umask's usual mode (``0o666 & ~umask``) at once.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

PathLike = str | os.PathLike[str]


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the classic swap (briefly changes it for other threads)
    os.umask(mask)
    return mask


def plain_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def plain_dir_mode() -> int:
    """The mode ``os.mkdir(path)`` would give a new directory: ``0o777 & ~umask``."""
    return 0o777 & ~current_umask()


def mkstemp(dir: str | None = None, prefix: str = ".tmp-", suffix: str = ".tmp") -> tuple[int, str]:
    """``tempfile.mkstemp`` whose file has :func:`plain_file_mode` instead of 0600."""
    fd, path = tempfile.mkstemp(dir=dir, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(fd, plain_file_mode())
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd, path


def mkdtemp(dir: str | None = None, prefix: str = ".tmp-") -> str:
    """``tempfile.mkdtemp`` whose directory has :func:`plain_dir_mode` instead of 0700
    (for directories renamed into place as outputs)."""
    path = tempfile.mkdtemp(dir=dir, prefix=prefix)
    os.chmod(path, plain_dir_mode())
    return path


@contextmanager
def atomic_path(path: PathLike, make_parents: bool = True) -> Iterator[str]:
    """A temporary path beside ``path`` that becomes ``path`` when the block ends without an
    exception (``os.replace``, a same-directory rename); on an exception it is removed and
    ``path`` is left as it was. The file ends with :func:`plain_file_mode` even if the writer
    replaced it (``safetensors`` and ``torch.save`` may create files 0600)."""
    final = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(final)
    if make_parents:
        os.makedirs(directory, exist_ok=True)
    fd, tmp = mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, plain_file_mode())
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_text(path: PathLike, make_parents: bool = True) -> Iterator[IO[str]]:
    """A UTF-8 text handle (``"\\n"`` line ends) whose content appears at ``path`` all at once
    when the block ends without an exception (see :func:`atomic_path`)."""
    with atomic_path(path, make_parents) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            yield f


def write_text_atomic(path: PathLike, text: str, make_parents: bool = True) -> None:
    """Write ``text`` to ``path`` all or nothing (see :func:`atomic_path`)."""
    with atomic_text(path, make_parents) as f:
        f.write(text)


@contextmanager
def atomic_dir(path: PathLike, prefix: str = ".tmp-") -> Iterator[str]:
    """The directory form of :func:`atomic_path`: a temporary directory beside ``path`` that
    replaces it when the block ends without an exception; on an exception it is removed and
    ``path`` is left as it was. The directory gets :func:`plain_dir_mode` (not mkdtemp's 0700) and
    the files directly in it :func:`plain_file_mode` (writers such as ``save_pretrained`` create
    ``model.safetensors`` 0600)."""
    final = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = mkdtemp(prefix=prefix, dir=parent)
    try:
        yield tmp
        for name in os.listdir(tmp):
            if os.path.isfile(os.path.join(tmp, name)):
                os.chmod(os.path.join(tmp, name), plain_file_mode())
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
