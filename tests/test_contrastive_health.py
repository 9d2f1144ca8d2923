"""Training health: codebook collapse and non-finite losses are reported in plain words."""
from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from fairseq.logging import metrics

import w2v2_plugin.criterions.contrastive as contrastive
from w2v2_plugin.criterions.contrastive import W2v2ContrastiveCriterion
from w2v2_plugin.health import HealthThresholds, TrainingHealth


def test_collapse_is_reported_after_patience_and_thinned(caplog: pytest.LogCaptureFixture) -> None:
    health = TrainingHealth(HealthThresholds(min_code_usage=0.1, patience=3))
    with caplog.at_level(logging.WARNING, logger="w2v2_plugin.health"):
        assert health.observe_codebook(3.0, 640, frames=5000) is None
        assert health.observe_codebook(3.0, 640, frames=5000) is None
        message = health.observe_codebook(3.0, 640, frames=5000)
    assert message is not None and message in caplog.text
    assert "codebook collapse" in message and "3.0 of 640" in message and "loss_weights[0]" in message
    # later occurrences: the 10th, 100th, ... only
    said = [health.observe_codebook(2.0, 640, frames=5000) for _ in range(120)]
    assert [i for i, m in enumerate(said) if m] == [8, 98]
    # a healthy step resets the streak
    assert health.observe_codebook(300.0, 640, frames=5000) is None and health.low_usage_streak == 0


def test_no_verdict_from_too_few_frames_or_healthy_usage() -> None:
    health = TrainingHealth(HealthThresholds(patience=1))
    assert health.observe_codebook(3.0, 640, frames=200) is None  # 200 steps cannot fill 640 codes
    assert health.observe_codebook(100.0, 640, frames=5000) is None
    assert health.low_usage_streak == 0


def test_non_finite_loss_message() -> None:
    health = TrainingHealth()
    message = health.observe_loss(float("nan"), {"loss_0": float("nan"), "loss_1": 0.5})
    assert message is not None and "the loss is nan" in message and "loss_0" in message
    assert "optimization.lr" in message and "fp16" in message
    assert health.observe_loss(1.5) is None
    assert health.observe_loss(float("inf")) is None  # 2nd occurrence: thinned out


@pytest.fixture()
def monitor(monkeypatch: pytest.MonkeyPatch) -> TrainingHealth:
    fresh = TrainingHealth(HealthThresholds(min_code_usage=0.1, patience=5))
    monkeypatch.setattr(contrastive, "MONITOR", fresh)
    return fresh


def test_reduce_metrics_warns_on_collapse(monitor: TrainingHealth, caplog: pytest.LogCaptureFixture) -> None:
    log = {"loss": 900.0, "ntokens": 2000, "nsentences": 8, "sample_size": 2000, "_forwards": 2,
           "correct": 900, "count": 2000.0, "code_perplexity": 8.0, "_code_perplexity": 8.0,
           "_num_vars": 1280.0}
    with caplog.at_level(logging.WARNING, logger="w2v2_plugin.health"):
        for _ in range(5):
            with metrics.aggregate(new_root=True) as agg:
                W2v2ContrastiveCriterion.reduce_metrics([log])
    # two forwards summed: perplexity 4 of 640 entries
    assert "codebook collapse: code perplexity 4.0 of 640" in caplog.text
    assert agg.get_smoothed_values()["code_perplexity"] == pytest.approx(4.0)
    assert "_code_perplexity" not in agg.get_smoothed_values()


def test_forward_warns_on_nan_loss(monitor: TrainingHealth, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(torch.nn.Module):
        def forward(self, **kwargs: Any) -> dict[str, Any]:
            return {}

        def get_logits(self, net_output: Any) -> torch.Tensor:
            return torch.full((4, 11), float("nan"))

        def get_targets(self, sample: Any, net_output: Any) -> torch.Tensor:
            return torch.zeros(4, dtype=torch.long)

    with caplog.at_level(logging.WARNING, logger="w2v2_plugin.health"):
        W2v2ContrastiveCriterion(None, infonce=True)(Broken(), {"id": torch.arange(1), "net_input": {}})
    assert "TRAINING HEALTH: the loss is nan" in caplog.text and monitor.nonfinite_count == 1
