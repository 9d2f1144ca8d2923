"""Shared by the pretraining end-to-end tests: a small espeak-ng corpus with .tsv manifests,
the fixture that makes it once per module, and fairseq log parsing."""
from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from helpers import espeak

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "examples" / "wav2vec2" / "config" / "pretraining"
USER_DIR = REPO / "w2v2_plugin"
# Shorter crops than tiny_cpu's 4 s keep an update cheap on a busy 2-core machine.
FAST = ["task.max_sample_size=32000", "dataset.max_tokens=192000", "common.log_interval=2"]

_WORDS = (
    "the a small red green blue house river stone window garden morning evening bright quiet "
    "horse rabbit teacher doctor travels carries paints builds finds opens closes under over "
    "near behind seven twelve forty quickly slowly yesterday tomorrow music letter bridge "
    "mountain valley silver golden winter summer kitchen market station"
).split()
_VOICES = ("en-us", "en-gb", "en-us+f2", "en-gb-scotland", "en-us+m3", "en-029", "en-gb-x-rp", "en-us+f4")


def make_corpus(root: Path, n_train: int = 40, n_valid: int = 6, seed: int = 0) -> Path:
    """Write ``root/audio/*.wav`` (16 kHz, 1.5-4 s espeak sentences) and train/valid.tsv."""
    rng = random.Random(seed)
    audio = root / "audio"
    lines: dict[str, list[str]] = {"train": [], "valid": []}
    for i in range(n_train + n_valid):
        split = "train" if i < n_train else "valid"
        text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 11)))
        path = espeak(text, audio / f"{split}_{i:03d}.wav", voice=_VOICES[i % len(_VOICES)],
                      rate=rng.randint(140, 190), pitch=rng.randint(30, 70))
        lines[split].append(f"{path.name}\t{sf.info(str(path)).frames}")
    for split, rows in lines.items():
        (root / f"{split}.tsv").write_text(str(audio) + "\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, have_espeak: bool) -> Path:
    if not have_espeak:
        pytest.skip("espeak-ng and sox are needed to synthesize the corpus")
    return make_corpus(tmp_path_factory.mktemp("corpus"), n_train=40, n_valid=6)


def env() -> dict[str, str]:
    """Subprocess environment: one math thread per process (2 shared cores)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def records(log: str, kind: str = "train_inner") -> list[dict[str, Any]]:
    """The json records fairseq logged under ``kind`` (numbers as floats)."""
    out = []
    # hydra's format "[kind][INFO] - {...}", fairseq-train's "| INFO | kind | {...}"
    pattern = re.compile(r"(?:\[" + re.escape(kind) + r"\]\[INFO\] - |\| INFO \| " + re.escape(kind) + r" \| )(\{.*\})\s*$")
    for line in log.splitlines():
        m = pattern.search(line)
        if m:
            out.append({k: float(v) if re.fullmatch(r"-?[\d.]+(e-?\d+)?", str(v)) else v
                        for k, v in json.loads(m.group(1)).items()})
    return out
