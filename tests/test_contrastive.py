"""w2v2_contrastive against fairseq's wav2vec criterion on the same model output.

Same loss (to 1e-6 relative) and the same logged metrics; ours are summable across workers:
reduce_metrics on the *sum* of per-forward logging outputs (what fairseq's trainer does for
summable criteria) logs what fairseq's reduce_metrics logs from the *list*.
"""
from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from fairseq.criterions.wav2vec_criterion import Wav2vecCriterion
from fairseq.logging import metrics
from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model

from w2v2_plugin.criterions.contrastive import W2v2ContrastiveCriterion

TINY = dict(
    conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2",
    encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=4,
    conv_pos=16, conv_pos_groups=4, latent_vars=16, final_dim=32, num_negatives=10,
    quantize_targets=True,
)


class FrozenOutput(torch.nn.Module):
    """A model whose forward returns one stored net_output, so both criteria see the same."""

    def __init__(self, model: Any, net_output: dict[str, Any]) -> None:
        super().__init__()
        self.model, self.net_output = model, net_output

    def forward(self, **kwargs: Any) -> dict[str, Any]:
        return self.net_output

    def get_logits(self, net_output: dict[str, Any]) -> torch.Tensor:
        return self.model.get_logits(net_output)

    def get_targets(self, sample: Any, net_output: dict[str, Any]) -> torch.Tensor:
        return self.model.get_targets(sample, net_output)

    def get_extra_losses(self, net_output: dict[str, Any]) -> Any:
        return self.model.get_extra_losses(net_output)


def _fairseq_model(seed: int = 0) -> Wav2Vec2Model:
    torch.manual_seed(seed)
    return Wav2Vec2Model.build_model(Wav2Vec2Config(**TINY), None)


def _frozen(model: Any, seed: int, batch: int = 3, samples: int = 6000) -> tuple[FrozenOutput, dict[str, Any]]:
    torch.manual_seed(seed)
    import numpy as np

    np.random.seed(seed)
    sample = {"id": torch.arange(batch), "net_input": {"source": torch.randn(batch, samples)}}
    return FrozenOutput(model, model(**sample["net_input"])), sample


def _reduced(reduce_fn: Any, logging_outputs: list[dict[str, Any]]) -> dict[str, float]:
    with metrics.aggregate(new_root=True) as agg:
        reduce_fn(logging_outputs)
        return {k: float(v) for k, v in agg.get_smoothed_values().items()}


def _summed(logging_outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """What fairseq's trainer (_fast_stat_sync_sum) hands reduce_metrics for summable criteria."""
    keys = list(logging_outputs[0])
    return {k: sum(log[k] for log in logging_outputs if k in log) for k in keys}


@pytest.mark.parametrize("loss_weights", [[0.1, 10.0], [0.1, 0.0], None])
def test_same_loss_and_logs_as_fairseq(loss_weights: Any) -> None:
    model = _fairseq_model()
    log_keys = ["prob_perplexity", "code_perplexity", "temp"]
    ours = W2v2ContrastiveCriterion(None, infonce=True, loss_weights=loss_weights, log_keys=log_keys)
    theirs = Wav2vecCriterion(None, infonce=True, loss_weights=loss_weights, log_keys=log_keys)
    our_logs, their_logs = [], []
    for seed in (1, 2, 3):  # e.g. three workers, or gradient accumulation steps
        frozen, sample = _frozen(model, seed)
        loss_a, size_a, log_a = ours(frozen, sample)
        loss_b, size_b, log_b = theirs(frozen, sample)
        torch.testing.assert_close(loss_a, loss_b, rtol=1e-6, atol=1e-6)
        assert size_a == size_b and size_a > 0
        for key, value in log_b.items():
            assert key in log_a, key
            assert log_a[key] == pytest.approx(value, rel=1e-6), key
        our_logs.append(log_a)
        their_logs.append(log_b)
    assert W2v2ContrastiveCriterion.logging_outputs_can_be_summed()
    assert all(isinstance(v, (int, float)) for log in our_logs for v in log.values())
    ours_reduced = _reduced(W2v2ContrastiveCriterion.reduce_metrics, [_summed(our_logs)])
    theirs_reduced = _reduced(Wav2vecCriterion.reduce_metrics, their_logs)
    assert set(theirs_reduced) <= set(ours_reduced)
    for key, value in theirs_reduced.items():
        assert ours_reduced[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    # the list form (unsummed, e.g. a single worker without fast stat sync) agrees too
    listed = _reduced(W2v2ContrastiveCriterion.reduce_metrics, our_logs)
    for key, value in theirs_reduced.items():
        assert listed[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert 0 <= theirs_reduced["accuracy"] <= 1
    if loss_weights == [0.1, 10.0]:
        assert {"loss_0", "loss_1", "loss_2"} <= set(ours_reduced)


def test_binary_cross_entropy_mode_is_refused_when_the_criterion_is_built() -> None:
    """infonce=false (fairseq's BCE mode) cannot work with this model's logits: refused at build."""
    from w2v2_common.errors import W2v2Error
    from w2v2_plugin.criterions.contrastive import InfoNCERequiredError

    with pytest.raises(InfoNCERequiredError, match=r"criterion\.infonce=false .*set criterion\.infonce=true") as e:
        W2v2ContrastiveCriterion(None, infonce=False)
    assert isinstance(e.value, W2v2Error) and isinstance(e.value, ValueError)
    assert "\n" not in str(e.value)
    with pytest.raises(InfoNCERequiredError):
        W2v2ContrastiveCriterion(None)  # fairseq's default (infonce=false) is refused too


def test_named_loss_terms_are_the_criterion_and_model_numbers() -> None:
    """compute_contrastive_loss / compute_diversity_loss / compute_features_penalty give exactly
    the criterion's main loss and the model's extra losses."""
    from w2v2_plugin.models.contrastive import (
        compute_contrastive_loss,
        compute_diversity_loss,
        compute_features_penalty,
    )
    from w2v2_plugin.models.wav2vec2 import W2v2Config, W2v2Model

    torch.manual_seed(0)
    model = W2v2Model.build_model(W2v2Config(**TINY), None)
    source = torch.randn(2, 6000)
    torch.manual_seed(1)
    net_output = model(source=source)
    sample = {"id": torch.arange(2), "net_input": {"source": source}}
    logits = model.get_logits(net_output).float()
    target = model.get_targets(sample, net_output)
    diversity, penalty = model.get_extra_losses(net_output)
    assert torch.equal(diversity, compute_diversity_loss(net_output["num_vars"], net_output["prob_perplexity"]))
    assert torch.equal(penalty, compute_features_penalty(model.feature_encoder(source)))
    torch.manual_seed(1)
    loss, size, log = W2v2ContrastiveCriterion(None, infonce=True)(model, sample)
    assert torch.equal(loss, compute_contrastive_loss(logits, target))
    assert compute_contrastive_loss(logits, target, reduction="none").shape == (size,)


def test_all_equal_logits_are_not_counted_correct() -> None:
    class Flat(torch.nn.Module):
        def forward(self, **kwargs: Any) -> dict[str, Any]:
            return {}

        def get_logits(self, net_output: Any) -> torch.Tensor:
            logits = torch.zeros(4, 11)
            logits[0, 0] = 1.0  # only the first step is really right
            return logits

        def get_targets(self, sample: Any, net_output: Any) -> torch.Tensor:
            return torch.zeros(4, dtype=torch.long)

    _, size, log = W2v2ContrastiveCriterion(None, infonce=True)(Flat(), {"id": torch.arange(1), "net_input": {}})
    assert (log["correct"], log["count"], size) == (1, 4.0, 4)
    assert log["loss"] == pytest.approx(3 * math.log(11) - math.log(math.e / (math.e + 10)))


def test_mismatched_loss_weights_and_unsummable_keys_are_clear_errors() -> None:
    model = _fairseq_model()
    frozen, sample = _frozen(model, 1)
    with pytest.raises(ValueError, match="3 weight.*2 extra loss"):
        W2v2ContrastiveCriterion(None, infonce=True, loss_weights=[0.1, 1.0, 2.0])(frozen, sample)
    with pytest.raises(ValueError, match="log_keys"):
        W2v2ContrastiveCriterion(None, infonce=True, log_keys=["logits"])


def test_plugin_model_runs_through_the_criterion() -> None:
    """The registered w2v2 model gives the criterion what it needs (finite loss, logs)."""
    from w2v2_plugin.models.wav2vec2 import W2v2Config, W2v2Model

    torch.manual_seed(0)
    model = W2v2Model.build_model(W2v2Config(**TINY), None)
    sample = {"id": torch.arange(2), "net_input": {"source": torch.randn(2, 6000)}}
    crit = W2v2ContrastiveCriterion(None, infonce=True, loss_weights=[0.1, 10.0],
                                    log_keys=["prob_perplexity", "code_perplexity", "temp"])
    loss, size, log = crit(model, sample)
    loss.backward()
    assert math.isfinite(log["loss"]) and size > 0 and log["count"] == size
    assert {"prob_perplexity", "code_perplexity", "temp", "loss_0", "loss_1", "loss_2"} <= set(log)
