"""End to end, as a user runs it: pretrain with the plugin's tiny_cpu config, fine-tune with
the tiny_cpu fine-tuning config on a small espeak-ng corpus of spoken digit sequences, and
check that validation WER (Viterbi, logged by the w2v2_ctc criterion) falls well below 100%.

Slow (minutes on 2 cores): the acceptance check of issue 3.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import soundfile as sf
from helpers import espeak
from test_finetuning_train import REPO, hydra_train

DIGITS = "zero one two three four five six seven eight nine".split()
# Measured (issue 3 report, loaded 2-core machine, ~16 min): UER/WER 68/100 at update 200,
# 47/93 at 400, 33/81 at 600, 27.3/69.1 at 800. Modest bars below those numbers:
WER_BAR = 85.0  # percent
UER_BAR = 40.0  # percent
FT_UPDATES = 800  # the tiny_cpu config's max_update


def digits_corpus(root: Path, n_train: int = 240, n_valid: int = 30, seed: int = 1) -> Path:
    """espeak-ng utterances of 3-6 random digits (one voice, rate 150-180 wpm), with .tsv
    manifests, .ltr letter transcripts and dict.ltr.txt in fairseq's layout."""
    rng = random.Random(seed)
    audio = root / "audio"
    rows: dict[str, list[tuple[str, int, str]]] = {"train": [], "valid": []}
    for i in range(n_train + n_valid):
        split = "train" if i < n_train else "valid"
        text = " ".join(rng.choice(DIGITS) for _ in range(rng.randint(3, 6))).upper()
        path = espeak(text.lower(), audio / f"{split}_{i:04d}.wav", rate=rng.randint(150, 180))
        rows[split].append((path.name, sf.info(str(path)).frames, text))
    for split, items in rows.items():
        (root / f"{split}.tsv").write_text(str(audio) + "\n" + "".join(f"{n}\t{f}\n" for n, f, _ in items))
        (root / f"{split}.ltr").write_text("".join(" ".join(t.replace(" ", "|")) + " |\n" for _, _, t in items))
    letters = sorted({c for items in rows.values() for _, _, t in items for c in t.replace(" ", "|")})
    (root / "dict.ltr.txt").write_text("".join(f"{c} 1\n" for c in letters))
    return root


def logged(output: str, prefix: str) -> list[dict]:
    """fairseq's json log records of one kind (``valid`` or ``train_inner``)."""
    return [json.loads(m.group(1)) for m in re.finditer(rf"\[{prefix}\]\[INFO\] - (\{{.*\}})", output)]


@pytest.mark.slow
def test_tiny_cpu_pretrain_then_finetune_reduces_wer(tmp_path, have_espeak):
    if not have_espeak:
        pytest.skip("espeak-ng and sox are needed to synthesize the corpus")
    data = digits_corpus(tmp_path / "data")

    # 1. a tiny_cpu pretrained checkpoint, written by fairseq-hydra-train with the plugin
    pre_dir = tmp_path / "pretrain"
    res = hydra_train("tiny_cpu", pre_dir, f"task.data={data}", "optimization.max_update=20",
                      "checkpoint.save_interval_updates=20", config_dir=REPO / "examples" / "wav2vec2"
                      / "config" / "pretraining")
    assert res.returncode == 0, res.stderr[-3000:]
    pretrained = pre_dir / "checkpoint_last.pt"

    # 2. fine-tune it with the tiny_cpu recipe
    res = hydra_train("tiny_cpu", tmp_path / "finetune", f"task.data={data}",
                      f"model.w2v_path={pretrained}", f"optimization.max_update={FT_UPDATES}",
                      "dataset.max_tokens=80000",  # ~3 utterances of ~2 s: small batches, many updates
                      timeout=3600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, res.stderr[-3000:]
    valid = logged(out, "valid")
    assert valid, out[-3000:]
    wers = [(int(v["valid_num_updates"]), float(v["valid_wer"])) for v in valid]
    print("validation WER by update:", wers)
    assert all(int(v["valid_nonfinite"]) == 0 for v in valid)
    assert wers[-1][1] < WER_BAR, wers
    assert float(valid[-1]["valid_uer"]) < UER_BAR, valid[-1]
    assert wers[-1][1] < wers[0][1], wers  # WER fell during the run
