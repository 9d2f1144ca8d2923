"""Importing this subpackage registers its contents with fairseq."""
from . import pretraining  # noqa: F401,E402
