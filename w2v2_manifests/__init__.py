"""Manifests and labels for wav2vec 2.0 training, standalone (no torch, no fairseq).

``w2v2-manifest ROOT --dest DIR`` (or ``python -m w2v2_manifests``) writes fairseq's
``{split}.tsv`` / ``.wrd`` / ``.ltr`` / ``dict.ltr.txt``; ``w2v2-manifest lhotse`` does the same
from lhotse manifests; ``w2v2-manifest spm`` adds subword units. Only the standard library,
numpy, soundfile, sentencepiece and tqdm are imported (lhotse, which imports torch, only when
the lhotse form runs). See manifests/README.md for the formats.
"""
from __future__ import annotations

from .audio import AudioInfo, probe
from .builder import BuildSummary, build
from .config import LhotseConfig, ManifestConfig, SpmConfig
from .errors import BadFilesError, ManifestError, TranscriptError
from .lhotse_input import build_lhotse
from .spm import SpmSummary, train_spm
from .text import TextConfig, normalize, to_letters

__all__ = ["AudioInfo", "BadFilesError", "BuildSummary", "LhotseConfig", "ManifestConfig", "ManifestError",
           "SpmConfig", "SpmSummary", "TextConfig", "TranscriptError", "build", "build_lhotse", "normalize",
           "probe", "to_letters", "train_spm"]
