"""Criterion ``w2v2_ctc``: CTC loss with Viterbi UER/WER on validation batches.

Config field names and meanings are fairseq's ``CtcCriterionConfig``. Differences:

* a non-finite loss (NaN/inf: fp16 overflow, a diverging learning rate, ...) does not
  poison the model: the batch contributes a zero loss with zero gradient, is counted in
  the log (``nonfinite``), and training goes on; ``max_consecutive_nonfinite`` such
  batches in a row stop training with a message saying what to check;
* every logged statistic is a raw count, so logs sum across workers
  (``logging_outputs_can_be_summed`` is True) and UER/WER are exact corpus-level rates;
* in-training LM decoding (``wer_kenlm_model``) is refused with a pointer to ``w2v2-infer``,
  rather than failing on fairseq's missing ``examples`` package.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import editdistance
import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.data.data_utils import post_process
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from fairseq.logging.meters import safe_round
from omegaconf import II

from w2v2_common.errors import W2v2Error

from ..decoding.metrics import ErrorCounts


class NonFiniteLossError(W2v2Error, FloatingPointError):
    """Too many consecutive non-finite losses; the message says what to check."""


@dataclass
class W2v2CtcCriterionConfig(FairseqDataclass):
    zero_infinity: bool = field(
        default=False, metadata={"help": "zero inf loss when source length <= target length"})
    sentence_avg: bool = II("optimization.sentence_avg")
    post_process: str = field(
        default="letter",
        metadata={"help": "how to post process predictions into words. can be letter, "
                          "wordpiece, BPE symbols, etc. "
                          "See fairseq.data.data_utils.post_process() for full list of options"})
    wer_kenlm_model: Optional[str] = field(  # noqa: UP045  # reason: fairseq parses only Optional[...] into CLI flags
        default=None,
        metadata={"help": "not supported during training (decode with w2v2-infer instead)"})
    wer_lexicon: Optional[str] = field(  # noqa: UP045  # reason: fairseq parses only Optional[...] into CLI flags
        default=None, metadata={"help": "lexicon to use with wer_kenlm_model"})
    wer_lm_weight: float = field(
        default=2.0, metadata={"help": "lm weight to use with wer_kenlm_model"})
    wer_word_score: float = field(
        default=-1.0, metadata={"help": "lm word score to use with wer_kenlm_model"})
    wer_sil_weight: float = field(
        default=0, metadata={"help": "lm silence weight to use with wer_kenlm_model"})
    wer_args: Optional[str] = field(  # noqa: UP045  # reason: fairseq parses only Optional[...] into CLI flags
        default=None,
        metadata={"help": "DEPRECATED: tuple of (wer_kenlm_model, wer_lexicon, wer_lm_weight, "
                          "wer_word_score)"})
    # Plugin addition.
    max_consecutive_nonfinite: int = field(
        default=20,
        metadata={"help": "stop training after this many training batches in a row had a NaN/inf "
                          "loss (each is skipped: zero loss, zero gradient); 0 = never stop"})


@register_criterion("w2v2_ctc", dataclass=W2v2CtcCriterionConfig)
class W2v2CtcCriterion(FairseqCriterion):
    def __init__(self, cfg: W2v2CtcCriterionConfig, task: Any) -> None:
        super().__init__(task)
        if cfg.wer_args is not None or (cfg.wer_kenlm_model or ""):
            raise ValueError(
                "criterion.wer_kenlm_model/wer_args: LM decoding during training is not supported "
                "by w2v2_ctc (validation WER is Viterbi); decode checkpoints with w2v2-infer")
        if getattr(getattr(task, "cfg", None), "sentencepiece_model", None) and \
                cfg.post_process != "sentencepiece":
            raise ValueError(
                f"criterion.post_process={cfg.post_process} but task.sentencepiece_model is set: "
                f"set criterion.post_process=sentencepiece so that WER is computed on words")
        dictionary = task.target_dictionary
        self.blank_idx = (dictionary.index(task.blank_symbol)
                          if hasattr(task, "blank_symbol") else 0)
        self.pad_idx = dictionary.pad()
        self.eos_idx = dictionary.eos()
        self.post_process = cfg.post_process
        self.zero_infinity = cfg.zero_infinity
        self.sentence_avg = cfg.sentence_avg
        self.max_consecutive_nonfinite = cfg.max_consecutive_nonfinite
        self.consecutive_nonfinite = 0

    # ------------------------------------------------------------------- forward

    def forward(self, model, sample: dict[str, Any], reduce: bool = True
                ) -> tuple[torch.Tensor, int, dict[str, Any]]:
        net_output = model(**sample["net_input"])
        lprobs = model.get_normalized_probs(net_output, log_probs=True).contiguous()  # (T, B, V)

        if net_output.get("padding_mask") is not None:
            input_lengths = (~net_output["padding_mask"]).long().sum(-1)  # (B,)
        else:
            input_lengths = lprobs.new_full((lprobs.size(1),), lprobs.size(0), dtype=torch.long)

        target = sample["target"]  # (B, S) padded
        pad_mask = (target != self.pad_idx) & (target != self.eos_idx)
        targets_flat = target.masked_select(pad_mask)
        target_lengths = sample.get("target_lengths", pad_mask.sum(-1))

        with torch.backends.cudnn.flags(enabled=False):
            loss = F.ctc_loss(lprobs, targets_flat, input_lengths, target_lengths,
                              blank=self.blank_idx, reduction="sum",
                              zero_infinity=self.zero_infinity)

        ntokens = sample["ntokens"] if "ntokens" in sample else int(target_lengths.sum().item())
        nsentences = int(sample["id"].numel())
        sample_size = nsentences if self.sentence_avg else ntokens

        nonfinite = not bool(torch.isfinite(loss).item())
        if nonfinite:
            loss, sample_size, ntokens = self._skip(model), 0, 0
        elif model.training:
            self.consecutive_nonfinite = 0

        logging_output: dict[str, Any] = {
            "loss": utils.item(loss.data),
            "ntokens": ntokens,
            "nsentences": nsentences,
            "sample_size": sample_size,
            "nonfinite": int(nonfinite),
        }
        if not model.training:
            counts = self.viterbi_errors(lprobs, target, input_lengths)
            # ErrorCounts' "chars" are this criterion's units (letters or pieces, as fairseq counts c_errors)
            logging_output.update(c_errors=counts.char_errors, c_total=counts.chars,
                                  w_errors=counts.word_errors, wv_errors=counts.word_errors,
                                  w_total=counts.words)
        return loss, sample_size, logging_output

    def _skip(self, model) -> torch.Tensor:
        """A zero loss whose gradient is exactly zero for every trainable parameter.

        It is built from the parameters (not a detached constant) so that backward still
        reaches every parameter: distributed data parallel expects that on every worker.
        """
        if model.training:
            self.consecutive_nonfinite += 1
            limit = self.max_consecutive_nonfinite
            if limit > 0 and self.consecutive_nonfinite >= limit:
                raise NonFiniteLossError(
                    f"w2v2_ctc: {self.consecutive_nonfinite} training batches in a row had a "
                    f"NaN/inf CTC loss (each was skipped); check the learning rate (lower "
                    f"optimization.lr or lengthen warm-up), fp16 overflow (common.fp16=false or "
                    f"a lower common.fp16_init_scale), transcripts longer than the audio's frames "
                    f"(set criterion.zero_infinity=true), and the input audio for NaNs/silence")
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            return torch.zeros(())
        # (0 * sum) has gradient 0 even where a parameter is huge; nan_to_num keeps the
        # logged value 0 if a parameter is already non-finite.
        return torch.nan_to_num(sum(p.sum() for p in params) * 0.0, nan=0.0, posinf=0.0,
                                neginf=0.0)

    @torch.no_grad()
    def viterbi_errors(self, lprobs: torch.Tensor, target: torch.Tensor,
                       input_lengths: torch.Tensor) -> ErrorCounts:
        """Best-path decode each utterance and count unit and word edit distances (the unit
        counts go in ``char_errors``/``chars``)."""
        counts = ErrorCounts(0, 0, 0, 0)
        dictionary = self.task.target_dictionary
        lprobs_bt = lprobs.transpose(0, 1).float().cpu()  # (B, T, V)
        for lp, t, length in zip(lprobs_bt, target.cpu(), input_lengths.cpu(), strict=False):
            toks = lp[: int(length)].argmax(dim=-1).unique_consecutive()
            pred_units = toks[toks != self.blank_idx].tolist()
            ref = t[(t != self.pad_idx) & (t != self.eos_idx)]
            ref_units = ref.tolist()
            ref_words = post_process(dictionary.string(ref), self.post_process).split()
            pred_words = post_process(dictionary.string(pred_units), self.post_process).split()
            counts += ErrorCounts(word_errors=editdistance.eval(pred_words, ref_words), words=len(ref_words),
                                  char_errors=editdistance.eval(pred_units, ref_units), chars=len(ref_units))
        return counts

    # ------------------------------------------------------------------- logging

    @staticmethod
    def reduce_metrics(logging_outputs: list[dict[str, Any]]) -> None:
        def total(key: str) -> float:
            return utils.item(sum(log.get(key, 0) for log in logging_outputs))

        loss_sum, ntokens = total("loss"), total("ntokens")
        nsentences, sample_size = total("nsentences"), total("sample_size")
        if sample_size > 0:
            metrics.log_scalar("loss", loss_sum / sample_size / math.log(2), sample_size, round=3)
            if sample_size != ntokens and ntokens > 0:
                metrics.log_scalar("nll_loss", loss_sum / ntokens / math.log(2), ntokens, round=3)
        metrics.log_scalar("ntokens", ntokens)
        metrics.log_scalar("nsentences", nsentences)
        # a plain sum over the epoch / validation run: how many batches were skipped
        metrics.log_scalar_sum("nonfinite", total("nonfinite"))

        for key in ("c_errors", "c_total", "w_errors", "wv_errors", "w_total"):
            metrics.log_scalar(f"_{key}", total(key))
        if total("c_total") > 0:
            metrics.log_derived("uer", lambda m: safe_round(
                m["_c_errors"].sum * 100.0 / m["_c_total"].sum, 3)
                if m["_c_total"].sum > 0 else float("nan"))
        if total("w_total") > 0:
            metrics.log_derived("wer", lambda m: safe_round(
                m["_w_errors"].sum * 100.0 / m["_w_total"].sum, 3)
                if m["_w_total"].sum > 0 else float("nan"))
            metrics.log_derived("raw_wer", lambda m: safe_round(
                m["_wv_errors"].sum * 100.0 / m["_w_total"].sum, 3)
                if m["_w_total"].sum > 0 else float("nan"))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
