"""Training health: codebook collapse and non-finite losses are reported in plain words."""
from __future__ import annotations

import logging
import math
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


def test_context_collapse_is_reported_only_after_the_loss_had_fallen(caplog: pytest.LogCaptureFixture) -> None:
    health = TrainingHealth(HealthThresholds(chance_patience=3))
    chance = math.log(51)
    # the first updates of every run sit at chance: nothing to report yet
    assert all(health.observe_contrastive(chance, 51) is None for _ in range(100))
    assert health.chance_streak == 0 and not health.has_learned
    assert health.observe_contrastive(0.9 * chance, 51) is None and health.has_learned
    with caplog.at_level(logging.WARNING, logger="w2v2_plugin.health"):
        said = [health.observe_contrastive(chance, 51) for _ in range(15)]
    assert [i for i, m in enumerate(said) if m] == [2, 11]  # 3rd in a row, then the 10th after it
    message = said[2]
    assert message is not None and message in caplog.text
    assert "context collapse" in message and "ln(51)" in message and "90.0%" in message
    assert "optimization.lr" in message
    # a step clearly below chance resets the streak; a non-finite loss or one candidate says nothing
    assert health.observe_contrastive(0.98 * chance, 51) is None and health.chance_streak == 0
    assert health.observe_contrastive(float("nan"), 51) is None
    assert health.observe_contrastive(0.0, 1) is None and health.chance_streak == 0


def test_reduce_metrics_reports_context_collapse(monitor: TrainingHealth, caplog: pytest.LogCaptureFixture) -> None:
    def log(nats_per_step: float) -> dict[str, Any]:
        # two forwards of 1000 masked steps each, 51 candidates
        return {"loss": 2000 * nats_per_step, "ntokens": 2000, "nsentences": 8, "sample_size": 2000,
                "_forwards": 2, "correct": 40, "count": 2000.0, "_contrastive": 2000 * nats_per_step,
                "_candidates": 102.0}

    monitor.thresholds.chance_patience = 2
    with caplog.at_level(logging.WARNING, logger="w2v2_plugin.health"):
        for nats in (3.0, math.log(51), math.log(51)):
            with metrics.aggregate(new_root=True) as agg:
                W2v2ContrastiveCriterion.reduce_metrics([log(nats)])
    assert "context collapse" in caplog.text and "ln(51)" in caplog.text
    assert "_contrastive" not in agg.get_smoothed_values() and "_candidates" not in agg.get_smoothed_values()


def test_forward_logs_the_contrastive_term_and_candidates() -> None:
    class AllAlike(torch.nn.Module):
        def forward(self, **kwargs: Any) -> dict[str, Any]:
            return {}

        def get_logits(self, net_output: Any) -> torch.Tensor:
            return torch.zeros(4, 11)  # every candidate scored alike: chance

        def get_targets(self, sample: Any, net_output: Any) -> torch.Tensor:
            return torch.zeros(4, dtype=torch.long)

    _, sample_size, out = W2v2ContrastiveCriterion(None, infonce=True)(
        AllAlike(), {"id": torch.arange(1), "net_input": {}})
    assert sample_size == 4 and out["_candidates"] == 11.0
    assert out["_contrastive"] == pytest.approx(4 * math.log(11), rel=1e-6)
