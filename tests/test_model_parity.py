"""Parity of the plugin's w2v2 model with fairseq's built-in wav2vec2 (the numerical reference).

Weights come from a model fairseq itself builds (and, in one test, saves as a checkpoint);
they go through the documented key map. Tolerance: max abs difference <= 1e-4 in fp32, eval mode.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model
from helpers import padded_audio_batch as audio

import w2v2_plugin  # noqa: F401
from w2v2_plugin.interop.fairseq_wav2vec2 import (
    fairseq_to_plugin_state_dict,
    model_cfg_to_w2v2,
    plugin_to_fairseq_state_dict,
)
from w2v2_plugin.models.config import W2v2Config
from w2v2_plugin.models.wav2vec2 import W2v2Model

TOL = 1e-4

TINY = dict(
    conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 2 + [(32, 2, 2)]",
    encoder_layers=3, encoder_embed_dim=48, encoder_ffn_embed_dim=96, encoder_attention_heads=4,
    conv_pos=16, conv_pos_groups=4, final_dim=24, latent_vars=20, latent_groups=2,
    quantize_targets=True, num_negatives=7, dropout=0.0, attention_dropout=0.0,
)


def maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max abs difference; -inf logits (distractor == target) must sit at the same places."""
    assert torch.equal(torch.isinf(a), torch.isinf(b))
    finite = torch.isfinite(a)
    return float((a[finite] - b[finite]).abs().max())


def make_pair(**overrides):
    torch.manual_seed(0)
    fcfg = Wav2Vec2Config(**{**TINY, **overrides})
    ref = Wav2Vec2Model(fcfg).eval()
    # perturb norms/biases so that parity cannot hold by accident of the init
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if "norm" in n or n.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    cfg = W2v2Config(**model_cfg_to_w2v2(dataclasses.asdict(fcfg)) | {"_name": "w2v2"})
    ours = W2v2Model(cfg).eval()
    ours.load_state_dict(fairseq_to_plugin_state_dict(ref.state_dict()))
    return ref, ours


@pytest.mark.parametrize("mode", ["default", "layer_norm"])
@pytest.mark.parametrize("ln_first", [False, True])
def test_extract_features_parity_every_layer(mode, ln_first):
    ref, ours = make_pair(extractor_mode=mode, layer_norm_first=ln_first, conv_bias=mode == "layer_norm")
    x, pm = audio()
    with torch.no_grad():
        r = ref.extract_features(x, pm)
        o = ours.extract_features(x, pm)
    assert torch.equal(r["padding_mask"], o["padding_mask"])
    assert (r["x"] - o["x"]).abs().max() <= TOL
    assert len(r["layer_results"]) == len(o["layer_results"]) == 3
    for (rx, _, rl), (ox, _, ol) in zip(r["layer_results"], o["layer_results"]):
        assert rx.shape == ox.shape  # (T, B, C) as fairseq
        assert (rx - ox).abs().max() <= TOL
        assert (rl - ol).abs().max() <= TOL
    # intermediate layer exit
    with torch.no_grad():
        r1 = ref.extract_features(x, pm, layer=1)
        o1 = ours.extract_features(x, pm, layer=1)
    assert (r1["x"] - o1["x"]).abs().max() <= TOL


@pytest.mark.parametrize("mode", ["default", "layer_norm"])
def test_quantized_targets_parity(mode):
    ref, ours = make_pair(extractor_mode=mode)
    x, _ = audio()
    with torch.no_grad():
        rq, ri = ref.quantize(x)
        oq, oi = ours.quantize(x)
    assert torch.equal(ri, oi)
    assert (rq - oq).abs().max() <= TOL


def test_contrastive_logits_parity_with_same_masks_and_negatives():
    """Same masks and the same distractors in -> same logits and perplexities out."""
    ref, ours = make_pair()
    x, _ = audio(bsz=2, n=8000)
    with torch.no_grad():
        feats = ref.feature_extractor(x).transpose(1, 2)
    mask = torch.zeros(feats.shape[:2], dtype=torch.bool)
    mask[:, 3:12] = True
    mask[:, 20:26] = True
    torch.manual_seed(5)
    with torch.no_grad():
        r = ref(x, mask_indices=mask)
    # reproduce fairseq's distractor draw through our own hook
    captured = {}
    orig = ref.sample_negatives

    def capture(y, num, padding_count=None):
        negs, idx = orig(y, num, padding_count)
        captured["idx"] = idx
        return negs, idx

    ref.sample_negatives = capture
    torch.manual_seed(5)
    with torch.no_grad():
        r = ref(x, mask_indices=mask)
    idx = captured["idx"]  # (B, T*K) flat indices into (B*T)
    bsz, tsz = 2, int(mask[0].sum())

    def ours_negs(rows, steps, device):
        assert (rows, steps) == (bsz, tsz)
        return idx.view(rows, steps, -1)

    ours.negative_indices = ours_negs
    with torch.no_grad():
        o = ours(x, mask_indices=mask)
    assert maxdiff(r["x"], o["x"]) <= TOL
    for key in ("prob_perplexity", "code_perplexity", "features_pen"):
        assert abs(float(r[key]) - float(o[key])) <= TOL, key
    assert r["num_vars"] == o["num_vars"]
    assert torch.equal(ref.get_targets(None, r), ours.get_targets(None, o))
    assert maxdiff(ref.get_logits(r), ours.get_logits(o)) <= TOL


def test_key_map_round_trip_and_unknown_key():
    ref, ours = make_pair()
    back = plugin_to_fairseq_state_dict(ours.state_dict())
    ref_sd = ref.state_dict()
    assert set(back) == set(ref_sd)
    for k in ref_sd:
        assert torch.equal(back[k], ref_sd[k]), k
    bad = dict(ref_sd)
    bad["encoder.layers.0.mystery.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="mystery"):
        fairseq_to_plugin_state_dict(bad)


def test_fairseq_state_dict_loads_directly_through_upgrade():
    """load_state_dict of fairseq's key names works (upgrade_state_dict_named maps them)."""
    ref, ours = make_pair()
    fresh = W2v2Model(ours.cfg).eval()
    fresh.load_state_dict(ref.state_dict())  # BaseFairseqModel.load_state_dict upgrades first
    x, pm = audio()
    with torch.no_grad():
        assert (fresh.extract_features(x, pm)["x"] - ref.extract_features(x, pm)["x"]).abs().max() <= TOL
