"""Importing this subpackage registers its contents with fairseq."""
from . import (
    finetuning,  # noqa: F401  (task w2v2_finetuning)
    pretraining,  # noqa: F401,E402
)
