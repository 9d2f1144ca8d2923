"""Where transcripts come from: LibriSpeech ``*.trans.txt``, sidecars, or one table file.

Every source answers ``lookup(rel) -> Transcript | None`` for an audio file's path relative
to the root, and counts the entries no audio file asked for (``unused``), so that a run can
account for every transcript as well as every audio file.

- LibriSpeech: each directory's ``*.trans.txt`` lines are ``UTTID TEXT``; UTTID is the audio
  file name without its extension. Loaded one directory at a time (the walk visits a
  directory's files together), so memory stays at one chapter.
- Sidecar: ``utt.txt`` or ``utt.lab`` next to ``utt.flac``; the whole file is the text
  (several lines are joined with spaces). Read by the scan workers, wrapped here.
- Table (``--transcripts FILE``): two columns, the audio file and its text. ``.csv`` files are
  read as CSV (comma, double quotes); anything else as TSV (one tab per line). The first
  column is a path relative to the root (with or without extension), an absolute path under
  the root, a file name, or an utterance id (the file name without extension). An optional
  header row is recognised when its first field is one of ``HEADER_KEYS`` and its second one
  of ``HEADER_TEXTS``.
"""
from __future__ import annotations

import csv
import os
import posixpath
from collections.abc import Iterator
from typing import NamedTuple

from .errors import TranscriptError

HEADER_KEYS = frozenset({"path", "file", "filename", "file_name", "audio", "audio_path", "wav",
                         "flac", "id", "utt", "utt_id", "uttid", "utterance", "utterance_id",
                         "key", "name"})
HEADER_TEXTS = frozenset({"text", "transcript", "transcription", "sentence", "label", "labels",
                          "words", "normalized_text"})


class Transcript(NamedTuple):
    text: str  # raw, before normalization
    source: str  # file it came from
    line: int | None  # 1-based line in that file (None for a whole-file sidecar)


def _decoded_lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file, with a one-line error at the first bad byte."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise TranscriptError(path, None, f"cannot read ({exc.strerror or exc})") from None
    with fh:
        for number, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise TranscriptError(path, number, f"not UTF-8 text (byte {raw[exc.start]:#04x}); "
                                                    "save the file as UTF-8") from None
            yield number, text.rstrip("\r\n")


_EXAMPLES = 3  # unused entries named in the summary (the rest are counted)


def _note_unused(examples: list[str], entries: list[Transcript], key_of: list[str]) -> None:
    for key, t in zip(key_of, entries, strict=False):
        if len(examples) >= _EXAMPLES:
            return
        examples.append(f"{key} ({t.source}:{t.line})")


class LibriSpeechTranscripts:
    """``*.trans.txt`` files, one directory at a time."""

    name = "librispeech"

    def __init__(self, root: str, trans_by_dir: dict[str, list[str]]) -> None:
        self._root = root
        self._trans_by_dir = trans_by_dir
        self._pending = set(trans_by_dir)  # directories whose entries are not counted yet
        self._dir: str | None = None
        self._entries: dict[str, Transcript] = {}
        self._used: set[str] = set()
        self.unused = 0
        self.unused_examples: list[str] = []

    def _load(self, rel_dir: str) -> dict[str, Transcript]:
        entries: dict[str, Transcript] = {}
        for rel in self._trans_by_dir.get(rel_dir, []):
            path = os.path.join(self._root, rel)
            for number, line in _decoded_lines(path):
                parts = line.split(None, 1)
                if not parts:
                    continue  # blank line: not an entry
                key = parts[0]
                if key in entries:
                    first = entries[key]
                    raise TranscriptError(path, number, f"utterance id {key!r} already given at "
                                                        f"{first.source}:{first.line}; keep one")
                entries[key] = Transcript(parts[1] if len(parts) > 1 else "", path, number)
        return entries

    def _close_dir(self) -> None:
        if self._dir is not None:
            left = sorted(self._entries.keys() - self._used)
            self.unused += len(left)
            _note_unused(self.unused_examples, [self._entries[k] for k in left], left)
            self._pending.discard(self._dir)
        self._dir, self._entries, self._used = None, {}, set()

    def lookup(self, rel: str) -> Transcript | None:
        rel_dir = posixpath.dirname(rel)
        if rel_dir != self._dir:
            self._close_dir()
            self._dir, self._entries = rel_dir, self._load(rel_dir)
        key = os.path.splitext(posixpath.basename(rel))[0]
        found = self._entries.get(key)
        if found is not None:
            self._used.add(key)
        return found

    def finish(self) -> None:
        """Count the entries of directories no audio file was looked up in."""
        self._close_dir()
        for rel_dir in sorted(self._pending):
            entries = self._load(rel_dir)
            self.unused += len(entries)
            _note_unused(self.unused_examples, list(entries.values()), list(entries))
        self._pending.clear()


def _table_rows(path: str) -> Iterator[tuple[int, list[str]]]:
    if path.lower().endswith(".csv"):
        try:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                reader = csv.reader(fh)
                try:
                    for row in reader:
                        yield reader.line_num, row
                except csv.Error as exc:
                    raise TranscriptError(path, reader.line_num, f"malformed CSV ({exc})") from None
                except UnicodeDecodeError:
                    raise TranscriptError(path, reader.line_num + 1,
                                          "not UTF-8 text; save the file as UTF-8") from None
        except OSError as exc:
            raise TranscriptError(path, None, f"cannot read ({exc.strerror or exc})") from None
    else:
        for number, line in _decoded_lines(path):
            yield number, (line.split("\t") if line.strip() else [])


class TableTranscripts:
    """One TSV/CSV file mapping audio files (paths or ids) to their text."""

    name = "table"

    def __init__(self, path: str, root: str) -> None:
        self._path = path
        self._root = root
        self._entries: dict[str, Transcript] = {}
        self._used_by: dict[str, str] = {}  # key -> the audio file that took it
        first = True
        for number, row in _table_rows(path):
            if not any(field.strip() for field in row):
                continue
            if first:
                first = False
                if (len(row) == 2 and row[0].strip().lower() in HEADER_KEYS
                        and row[1].strip().lower() in HEADER_TEXTS):
                    continue
            if len(row) != 2:
                sep = "comma" if path.lower().endswith(".csv") else "tab"
                raise TranscriptError(path, number, f"expected 2 {sep}-separated fields (audio path "
                                                    f"or id, text), found {len(row)}"
                                      + ("; quote texts that contain commas" if sep == "comma" else ""))
            key = self._key(row[0])
            if not key:
                raise TranscriptError(path, number, "empty audio path/id in the first field")
            if key in self._entries:
                raise TranscriptError(path, number, f"{row[0].strip()!r} already given at line "
                                                    f"{self._entries[key].line}; keep one")
            self._entries[key] = Transcript(row[1], path, number)
        self.unused = 0
        self.unused_examples: list[str] = []

    def _key(self, raw: str) -> str:
        key = raw.strip().replace("\\", "/")
        if not key:
            return ""
        if os.path.isabs(key):
            key = os.path.relpath(key, self._root).replace(os.sep, "/")
        return posixpath.normpath(key)

    def lookup(self, rel: str) -> Transcript | None:
        base = posixpath.basename(rel)
        candidates = (rel, os.path.splitext(rel)[0], base, os.path.splitext(base)[0])
        for key in candidates:
            found = self._entries.get(key)
            if found is None:
                continue
            other = self._used_by.setdefault(key, rel)
            if other != rel:
                raise TranscriptError(self._path, found.line,
                                      f"{key!r} matches both {other} and {rel}; write the path "
                                      "relative to the root in the first column")
            return found
        return None

    def finish(self) -> None:
        left = [k for k in self._entries if k not in self._used_by]
        self.unused = len(left)
        _note_unused(self.unused_examples, [self._entries[k] for k in left], left)


def sidecar_transcript(text: str, source: str) -> Transcript:
    """A whole-file sidecar: lines joined by spaces."""
    return Transcript(" ".join(text.splitlines()), source, None)
