"""Errors the manifest tool raises: each renders as one line naming the file (and line).

The CLI catches :class:`ManifestError` and prints ``error: <message>`` without a traceback,
exiting with status 2; library callers get a ``ValueError`` subclass they can catch.
"""
from __future__ import annotations

from collections.abc import Sequence

from w2v2_common.errors import W2v2Error


class ManifestError(W2v2Error, ValueError):
    """Base class: bad input that the user has to fix (message says what and where)."""


class TranscriptError(ManifestError):
    """A transcript file is malformed: names the file, the line (1-based) and the fix."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class BadFilesError(ManifestError):
    """``--on-bad error`` found bad audio files; lists every one of them with its reasons."""

    def __init__(self, root: str, bad: Sequence[tuple[str, str]], what: str | None = None) -> None:
        # bad: (relative path, "reason: detail") in manifest order; what: the items, when they
        # are not audio files under root (lhotse: "utterance(s) of FILE")
        what = what or f"audio file(s) under {root}"
        head = (f"{len(bad)} bad {what}; nothing was written. "
                "Fix or remove them, or rerun with --on-bad skip to leave them out")
        lines = [head] + [f"  {rel}: {why}" for rel, why in bad]
        super().__init__("\n".join(lines))
        self.root = root
        self.bad = list(bad)
