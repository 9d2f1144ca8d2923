"""``model.feature_cache_mb``: the frozen feature encoder's output, reused across epochs.

The cache must be invisible to training: with it, the same updates give the same losses as
without it and as fairseq's ``wav2vec_ctc`` (which recomputes Z every time). Rows are keyed by
content, so a row padded to another length, a change of the encoder's weights or of autocast
is a miss, never a stale hit.
"""
from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import pytest
import torch
from fairseq.criterions.ctc import CtcCriterion, CtcCriterionConfig
from fairseq.models.wav2vec.wav2vec2_asr import Wav2Vec2CtcConfig, Wav2VecCtc
from test_conversion_ctc import letter_dictionary, save_fairseq_wav2vec2
from test_ctc_training_parity import FINETUNE, REL_TOL, batches, train

import w2v2_plugin  # noqa: F401  (registers the plugin's components)
from w2v2_plugin.criterions.ctc import W2v2CtcCriterion, W2v2CtcCriterionConfig
from w2v2_plugin.models.conv_geometry import parse_conv_layers
from w2v2_plugin.models.ctc import W2v2Ctc, W2v2CtcConfig
from w2v2_plugin.models.feature_cache import FrozenFeatureCache, drop_feature_caches, row_keys
from w2v2_plugin.models.feature_encoder import FeatureEncoder

# rows of one input computed inside batches of other sizes: equal to float rounding
ROW_ATOL = 1e-5


def small_encoder(seed: int = 0) -> FeatureEncoder:
    torch.manual_seed(seed)
    return FeatureEncoder(parse_conv_layers("[(32, 10, 5)] + [(32, 3, 2)] * 2"), "default").eval()


def padded(lengths: list[int], total: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(lengths), total)
    for row, n in enumerate(lengths):
        x[row, :n] = torch.randn(n, generator=g)
    return x


def test_second_epoch_is_all_hits_and_equal_to_recomputing():
    enc = small_encoder()
    cache = FrozenFeatureCache(64)
    x = padded([4000, 3000, 2500], 4000, seed=1)
    with torch.no_grad():
        expected = enc(x)
    first = cache.features(enc, x)
    assert (cache.hits, cache.misses, len(cache)) == (0, 3, 3)
    second = cache.features(enc, x)
    assert (cache.hits, cache.misses) == (3, 3)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert not second.requires_grad


def test_rows_seen_in_another_batch_are_reused_in_any_order():
    enc = small_encoder()
    cache = FrozenFeatureCache(64)
    x = padded([4000, 3000, 2500, 3900], 4000, seed=2)
    cache.features(enc, x[:3])
    out = cache.features(enc, x[[3, 2, 0]])  # one new row, two seen in a batch of three
    assert (cache.hits, cache.misses) == (2, 4)
    with torch.no_grad():
        expected = torch.stack([enc(x[i:i + 1])[0] for i in (3, 2, 0)])  # each alone
    torch.testing.assert_close(out, expected, atol=ROW_ATOL, rtol=0)


def test_a_row_padded_to_another_length_is_a_miss():
    enc = small_encoder()
    cache = FrozenFeatureCache(64)
    x = padded([3000], 3000, seed=3)
    longer = torch.cat([x, torch.zeros(1, 1000)], dim=1)  # the same utterance, padded
    cache.features(enc, x)
    out = cache.features(enc, longer)
    assert cache.hits == 0 and cache.misses == 2
    with torch.no_grad():
        assert torch.equal(out, enc(longer))
        short = enc(x)
    # group norm over the padded length: the two Zs of one utterance really differ
    assert not torch.allclose(out[:, :short.size(1)], short, atol=1e-4)


def test_changed_weights_empty_the_cache(caplog):
    enc = small_encoder(seed=0)
    cache = FrozenFeatureCache(64)
    x = padded([4000, 3500], 4000, seed=4)
    cache.features(enc, x)
    enc.load_state_dict(small_encoder(seed=5).state_dict())  # in place: same storages, new version
    with caplog.at_level(logging.INFO, logger="w2v2_plugin.models.feature_cache"):
        out = cache.features(enc, x)
    assert cache.hits == 0 and cache.misses == 4
    assert "emptied" in caplog.text
    with torch.no_grad():
        assert torch.equal(out, enc(x))


def test_a_full_cache_stores_no_more_and_stays_correct(caplog):
    enc = small_encoder()
    x = padded([4000, 3000, 2000], 4000, seed=6)
    with torch.no_grad():
        expected = enc(x)
    row_mib = expected[0].numel() * expected[0].element_size() / 2 ** 20
    cache = FrozenFeatureCache(1.5 * row_mib)  # room for one row
    with caplog.at_level(logging.INFO, logger="w2v2_plugin.models.feature_cache"):
        first = cache.features(enc, x)
    assert len(cache) == 1 and cache.stored_bytes <= cache.max_bytes
    assert "feature cache full" in caplog.text
    second = cache.features(enc, x)
    assert (cache.hits, cache.misses) == (1, 5)
    assert torch.equal(first, expected) and torch.equal(second, expected)


def test_autocast_and_dtype_are_part_of_the_key():
    x = padded([2000, 1000], 2000, seed=7)
    plain = row_keys(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = row_keys(x)
    assert plain[0] != under_autocast[0]
    assert row_keys(x.double())[0] != plain[0]
    assert plain[0] != plain[1]
    assert row_keys(x.clone()) == plain  # content, not identity


def test_an_empty_or_negative_size_is_refused():
    with pytest.raises(ValueError, match="max_mb must be > 0"):
        FrozenFeatureCache(0)


def ctc_configs(tmp_path, **extra):
    pre = save_fairseq_wav2vec2(tmp_path / "pretrained.pt", dropout_input=0.1, dropout_features=0.1)
    common = dict(w2v_path=str(pre), normalize=False, data=str(tmp_path), ddp_backend="legacy_ddp",
                  freeze_finetune_updates=2, **FINETUNE)
    common.update(extra)
    return common


def test_training_with_the_cache_gives_fairseqs_updates(tmp_path):
    d = letter_dictionary()
    task = SimpleNamespace(target_dictionary=d, blank_symbol="<s>")
    common = ctc_configs(tmp_path)
    ref = Wav2VecCtc.build_model(Wav2Vec2CtcConfig(**common), task)
    plain = W2v2Ctc.build_model(W2v2CtcConfig(**common), task)
    cached = W2v2Ctc.build_model(W2v2CtcConfig(**common, feature_cache_mb=16), task)
    for model in (plain, cached):
        model.w2v_encoder.proj.load_state_dict(ref.w2v_encoder.proj.state_dict())
    data = batches(d, 3) * 2  # two epochs over the same three batches

    ref_losses = train(ref, CtcCriterion(CtcCriterionConfig(zero_infinity=True, sentence_avg=True), task), data)
    criterion = W2v2CtcCriterion(W2v2CtcCriterionConfig(zero_infinity=True, sentence_avg=True), task)
    plain_losses = train(plain, criterion, data)
    cached_losses = train(cached, criterion, data)

    cache = cached.w2v_encoder.w2v_model.frozen_feature_cache
    assert cache is not None and (cache.hits, cache.misses) == (9, 9)  # epoch 2 is all hits
    assert all(math.isfinite(v) for v in ref_losses) and ref_losses[-1] < ref_losses[0]
    for step, (a, b, c) in enumerate(zip(ref_losses, plain_losses, cached_losses)):
        assert b == c, f"update {step}: plugin {b} without the cache, {c} with it"
        assert abs(a - c) <= REL_TOL * abs(a), f"update {step}: fairseq {a} vs plugin with the cache {c}"


def test_a_trained_feature_encoder_refuses_the_cache(tmp_path):
    task = SimpleNamespace(target_dictionary=letter_dictionary(), blank_symbol="<s>")
    common = ctc_configs(tmp_path)
    common["feature_grad_mult"] = 0.1
    with pytest.raises(ValueError, match=r"model.feature_cache_mb=64 needs a frozen feature encoder"):
        W2v2Ctc.build_model(W2v2CtcConfig(**common, feature_cache_mb=64), task)


def test_inference_switches_the_cache_off(tmp_path):
    task = SimpleNamespace(target_dictionary=letter_dictionary(), blank_symbol="<s>")
    model = W2v2Ctc.build_model(W2v2CtcConfig(**ctc_configs(tmp_path), feature_cache_mb=16), task)
    assert model.w2v_encoder.w2v_model.frozen_feature_cache is not None
    drop_feature_caches(model)
    assert model.w2v_encoder.w2v_model.frozen_feature_cache is None
