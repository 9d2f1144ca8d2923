"""Plain-words warnings when wav2vec 2.0 training goes wrong, with the likely fix.

Three failure modes users of fairseq hit without any warning:

- **Codebook collapse**: the Gumbel quantizer ends up using a handful of its G*V entries
  (code perplexity near G instead of hundreds). Contrastive accuracy then looks great
  because the targets are trivial, and the representations are useless.
- **Context collapse**: the contrastive loss, after it had clearly fallen below chance level,
  returns to it (ln(K+1) nats per masked step: every candidate scored alike) and stays there;
  accuracy is back at chance, the gradient norm near zero, the code perplexity can stay high.
  Seen in tiny_cpu runs at lr 1e-3 of fairseq's wav2vec2 and of the plugin alike (BENCHMARKS.md).
- **Non-finite loss**: NaN/inf from a too-high learning rate, fp16 overflow, or broken
  audio (silent, clipped, NaN samples); fairseq reports it only as a gradient overflow.

The criterion feeds every step's numbers into :data:`MONITOR` (one per process); the
monitor decides when to warn. Repeated warnings are thinned out (1st, 10th, 100th, ...
occurrence) so that the log stays readable.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

logger = logging.getLogger("w2v2_plugin.health")


@dataclass
class HealthThresholds:
    """When to call the codebook or the context network collapsed."""

    min_code_usage: float = field(
        default=0.1,
        metadata={"help": "warn when code perplexity falls below this fraction of the codebook entries"},
    )
    patience: int = field(
        default=20, metadata={"help": "... for this many consecutive updates (single steps are noisy)"}
    )
    learned_loss_ratio: float = field(
        default=0.97,
        metadata={"help": "the run has learned once the contrastive loss falls to this fraction of chance, ln(K+1)"},
    )
    chance_loss_ratio: float = field(
        default=0.995,
        metadata={"help": "after that, warn when the contrastive loss stays at or above this fraction of chance"},
    )
    chance_patience: int = field(
        default=50, metadata={"help": "... for this many consecutive updates"}
    )


def _is_power_of_ten(n: int) -> bool:
    while n >= 10 and n % 10 == 0:
        n //= 10
    return n == 1


def _due(streak: int, patience: int) -> bool:
    """Warn at the ``patience``-th bad update in a row, then at the 10th, 100th, ... after it."""
    return streak >= patience and _is_power_of_ten(streak - patience + 1)


class TrainingHealth:
    """Watches loss and code perplexity; returns (and logs) a message when something is wrong."""

    def __init__(self, thresholds: HealthThresholds | None = None) -> None:
        self.thresholds = thresholds or HealthThresholds()
        self.low_usage_streak = 0
        self.collapse_warnings = 0
        self.nonfinite_count = 0
        self.lowest_loss_ratio = math.inf  # lowest contrastive loss seen, as a fraction of chance
        self.chance_streak = 0

    @property
    def has_learned(self) -> bool:
        """The contrastive loss has once fallen to ``learned_loss_ratio`` of chance."""
        return self.lowest_loss_ratio <= self.thresholds.learned_loss_ratio

    def reset(self) -> None:
        self.__init__(self.thresholds)  # type: ignore[misc]  # reason: re-running __init__ resets every counter in one place

    def observe_loss(self, loss: float, terms: dict[str, float] | None = None) -> str | None:
        """Warn when ``loss`` is NaN or infinite; ``terms`` (name -> value) say which part."""
        if math.isfinite(loss):
            return None
        self.nonfinite_count += 1
        if not _is_power_of_ten(self.nonfinite_count):
            return None
        bad = [name for name, value in (terms or {}).items() if not math.isfinite(value)]
        which = f" (non-finite terms: {', '.join(bad)})" if bad else ""
        msg = (
            f"TRAINING HEALTH: the loss is {loss}{which}, seen {self.nonfinite_count} time(s) so far. "
            f"Likely fixes: lower optimization.lr or lengthen lr_scheduler.warmup_updates; "
            f"with fp16, fairseq skips such steps while it lowers the loss scale, but if it keeps "
            f"happening try common.fp16=false or a smaller model.feature_grad_mult; check the audio "
            f"for silent, clipped or NaN samples (task.normalize=true helps with very quiet or loud recordings)."
        )
        logger.warning(msg)
        return msg

    def observe_codebook(self, code_perplexity: float, num_vars: float, frames: float) -> str | None:
        """Warn when the codebook usage stays below ``min_code_usage`` for ``patience`` updates.

        ``num_vars`` is G*V (all entries of all groups); ``frames`` is how many quantized
        steps the perplexity was measured on: with fewer steps than entries a low perplexity
        says nothing, so such batches are not counted either way.
        """
        if num_vars <= 0 or frames < num_vars or not math.isfinite(code_perplexity):
            return None
        usage = code_perplexity / num_vars
        if usage >= self.thresholds.min_code_usage:
            self.low_usage_streak = 0
            return None
        self.low_usage_streak += 1
        if not _due(self.low_usage_streak, self.thresholds.patience):
            return None
        self.collapse_warnings += 1
        msg = (
            f"TRAINING HEALTH: codebook collapse: code perplexity {code_perplexity:.1f} of "
            f"{int(num_vars)} codebook entries ({100 * usage:.1f}% used) for "
            f"{self.low_usage_streak} updates in a row; the quantizer uses a handful of codes, so "
            f"contrastive accuracy is meaningless. Likely fixes: raise the diversity loss weight "
            f"(criterion.loss_weights[0], e.g. 0.1 -> 0.5), lower optimization.lr or lengthen the "
            f"warm-up, keep the Gumbel temperature high for longer (model.latent_temp), use more "
            f"(and more varied) audio, and check that the audio is not mostly silence."
        )
        logger.warning(msg)
        return msg

    def observe_contrastive(self, loss_per_step: float, candidates: float) -> str | None:
        """Warn when the contrastive loss, once clearly below chance, is back at it for ``chance_patience`` updates.

        ``loss_per_step`` is the InfoNCE term alone in nats per masked step, ``candidates`` the
        K+1 candidates each step scores; chance is ln(K+1). Until the loss has once fallen to
        ``learned_loss_ratio`` of chance (the first updates of every run sit at chance) nothing
        is counted.
        """
        if candidates < 2 or not math.isfinite(loss_per_step):
            return None
        ratio = loss_per_step / math.log(candidates)
        self.lowest_loss_ratio = min(self.lowest_loss_ratio, ratio)
        if not self.has_learned or ratio < self.thresholds.chance_loss_ratio:
            self.chance_streak = 0
            return None
        self.chance_streak += 1
        if not _due(self.chance_streak, self.thresholds.chance_patience):
            return None
        msg = (
            f"TRAINING HEALTH: context collapse: the contrastive loss is back at chance level "
            f"({loss_per_step:.3f} nats per masked step, ln({candidates:.0f}) = {math.log(candidates):.3f}: every "
            f"candidate scored alike) for {self.chance_streak} updates in a row, after it had fallen to "
            f"{100 * self.lowest_loss_ratio:.1f}% of it; accuracy is at chance and the runs seen so far did not "
            f"recover. Likely fixes: restart from a checkpoint saved before the collapse (or from scratch) with a "
            f"lower optimization.lr (e.g. half) or a longer lr_scheduler.warmup_updates, and keep "
            f"optimization.clip_norm on."
        )
        logger.warning(msg)
        return msg


# One monitor per process; the criterion's static reduce_metrics reports to it.
MONITOR = TrainingHealth()
