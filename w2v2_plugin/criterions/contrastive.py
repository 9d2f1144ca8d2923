"""Criterion ``w2v2_contrastive``: wav2vec 2.0's contrastive (InfoNCE) loss plus extra losses.

Numerically the same as fairseq's ``wav2vec`` criterion (``Wav2vecCriterion``) for the
same model output: cross-entropy over the K+1 candidates of every masked step (the true
quantized target is candidate 0), plus ``loss_weights[i] * extra_loss[i] * sample_size``
for the model's extra losses (diversity, feature penalty). What differs is how the
statistics travel: every logging output is a plain number that can be *summed* across
workers and gradient-accumulation steps (``logging_outputs_can_be_summed() -> True``);
averages such as the code perplexity are rebuilt in ``reduce_metrics`` from a sum and a
count. fairseq's version gathers Python lists instead, which needs CUDA under
multi-process training and is slower on GPUs.
"""

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional, cast  # noqa: UP035  # reason: see W2v2ContrastiveConfig

import torch
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from fairseq.logging.meters import safe_round

from w2v2_common.errors import W2v2Error

from ..distributed import is_main_process
from ..health import MONITOR
from ..models.contrastive import compute_contrastive_loss

# Internal logging keys: summed like the others, turned into averages / health checks in
# reduce_metrics, never logged themselves.
_FORWARDS = "_forwards"  # number of forward passes summed into this logging output
_CODE_PPL = "_code_perplexity"
_NUM_VARS = "_num_vars"
_CONTRASTIVE = "_contrastive"  # the InfoNCE term alone, nats summed over masked steps
_CANDIDATES = "_candidates"  # K+1, the candidates each masked step scores
_BUILTIN = {"loss", "ntokens", "nsentences", "sample_size", "correct", "count"}
# fairseq's criterion can log raw logits/targets (for audio classification metrics): arrays
# cannot be summed across workers, and wav2vec 2.0 pretraining does not use them.
_UNSUMMABLE_LOG_KEYS = {"logits", "target"}


class InfoNCERequiredError(W2v2Error, ValueError):
    """``criterion.infonce=false``: the model's logits are only meant for InfoNCE."""


@dataclass
class W2v2ContrastiveConfig(FairseqDataclass):
    infonce: bool = field(
        default=False,
        metadata={"help": "must be true: the InfoNCE cross-entropy over the K+1 candidates (wav2vec 2.0's "
                          "loss); fairseq's binary cross-entropy alternative is not offered"},
    )
    # typing.List (not list[...]): fairseq's argparse bridge only parses typing generics
    loss_weights: Optional[List[float]] = field(  # noqa: UP006, UP045  # reason: typing generics, as above
        default=None, metadata={"help": "weights for additional loss terms (not first one)"}
    )
    log_keys: List[str] = field(  # noqa: UP006  # reason: typing generics, as above
        default_factory=lambda: [], metadata={"help": "output keys to log"})


def _as_float(value: Any) -> float:
    return float(value.detach()) if torch.is_tensor(value) else float(value)


@torch.no_grad()
def _accuracy_counts(logits: torch.Tensor) -> tuple[int, float]:
    """(correct, count) of the masked steps whose true target (candidate 0) scores highest."""
    if logits.numel() == 0:
        return 0, 0.0
    is_max = logits.argmax(-1) == 0
    is_min = logits.argmin(-1) == 0
    # all candidates equal (argmax == argmin == 0) is not a correct prediction
    both = is_max & is_min
    # .item() of an int64 sum is an int
    return cast(int, is_max.long().sum().item() - both.long().sum().item()), float(is_max.numel())


@register_criterion("w2v2_contrastive", dataclass=W2v2ContrastiveConfig)
class W2v2ContrastiveCriterion(FairseqCriterion):
    def __init__(
        self,
        task: Any,
        infonce: bool = False,
        loss_weights: list[float] | None = None,
        log_keys: list[str] | None = None,
    ) -> None:
        super().__init__(task)
        if not infonce:
            # The model's targets are one candidate index per step (get_targets), not the 0/1
            # label per candidate binary cross-entropy needs, and its -inf logits (distractors
            # equal to the target) make that loss NaN.
            raise InfoNCERequiredError("criterion.infonce=false is not supported by w2v2_contrastive; set "
                                       "criterion.infonce=true, as every published wav2vec 2.0 config does")
        self.infonce = infonce
        self.loss_weights = None if loss_weights is None else [float(w) for w in loss_weights]
        self.log_keys = [] if log_keys is None else list(log_keys)
        bad = sorted(set(self.log_keys) & _UNSUMMABLE_LOG_KEYS)
        if bad:
            raise ValueError(
                f"criterion.log_keys {bad} are not supported by w2v2_contrastive (arrays cannot be "
                f"summed across workers); remove them from log_keys"
            )

    def forward(self, model: Any, sample: dict[str, Any], reduce: bool = True):
        """Returns (loss, sample_size, logging_output); loss is summed over masked steps."""
        net_output = model(**sample["net_input"])
        logits = model.get_logits(net_output).float()  # (masked steps, K+1)
        target = model.get_targets(sample, net_output)  # (masked steps,): index 0 is the positive
        loss = compute_contrastive_loss(logits, target, reduction="sum" if reduce else "none")

        if "sample_size" in sample:
            sample_size = sample["sample_size"]
        elif "mask_indices" in sample["net_input"]:
            sample_size = sample["net_input"]["mask_indices"].sum()
        else:
            sample_size = target.numel()

        losses = [loss.detach().clone()]
        if self.loss_weights is not None:
            if not hasattr(model, "get_extra_losses"):
                raise ValueError("criterion.loss_weights is set but the model has no get_extra_losses()")
            extra_losses = model.get_extra_losses(net_output)
            if torch.is_tensor(extra_losses):
                extra_losses = [extra_losses]
            coefs = self.loss_weights
            if len(coefs) == 1 and len(extra_losses) != 1:
                coefs = coefs * len(extra_losses)  # one weight for all terms, as fairseq allows
            if len(extra_losses) != len(coefs):
                raise ValueError(
                    f"criterion.loss_weights has {len(coefs)} weight(s) but the model returns "
                    f"{len(extra_losses)} extra loss(es) (diversity, feature penalty); give one weight each"
                )
            for extra, coef in zip(extra_losses, coefs, strict=True):
                if coef != 0 and extra is not None:
                    # scaled by sample_size because the main loss is a sum over masked steps
                    term = coef * extra.float() * sample_size
                    loss = loss + term
                    losses.append(term)

        logging_output: dict[str, Any] = {
            "loss": loss.item() if reduce else loss.detach(),
            "ntokens": sample_size,
            "nsentences": sample["id"].numel(),
            "sample_size": sample_size,
            _FORWARDS: 1,
        }
        for key in self.log_keys:
            if key in net_output:
                logging_output[key] = _as_float(net_output[key])
        if "code_perplexity" in net_output and "num_vars" in net_output:
            logging_output[_CODE_PPL] = _as_float(net_output["code_perplexity"])
            logging_output[_NUM_VARS] = _as_float(net_output["num_vars"])
        # each term read to the host once (one sync each); the InfoNCE term first
        values = [term.item() for term in losses] if reduce else None
        if len(losses) > 1:
            for i, term in enumerate(losses):
                logging_output[f"loss_{i}"] = values[i] if values is not None else term.detach()

        logging_output["correct"], logging_output["count"] = _accuracy_counts(logits)

        if values is not None:
            logging_output[_CONTRASTIVE] = values[0]
            logging_output[_CANDIDATES] = float(logits.size(-1))
            terms = {f"loss_{i}": v for i, v in enumerate(values)} if len(values) > 1 else None
            MONITOR.observe_loss(float(logging_output["loss"]), terms)
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs: list[dict[str, Any]]) -> None:
        """Aggregate logging outputs: a list of per-forward dicts or one already-summed dict."""
        def total(key: str) -> float:
            return utils.item(sum(log.get(key, 0) for log in logging_outputs))

        loss_sum = total("loss")
        ntokens = total("ntokens")
        nsentences = total("nsentences")
        sample_size = total("sample_size")
        # old-style outputs without the counter (e.g. unsummed lists) count one each
        forwards = total(_FORWARDS) if any(_FORWARDS in log for log in logging_outputs) else len(logging_outputs)

        metrics.log_scalar("loss", loss_sum / (sample_size or 1) / math.log(2), sample_size, round=3)
        metrics.log_scalar("ntokens", ntokens)
        metrics.log_scalar("nsentences", nsentences)

        correct = total("correct")
        metrics.log_scalar("_correct", correct)
        count = total("count")
        metrics.log_scalar("_total", count)
        if count > 0:
            metrics.log_derived(
                "accuracy",
                lambda meters: safe_round(meters["_correct"].sum / meters["_total"].sum, 5)
                if meters["_total"].sum > 0
                else float("nan"),
            )

        keys: list[str] = []
        for log in logging_outputs:
            keys.extend(k for k in log if k not in keys)
        for key in keys:
            if key in _BUILTIN or key.startswith("_"):
                continue
            value = total(key)
            if key.startswith("loss"):
                metrics.log_scalar(key, value / (sample_size or 1) / math.log(2), sample_size, round=3)
            else:
                metrics.log_scalar(key, value / (forwards or 1), round=3)

        # non-finite losses are reported by forward() on the rank that saw them
        if forwards and is_main_process():
            if any(_CODE_PPL in log for log in logging_outputs):
                MONITOR.observe_codebook(
                    code_perplexity=total(_CODE_PPL) / forwards,
                    num_vars=total(_NUM_VARS) / forwards,
                    frames=sample_size / forwards,
                )
            if sample_size > 0 and any(_CONTRASTIVE in log for log in logging_outputs):
                MONITOR.observe_contrastive(
                    loss_per_step=total(_CONTRASTIVE) / sample_size,
                    candidates=total(_CANDIDATES) / forwards,
                )

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        """All logging outputs are numbers whose sums reduce_metrics understands."""
        return True
