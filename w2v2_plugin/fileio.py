"""Temporary files for atomic writes that end with the mode a plain ``open()`` gives.

``tempfile.mkstemp`` creates its file 0600 (and ``mkdtemp`` its directory 0700), so a file
written through it and renamed into place would stay unreadable to the other users of a
shared machine. Every atomic writer of the plugin takes its temporary file from
:func:`mkstemp`, which sets the umask's usual mode (``0o666 & ~umask``) at once.
"""
from __future__ import annotations

import os
import tempfile
from typing import Optional, Tuple


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


def mkstemp(dir: Optional[str] = None, prefix: str = ".tmp-", suffix: str = ".tmp") -> Tuple[int, str]:
    """``tempfile.mkstemp`` whose file has :func:`plain_file_mode` instead of 0600."""
    fd, path = tempfile.mkstemp(dir=dir, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(fd, plain_file_mode())
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd, path


def mkdtemp(dir: Optional[str] = None, prefix: str = ".tmp-") -> str:
    """``tempfile.mkdtemp`` whose directory has :func:`plain_dir_mode` instead of 0700
    (for directories renamed into place as outputs)."""
    path = tempfile.mkdtemp(dir=dir, prefix=prefix)
    os.chmod(path, plain_dir_mode())
    return path
