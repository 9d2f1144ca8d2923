"""w2v2-convert on checkpoints written by fairseq itself (fairseq-hydra-train, model wav2vec2).

The converted checkpoint must load through fairseq.checkpoint_utils with the plugin's user dir,
load with torch's default weights_only=True, and give the same features as fairseq's model
(max abs diff <= 1e-4, fp32, eval).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import write_tone

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = str(ROOT / "w2v2_plugin")
TOL = 1e-4

TINY_FAIRSEQ = [
    "++model.quantize_targets=true", "++model.encoder_layers=2",
    "++model.encoder_embed_dim=32", "++model.encoder_ffn_embed_dim=64", "++model.encoder_attention_heads=4",
    "++model.conv_pos=8", "++model.conv_pos_groups=4", "++model.final_dim=16", "++model.latent_vars=8",
    "++model.num_negatives=5", "++model.conv_feature_layers='[(32, 10, 5)] + [(32, 3, 2)] * 2 + [(32, 2, 2)]'",
]


def fairseq_checkpoint(tmp: Path, extra: list) -> Path:
    """Train fairseq's own wav2vec2 for one update on a few tones; return checkpoint_last.pt."""
    data = tmp / "data"
    for i in range(6):
        write_tone(data / f"a{i}.wav", 1.0 + 0.1 * i, seed=i)
    lines = [str(data)] + [f"a{i}.wav\t{16000 + 1600 * i}" for i in range(6)]
    for split in ("train", "valid"):
        (data / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    save = tmp / "ckpt"
    cmd = [
        sys.executable, "-m", "fairseq_cli.hydra_train", "--config-dir", str(ROOT / "tests"),
        "--config-name", "fairseq_tiny_pretrain",
        f"task.data={data}", f"checkpoint.save_dir={save}", *TINY_FAIRSEQ, *extra,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return save / "checkpoint_last.pt"


def convert(src: Path, dst: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "w2v2_plugin.cli.convert", str(src), str(dst)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def load_both(src: Path, dst: Path):
    from fairseq import checkpoint_utils

    ref, _, _ = checkpoint_utils.load_model_ensemble_and_task(
        [str(src)], arg_overrides={"data": str(src.parent)}, strict=True)
    ours, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [str(dst)], arg_overrides={"user_dir": PLUGIN_DIR, "data": str(src.parent)}, strict=True)
    return ref[0].eval(), ours[0].eval(), cfg, task


@pytest.mark.slow
@pytest.mark.parametrize("extra", [
    ["++model.extractor_mode=default", "++model.layer_norm_first=false"],
    ["++model.extractor_mode=layer_norm", "++model.layer_norm_first=true", "++model.conv_bias=true"],
], ids=["base-default-postln", "large-layernorm-preln"])
def test_convert_fairseq_written_checkpoint(tmp_path, extra):
    src = fairseq_checkpoint(tmp_path, extra)
    dst = tmp_path / "converted.pt"
    res = convert(src, dst)
    assert res.returncode == 0, res.stderr
    assert "wav2vec2" in res.stdout and "w2v2" in res.stdout
    state = torch.load(dst)  # torch's default weights_only=True: plain data only
    assert state["cfg"]["model"]["_name"] == "w2v2"
    assert state["cfg"]["task"]["_name"] == "w2v2_pretraining"

    import w2v2_plugin  # noqa: F401

    ref, ours, cfg, task = load_both(src, dst)
    assert type(ours).__name__ == "W2v2Model"
    torch.manual_seed(0)
    x = torch.randn(2, 9000)
    pm = torch.zeros_like(x, dtype=torch.bool)
    pm[1, 6000:] = True
    with torch.no_grad():
        r, o = ref.extract_features(x, pm), ours.extract_features(x, pm)
        assert (r["x"] - o["x"]).abs().max() <= TOL
        for (rx, _, _), (ox, _, _) in zip(r["layer_results"], o["layer_results"]):
            assert (rx - ox).abs().max() <= TOL
        assert torch.equal(ref.quantize(x)[1], ours.quantize(x)[1])

    # the legacy layout (argparse Namespace under 'args', as in the published wav2vec_small.pt)
    legacy = torch.load(src, weights_only=False)
    model_cfg = dict(legacy["cfg"]["model"])
    legacy["args"] = argparse.Namespace(**model_cfg, arch="wav2vec2", task="audio_pretraining",
                                        criterion="wav2vec", sample_rate=16000, normalize=False)
    legacy["cfg"] = None
    legacy_src = tmp_path / "legacy.pt"
    torch.save(legacy, legacy_src)
    dst2 = tmp_path / "converted_legacy.pt"
    res = convert(legacy_src, dst2)
    assert res.returncode == 0, res.stderr
    a, b = torch.load(dst), torch.load(dst2)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def run_main(capsys, *args) -> tuple:
    """w2v2-convert's main() in-process (a fairseq import per case would cost seconds)."""
    from w2v2_plugin.cli.convert import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_convert_bad_inputs_give_one_line_errors(tmp_path, capsys):
    # one real process: the console entry point prints one line and no traceback
    missing = convert(tmp_path / "nope.pt", tmp_path / "out.pt")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    code, _, err = run_main(capsys, junk, tmp_path / "out.pt")
    assert code == 2 and "junk.pt" in err and len(err.strip().splitlines()) == 1
    other = tmp_path / "other.pt"
    torch.save({"model": {"decoder.weight": torch.zeros(2)}, "cfg": {"model": {"_name": "transformer"}}}, other)
    code, _, err = run_main(capsys, other, tmp_path / "out.pt")
    assert code == 2 and "'transformer' cannot be converted" in err
    assert not (tmp_path / "out.pt").exists()
    # an unknown parameter in a wav2vec2 checkpoint is an error, not a silent drop
    odd = tmp_path / "odd.pt"
    torch.save({"model": {"feature_extractor.conv_layers.0.0.weight": torch.zeros(1), "mystery.weight": torch.zeros(1)},
                "cfg": {"model": {"_name": "wav2vec2"}}}, odd)
    code, _, err = run_main(capsys, odd, tmp_path / "out.pt")
    assert code == 2 and "mystery.weight" in err
    assert not (tmp_path / "out.pt").exists()
