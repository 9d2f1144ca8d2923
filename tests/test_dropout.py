"""``packed_dropout``: dropout with masks from 16-bit lanes, statistically nn.Dropout's."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from w2v2_plugin.models.config import W2v2Config
from w2v2_plugin.models.dropout import LANES, PackedDropout, drop_threshold, keep_mask, make_dropout
from w2v2_plugin.models.transformer import SelfAttention
from w2v2_plugin.models.wav2vec2 import W2v2Model


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5, 0.9])
def test_the_drop_rate_is_p(p):
    torch.manual_seed(0)
    n = 1_000_003  # not a multiple of the four lanes of a draw
    kept = keep_mask((n,), p).double().mean().item()
    rate = drop_threshold(p) / LANES
    assert abs(rate - p) <= 0.5 / LANES
    assert abs((1 - kept) - rate) < 5 * math.sqrt(rate * (1 - rate) / n)  # 5 sigma


def test_output_is_unbiased_and_the_gradient_uses_the_same_mask():
    torch.manual_seed(1)
    drop = PackedDropout(0.1).train()
    x = torch.ones(200, 1000, requires_grad=True)
    y = drop(x)
    kept = y != 0
    scale = LANES / (LANES - drop_threshold(0.1))
    assert torch.equal(y[kept], torch.full_like(y[kept], scale))
    assert abs(y.mean().item() - 1.0) < 5 * math.sqrt(0.1 / 0.9 / y.numel())
    (y * torch.arange(1000.0)).sum().backward()
    assert torch.equal(x.grad, kept * torch.arange(1000.0) * scale)


def test_eval_p0_and_p1_behave_as_nn_dropout():
    x = torch.randn(3, 7)
    assert PackedDropout(0.5).eval()(x) is x
    assert PackedDropout(0.0).train()(x) is x
    assert torch.equal(PackedDropout(1.0).train()(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="between 0 and 1"):
        PackedDropout(1.5)


def test_masks_follow_the_seed_and_differ_between_calls():
    drop = PackedDropout(0.3).train()
    x = torch.ones(64, 64)
    torch.manual_seed(7)
    a, b = drop(x), drop(x)
    torch.manual_seed(7)
    assert torch.equal(drop(x), a)
    assert not torch.equal(a, b)


def test_bf16_stays_bf16():
    y = PackedDropout(0.2).train()(torch.ones(5, 9, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16


def test_the_model_option_swaps_every_dropout_and_the_default_keeps_torchs():
    small = dict(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2,
                 conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 2", final_dim=16, conv_pos=4,
                 conv_pos_groups=2, latent_vars=8, latent_dim=16, dropout_input=0.1, dropout_features=0.1,
                 activation_dropout=0.1)
    default = W2v2Model(W2v2Config(**small))
    packed = W2v2Model(W2v2Config(**small, packed_dropout=True))
    kinds = {type(m) for m in default.modules() if isinstance(m, (nn.Dropout, PackedDropout))}
    assert kinds == {nn.Dropout}
    n_packed = sum(isinstance(m, PackedDropout) for m in packed.modules())
    # input + features, encoder input, per layer: residual + FFN + attention weights
    assert n_packed == 2 + 1 + 2 * 3
    assert not any(isinstance(m, nn.Dropout) for m in packed.modules())
    out = packed.train()(torch.randn(2, 8000))
    assert torch.isfinite(out["x"]).all()
    out["x"].float().logsumexp(0).sum().backward()
    assert make_dropout(0.1, packed=False).__class__ is nn.Dropout


def attention_inputs(seed: int = 0):
    torch.manual_seed(seed)
    attn = SelfAttention(32, 4, dropout=0.2, packed_dropout=True)
    x = torch.randn(3, 11, 32)
    attend = torch.tensor([[True] * 11, [True] * 7 + [False] * 4, [True] * 2 + [False] * 9])
    return attn, x, attend[:, None, None, :]


def test_explicit_attention_without_dropout_is_sdpa():
    attn, x, mask = attention_inputs()
    q, k, v = attn.in_proj(x).view(3, 11, 3, 4, 8).permute(2, 0, 3, 1, 4).unbind(0)
    ours = SelfAttention.attend_with_packed_dropout(q, k, v, mask, nn.Identity())
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_attention_weights_dropout_is_packed_and_unbiased(monkeypatch):
    attn, x, mask = attention_inputs(1)
    attn.train()
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: pytest.fail("SDPA called with packed attention dropout"))
    with torch.no_grad():
        draws = torch.stack([attn(x, mask) for _ in range(4000)])
    assert not torch.equal(draws[0], draws[1])  # a new mask per call
    attn.eval()
    monkeypatch.undo()
    with torch.no_grad():
        expected = attn(x, mask)
    # the mean over draws tends to the undropped output (dropout's expectation is its input)
    assert (draws.mean(0) - expected).abs().max() < 0.05 * expected.abs().max()
    y = attn.train()(x.requires_grad_(), mask)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
