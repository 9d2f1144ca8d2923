"""Helpers shared by the test modules: tiny audio written in the test's own tmp dir.

Imported as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``, as it does
for ``conftest.py``); fixtures stay in ``conftest.py``. Helpers here are small on purpose; an
area's specific helpers live in its test files.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf


def write_tone(path: Path, seconds: float, sr: int = 16000, channels: int = 1, seed: int = 0,
               subtype: str | None = None) -> Path:
    """Write a noisy chirp (deterministic for a seed); returns the path."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    wave = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(n)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data.astype(np.float32), sr, subtype=subtype)
    return path


def espeak(text: str, path: Path, voice: str = "en-us", rate: int = 160, pitch: int = 50,
           sr: int = 16000) -> Path:
    """Synthesize ``text`` with espeak-ng and resample to ``sr`` mono 16-bit with sox."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".espeak.wav")
    # argv lists (no shell) of tools on PATH
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(raw), text],  # noqa: S603,S607
                   check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", str(sr), "-c", "1", "-b", "16", str(path)],  # noqa: S603,S607
                   check=True, capture_output=True)
    raw.unlink()
    return path


def padded_audio_batch(bsz: int = 3, n: int = 6000, seed: int = 1):
    """Random audio (bsz, n) with a padding mask: row 1 loses 1500 samples, row 2 3333."""
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(bsz, n, generator=g)
    pm = torch.zeros(bsz, n, dtype=torch.bool)
    pm[1, n - 1500:] = True
    if bsz > 2:
        pm[2, n - 3333:] = True
    return x, pm
