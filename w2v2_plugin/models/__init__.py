"""Importing this subpackage registers its contents with fairseq."""
from . import (
    ctc,  # noqa: F401  (model w2v2_ctc)
    wav2vec2,  # noqa: F401  (registers model "w2v2")
)
