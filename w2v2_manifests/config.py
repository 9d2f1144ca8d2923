"""Run settings as dataclasses; the CLI builds its flags from the ``help`` metadata here."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from .text import TextConfig

_TEXT = {f.name: f for f in fields(TextConfig)}


class TextOptions:
    """The transcript options both input kinds share (their fields are declared in each
    dataclass, which keeps the CLI's flag order)."""

    case: str
    punctuation: str
    digits: str

    def text_config(self) -> TextConfig:
        return TextConfig(case=self.case, punctuation=self.punctuation, digits=self.digits)


@dataclass
class ManifestConfig(TextOptions):
    root: str = field(metadata={"help": "directory to index (searched recursively)", "positional": True})
    dest: str = field(default=".", metadata={"metavar": "DIR", "help": "output directory (created if missing)"})
    ext: str = field(default="flac", metadata={"metavar": "EXT",
        "help": "audio extension(s) to index, comma-separated, case-insensitive: flac or flac,wav"})
    valid_percent: float = field(default=0.01, metadata={"metavar": "FRACTION",
        "help": "FRACTION (0..1, as in fairseq's wav2vec_manifest.py) of files drawn at random "
                "into the 'valid' split; 0 writes a single split"})
    seed: int = field(default=42, metadata={"metavar": "N", "help": "random seed of the train/valid draw"})
    path_must_contain: str | None = field(default=None, metadata={"metavar": "STR",
        "help": "only index files whose absolute path contains this substring"})
    split_name: str = field(default="train", metadata={"metavar": "NAME",
        "help": "name of the main split ({split}.tsv); dict.ltr.txt is written only for 'train'"})
    sample_rate: int = field(default=16000, metadata={"metavar": "HZ",
        "help": "required sample rate in Hz (files with another rate are bad); 0 accepts any"})
    labels: str = field(default="auto", metadata={
        "help": "auto: write .wrd/.ltr/dict.ltr.txt when transcripts are found; none: manifest only",
        "choices": ("auto", "none")})
    transcripts: str | None = field(default=None, metadata={"metavar": "FILE",
        "help": "one TSV or CSV file of 'audio path or utterance id, text' rows "
                "(instead of *.trans.txt / sidecar .txt/.lab files)"})
    workers: int = field(default=1, metadata={"metavar": "N", "help": "processes reading audio headers"})
    on_bad: str = field(default="error", metadata={
        "help": "error: list every bad file and write nothing; skip: leave them out and list "
                "them in {split}.skipped.tsv",
        "choices": ("error", "skip")})
    decode: bool = field(default=False, metadata={
        "help": "decode every file completely (slow) to also catch corrupt audio data "
                "behind a valid header"})
    case: str = field(default="upper", metadata=_TEXT["case"].metadata)
    punctuation: str = field(default="strip", metadata=_TEXT["punctuation"].metadata)
    digits: str = field(default="keep", metadata=_TEXT["digits"].metadata)
    progress: bool = field(default=True, metadata={"help": "show a progress bar", "negate": "no_progress"})


@dataclass
class SpmConfig:
    train: str = field(metadata={"metavar": "FILE", "help": "the training split's words, e.g. DIR/train.wrd"})
    vocab_size: int = field(metadata={"metavar": "N", "help": "number of subword units"})
    model_type: str = field(default="unigram", metadata={
        "help": "sentencepiece model type", "choices": ("unigram", "bpe", "char", "word")})
    character_coverage: float = field(default=1.0, metadata={"metavar": "FRACTION",
        "help": "share of characters the model must cover (1.0 for small alphabets)"})
    dest: str | None = field(default=None, metadata={
        "metavar": "DIR", "help": "output directory (default: the directory of --train)"})
    splits: str | None = field(default=None, metadata={"metavar": "NAMES",
        "help": "comma-separated splits to encode (default: every *.wrd file in DEST)"})
    prefix: str = field(default="spm", metadata={"metavar": "NAME",
        "help": "model file name prefix: DEST/PREFIX.model and PREFIX.vocab"})
    threads: int = field(default=1, metadata={"metavar": "N", "help": "sentencepiece training threads"})


_MANIFEST = {f.name: f for f in fields(ManifestConfig)}


def _same(name: str) -> dict:
    return dict(_MANIFEST[name].metadata)


@dataclass
class LhotseConfig(TextOptions):
    """``w2v2-manifest lhotse``: lhotse manifests instead of a folder (manifests/README.md)."""

    recordings: str | None = field(default=None, metadata={"metavar": "FILE",
        "help": "lhotse RecordingSet (.jsonl or .jsonl.gz); without --supervisions every "
                "recording is one unlabeled utterance"})
    supervisions: str | None = field(default=None, metadata={"metavar": "FILE",
        "help": "lhotse SupervisionSet of those recordings: each supervision is one utterance"})
    cuts: str | None = field(default=None, metadata={"metavar": "FILE",
        "help": "lhotse CutSet instead of the two above: each supervision of a cut is one "
                "utterance, a cut without supervisions one unlabeled utterance"})
    dest: str = field(default=".", metadata=_same("dest"))
    valid_percent: float = field(default=0.01, metadata={"metavar": "FRACTION",
        "help": "FRACTION (0..1) of utterances drawn at random into the 'valid' split; "
                "0 writes a single split (lhotse recipes have their own splits: use 0)"})
    seed: int = field(default=42, metadata=_same("seed"))
    split_name: str = field(default="train", metadata=_same("split_name"))
    sample_rate: int = field(default=16000, metadata={"metavar": "HZ",
        "help": "required sample rate in Hz (other recordings are bad; resample with lhotse "
                "first, see manifests/README.md); 0 accepts any"})
    labels: str = field(default="auto", metadata={
        "help": "auto: write .wrd/.ltr/dict.ltr.txt when any supervision has text; none: manifest only",
        "choices": ("auto", "none")})
    on_bad: str = field(default="error", metadata={
        "help": "error: list every bad utterance and write nothing; skip: leave them out and "
                "list them in {split}.skipped.tsv",
        "choices": ("error", "skip")})
    decode: bool = field(default=False, metadata={
        "help": "decode the audio files referenced in place completely (slow) to also catch "
                "corrupt data behind a valid header (segments are always decoded)"})
    case: str = field(default="upper", metadata=_same("case"))
    punctuation: str = field(default="strip", metadata=_same("punctuation"))
    digits: str = field(default="keep", metadata=_same("digits"))
    progress: bool = field(default=True, metadata=_same("progress"))
