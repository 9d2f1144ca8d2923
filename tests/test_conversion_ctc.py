"""fairseq ``wav2vec_ctc`` -> ``w2v2_ctc``: same log-probs as fairseq's own model.

The reference checkpoints are built by fairseq itself in the test: a tiny ``wav2vec2`` saved
in fairseq's checkpoint layout, a ``wav2vec_ctc`` built on it by fairseq's own code, saved in
the hydra layout (dictionary pickled in task_state, as fairseq-hydra-train does) and in the
legacy ``args`` layout of the published *_960h.pt files. Tolerance: max abs difference of
log-probabilities <= 1e-4 in fp32, eval mode.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fairseq import checkpoint_utils
from fairseq.data import Dictionary
from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model
from fairseq.models.wav2vec.wav2vec2_asr import Wav2Vec2CtcConfig, Wav2VecCtc
from helpers import padded_audio_batch as audio
from omegaconf import OmegaConf

import w2v2_plugin  # noqa: F401  (registers w2v2_finetuning / w2v2_ctc)
from w2v2_plugin.interop.checkpoint_io import CheckpointError
from w2v2_plugin.interop.fairseq_ctc import convert_wav2vec_ctc_file
from w2v2_plugin.interop.pretrained import PretrainedModelError
from w2v2_plugin.models.ctc import W2v2Ctc, W2v2CtcConfig

TOL = 1e-4
TINY = dict(conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 2 + [(32, 2, 2)]",
            encoder_layers=3, encoder_embed_dim=48, encoder_ffn_embed_dim=96,
            encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4, final_dim=24,
            latent_vars=20, latent_groups=2, quantize_targets=True, num_negatives=7)
LETTERS = "|ETAOINSHRDLUCMWFGYPBVKXJQZ'"
HISTORY = [{"criterion_name": "CtcCriterion", "optimizer_name": "Adam", "lr_scheduler_state": {},
            "num_updates": 0}]


def letter_dictionary() -> Dictionary:
    d = Dictionary()
    for c in LETTERS:
        d.add_symbol(c)
    return d


def save_fairseq_wav2vec2(path: Path, seed: int = 0, **overrides) -> Path:
    """A fairseq wav2vec2 pretraining checkpoint (hydra layout), weights perturbed so that
    parity cannot hold by accident of the init."""
    torch.manual_seed(seed)
    fcfg = Wav2Vec2Config(**{**TINY, **overrides})
    model = Wav2Vec2Model(fcfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n or n.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    cfg = {"_name": None, "common": {"tpu": False, "seed": 1},
           "model": dict(OmegaConf.to_container(OmegaConf.structured(fcfg), enum_to_str=True),
                         _name="wav2vec2"),
           "task": {"_name": "audio_pretraining", "data": str(path.parent), "sample_rate": 16000,
                    "normalize": overrides.get("extractor_mode") == "layer_norm"}}
    torch.save({"cfg": cfg, "model": model.state_dict(), "args": None, "optimizer_history": HISTORY,
                "extra_state": {}, "last_optimizer_state": None}, path)
    return path


def fairseq_ctc(pretrained: Path, d: Dictionary, normalize: bool = False) -> Wav2VecCtc:
    """fairseq's own wav2vec_ctc on the pretrained checkpoint, with a non-trivial head."""
    ccfg = Wav2Vec2CtcConfig(w2v_path=str(pretrained), normalize=normalize, data=str(pretrained.parent),
                             ddp_backend="legacy_ddp")
    model = Wav2VecCtc.build_model(ccfg, SimpleNamespace(target_dictionary=d))
    with torch.no_grad():
        model.w2v_encoder.proj.bias.normal_(0, 0.5)
    return model.eval()


def save_fairseq_ctc(model: Wav2VecCtc, d: Dictionary, path: Path, layout: str = "hydra") -> Path:
    """Save as fairseq does: hydra (cfg + pickled Dictionary) or legacy (args Namespaces)."""
    cfg = model.cfg
    model_cfg = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=False, enum_to_str=True)
    model_cfg.update(_name="wav2vec_ctc", normalize=cfg.normalize, data=cfg.data, ddp_backend="legacy_ddp",
                     w2v_args=OmegaConf.to_container(cfg.w2v_args, resolve=True, enum_to_str=True))
    if layout == "hydra":
        state = {"cfg": {"_name": None, "common": {"tpu": False, "seed": 1}, "model": model_cfg,
                         "task": {"_name": "audio_finetuning", "data": str(path.parent), "labels": "ltr",
                                  "normalize": cfg.normalize}},
                 "args": None, "task_state": {"target_dictionary": d}}
    else:
        w2v = model_cfg["w2v_args"]
        flat = dict(w2v["model"], arch="wav2vec2", task="audio_pretraining", **w2v["task"])
        flat.pop("_name")
        args = dict(model_cfg, arch="wav2vec_ctc", task="audio_pretraining", labels="ltr",
                    w2v_args=argparse.Namespace(**flat))
        args.pop("_name")
        state = {"args": argparse.Namespace(**args), "cfg": None}
    state.update(model=model.state_dict(), optimizer_history=HISTORY, extra_state={},
                 last_optimizer_state=None)
    torch.save(state, path)
    return path


def log_probs(model, x, pm) -> torch.Tensor:
    with torch.no_grad():
        out = model(source=x, padding_mask=pm)
        return model.get_normalized_probs(out, log_probs=True)  # (T, B, V)


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    assert torch.equal(torch.isinf(a), torch.isinf(b))  # padded frames: -inf off the blank
    finite = torch.isfinite(a)
    return float((a[finite] - b[finite]).abs().max())


@pytest.fixture(scope="module")
def fairseq_pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ctc")
    d = letter_dictionary()
    pre = save_fairseq_wav2vec2(tmp / "pretrained.pt")
    ref = fairseq_ctc(pre, d)
    return tmp, d, pre, ref


@pytest.mark.parametrize("layout", ["hydra", "legacy"])
def test_converted_checkpoint_matches_fairseq(fairseq_pair, layout):
    tmp, d, pre, ref = fairseq_pair
    src = save_fairseq_ctc(ref, d, tmp / f"fairseq_ctc_{layout}.pt", layout)
    (tmp / "dict.ltr.txt").write_text("".join(f"{c} 1\n" for c in LETTERS))
    out = tmp / f"converted_{layout}.pt"
    res = convert_wav2vec_ctc_file(str(src), str(out),
                                   dict_path=str(tmp / "dict.ltr.txt") if layout == "legacy" else None)
    assert res.layout == layout and res.vocab_size == len(d) and res.encoder_layers == 3

    torch.load(out, weights_only=True)  # plain data only
    pre.rename(pre.with_suffix(".away"))  # self-contained: the pretrained file is not needed
    try:
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(out)])
    finally:
        pre.with_suffix(".away").rename(pre)
    ours = models[0].eval()
    assert isinstance(ours, W2v2Ctc)
    assert task.target_dictionary.symbols == d.symbols
    x, pm = audio()
    diff = maxdiff(log_probs(ref, x, pm), log_probs(ours, x, pm))
    assert diff <= TOL, diff


def test_w2v_path_to_fairseq_wav2vec2_matches_fairseq(fairseq_pair):
    """w2v2_ctc reads a fairseq wav2vec2 checkpoint directly (no conversion step)."""
    tmp, d, pre, ref = fairseq_pair
    cfg = W2v2CtcConfig(w2v_path=str(pre))
    ours = W2v2Ctc.build_model(cfg, SimpleNamespace(target_dictionary=d)).eval()
    with torch.no_grad():
        ours.w2v_encoder.proj.weight.copy_(ref.w2v_encoder.proj.weight)
        ours.w2v_encoder.proj.bias.copy_(ref.w2v_encoder.proj.bias)
    x, pm = audio()
    assert maxdiff(log_probs(ref, x, pm), log_probs(ours, x, pm)) <= TOL
    assert cfg.w2v_args["model"]["encoder_layers"] == 3  # stored for a self-contained checkpoint
    again = W2v2Ctc.build_model(W2v2CtcConfig(w2v_path="/nonexistent.pt", w2v_args=cfg.w2v_args),
                                SimpleNamespace(target_dictionary=d))
    assert again.w2v_encoder.w2v_model.cfg.encoder_layers == 3


def test_bad_w2v_path(tmp_path, fairseq_pair):
    _, d, _, ref = fairseq_pair
    task = SimpleNamespace(target_dictionary=d)
    with pytest.raises(PretrainedModelError, match="does not exist"):
        W2v2Ctc.build_model(W2v2CtcConfig(w2v_path=str(tmp_path / "nope.pt")), task)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedModelError, match="not a wav2vec 2.0 checkpoint"):
        W2v2Ctc.build_model(W2v2CtcConfig(w2v_path=str(junk)), task)
    other = tmp_path / "other.pt"
    torch.save({"cfg": {"model": {"_name": "transformer_lm"}}, "model": {}}, other)
    with pytest.raises(PretrainedModelError, match="transformer_lm"):
        W2v2Ctc.build_model(W2v2CtcConfig(w2v_path=str(other)), task)
    fine = save_fairseq_ctc(ref, d, tmp_path / "ft.pt")
    with pytest.raises(PretrainedModelError, match="fine-tuned wav2vec_ctc checkpoint"):
        W2v2Ctc.build_model(W2v2CtcConfig(w2v_path=str(fine)), task)


def test_conversion_errors(tmp_path, fairseq_pair):
    tmp, d, pre, ref = fairseq_pair
    with pytest.raises(CheckpointError, match="not a fairseq wav2vec_ctc checkpoint"):
        convert_wav2vec_ctc_file(str(pre), str(tmp_path / "x.pt"))
    legacy = save_fairseq_ctc(ref, d, tmp_path / "legacy.pt", layout="legacy")
    with pytest.raises(CheckpointError, match="pass the dict.ltr.txt"):
        convert_wav2vec_ctc_file(str(legacy), str(tmp_path / "x.pt"))
    (tmp_path / "dict.small.txt").write_text("A 1\nB 1\n")
    with pytest.raises(CheckpointError, match="wrong dict file"):
        convert_wav2vec_ctc_file(str(legacy), str(tmp_path / "x.pt"), str(tmp_path / "dict.small.txt"))
    assert not (tmp_path / "x.pt").exists()  # nothing half-written


def test_cli_converts_and_exports(fairseq_pair, tmp_path, capsys):
    from w2v2_plugin.cli.convert import main

    tmp, d, pre, ref = fairseq_pair
    legacy = save_fairseq_ctc(ref, d, tmp_path / "legacy.pt", layout="legacy")
    rc = main([str(legacy), str(tmp_path / "out.pt")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "pass the dict.ltr.txt" in err
    (tmp_path / "dict.ltr.txt").write_text("".join(f"{c} 1\n" for c in LETTERS))
    rc = main([str(legacy), str(tmp_path / "out.pt"), "--dict", str(tmp_path / "dict.ltr.txt")])
    assert rc == 0 and "w2v2_ctc" in capsys.readouterr().out
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task([str(tmp_path / "out.pt")])
    x, pm = audio()
    assert maxdiff(log_probs(ref, x, pm), log_probs(models[0].eval(), x, pm)) <= TOL
    rc = main([str(pre), "--to-hf", str(tmp_path / "hf")])
    assert rc == 2 and "exports fine-tuned CTC models" in capsys.readouterr().err
    pytest.importorskip("transformers")
    rc = main([str(tmp_path / "out.pt"), "--to-hf", str(tmp_path / "hf")])  # plugin checkpoint in
    assert rc == 0 and "Wav2Vec2ForCTC" in capsys.readouterr().out
    assert (tmp_path / "hf" / "config.json").is_file()
    rc = main([str(legacy), "--dict", str(tmp_path / "dict.ltr.txt"), "--to-hf", str(tmp_path / "hf2")])
    assert rc == 0 and (tmp_path / "hf2" / "vocab.json").is_file()  # fairseq checkpoint in, HF out
