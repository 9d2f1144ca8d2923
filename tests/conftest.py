"""Shared pytest fixtures; the helpers the test modules import live in ``tests/helpers.py``.

The repository root goes on ``sys.path`` so that ``testing_support`` (helpers shared with the
benchmarks, not installed) imports however pytest is started.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None
