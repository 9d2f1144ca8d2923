"""Behaviour of the w2v2 model beyond parity: shapes, padding, training step, config parsing."""
from __future__ import annotations

import pytest
import torch

from w2v2_plugin.models.config import W2v2Config, parse_latent_temp
from w2v2_plugin.models.conv_geometry import conv_output_lengths, parse_conv_layers, receptive_field
from w2v2_plugin.models.wav2vec2 import W2v2Model

TINY = dict(
    conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 2 + [(32, 2, 2)]",
    encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=4,
    conv_pos=8, conv_pos_groups=4, final_dim=16, latent_vars=12, latent_groups=2,
    quantize_targets=True, num_negatives=5, dropout=0.0, attention_dropout=0.0,
)


def tiny(**kw) -> W2v2Model:
    torch.manual_seed(0)
    return W2v2Model(W2v2Config(**{**TINY, **kw}))


def test_parse_conv_layers_without_eval():
    assert parse_conv_layers("[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] + [(512,2,2)]") == (
        [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2)
    assert parse_conv_layers("2 * [(8, 3, 1)]") == [(8, 3, 1)] * 2
    for bad in ["__import__('os').system('true')", "[(1, 2)]", "[]", "[(1, 2, 3)] - [(1,2,3)]", "[(1, 2, -3)]", "[("]:
        with pytest.raises(ValueError, match="conv_feature_layers"):
            parse_conv_layers(bad)


def test_parse_latent_temp_forms():
    assert parse_latent_temp("(2,0.5,0.999995)") == (2.0, 0.5, 0.999995)
    assert parse_latent_temp([2, 0.1, 0.9]) == (2.0, 0.1, 0.9)
    with pytest.raises(ValueError):
        parse_latent_temp((1, 2))


def test_length_arithmetic_matches_paper_base_encoder():
    layers = parse_conv_layers(W2v2Config.conv_feature_layers)
    assert receptive_field(layers) == 400  # 25 ms at 16 kHz
    lengths = torch.tensor([16000, 400, 399, 0, 720])
    assert conv_output_lengths(lengths, layers).tolist() == [49, 1, 0, 0, 2]  # 20 ms stride


def test_batch_equals_single_with_padding():
    """Padding does not leak into real frames (layer_norm extractor; the BASE "default" mode's
    group norm pools over the whole padded time axis, in fairseq too, which is why BASE
    pretraining crops batches instead of padding them)."""
    model = tiny(extractor_mode="layer_norm").eval()
    torch.manual_seed(1)
    a, b = torch.randn(5000), torch.randn(3100)
    batch = torch.zeros(2, 5000)
    batch[0], batch[1, :3100] = a, b
    pm = torch.zeros(2, 5000, dtype=torch.bool)
    pm[1, 3100:] = True
    with torch.no_grad():
        out = model.extract_features(batch, pm)
        single_b = model.extract_features(b.unsqueeze(0))["x"][0]
        single_a = model.extract_features(a.unsqueeze(0))["x"][0]
    n_b = int((~out["padding_mask"][1]).sum())
    assert n_b == single_b.size(0)
    assert (out["x"][1, :n_b] - single_b).abs().max() < 1e-4
    assert (out["x"][0] - single_a).abs().max() < 1e-4


def test_zero_length_row_in_batch_gives_finite_outputs():
    model = tiny().eval()
    batch = torch.randn(2, 4000)
    pm = torch.zeros(2, 4000, dtype=torch.bool)
    pm[1] = True  # an empty utterance padded to the batch
    with torch.no_grad():
        out = model.extract_features(batch, pm)
    assert bool(out["padding_mask"][1].all())
    assert torch.isfinite(out["x"]).all()


def test_bad_input_shapes_raise_value_errors():
    model = tiny().eval()
    with pytest.raises(ValueError, match="batch, samples"):
        model.extract_features(torch.randn(4000))
    with pytest.raises(ValueError, match="receptive field"):
        model.extract_features(torch.randn(1, 50))


def test_training_step_reduces_contrastive_loss_and_anneals_temperature():
    model = tiny(feature_grad_mult=0.1).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(2)
    source = torch.randn(4, 8000)
    losses = []
    for step in range(30):
        model.set_num_updates(step * 1000)
        out = model(source)
        logits = model.get_logits(out).float()
        target = model.get_targets(None, out)
        loss = torch.nn.functional.cross_entropy(logits, target)
        extra = model.get_extra_losses(out)
        total = loss + 0.1 * extra[0] + 10 * extra[1]
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(loss.item())
    assert out["x"].shape[0] == 1 + 5  # target + K distractors
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert model.quantizer.curr_temp == pytest.approx(max(2 * 0.999995 ** 29000, 0.5))
    assert out["temp"] == model.quantizer.curr_temp


def test_feature_grad_mult_zero_builds_no_encoder_graph():
    model = tiny(feature_grad_mult=0.0).train()
    out = model(torch.randn(2, 6000))
    model.get_logits(out).float().sum().backward()
    assert all(p.grad is None for p in model.feature_encoder.parameters())
    assert model.mask_embedding.grad is not None


def test_unsupported_variants_are_rejected_by_name():
    with pytest.raises(ValueError, match="layer_type"):
        tiny(layer_type="conformer")
    with pytest.raises(ValueError, match="quantize_input"):
        tiny(quantize_input=True)


def test_remove_pretraining_modules_keeps_feature_path():
    model = tiny().eval()
    model.remove_pretraining_modules()
    assert model.quantizer is None and model.context_projection is None
    with torch.no_grad():
        assert model.extract_features(torch.randn(1, 4000))["x"].shape[-1] == 32
