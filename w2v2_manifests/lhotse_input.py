"""lhotse manifests as a source of utterances: ``w2v2-manifest lhotse``.

Input, as lhotse writes it (``.jsonl`` or ``.jsonl.gz``): a RecordingSet with its
SupervisionSet, a RecordingSet alone, or a CutSet. Each supervision is one utterance (in a
CutSet: each supervision of a cut, once, however many cuts hold it); a recording without
supervisions (RecordingSet alone) or a cut without supervisions is one unlabeled utterance.

Each utterance goes into the .tsv as
- the recording's own file, referenced in place, when it is the whole of a mono file that
  soundfile reads at the recording's rate (LibriSpeech-like corpora: nothing is copied);
- otherwise a segment, ``DEST/segments/SPLIT/REC/UTT.flac`` (16-bit FLAC, mono: the
  supervision's channel), decoded by lhotse, so every format, transform (resampling, speed)
  and multi-file layout lhotse reads works. Names are the ids, percent-escaped where a
  character is not a plain file-name one.

The same records as the folder scanner's feed the same writer (builder.write_manifests):
same checks and reasons, report, --on-bad handling, atomic outputs (the segment folder is
swapped in with the text files). Two passes over the supervisions: the first reads metadata
and file headers only (the .tsv root is the common folder of every audio file it lists, which
must be known before its first line), the second writes.

Only ``file`` and ``memory`` audio sources are read: ``command`` (lhotse runs a shell command),
``url`` (it fetches remote data) and any other type stop the run before any audio is read, and
so does a ``file`` source named like a URL (``http:...``) or a ``.sph`` / ``.opus`` file whose
name the shell would interpret (lhotse pastes those names into a sph2pipe / ffmpeg command line).
lhotse imports torch; it is imported here, when this source is used, and nowhere else.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import sys
from array import array
from collections.abc import Generator, Iterator
from typing import Any, NamedTuple, cast
from urllib.parse import quote

import numpy as np
import soundfile as sf
from tqdm import tqdm

from .audio import AudioInfo, probe
from .builder import REASONS, VALID_SPLIT, BuildSummary, Record, check_common, write_manifests
from .config import LhotseConfig
from .errors import ManifestError, TranscriptError
from .text import NormalizationError, TextConfig, normalize
from .writer import AtomicOutputs

SEGMENTS = "segments"  # DEST/segments/SPLIT/REC/UTT.flac
READABLE_SOURCES = ("file", "memory")
_REFUSED_WHY: dict[str | None, str] = {  # looked up with a source's "type", which may be missing
    "command": "lhotse would run its shell command", "url": "lhotse would fetch remote data"}
# lhotse reads these through a shell command line with the file name pasted in (.sph: sph2pipe,
# unquoted; .opus: ffmpeg in single quotes, with its ffmpeg-subprocess backend): a name with a
# character the shell interprets would run code. shlex.quote's test of a name that needs no quoting.
SHELL_READ_SUFFIXES = (".sph", ".opus")
_SHELL_UNSAFE = re.compile(r"[^\w@%+=:,./-]", re.ASCII)
# A ``file`` source named like a URL or an ffmpeg protocol (http:, ftp:, concat:, ...): lhotse's
# ffmpeg-based readers (audioread, torchaudio, torchcodec) would open it as such, remote data.
_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
INSTALL_HINT = "pip install 'w2v2-plugin[lhotse]' (or: pip install lhotse)"
_EXAMPLES = 3  # ids named in the summary notes (the rest are counted)
_CUT_TYPES = ("MonoCut", "MultiCut", "Cut")  # "Cut": lhotse < 0.8's name of MonoCut
# A supervision may end this far past its recording (rounded times; lhotse pads the rest).
# lhotse's own tolerance (0.5 s by default) would let a wrong segment through.
END_SLACK = 0.025


def _import_lhotse() -> Any:
    try:
        import lhotse
        import lhotse.utils
    except ImportError as exc:
        raise ManifestError(f"w2v2-manifest lhotse needs lhotse ({exc}); {INSTALL_HINT}") from None
    return lhotse


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).strip().splitlines()[0].split()) if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def _jsonl(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of a lhotse .jsonl / .jsonl.gz manifest."""
    if not path.endswith((".jsonl", ".jsonl.gz")):
        raise ManifestError(f"{path}: expected a lhotse .jsonl or .jsonl.gz manifest (lhotse converts "
                            "others: lhotse.load_manifest(PATH).to_file('NAME.jsonl.gz'))")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ManifestError(f"{path}:{number}: not JSON ({exc.msg}, column {exc.colno})") from None
                if not isinstance(obj, dict):
                    raise ManifestError(f"{path}:{number}: expected one JSON object per line")
                yield number, obj
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise ManifestError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _refuse_sources(obj: Any, where: str) -> None:
    """Stop at any audio source lhotse would not just read from a file or from memory,
    anywhere in the object (recordings nested in cuts, transforms, custom fields)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            sources = item.get("sources")
            if isinstance(sources, list):
                for src in sources:
                    kind = src.get("type") if isinstance(src, dict) else None
                    if kind not in READABLE_SOURCES:
                        why = _REFUSED_WHY.get(kind, "not a local file")
                        raise ManifestError(
                            f"{where}: recording {item.get('id')!r} has an audio source of type {kind!r}, "
                            f"refused ({why}); w2v2-manifest reads only {' and '.join(READABLE_SOURCES)} "
                            "sources: write the audio to files and point the recording at them")
                    name = src.get("source")
                    if kind == "file" and isinstance(name, str) and _URL_LIKE.match(name):
                        raise ManifestError(
                            f"{where}: recording {item.get('id')!r}: its file source {name!r} is a URL or "
                            "protocol, not a local path, refused (lhotse's ffmpeg-based readers would fetch it); "
                            "download the audio and point the recording at the files")
                    if (kind == "file" and isinstance(name, str) and name.lower().endswith(SHELL_READ_SUFFIXES)
                            and _SHELL_UNSAFE.search(name)):
                        raise ManifestError(
                            f"{where}: recording {item.get('id')!r}: lhotse reads its file {name!r} through a "
                            "shell command line (sph2pipe/ffmpeg) and the name has characters the shell "
                            "interprets, refused; rename the file (letters, digits and _.-/ only) or convert it "
                            "to FLAC")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _recording(lh: Any, obj: dict[str, Any], where: str) -> Any:
    _refuse_sources(obj, where)
    if "sources" not in obj:
        hint = ""
        if str(obj.get("type", "")).endswith("Cut"):
            hint = " (the line is a cut: give the file as --cuts)"
        elif "recording_id" in obj:
            hint = " (the line is a supervision: give the file as --supervisions)"
        raise ManifestError(f"{where}: not a lhotse recording, it has no 'sources'{hint}")
    try:
        return lh.Recording.from_dict(dict(obj))
    except Exception as exc:  # lhotse raises TypeError, KeyError, AssertionError, ValueError
        raise ManifestError(f"{where}: not a lhotse recording ({_one_line(exc)})") from None


class _Sup(NamedTuple):
    key: str
    recording_id: str
    start: float
    duration: float
    channel: Any
    text: str | None


def _supervision(obj: dict[str, Any], where: str) -> _Sup:
    if "sources" in obj:
        raise ManifestError(f"{where}: a recording, not a supervision (give the file as --recordings)")
    if str(obj.get("type", "")).endswith("Cut"):
        raise ManifestError(f"{where}: a cut, not a supervision (give the file as --cuts)")
    try:
        sup = _Sup(str(obj["id"]), str(obj["recording_id"]), float(obj["start"]), float(obj["duration"]),
                   obj.get("channel", 0), obj.get("text"))
    except KeyError as exc:
        raise ManifestError(f"{where}: not a lhotse supervision, it has no {exc.args[0]!r} "
                            "(id, recording_id, start and duration are needed)") from None
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"{where}: not a lhotse supervision ({_one_line(exc)})") from None
    if sup.text is not None and not isinstance(sup.text, str):
        raise ManifestError(f"{where}: supervision {sup.key!r}: 'text' is not a string")
    return sup


class _Utt(NamedTuple):
    """One utterance of the input, before any check."""

    key: str  # supervision id (or recording / cut id for a whole unlabeled one)
    file: str
    line: int
    rec: Any | None  # lhotse Recording (None: the supervision's recording is missing)
    start: float  # seconds into the recording
    duration: float | None  # None: to the end of the recording
    channel: Any  # int, list of ints, or None (the recording's only channel)
    text: str | None
    missing: str | None = None  # why there is no recording
    supervised: bool = True  # False: a whole recording / cut without supervision

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


class _RecordingsInput:
    """A RecordingSet, with or without its SupervisionSet."""

    kind = "supervisions"
    unit = "recording"

    def __init__(self, lh: Any, recordings: str, supervisions: str | None) -> None:
        self.recordings_path = recordings
        self.supervisions_path = supervisions
        self.recs: dict[str, tuple[Any, int]] = {}  # id -> (Recording, line)
        for number, obj in _jsonl(recordings):
            where = f"{recordings}:{number}"
            rec = _recording(lh, obj, where)
            if rec.id in self.recs:
                raise ManifestError(f"{where}: recording id {rec.id!r} again (first at line {self.recs[rec.id][1]})")
            self.recs[rec.id] = (rec, number)
        if not self.recs:
            raise ManifestError(f"{recordings}: no recordings in it")
        self.unused: list[str] = []
        self.repeated = 0

    def utterances(self) -> Iterator[_Utt]:
        if self.supervisions_path is None:
            for rid, (rec, number) in self.recs.items():
                yield _Utt(rid, self.recordings_path, number, rec, 0.0, None, None, None, supervised=False)
            return
        path = self.supervisions_path
        first_line: dict[str, int] = {}
        used: set[str] = set()
        for number, obj in _jsonl(path):
            sup = _supervision(obj, f"{path}:{number}")
            if sup.key in first_line:
                raise ManifestError(f"{path}:{number}: supervision id {sup.key!r} again (first at line "
                                    f"{first_line[sup.key]}); ids name the segment files and must be unique")
            first_line[sup.key] = number
            entry = self.recs.get(sup.recording_id)
            if entry is None:
                yield _Utt(sup.key, path, number, None, sup.start, sup.duration, sup.channel, sup.text,
                           f"recording {sup.recording_id!r} is not in {self.recordings_path}")
                continue
            used.add(sup.recording_id)
            yield _Utt(sup.key, path, number, entry[0], sup.start, sup.duration, sup.channel, sup.text)
        if not first_line:
            raise ManifestError(f"{path}: no supervisions in it")
        self.unused = [rid for rid in self.recs if rid not in used]


class _CutsInput:
    """A CutSet of MonoCuts / MultiCuts (each holds its recording, transforms included)."""

    kind = "cuts"
    unit = "cut"

    def __init__(self, lh: Any, cuts: str) -> None:
        self.lh = lh
        self.path = cuts
        self.unused: list[str] = []
        self.repeated = 0

    def utterances(self) -> Iterator[_Utt]:
        seen: set[str] = set()
        self.repeated = 0
        count = 0
        for number, obj in _jsonl(self.path):
            where = f"{self.path}:{number}"
            count += 1
            _refuse_sources(obj, where)
            cut_id = str(obj.get("id"))
            kind = obj.get("type")
            if kind not in _CUT_TYPES:
                if "sources" in obj:
                    raise ManifestError(f"{where}: a recording, not a cut (give the file as --recordings)")
                if kind is None and "recording_id" in obj:
                    raise ManifestError(f"{where}: a supervision, not a cut (give the file as --supervisions)")
                raise ManifestError(f"{where}: cut {cut_id!r} is a {kind}: only MonoCut and MultiCut (a span of "
                                    "one recording) are read; give the cuts before mixing or padding")
            rec_obj = obj.get("recording")
            if not isinstance(rec_obj, dict):
                raise ManifestError(f"{where}: cut {cut_id!r} has no recording (no audio to write)")
            rec = _recording(self.lh, rec_obj, where)
            try:
                start, duration = float(obj["start"]), float(obj["duration"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ManifestError(f"{where}: cut {cut_id!r} has no valid start/duration ({_one_line(exc)})") from None
            sups = obj.get("supervisions") or []
            if not sups:
                if cut_id in seen:
                    raise ManifestError(f"{where}: cut id {cut_id!r} again; ids name the segment files "
                                        "and must be unique")
                seen.add(cut_id)
                yield _Utt(cut_id, self.path, number, rec, start, duration, obj.get("channel"), None,
                           supervised=False)
                continue
            for sup_obj in sups:
                if not isinstance(sup_obj, dict):
                    raise ManifestError(f"{where}: cut {cut_id!r}: a supervision is not a JSON object")
                sup = _supervision(sup_obj, where)
                if sup.key in seen:  # the same supervision in several (overlapping) cuts
                    self.repeated += 1
                    continue
                seen.add(sup.key)
                # supervision times are relative to the cut
                yield _Utt(sup.key, self.path, number, rec, start + sup.start, sup.duration, sup.channel, sup.text)
        if not count:
            raise ManifestError(f"{self.path}: no cuts in it")


class _Plan(NamedTuple):
    reasons: list[tuple[str, str]]
    channel: int | None
    start: float
    duration: float
    sample_rate: int
    direct: str | None  # the recording's file, used in place
    frames: int  # of the direct file


def _whole_file(lh: Any, rec: Any, channel: int, start: float, duration: float) -> str | None:
    """The file holding exactly this channel, when the span is all of it; else None."""
    if rec.transforms or rec.has_video:
        return None
    sources = [s for s in rec.sources if channel in s.channels]
    if len(sources) != 1 or sources[0].type != "file" or list(sources[0].channels) != [channel]:
        return None
    num = lh.utils.compute_num_samples
    sr = rec.sampling_rate
    if num(start, sr) != 0 or abs(num(duration, sr) - rec.num_samples) > 1:
        return None
    path = os.path.realpath(str(sources[0].source))  # relative paths: from the working directory, as lhotse
    return None if any(c in path for c in "\t\n\r") else path


def _plan(lh: Any, u: _Utt, cfg: LhotseConfig, known: AudioInfo | None) -> tuple[_Plan, AudioInfo | None]:
    """The checks that need no text: the audio's span, channel, rate; in place or a segment.
    ``known``: the header read in the first pass (None: read it now). Returns the header read."""
    if u.rec is None:
        return _Plan([("no_recording", u.missing or "")], None, 0.0, 0.0, 0, None, 0), None
    rec = u.rec
    reasons: list[tuple[str, str]] = []
    sr = int(rec.sampling_rate)
    channel = u.channel
    if isinstance(channel, (list, tuple)):
        if len(channel) == 1:
            channel = channel[0]
        else:
            reasons.append(("channels", f"on channels {list(channel)}: one channel per utterance (mono)"))
            channel = None
    elif channel is None:
        if rec.num_channels == 1:
            channel = rec.channel_ids[0]
        else:
            reasons.append(("channels", f"{rec.num_channels} channels and no supervision picks one"))
    if channel is not None and channel not in rec.channel_ids:
        reasons.append(("bad_segment", f"channel {channel} is not one of the channels "
                                       f"{list(rec.channel_ids)} of recording {rec.id!r}"))
    start = u.start
    duration = rec.duration - start if u.duration is None else u.duration
    end = start + duration
    if start < 0 or end > rec.duration + END_SLACK:
        reasons.append(("bad_segment", f"{start:.3f}-{end:.3f} s is outside recording {rec.id!r} "
                                       f"(0-{rec.duration:.3f} s)"))
    elif lh.utils.compute_num_samples(duration, sr) <= 0:
        reasons.append(("empty", "0 frames"))
    if cfg.sample_rate and sr != cfg.sample_rate:
        reasons.append(("sample_rate", f"{sr} Hz, expected {cfg.sample_rate}"))
    if reasons:
        return _Plan(reasons, None, start, duration, sr, None, 0), None
    if channel is None:  # a bug: reasons are empty only when the channel was resolved
        raise AssertionError("no channel for a usable recording")
    path = _whole_file(lh, rec, channel, start, duration)
    if path is None:
        return _Plan([], channel, start, duration, sr, None, 0), None
    info = known if known is not None else probe(path, decode=cfg.decode)
    if info.error_kind == "unreadable":  # a missing file: lhotse could not read it either
        return _Plan([("unreadable", f"{path}: {info.error}")], channel, start, duration, sr, None, 0), info
    if (info.error_kind is None and info.channels == 1 and info.sample_rate == sr
            and info.frames == rec.num_samples and info.frames > 0):
        return _Plan([], channel, start, duration, sr, path, info.frames), info
    # soundfile cannot read it (lhotse may, via ffmpeg), or the header disagrees: decode a segment
    return _Plan([], channel, start, duration, sr, None, 0), info


def _text(u: _Utt, text_cfg: TextConfig) -> tuple[list[tuple[str, str]], str | None]:
    if u.text is None:
        return [("no_transcript", "the supervision has no text" if u.supervised else "no supervision")], None
    try:
        words = normalize(u.text, text_cfg)
    except NormalizationError as exc:
        raise TranscriptError(u.file, u.line, f"supervision {u.key!r}: {exc}") from None
    if not words:
        return [("empty_transcript", "empty text after normalization")], None
    return [], words


def safe_name(name: str) -> str:
    """A file name from an id: percent-escaped (no '/', no leading '.'), at most ~180 bytes."""
    q = quote(name, safe="") or "%"
    if q.startswith("."):
        q = "%2E" + q[1:]
    if len(q) > 180:
        q = q[:160] + "~" + hashlib.sha1(name.encode("utf-8"), usedforsecurity=False).hexdigest()[:16]
    return q


def _write_segment(rec: Any, plan: _Plan, path: str) -> tuple[int, list[tuple[str, str]]]:
    try:
        audio = rec.load_audio(channels=plan.channel, offset=plan.start, duration=plan.duration)
    except Exception as exc:  # lhotse and its backends raise many kinds
        kind = "unreadable" if isinstance(exc, OSError) else "corrupt"
        return 0, [(kind, f"lhotse could not read recording {rec.id!r}: {_one_line(exc)}")]
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)  # (1, n): one channel
    if samples.size == 0:
        return 0, [("empty", "0 frames")]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, np.clip(samples, -1.0, 1.0), plan.sample_rate, format="FLAC", subtype="PCM_16")
    return int(samples.size), []


def _check(cfg: LhotseConfig) -> None:
    check_common(cfg)
    if cfg.cuts and (cfg.recordings or cfg.supervisions):
        raise ManifestError("--cuts replaces --recordings/--supervisions: give one or the other")
    if not cfg.cuts and not cfg.recordings:
        raise ManifestError("give --recordings FILE (with --supervisions FILE for labels), or --cuts FILE")
    for flag, path in (("--recordings", cfg.recordings), ("--supervisions", cfg.supervisions),
                       ("--cuts", cfg.cuts)):
        if path is not None and not os.path.isfile(path):
            raise ManifestError(f"{path}: {flag} file not found")


def _named(ids: list[str]) -> str:
    return ", ".join(ids[:_EXAMPLES]) + (", ..." if len(ids) > _EXAMPLES else "")


def _open_input(lh: Any, cfg: LhotseConfig) -> _RecordingsInput | _CutsInput:
    if cfg.cuts:
        return _CutsInput(lh, cfg.cuts)
    if cfg.recordings is None:  # a bug: the CLI requires --recordings or --cuts
        raise AssertionError("LhotseConfig needs recordings or cuts")
    return _RecordingsInput(lh, cfg.recordings, cfg.supervisions)


class _HeaderScan(NamedTuple):
    headers: array  # per utterance: frames >= 0 of a file used in place, -1 none read, -2 read, not in place
    other: dict[int, AudioInfo]  # the headers read of the -2 utterances
    folders: dict[bool, set[str]]  # supervised? -> audio folders
    any_text: bool


def _scan_headers(lh: Any, src: _RecordingsInput | _CutsInput, cfg: LhotseConfig, seg_final: str) -> _HeaderScan:
    """Pass 1: metadata and headers of every utterance."""
    scan = _HeaderScan(array("q"), {}, {True: set(), False: set()}, False)
    any_text = False
    with tqdm(unit="utt", desc="checking", disable=not cfg.progress, file=sys.stderr, mininterval=0.5) as bar:
        for i, u in enumerate(src.utterances()):
            any_text = any_text or u.text is not None
            plan, info = _plan(lh, u, cfg, None)
            if plan.direct is not None:
                scan.headers.append(plan.frames)
                scan.folders[u.supervised].add(os.path.dirname(plan.direct))
            else:
                scan.headers.append(-1 if info is None else -2)
                if info is not None:
                    scan.other[i] = info
                if not plan.reasons:
                    scan.folders[u.supervised].add(seg_final)
            bar.update(1)
    return scan._replace(any_text=any_text)


def _label_note(cfg: LhotseConfig) -> str:
    """Why there are no labels (used when no utterance brings text)."""
    if cfg.labels == "none":
        return "none (--labels none)"
    if cfg.cuts:
        return "none (no supervision of a cut has text)"
    return "none (no --supervisions)" if cfg.supervisions is None else "none (no supervision has text)"


def _note_outcome(summary: BuildSummary, src: _RecordingsInput | _CutsInput, counted: dict[str, int],
                  left_out: list[str], segments_dir: str) -> None:
    segments = f"{counted['segments']} segment(s) in {segments_dir}" if counted["segments"] else "no segments"
    summary.notes.append(f"audio: {counted['in_place']} file(s) used in place, {segments}")
    unused = src.unused or left_out
    if unused:
        summary.notes.append(f"{len(unused)} {src.unit}(s) without supervision left out: " + _named(unused))
    if src.repeated:
        summary.notes.append(f"{src.repeated} supervision(s) held by several cuts, written once")


def build_lhotse(cfg: LhotseConfig) -> BuildSummary:
    """Write fairseq manifests from lhotse manifests; raise ManifestError on bad input."""
    _check(cfg)
    lh = _import_lhotse()
    src = _open_input(lh, cfg)
    text_cfg = cfg.text_config()
    seg_rel = f"{SEGMENTS}/{cfg.split_name}"
    seg_final = os.path.join(os.path.realpath(cfg.dest), SEGMENTS, cfg.split_name)

    # With labels, an utterance without supervision (a cut that has none) is left out: the
    # folders of those count for the root only when there are no labels.
    scan = _scan_headers(lh, src, cfg, seg_final)
    count = len(scan.headers)
    labels = cfg.labels != "none" and scan.any_text
    listed = scan.folders[True] | (set() if labels else scan.folders[False])
    root = os.path.commonpath(sorted(listed)) if listed else os.path.realpath(cfg.dest)
    summary = BuildSummary(dest=cfg.dest, splits=[], labels=_label_note(cfg))
    counted = {"in_place": 0, "segments": 0}
    left_out: list[str] = []  # cuts without supervision, when there are labels

    def records(outputs: AtomicOutputs) -> Generator[Record, None, None]:
        tmp_root = outputs.reserve_dir(seg_rel)
        rand = random.Random(cfg.seed)  # noqa: S311  # one draw per utterance, bad ones included, as the scanner
        with tqdm(total=count, unit="utt", desc="writing", disable=not cfg.progress, file=sys.stderr,
                  mininterval=0.5) as bar:
            for i, u in enumerate(src.utterances()):
                if i >= count:
                    raise ManifestError(f"{u.where}: the input changed while it was read; run again")
                split = cfg.split_name if rand.random() > cfg.valid_percent else VALID_SPLIT
                bar.update(1)
                if labels and not u.supervised:
                    left_out.append(u.key)
                    continue
                code = scan.headers[i]
                known = AudioInfo(code, cast(Any, u.rec).sampling_rate, 1) if code >= 0 else scan.other.get(i)
                plan, _ = _plan(lh, u, cfg, known)
                reasons = list(plan.reasons)
                words = None
                if labels:
                    text_reasons, words = _text(u, text_cfg)
                    reasons += text_reasons
                shown = f"{u.key} ({u.where})"
                if not reasons and plan.direct is not None:
                    counted["in_place"] += 1
                    yield Record(os.path.relpath(plan.direct, root), split, plan.frames, plan.sample_rate, [],
                                 words, src.kind if words is not None else None)
                    continue
                frames = 0
                if not reasons:
                    if u.rec is None:
                        raise AssertionError(f"{u.where}: _plan gives no_recording when there is no recording")
                    name = os.path.join(safe_name(u.rec.id), safe_name(u.key) + ".flac")
                    frames, reasons = _write_segment(u.rec, plan, os.path.join(tmp_root, name))
                if reasons:
                    reasons.sort(key=lambda r: REASONS.index(r[0]))
                    yield Record(shown, split, 0, 0, reasons, None, None)
                    continue
                counted["segments"] += 1
                yield Record(os.path.relpath(os.path.join(seg_final, name), root), split, frames,
                             plan.sample_rate, [], words, src.kind if words is not None else None)
        _note_outcome(summary, src, counted, left_out, os.path.join(cfg.dest, seg_rel))

    inputs = cfg.cuts or (cfg.supervisions or cfg.recordings)
    return write_manifests(cfg, root, labels, summary, records, f"utterance(s) in {inputs}")
