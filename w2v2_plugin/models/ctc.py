"""Model ``w2v2_ctc``: a pretrained wav2vec 2.0 context network + a fresh linear CTC head.

Config field names and meanings are fairseq's ``Wav2Vec2AsrConfig`` / ``Wav2Vec2CtcConfig``,
so fairseq's published fine-tuning yamls run after changing ``_name``. The module layout
mirrors fairseq's ``Wav2VecCtc`` (``w2v_encoder.w2v_model`` / ``w2v_encoder.proj``) and so do
``forward`` and ``get_normalized_probs``: fairseq-style inference code works unchanged.

``w2v_path`` may name a plugin ``w2v2`` checkpoint or a fairseq 0.12 ``wav2vec2`` checkpoint
(hydra ``cfg`` or legacy ``args`` layout, as published); it is opened by
:func:`w2v2_plugin.interop.pretrained.read_pretrained`. The pretrained model's config is stored
in ``w2v_args`` (plain data) when the model is first built, so a fine-tuned checkpoint is
self-contained: loading it never opens ``w2v_path`` again.
"""
from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Optional

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import BaseFairseqModel, FairseqEncoder, register_model
from omegaconf import II, MISSING

from ..config_access import config_value
from ..interop.pretrained import Pretrained, PretrainedModelError, plain_w2v_args, read_pretrained
from ..precision import fp32_region
from .config import W2v2Config
from .dropout import make_dropout
from .feature_cache import FrozenFeatureCache
from .wav2vec2 import W2v2Model

logger = logging.getLogger(__name__)

MASKING_DISTRIBUTION_CHOICES = ChoiceEnum(["static", "uniform", "normal", "poisson"])
LAYER_TYPE_CHOICES = ChoiceEnum(["transformer", "conformer", "trf_adp"])


@dataclass
class W2v2CtcConfig(FairseqDataclass):
    w2v_path: str = field(
        default=MISSING,
        metadata={"help": "pretrained model: a w2v2 checkpoint or a fairseq wav2vec2 one (only "
                          "read when the model is first built; fine-tuned checkpoints keep its config)"})
    trust_checkpoint: bool = field(
        default=False,
        metadata={"help": "load w2v_path with torch.load(weights_only=False) even if its pickle needs more "
                          "than the plain data of fairseq checkpoints; this can run code from the file: "
                          "only for files you trust (default: refused with a message)"})
    no_pretrained_weights: bool = field(
        default=False, metadata={"help": "if true, does not load pretrained weights (same "
                                         "architecture, random init: training from scratch)"})
    dropout_input: float = field(
        default=0.0, metadata={"help": "dropout to apply to the input (after feat extr)"})
    final_dropout: float = field(
        default=0.0, metadata={"help": "dropout after transformer and before final projection"})
    dropout: float = field(
        default=0.0, metadata={"help": "dropout probability inside wav2vec 2.0 model"})
    attention_dropout: float = field(
        default=0.0,
        metadata={"help": "dropout probability for attention weights inside wav2vec 2.0 model"})
    activation_dropout: float = field(
        default=0.0,
        metadata={"help": "dropout probability after activation in FFN inside wav2vec 2.0 model"})
    # time masking (the modified SpecAugment of the paper)
    apply_mask: bool = field(default=False, metadata={"help": "apply masking during fine-tuning"})
    mask_length: int = field(default=10, metadata={"help": "repeat the mask indices multiple times"})
    mask_prob: float = field(
        default=0.5,
        metadata={"help": "probability of replacing a token with mask (normalized by length)"})
    mask_selection: MASKING_DISTRIBUTION_CHOICES = field(  # type: ignore[valid-type]  # reason: fairseq's ChoiceEnum is a runtime-made Enum
        default="static", metadata={"help": "how to choose masks"})
    mask_other: float = field(
        default=0, metadata={"help": "secondary mask argument (used for more complex distributions)"})
    no_mask_overlap: bool = field(default=False, metadata={"help": "whether to allow masks to overlap"})
    mask_min_space: Optional[int] = field(
        default=1, metadata={"help": "min space between spans (if no overlap is enabled)"})
    require_same_masks: bool = field(
        default=True,
        metadata={"help": "whether to number of masked timesteps must be the same across all "
                          "examples in a batch"})
    mask_dropout: float = field(default=0.0, metadata={"help": "percent of masks to unmask for each sample"})
    # channel masking
    mask_channel_length: int = field(default=10, metadata={"help": "length of the mask for features (channels)"})
    mask_channel_prob: float = field(default=0.0, metadata={"help": "probability of replacing a feature with 0"})
    mask_channel_selection: MASKING_DISTRIBUTION_CHOICES = field(  # type: ignore[valid-type]  # reason: fairseq's ChoiceEnum is a runtime-made Enum
        default="static", metadata={"help": "how to choose mask length for channel masking"})
    mask_channel_other: float = field(
        default=0, metadata={"help": "secondary mask argument (used for more complex distributions)"})
    no_mask_channel_overlap: bool = field(
        default=False, metadata={"help": "whether to allow channel masks to overlap"})
    freeze_finetune_updates: int = field(
        default=0, metadata={"help": "dont finetune wav2vec for this many updates (only the output "
                                     "layer trains)"})
    feature_grad_mult: float = field(
        default=0.0, metadata={"help": "reset feature grad mult in wav2vec 2.0 to this (0: the "
                                       "feature encoder is frozen and no graph is built for it)"})
    feature_cache_mb: float = field(
        default=0, metadata={"help": "plugin-only: keep the frozen feature encoder's output of each padded "
                                     "utterance seen, up to this many MiB, and reuse it in later epochs and "
                                     "validations instead of recomputing it (needs feature_grad_mult=0; "
                                     "0: off). Fine-tuning on a CPU: about a third of the step"})
    layerdrop: float = field(default=0.0, metadata={"help": "probability of dropping a layer in wav2vec 2.0"})
    packed_dropout: bool = field(
        default=False, metadata={"help": "plugin-only: cheaper dropout masks on CPU (see the w2v2 model's "
                                         "packed_dropout; replaces the pretrained model's setting)"})
    drop_path: float = field(default=0, metadata={"help": "data2vec only (must stay 0)"})
    mask_channel_min_space: Optional[int] = field(
        default=1, metadata={"help": "min space between spans (if no overlap is enabled)"})
    mask_channel_before: bool = field(default=False, metadata={"help": "mask channels before time masking"})
    normalize: bool = II("task.normalize")
    update_alibi: bool = field(default=True, metadata={"help": "data2vec only (ignored)"})
    data: str = II("task.data")
    # this holds the loaded wav2vec args
    w2v_args: Any = field(
        default=None,
        metadata={"help": "the pretrained model's config, filled in when the model is first built "
                          "and saved with the fine-tuned checkpoint (plain data)"})
    offload_activations: bool = field(default=False, metadata={"help": "offload_activations (not supported)"})
    min_params_to_wrap: int = field(
        default=int(1e8), metadata={"help": "FSDP wrapping threshold (fairseq; unused here)"})
    checkpoint_activations: bool = field(
        default=False, metadata={"help": "recompute activations and save memory for extra compute"})
    ddp_backend: str = II("distributed_training.ddp_backend")
    zero_mask: bool = field(default=False, metadata={"help": "data2vec only (must stay false)"})
    load_ema: bool = field(default=False, metadata={"help": "data2vec only (must stay false)"})
    layer_decay: float = field(default=1, metadata={"help": "data2vec only (must stay 1)"})
    layer_type: LAYER_TYPE_CHOICES = field(  # type: ignore[valid-type]  # reason: fairseq's ChoiceEnum is a runtime-made Enum
        default="transformer", metadata={"help": "layer type in encoder (only transformer)"})
    adp_num: int = field(default=-1, metadata={"help": "adapters (not supported)"})
    adp_dim: int = field(default=64, metadata={"help": "adapters (not supported)"})
    adp_act_fn: str = field(default="relu", metadata={"help": "adapters (not supported)"})
    adp_trf_idx: str = field(default="all", metadata={"help": "adapters (not supported)"})
    freeze_regex: Optional[str] = field(
        default=None, metadata={"help": "encoder parameters whose name (relative to w2v_encoder, e.g. "
                                        "w2v_model\\.encoder\\.layers\\.0\\..*) fully matches are not trained"})
    # Wav2Vec2CtcConfig
    blank_weight: float = field(default=0, metadata={"help": "added to (or set as) the blank logit"})
    blank_mode: str = field(default="add", metadata={"help": "'add' or 'set' blank_weight"})


def _check_supported(cfg: W2v2CtcConfig) -> None:
    """Refuse fairseq's data2vec / adapter options (accepted by the config, not implemented)."""
    unsupported = {
        "drop_path": (cfg.drop_path, 0), "zero_mask": (cfg.zero_mask, False),
        "load_ema": (cfg.load_ema, False), "layer_decay": (cfg.layer_decay, 1),
        "layer_type": (str(cfg.layer_type), "transformer"), "adp_num": (cfg.adp_num, -1),
        "offload_activations": (cfg.offload_activations, False),
    }
    for name, (value, ok) in unsupported.items():
        if value != ok:
            raise ValueError(f"model.{name}={value!r} is not supported by w2v2_ctc (a data2vec/"
                             f"adapter option of fairseq); remove it from the config")
    if cfg.blank_mode not in ("add", "set"):
        raise ValueError(f"model.blank_mode={cfg.blank_mode!r}: use 'add' or 'set'")
    if cfg.feature_cache_mb < 0 or (cfg.feature_cache_mb > 0 and cfg.feature_grad_mult != 0):
        raise ValueError(f"model.feature_cache_mb={cfg.feature_cache_mb:g} needs a frozen feature encoder "
                         f"(model.feature_grad_mult=0, got {cfg.feature_grad_mult:g}) and a size >= 0; "
                         f"set model.feature_cache_mb=0 to train the feature encoder")


# Fine-tuning settings that replace the pretrained model's (fairseq's arg_overrides);
# mask_min_space / mask_channel_min_space are deliberately not among them, as in fairseq.
def _overrides(cfg: W2v2CtcConfig) -> dict[str, Any]:
    return {
        "dropout": cfg.dropout, "activation_dropout": cfg.activation_dropout,
        "dropout_input": cfg.dropout_input, "attention_dropout": cfg.attention_dropout,
        "mask_length": cfg.mask_length, "mask_prob": cfg.mask_prob,
        "require_same_masks": cfg.require_same_masks, "mask_dropout": cfg.mask_dropout,
        "mask_selection": cfg.mask_selection, "mask_other": cfg.mask_other,
        "no_mask_overlap": cfg.no_mask_overlap, "mask_channel_length": cfg.mask_channel_length,
        "mask_channel_prob": cfg.mask_channel_prob, "mask_channel_before": cfg.mask_channel_before,
        "mask_channel_selection": cfg.mask_channel_selection,
        "mask_channel_other": cfg.mask_channel_other,
        "no_mask_channel_overlap": cfg.no_mask_channel_overlap,
        "encoder_layerdrop": cfg.layerdrop, "feature_grad_mult": cfg.feature_grad_mult,
        "checkpoint_activations": cfg.checkpoint_activations, "packed_dropout": cfg.packed_dropout,
    }


def build_w2v2_config(model_args: Mapping[str, Any], cfg: W2v2CtcConfig) -> W2v2Config:
    """The pretrained architecture with the fine-tuning overrides applied."""
    known = {f.name for f in fields(W2v2Config)}
    values = {k: v for k, v in model_args.items() if k in known}
    if isinstance(values.get("latent_temp"), list):
        values["latent_temp"] = tuple(values["latent_temp"])
    values.update(_overrides(cfg))
    return W2v2Config(**values)


class W2v2CtcEncoder(FairseqEncoder):
    """The pretrained context network, final dropout and the output projection."""

    def __init__(self, cfg: W2v2CtcConfig, output_size: int) -> None:
        super().__init__(None)
        _check_supported(cfg)
        pretrained: Pretrained | None = None
        if cfg.w2v_args is None:
            pretrained = read_pretrained(cfg.w2v_path, trust=bool(getattr(cfg, "trust_checkpoint", False)))
            w2v_args = pretrained.w2v_args
            cfg.w2v_args = w2v_args  # makes the fine-tuned checkpoint self-contained
        else:
            w2v_args = plain_w2v_args(cfg.w2v_args)
            cfg.w2v_args = w2v_args

        pre_norm = bool(w2v_args.get("task", {}).get("normalize", False))
        if config_value(cfg, "normalize") is not None and bool(cfg.normalize) != pre_norm:
            raise PretrainedModelError(
                f"task.normalize={bool(cfg.normalize)} but the pretrained model was trained with "
                f"normalize={pre_norm}; set task.normalize={str(pre_norm).lower()} (fine-tuning "
                f"must normalize the audio as pretraining did)")

        self.apply_mask = cfg.apply_mask
        self.w2v_model = W2v2Model.build_model(build_w2v2_config(w2v_args["model"], cfg), None)
        if pretrained is not None and not cfg.no_pretrained_weights:
            # strict load before removing the pretraining heads: any architecture mismatch
            # between the checkpoint and its own config is an error, not a silent partial load
            missing, unexpected = self.w2v_model.load_state_dict(pretrained.state_dict, strict=False)
            if missing or unexpected:
                raise PretrainedModelError(
                    f"{cfg.w2v_path}: weights do not match the checkpoint's own model config "
                    f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
        self.w2v_model.remove_pretraining_modules()
        if cfg.feature_cache_mb > 0:
            self.w2v_model.frozen_feature_cache = FrozenFeatureCache(cfg.feature_cache_mb)

        dim = self.w2v_model.cfg.encoder_embed_dim
        self.final_dropout = make_dropout(cfg.final_dropout, cfg.packed_dropout)
        self.proj = torch.nn.Linear(dim, output_size)
        torch.nn.init.xavier_uniform_(self.proj.weight)  # fairseq's Linear() init
        torch.nn.init.constant_(self.proj.bias, 0.0)
        self.freeze_finetune_updates = cfg.freeze_finetune_updates
        self.num_updates = 0

        if cfg.freeze_regex:
            pattern = re.compile(cfg.freeze_regex)
            for name, p in self.named_parameters():
                if pattern.fullmatch(name):
                    p.requires_grad_(False)

    def set_num_updates(self, num_updates: int) -> None:
        super().set_num_updates(num_updates)
        self.num_updates = num_updates

    def forward(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None,
                **kwargs: Any) -> dict[str, Any]:
        # source: (batch, sample); padding_mask: (batch, sample), True on padding
        finetune = self.freeze_finetune_updates <= self.num_updates
        # until freeze_finetune_updates the context network runs without a graph: only the
        # output layer trains
        with torch.no_grad() if not finetune else contextlib.ExitStack():
            res = self.w2v_model.extract_features(source, padding_mask,
                                                  mask=self.apply_mask and self.training)
            x = res["x"].transpose(0, 1)  # (batch, frame, dim) -> (frame, batch, dim)
            frame_padding = res["padding_mask"]
        x = self.final_dropout(x)
        # the output layer in fp32 also under autocast: bf16 logits keep ~3 significant digits,
        # too coarse for CTC's gradients (the issue: logits and losses fp32); (T, B, C) -> (T, B, V)
        with fp32_region(x):
            x = self.proj(x.float())
        return {"encoder_out": x, "padding_mask": frame_padding,
                "layer_results": res["layer_results"]}

    def reorder_encoder_out(self, encoder_out: dict[str, Any], new_order: torch.Tensor):
        if encoder_out["encoder_out"] is not None:
            encoder_out["encoder_out"] = encoder_out["encoder_out"].index_select(1, new_order)
        if encoder_out["padding_mask"] is not None:
            encoder_out["padding_mask"] = encoder_out["padding_mask"].index_select(0, new_order)
        return encoder_out

    def max_positions(self) -> None:
        return None


@register_model("w2v2_ctc", dataclass=W2v2CtcConfig)
class W2v2Ctc(BaseFairseqModel):
    """Model ``w2v2_ctc``: per-frame CTC logits over the target dictionary, index 0 the blank.

    ``blank_weight`` / ``blank_mode`` shift (``add``) or fix (``set``) the blank logit at
    inference, as fairseq's ``Wav2VecCtc``; padded frames predict blank with certainty.
    """

    def __init__(self, cfg: W2v2CtcConfig, w2v_encoder: W2v2CtcEncoder) -> None:
        super().__init__()
        self.cfg = cfg
        self.w2v_encoder = w2v_encoder
        self.blank_weight = cfg.blank_weight
        self.blank_mode = cfg.blank_mode

    @classmethod
    def build_model(cls, cfg: W2v2CtcConfig, task) -> W2v2Ctc:
        dictionary = task.target_dictionary
        if dictionary is None:
            raise ValueError("w2v2_ctc needs a task with a target dictionary (task.labels set)")
        return cls(cfg, W2v2CtcEncoder(cfg, len(dictionary)))

    def get_logits(self, net_output: dict[str, Any], normalize: bool = False) -> torch.Tensor:
        logits = net_output["encoder_out"]  # (T, B, V)
        if self.blank_weight != 0:
            logits = logits.clone()
            if self.blank_mode == "add":
                logits[..., 0] += self.blank_weight
            else:
                logits[..., 0] = self.blank_weight
        padding = net_output.get("padding_mask")
        if padding is not None and padding.any():
            # padded frames predict blank with certainty, as fairseq does
            if logits.size(0) > padding.size(1):
                padding = F.pad(padding, (1, 0), value=False)
            masking = torch.full((logits.size(-1),), float("-inf"), device=logits.device,
                                 dtype=logits.dtype)
            masking[0] = 0
            logits = logits.clone()
            logits[padding.T] = masking
        if normalize:
            logits = utils.log_softmax(logits.float(), dim=-1)
        return logits

    def get_normalized_probs(self, net_output: dict[str, Any], log_probs: bool) -> torch.Tensor:
        logits = self.get_logits(net_output)
        if log_probs:
            return utils.log_softmax(logits.float(), dim=-1)
        return utils.softmax(logits.float(), dim=-1)

    def forward(self, **kwargs: Any) -> dict[str, Any]:
        return self.w2v_encoder(**kwargs)
