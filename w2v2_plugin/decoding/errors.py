"""Errors raised by the decoding package.

Every bad input (dictionary, lexicon, LM, manifest) becomes a :class:`DecodingError` whose
message is one line naming the file (and line, where there is one) and what to do, so the
CLIs can print it without a traceback and exit with status 2.
"""
from __future__ import annotations

from w2v2_common.errors import W2v2Error


class DecodingError(W2v2Error, ValueError):
    """A user-facing, one-line error about decoding inputs."""


def where(path: object, line: int | None = None) -> str:
    """``path`` or ``path:line`` for error messages."""
    return f"{path}:{line}" if line is not None else f"{path}"
