"""Importing this subpackage registers its contents with fairseq."""
from . import (
    contrastive,  # noqa: F401,E402
    ctc,  # noqa: F401  (criterion w2v2_ctc)
)
