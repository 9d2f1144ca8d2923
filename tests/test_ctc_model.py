"""w2v2_ctc model behaviour: frozen feature encoder, freeze_finetune_updates, masking and
LayerDrop overrides, no_pretrained_weights, plugin checkpoints as w2v_path, config checks."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from test_conversion_ctc import audio, letter_dictionary, log_probs, maxdiff, save_fairseq_wav2vec2

from w2v2_plugin.interop.checkpoint_io import load_checkpoint_file, save_checkpoint_atomic
from w2v2_plugin.interop.fairseq_wav2vec2 import convert_wav2vec2_checkpoint
from w2v2_plugin.interop.pretrained import PretrainedModelError
from w2v2_plugin.models.ctc import W2v2Ctc, W2v2CtcConfig


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return save_fairseq_wav2vec2(tmp_path_factory.mktemp("pre") / "pretrained.pt")


def build(pretrained, **kw) -> W2v2Ctc:
    task = SimpleNamespace(target_dictionary=letter_dictionary())
    return W2v2Ctc.build_model(W2v2CtcConfig(w2v_path=str(pretrained), **kw), task)


def grads_after_step(model: W2v2Ctc) -> dict[str, bool]:
    model.train()
    model.zero_grad()
    x, pm = audio(bsz=2, n=8000)
    out = model(source=x, padding_mask=pm)
    model.get_normalized_probs(out, log_probs=True).sum().backward()
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in model.named_parameters()}


def test_feature_grad_mult_zero_builds_no_graph_for_the_feature_encoder(pretrained):
    model = build(pretrained, feature_grad_mult=0.0)
    seen = {}
    def hook(module, inputs, output) -> None:
        seen["requires_grad"] = output.requires_grad

    model.w2v_encoder.w2v_model.feature_encoder.register_forward_hook(hook)
    got = grads_after_step(model)
    assert seen["requires_grad"] is False  # computed under no_grad: no graph to free or keep
    enc = [n for n in got if ".feature_encoder." in n]
    assert enc and not any(got[n] for n in enc)
    assert got["w2v_encoder.proj.weight"]
    assert any(got[n] for n in got if ".encoder.layers." in n)


def test_feature_grad_mult_positive_trains_the_feature_encoder(pretrained):
    got = grads_after_step(build(pretrained, feature_grad_mult=0.1))
    assert any(got[n] for n in got if ".feature_encoder." in n)


def test_freeze_finetune_updates_trains_only_the_output_layer_first(pretrained):
    model = build(pretrained, freeze_finetune_updates=5, feature_grad_mult=0.0)
    model.set_num_updates(4)
    got = grads_after_step(model)
    assert [n for n, g in got.items() if g] == ["w2v_encoder.proj.weight", "w2v_encoder.proj.bias"]
    model.set_num_updates(5)
    got = grads_after_step(model)
    assert any(got[n] for n in got if ".encoder.layers." in n)


def test_masking_and_layerdrop_overrides_reach_the_context_network(pretrained):
    model = build(pretrained, apply_mask=True, mask_prob=0.5, mask_length=3, mask_channel_prob=0.3,
                  mask_channel_length=4, layerdrop=0.2, dropout=0.0, attention_dropout=0.0,
                  activation_dropout=0.0)
    cfg = model.w2v_encoder.w2v_model.cfg
    assert (cfg.mask_prob, cfg.mask_length, cfg.mask_channel_prob, cfg.mask_channel_length,
            cfg.encoder_layerdrop) == (0.5, 3, 0.3, 4, 0.2)
    assert model.w2v_encoder.w2v_model.encoder.layerdrop == 0.2
    x, pm = audio()
    model.eval()  # no masking, no LayerDrop in eval: deterministic
    assert torch.equal(log_probs(model, x, pm), log_probs(model, x, pm))
    model.train()
    torch.manual_seed(0)
    a = log_probs(model, x, pm)
    torch.manual_seed(1)
    b = log_probs(model, x, pm)
    assert not torch.equal(a, b)  # masks (and dropped layers) are drawn per batch in training


def test_no_pretrained_weights_keeps_the_architecture_only(pretrained):
    loaded = build(pretrained)
    scratch = build(pretrained, no_pretrained_weights=True)
    a = dict(loaded.w2v_encoder.w2v_model.named_parameters())
    b = dict(scratch.w2v_encoder.w2v_model.named_parameters())
    assert a.keys() == b.keys()
    assert all(a[k].shape == b[k].shape for k in a)
    raw = load_checkpoint_file(str(pretrained))["model"]
    ref = raw["encoder.layers.0.fc1.weight"]
    assert torch.equal(a["encoder.layers.0.feed_forward.fc1.weight"], ref)
    assert not torch.equal(b["encoder.layers.0.feed_forward.fc1.weight"], ref)


def test_plugin_checkpoint_as_w2v_path_gives_the_same_model(pretrained, tmp_path):
    plugin_ckpt = tmp_path / "w2v2.pt"
    save_checkpoint_atomic(convert_wav2vec2_checkpoint(load_checkpoint_file(str(pretrained))), str(plugin_ckpt))
    a, b = build(pretrained).eval(), build(plugin_ckpt).eval()
    b.w2v_encoder.proj.load_state_dict(a.w2v_encoder.proj.state_dict())
    x, pm = audio()
    assert maxdiff(log_probs(a, x, pm), log_probs(b, x, pm)) == 0.0
    assert b.cfg.w2v_args["source"]["model"] == "w2v2"


def test_normalize_must_match_pretraining(pretrained):
    with pytest.raises(PretrainedModelError, match="task.normalize=True but the pretrained model"):
        build(pretrained, normalize=True)
    build(pretrained, normalize=False)


def test_unsupported_options_are_refused(pretrained):
    with pytest.raises(ValueError, match="model.layer_decay"):
        build(pretrained, layer_decay=0.5)
    with pytest.raises(PretrainedModelError, match="w2v_path is not set"):
        W2v2Ctc.build_model(W2v2CtcConfig(), SimpleNamespace(target_dictionary=letter_dictionary()))


def test_padded_frames_predict_blank_and_blank_weight(pretrained):
    model = build(pretrained, blank_weight=2.0).eval()
    x, pm = audio()
    with torch.no_grad():
        out = model(source=x, padding_mask=pm)
        raw = out["encoder_out"].clone()
        lp = model.get_normalized_probs(out, log_probs=True)
    frames = out["padding_mask"]  # (B, T)
    assert frames is not None and frames[2].any() and not frames[0].any()
    assert torch.all(lp[frames.T][:, 0] == 0)  # log P(blank) = 0 on padding
    assert torch.equal(out["encoder_out"], raw)  # not modified in place
    ref = torch.log_softmax(raw[:, 0] + torch.nn.functional.one_hot(torch.tensor(0), raw.size(-1)) * 2.0, -1)
    assert torch.allclose(lp[:, 0], ref, atol=1e-6)


def test_freeze_regex(pretrained):
    model = build(pretrained, freeze_regex=r"w2v_model\.encoder\.layers\.0\..*")
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(".encoder.layers.0." in n for n in frozen)
