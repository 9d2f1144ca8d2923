"""The base class of every user-facing error of the plugin and the manifest generator.

A :class:`W2v2Error` is a mistake in the user's input or setup (a file, a config value, a
missing tool): its message is one line that names the file or option and says what to do,
and the command-line tools print it without a traceback. Internal errors (a bug, a broken
invariant) are plain Python exceptions (``AssertionError``, ``RuntimeError``) and keep
their tracebacks. Subclasses also derive from the builtin a caller would expect
(``ValueError``, ``KeyError``, ...), so existing ``except ValueError`` code keeps working.
"""
from __future__ import annotations


class W2v2Error(Exception):
    """A user-facing error: a one-line message naming what is wrong and what to do."""
