"""Task ``w2v2_pretraining``: self-supervised wav2vec 2.0 pretraining on raw audio.

The config keeps the field names, defaults and meanings of fairseq 0.12's
``AudioPretrainingConfig`` (the union of 0.12.2 and 0.12.3), so a fairseq wav2vec 2.0 yaml
runs after changing ``task._name``. Fields that only serve fairseq's data2vec or TPU code
paths are accepted and rejected with a clear message when set, never silently ignored.

Subclassing (the fine-tuning task does): override :meth:`W2v2PretrainingTask.wrap_dataset`
to add targets to the audio dataset of a split; :meth:`build_audio_dataset` and
:meth:`manifest_path` are the other hooks. ``load_dataset`` calls them in that order and
then applies ``subsample``.
"""

import logging
import os
import shlex
import shutil
import subprocess
import sys
from argparse import Namespace
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from fairseq.data import FairseqDataset, SubsampleDataset
from fairseq.data.text_compressor import TextCompressionLevel
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from ..config_access import config_value
from ..data.raw_audio import FileAudioDataset
from ..precision import PrecisionError, check_precision, prepare_step, step_autocast

logger = logging.getLogger(__name__)


@dataclass
class InferredW2vConfig:
    """fairseq 0.12.2's masking arguments for pre-computing masks in the data loader (TPU)."""

    mask_length: Optional[int] = II("model.mask_length")
    mask_prob: Optional[float] = II("model.mask_prob")
    mask_selection: Optional[str] = II("model.mask_selection")
    mask_other: Optional[float] = II("model.mask_other")
    no_mask_overlap: Optional[bool] = II("model.no_mask_overlap")
    mask_min_space: Optional[int] = II("model.mask_min_space")
    mask_channel_length: Optional[int] = II("model.mask_channel_length")
    mask_channel_prob: Optional[float] = II("model.mask_channel_prob")
    mask_channel_selection: Optional[str] = II("model.mask_channel_selection")
    mask_channel_other: Optional[float] = II("model.mask_channel_other")
    no_mask_channel_overlap: Optional[bool] = II("model.no_mask_channel_overlap")
    mask_channel_min_space: Optional[int] = II("model.mask_channel_min_space")
    conv_feature_layers: Optional[str] = II("model.conv_feature_layers")
    encoder_embed_dim: Optional[int] = II("model.encoder_embed_dim")


@dataclass
class W2v2PretrainingConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "path to data directory (holds SPLIT.tsv manifests)"})
    labels: Optional[str] = field(
        default=None, metadata={"help": "extension of the label file to load, used for fine-tuning"}
    )
    multi_corpus_keys: Optional[str] = field(
        default=None,
        metadata={"help": "fairseq data2vec only: comma separated names for loading multi corpus datasets "
                          "(not supported by wav2vec 2.0; must stay unset)"},
    )
    multi_corpus_sampling_weights: Optional[str] = field(
        default=None, metadata={"help": "fairseq data2vec only: sampling weights for multi_corpus_keys"}
    )
    binarized_dataset: bool = field(
        default=False,
        metadata={"help": "fairseq's binarized manifests (not supported: use .tsv manifests; must stay false)"},
    )
    sample_rate: int = field(
        default=16_000,
        metadata={"help": "target sample rate; every audio file must have it (checked when the data is loaded)"},
    )
    normalize: bool = field(
        default=False, metadata={"help": "if set, normalizes input to have 0 mean and unit variance"}
    )
    enable_padding: bool = field(default=False, metadata={"help": "pad shorter samples instead of cropping"})
    max_sample_size: Optional[int] = field(
        default=None, metadata={"help": "max sample size to crop to for batching"}
    )
    min_sample_size: Optional[int] = field(
        default=None, metadata={"help": "min sample size to skip small examples (the count is logged)"}
    )
    num_batch_buckets: int = field(default=0, metadata={"help": "number of buckets"})
    precompute_mask_indices: bool = field(
        default=False,
        metadata={"help": "fairseq 0.12.2: compute mask indices in data preparation (TPU path; "
                          "not supported: masks are computed by the model; must stay false)"},
    )
    inferred_w2v_config: Optional[InferredW2vConfig] = field(
        default=None,
        metadata={"help": "wav2vec 2.0 masking arguments used to pre-compute masks (fairseq TPU path)"},
    )
    tpu: bool = II("common.tpu")
    text_compression_level: ChoiceEnum([x.name for x in TextCompressionLevel]) = field(  # type: ignore[valid-type]  # reason: fairseq's ChoiceEnum is a runtime-made Enum
        default="none",
        metadata={"help": "compression level for texts (e.g. audio filenames, target texts): "
                          "none/low/high (default: none). "},
    )
    rebuild_batches: bool = field(default=True, metadata={"help": "rebuild the batches every epoch"})
    precompute_mask_config: Optional[Any] = field(
        default=None, metadata={"help": "fairseq data2vec only (not supported; must stay unset)"}
    )
    post_save_script: Optional[str] = field(
        default=None,
        metadata={"help": "after each checkpoint save, copy it to checkpoint_eval_{num_updates}.pt "
                          "and run this command with that path as its last argument"},
    )
    subsample: float = field(default=1, metadata={"help": "use this fraction of each split (random, seeded)"})
    seed: int = II("common.seed")
    # Added by the plugin (not in fairseq):
    check_audio: bool = field(
        default=True,
        metadata={"help": "read every audio file's header when a split is loaded, so that a missing or "
                          "unreadable file or a wrong sample rate stops the run before training"},
    )
    check_audio_threads: int = field(
        default=0, metadata={"help": "threads for the audio header check (0: 4 per core, at most 32)"}
    )
    precision: str = field(
        default="fp32",
        metadata={"help": "fp32, or bf16: the forward pass of every train and valid step under "
                          "torch.autocast(bfloat16) on CPU or GPU, with fp32 weights, gradients and "
                          "optimizer state, and the sensitive parts (first conv block, norms, "
                          "quantizer, logits, losses) in fp32. Not fairseq's common.bf16, which casts "
                          "the weights; leave that and common.fp16 off with it"},
    )


@register_task("w2v2_pretraining", dataclass=W2v2PretrainingConfig)
class W2v2PretrainingTask(FairseqTask):
    """Raw-audio pretraining: one ``FileAudioDataset`` per split, read from ``{data}/{split}.tsv``."""

    cfg: W2v2PretrainingConfig

    @classmethod
    def setup_task(cls, cfg: W2v2PretrainingConfig, **kwargs: Any) -> "W2v2PretrainingTask":
        cls.check_unsupported(cfg)
        check_precision(str(config_value(cfg, "precision", "fp32")))
        return cls(cfg)

    @staticmethod
    def check_unsupported(cfg: Any) -> None:
        """Refuse fairseq options that only data2vec / TPU code paths implement."""
        problems = []
        if config_value(cfg, "binarized_dataset", False):
            problems.append("task.binarized_dataset=true (use .tsv manifests, e.g. from `w2v2-manifest`)")
        if config_value(cfg, "multi_corpus_keys") is not None:
            problems.append("task.multi_corpus_keys (a data2vec option; wav2vec 2.0 models take no corpus key)")
        if config_value(cfg, "precompute_mask_config") is not None:
            problems.append("task.precompute_mask_config (a data2vec option)")
        if config_value(cfg, "precompute_mask_indices", False) or config_value(cfg, "tpu", False):
            problems.append("task.precompute_mask_indices / common.tpu (the TPU path; masks are computed by the model)")
        if problems:
            raise ValueError("w2v2_pretraining does not support " + "; ".join(problems) + ": remove it from the config")

    # -- hooks ---------------------------------------------------------------------------
    def manifest_path(self, split: str, task_cfg: Any = None) -> str:
        return os.path.join((task_cfg or self.cfg).data, f"{split}.tsv")

    def build_audio_dataset(self, split: str, task_cfg: Any) -> FileAudioDataset:
        """The audio of one split; padding is on for labelled data or ``enable_padding``."""
        compression = getattr(TextCompressionLevel, str(config_value(task_cfg, "text_compression_level", "none")))
        return FileAudioDataset(
            manifest_path=self.manifest_path(split, task_cfg),
            sample_rate=config_value(task_cfg, "sample_rate", self.cfg.sample_rate),
            max_sample_size=self.cfg.max_sample_size,
            min_sample_size=self.cfg.min_sample_size,
            pad=config_value(task_cfg, "labels") is not None or bool(config_value(task_cfg, "enable_padding", False)),
            normalize=bool(config_value(task_cfg, "normalize", False)),
            num_buckets=self.cfg.num_batch_buckets,
            text_compression_level=compression,
            check_audio=bool(config_value(self.cfg, "check_audio", True)),
            check_threads=int(config_value(self.cfg, "check_audio_threads", 0)) or None,
        )

    def wrap_dataset(self, split: str, dataset: FileAudioDataset, task_cfg: Any) -> FairseqDataset:
        """Hook for subclasses (fine-tuning adds targets here); pretraining uses audio only."""
        return dataset

    # -- precision -----------------------------------------------------------------------
    def _precision(self) -> str:
        return str(config_value(self.cfg, "precision", "fp32"))

    def _step_autocast(self, model: Any):
        """The context of a step's forward pass under ``task.precision=bf16``."""
        precision = self._precision()
        param = next(model.parameters())
        if param.dtype != torch.float32:
            raise PrecisionError(f"task.precision={precision} needs fp32 weights, got {param.dtype}: "
                                 "turn off common.fp16 / common.bf16 / common.amp (they cast the weights)")
        return step_autocast(precision, param.device.type)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        """fairseq's train step (fp32: fairseq's own, unchanged); with ``precision=bf16`` the
        forward pass runs under autocast and the backward outside it (autocast's rule), on the
        dtypes the forward chose."""
        if self._precision() == "fp32":
            prepare_step(next(model.parameters()).device.type)
            return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)
        model.train()
        model.set_num_updates(update_num)
        with torch.autograd.profiler.record_function("forward"), self._step_autocast(model):
            loss, sample_size, logging_output = criterion(model, sample)
        if ignore_grad:
            loss *= 0
        with torch.autograd.profiler.record_function("backward"):
            optimizer.backward(loss)
        return loss, sample_size, logging_output

    def valid_step(self, sample, model, criterion):
        if self._precision() == "fp32":
            prepare_step(next(model.parameters()).device.type)
            return super().valid_step(sample, model, criterion)
        model.eval()
        with torch.no_grad(), self._step_autocast(model):
            loss, sample_size, logging_output = criterion(model, sample)
        return loss, sample_size, logging_output

    # -- fairseq API ---------------------------------------------------------------------
    def load_dataset(self, split: str, task_cfg: FairseqDataclass | None = None, **kwargs: Any) -> None:
        task_cfg = task_cfg or self.cfg
        if isinstance(task_cfg, Namespace) and not hasattr(task_cfg, "autoregressive"):
            # legacy (argparse) configs of fine-tuned checkpoints, as fairseq upgrades them
            task_cfg.autoregressive = not getattr(task_cfg, "criterion", None) == "ctc"
        self.check_unsupported(task_cfg)
        dataset = self.wrap_dataset(split, self.build_audio_dataset(split, task_cfg), task_cfg)
        subsample = float(config_value(task_cfg, "subsample", 1) or 1)
        if subsample < 1:
            dataset = SubsampleDataset(dataset, subsample, shuffle=True, seed=config_value(task_cfg, "seed", 1))
        self.datasets[split] = dataset

    def post_save(self, cp_path: str, num_updates: int) -> None:
        """fairseq's train loop calls this after saving: hand a frozen copy to an eval script."""
        script = config_value(self.cfg, "post_save_script")
        if script is None:
            return
        eval_path = os.path.join(os.path.dirname(cp_path), f"checkpoint_eval_{num_updates}.pt")
        tmp = eval_path + ".tmp"
        shutil.copyfile(cp_path, tmp)
        os.replace(tmp, eval_path)  # never leave a half-copied checkpoint for the script
        logger.info(f"launching post_save_script: {script} {eval_path}")
        subprocess.call(shlex.split(script) + [eval_path])  # noqa: S603 - the user's own configured command

    def max_positions(self) -> tuple[int, int]:
        """Long utterances are cropped, never filtered, so there is no length limit."""
        return sys.maxsize, sys.maxsize

    def build_model(self, model_cfg: FairseqDataclass, from_checkpoint: bool = False):
        model = super().build_model(model_cfg, from_checkpoint)
        # fine-tuning wrappers resolve the pretrained model's config (w2v_args) while being
        # built; store it back so that the saved checkpoint is self-contained (as fairseq)
        actual = getattr(model, "cfg", None)
        if actual is not None and hasattr(actual, "w2v_args"):
            model_cfg.w2v_args = actual.w2v_args
        return model
