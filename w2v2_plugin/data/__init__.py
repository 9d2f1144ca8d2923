"""Importing this subpackage registers its contents with fairseq."""
from . import (
    manifest,  # noqa: F401,E402
    raw_audio,  # noqa: F401,E402
)
