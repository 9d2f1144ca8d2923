"""What ``w2v2-infer`` transcribes: a manifest split (labels optional) or audio files/folders."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from w2v2_common.units import symbols_to_text

from ..decoding.errors import DecodingError, where

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".sph", ".aiff", ".aif")


@dataclass(frozen=True)
class Utterance:
    id: str
    path: str
    n_samples: int  # as listed (manifest) or read from the header
    ref: str | None = None  # reference words, if known


def _ref_lines(manifest: Path, subset: str, n: int) -> list[str] | None:
    """References for a split: ``{subset}.wrd`` (words), else ``{subset}.ltr`` (letters + ``|``)."""
    for ext, to_words in (("wrd", False), ("ltr", True)):
        p = manifest.parent / f"{subset}.{ext}"
        if p.is_file():
            text = p.read_text(encoding="utf-8")
            lines = text.split("\n")
            if text.endswith("\n"):  # the final newline ends the last line; it starts no new one
                lines.pop()
            if len(lines) != n:
                raise DecodingError(f"{p}: {len(lines)} transcript lines for {n} utterances in {manifest}; "
                                    f"they must match line by line")
            return [symbols_to_text(line.split()) if to_words else " ".join(line.split()) for line in lines]
    return None


def from_manifest(data_dir: str | Path, subset: str) -> list[Utterance]:
    """``{data_dir}/{subset}.tsv`` (fairseq manifest) with its ``.wrd``/``.ltr`` transcripts if present."""
    from ..data.manifest import ManifestError, read_manifest

    manifest = Path(data_dir) / f"{subset}.tsv"
    if not manifest.is_file():
        have = sorted(p.stem for p in Path(data_dir).glob("*.tsv")) if Path(data_dir).is_dir() else []
        raise DecodingError(f"{manifest}: manifest not found (splits here: {', '.join(have) or 'none'}); "
                            f"pass --subset with one of them")
    try:
        m = read_manifest(str(manifest))
    except ManifestError as e:
        raise DecodingError(str(e)) from None
    refs = _ref_lines(manifest, subset, len(m.entries))
    out = []
    for i, entry in enumerate(m.entries):
        out.append(Utterance(id=str(Path(entry.path).with_suffix("")), path=m.audio_path(entry),
                             n_samples=entry.frames,
                             ref=refs[i] if refs is not None else None))
    return out


def from_paths(paths: Sequence[str | Path]) -> list[Utterance]:
    """Audio files, and folders searched recursively for audio files (sorted)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file())
            if not found:
                raise DecodingError(f"{p}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DecodingError(f"{p}: no such audio file or folder")
    out = []
    for f in files:
        try:
            info = sf.info(str(f))
        except Exception as e:
            raise DecodingError(f"{f}: not a readable audio file ({str(e).splitlines()[0][:120]})") from None
        out.append(Utterance(id=str(f.with_suffix("")), path=str(f), n_samples=int(info.frames)))
    return out


def read_audio(utt: Utterance, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at ``sample_rate``; multi-channel audio is averaged to mono."""
    try:
        wav, sr = sf.read(utt.path, dtype="float32", always_2d=True)  # (sample, channel)
    except Exception as e:
        raise DecodingError(f"{utt.path}: cannot read audio ({str(e).splitlines()[0][:120]})") from None
    if sr != sample_rate:
        raise DecodingError(f"{utt.path}: sample rate {sr} Hz but the model expects {sample_rate} Hz; resample it "
                            f"(e.g. sox in.wav -r {sample_rate} out.wav)")
    return wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]


def ids_unique(utts: Sequence[Utterance]) -> None:
    seen: dict[str, int] = {}
    for i, u in enumerate(utts):
        if u.id in seen:
            raise DecodingError(f"{where(u.path)}: utterance id {u.id!r} appears twice (inputs {seen[u.id] + 1} and "
                                f"{i + 1}); pass each file once")
        seen[u.id] = i
