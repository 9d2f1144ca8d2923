"""Task ``w2v2_finetuning``: labeled audio for CTC fine-tuning.

Same config fields and meaning as fairseq's ``audio_finetuning`` (so fairseq's published
fine-tuning yamls run after changing ``_name``), with three differences that matter to users:

* the transcripts are checked when a split is loaded (line count against the manifest,
  empty transcripts, symbols missing from the dictionary) and each problem is one
  :class:`~w2v2_plugin.data.labels.LabelError` naming the file and line;
* sentencepiece units: set ``sentencepiece_model`` and the ``{split}.{labels}`` word
  transcripts are encoded with it, the unit dictionary being derived from the model;
* the task state saved in checkpoints (the target dictionary) is plain data, so the
  checkpoints load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import logging
import os
from argparse import Namespace
from dataclasses import dataclass, field
from typing import Any, Optional

from fairseq.data import AddTargetDataset, Dictionary, FairseqDataset, encoders
from fairseq.data.text_compressor import TextCompressionLevel, TextCompressor
from fairseq.dataclass import FairseqDataclass
from fairseq.dataclass.configs import GenerationConfig
from fairseq.tasks import register_task
from fairseq.tasks.audio_finetuning import AudioFinetuningTask

from ..data.labels import (
    LabelEncoder,
    LabelError,
    SentencePieceUnits,
    dictionary_from_state,
    dictionary_to_state,
    label_len,
    load_dictionary,
    load_labels,
)
from ..interop.checkpoint_io import DICTIONARY_STATE_KEY
from .pretraining import W2v2PretrainingConfig, W2v2PretrainingTask

logger = logging.getLogger(__name__)


@dataclass
class W2v2FinetuningConfig(W2v2PretrainingConfig):
    # Field names, defaults and meanings are fairseq's AudioFinetuningConfig.
    eval_wer: bool = field(
        default=False, metadata={"help": "compute WER for Seq2Seq models (CTC models: the "
                                         "w2v2_ctc criterion always reports WER on validation)"})
    eval_wer_config: GenerationConfig = field(
        default_factory=lambda: GenerationConfig(),
        metadata={"help": "beam search config for evaluating wer during training"})
    eval_wer_tokenizer: Any = field(
        default=None, metadata={"help": "tokenizer config for evaluating wer during training"})
    eval_wer_post_process: str = field(
        default="letter",
        metadata={"help": "remove BPE tokens before scoring (can be sentencepiece, letter, and more)"})
    eval_bleu: bool = field(default=False, metadata={"help": "evaluation with BLEU scores"})
    eval_bleu_detok: Optional[str] = field(
        default=None, metadata={"help": "detokenize before computing BLEU (e.g., 'moses')"})
    eval_bleu_detok_args: str = field(
        default="{}", metadata={"help": "args for building the tokenizer, if needed"})
    eval_tokenized_bleu: bool = field(
        default=False, metadata={"help": "compute tokenized BLEU instead of sacrebleu"})
    eval_bleu_remove_bpe: Optional[str] = field(
        default=None, metadata={"help": "remove BPE before computing BLEU"})
    eval_bleu_args: str = field(
        default="{}", metadata={"help": "generation args for BLUE scoring, e.g., '{\"beam\": 4}'"})
    eval_bleu_print_samples: bool = field(
        default=False, metadata={"help": "print sample generations during validation"})
    autoregressive: bool = field(
        default=False,
        metadata={"help": "required for autoregressive decoders (like seq2seq models); "
                          "adds 'prev_output_tokens' to input and appends eos to target"})
    target_dictionary: Optional[str] = field(
        default=None, metadata={"help": "folder holding dict.{labels}.txt, if not task.data"})
    # Plugin addition.
    sentencepiece_model: Optional[str] = field(
        default=None,
        metadata={"help": "sentencepiece model: the {split}.{labels} files hold words, encoded "
                          "into units with this model; the unit dictionary is derived from it "
                          "(no dict file needed). Use criterion.post_process=sentencepiece"})


@register_task("w2v2_finetuning", dataclass=W2v2FinetuningConfig)
class W2v2FinetuningTask(W2v2PretrainingTask):
    """Audio + transcripts; targets are dictionary indices, ``<s>`` (index 0) is the blank."""

    cfg: W2v2FinetuningConfig

    def __init__(self, cfg: W2v2FinetuningConfig) -> None:
        super().__init__(cfg)
        self.blank_symbol = "<s>"
        self._spm: SentencePieceUnits | None = None
        self.state.add_factory("target_dictionary", self.load_target_dictionary)

    # ------------------------------------------------------------------ dictionary

    @property
    def spm(self) -> SentencePieceUnits | None:
        if self.cfg.sentencepiece_model and self._spm is None:
            self._spm = SentencePieceUnits(self.cfg.sentencepiece_model)
        return self._spm

    def _dictionary_source(self) -> str:
        if self.cfg.sentencepiece_model:
            return f"sentencepiece model {self.cfg.sentencepiece_model}"
        folder = self.cfg.target_dictionary or self.cfg.data
        return os.path.join(folder, f"dict.{self.cfg.labels}.txt")

    def load_target_dictionary(self) -> Dictionary | None:
        if not self.cfg.labels:
            return None
        if self.spm is not None:
            return self.spm.dictionary()
        path = self._dictionary_source()
        logger.info("target dictionary: %s", path)
        return load_dictionary(path)

    @property
    def target_dictionary(self) -> Dictionary | None:
        return self.state.target_dictionary

    def state_dict(self) -> dict[str, Any]:
        """Task state as plain data: fairseq would pickle the Dictionary object, which
        ``torch.load(weights_only=True)`` (torch >= 2.6 default) refuses."""
        out: dict[str, Any] = {}
        for key, value in super().state_dict().items():
            if isinstance(value, Dictionary):
                value = {DICTIONARY_STATE_KEY: dictionary_to_state(value)}
            out[key] = value
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        restored = {}
        for key, value in state_dict.items():
            if isinstance(value, dict) and DICTIONARY_STATE_KEY in value:
                value = dictionary_from_state(value[DICTIONARY_STATE_KEY])
            restored[key] = value
        super().load_state_dict(restored)

    # ---------------------------------------------------------------------- data

    def wrap_dataset(self, split: str, dataset: FairseqDataset, task_cfg: Any) -> FairseqDataset:
        """Adds the checked, line-aligned transcripts of ``split`` to its audio dataset."""
        labels_ext = getattr(task_cfg, "labels", None)
        if not labels_ext:
            raise LabelError("task.labels is not set: fine-tuning needs transcripts, e.g. "
                             "task.labels=ltr for {split}.ltr letter files next to {split}.tsv")
        manifest_path = self.manifest_path(split, task_cfg)
        label_path = os.path.join(os.path.dirname(manifest_path), f"{split}.{labels_ext}")
        # The audio dataset skips utterances shorter than min_sample_size and records their
        # manifest positions; the labels of exactly those entries are dropped with them.
        skipped = set(getattr(dataset, "skipped_indices", ()) or ())
        labels = load_labels(label_path, manifest_path, self.target_dictionary,
                             self._dictionary_source(), spm=self.spm,
                             num_entries=len(dataset) + len(skipped))
        lines = [line for i, line in enumerate(labels.lines) if i not in skipped]
        logger.info("%s: %d utterances with %s labels (%d units)", split, len(lines),
                    labels_ext, sum(label_len(x) for x in lines))
        # fairseq's AddTargetDataset stores labels through a TextCompressor (bytes)
        level = getattr(TextCompressionLevel, str(getattr(task_cfg, "text_compression_level", "none")))
        compressor = TextCompressor(level=level)
        dictionary = self.target_dictionary
        if dictionary is None:  # load_target_dictionary makes one whenever labels are set
            raise AssertionError("fine-tuning with labels has a target dictionary")
        return AddTargetDataset(
            dataset,
            [compressor.compress(line) for line in lines],
            pad=dictionary.pad(),
            eos=dictionary.eos(),
            batch_targets=True,
            process_label=LabelEncoder(self.target_dictionary),
            label_len_fn=label_len,
            add_to_input=bool(getattr(task_cfg, "autoregressive", False)),
            text_compression_level=level,
        )

    def get_batch_iterator(self, dataset, max_tokens=None, *args: Any, **kwargs: Any):
        """fairseq's, after checking that every utterance fits in a batch.

        Fine-tuning never crops audio (the transcript could not be cropped with it), so an
        utterance longer than ``dataset.max_tokens`` (``max_tokens_valid``) samples cannot be
        batched; fairseq would stop with a bare assertion in its batching code, even with
        ``skip_invalid_size_inputs_valid_test`` (which only filters by max_positions).
        """
        if max_tokens:
            check_fits(dataset, int(max_tokens))
        return super().get_batch_iterator(dataset, max_tokens, *args, **kwargs)

    # ------------------------------------------------ seq2seq evaluation (fairseq's)
    # Only used with autoregressive (seq2seq) models; CTC models get WER from the
    # w2v2_ctc criterion. fairseq's implementations only touch attributes this task also
    # has, so they are reused rather than rewritten.

    def build_model(self, model_cfg: FairseqDataclass, from_checkpoint: bool = False):
        model = super().build_model(model_cfg, from_checkpoint)
        if self.cfg.autoregressive and (self.cfg.eval_wer or self.cfg.eval_bleu):
            if self.cfg.eval_bleu:
                detok_args = json.loads(self.cfg.eval_bleu_detok_args)
                self.tokenizer = encoders.build_tokenizer(
                    Namespace(tokenizer=self.cfg.eval_bleu_detok, **detok_args))
                gen_args = Namespace(**json.loads(self.cfg.eval_bleu_args))
                self.sequence_generator = self.build_generator([model], gen_args)
            else:
                self.sequence_generator = self.build_generator([model], self.cfg.eval_wer_config)
                self.tokenizer = (encoders.build_tokenizer(self.cfg.eval_wer_tokenizer)
                                  if self.cfg.eval_wer_tokenizer else None)
        return model

    def valid_step(self, sample, model, criterion):
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        if self.cfg.eval_wer and self.cfg.autoregressive:
            m = AudioFinetuningTask._inference_with_wer(self, self.sequence_generator, sample, model)
            logging_output["_num_char_errors"] = m["num_char_errors"]
            logging_output["_num_chars"] = m["num_chars"]
            logging_output["_num_word_errors"] = m["num_word_errors"]
            logging_output["_num_words"] = m["num_words"]
        return loss, sample_size, logging_output

    def reduce_metrics(self, logging_outputs, criterion) -> None:
        super().reduce_metrics(logging_outputs, criterion)
        if self.cfg.eval_wer and self.cfg.autoregressive:
            from fairseq.logging import metrics

            errs = sum(log.get("_num_word_errors", 0) for log in logging_outputs)
            words = sum(log.get("_num_words", 0) for log in logging_outputs)
            metrics.log_scalar("_num_word_errors", errs)
            metrics.log_scalar("_num_words", words)
            if words > 0:
                metrics.log_derived(
                    "wer", lambda m: m["_num_word_errors"].sum * 100.0 / m["_num_words"].sum
                    if m["_num_words"].sum > 0 else float("nan"))


def check_fits(dataset: FairseqDataset, max_tokens: int) -> None:
    """Raise if an utterance is longer than ``max_tokens`` samples (names the manifest line)."""
    audio = getattr(dataset, "dataset", dataset)
    sizes = getattr(audio, "sizes", None)
    if sizes is None or len(sizes) == 0:
        return
    too_long = (sizes > max_tokens).nonzero()[0]
    if len(too_long):
        first = int(too_long[0])
        where = audio.where(first) if hasattr(audio, "where") else f"utterance {first}"
        raise LabelError(
            f"{where}: {len(too_long)} utterances are longer than dataset.max_tokens={max_tokens} "
            f"samples (longest {int(sizes.max())}); fine-tuning does not crop audio, so raise "
            f"dataset.max_tokens to at least {int(sizes.max())} or remove those utterances "
            f"from the manifest and label file")

