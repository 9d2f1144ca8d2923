"""Convert fairseq ``wav2vec_ctc`` fine-tuned checkpoints into plugin ``w2v2_ctc`` checkpoints.

Input: a fairseq 0.12 ``wav2vec_ctc`` checkpoint in either published layout: hydra (``cfg``
with ``cfg.model.w2v_args`` holding the pretraining config, the target dictionary pickled in
``task_state``) or legacy (``args`` Namespace with ``args.w2v_args``, no dictionary inside:
pass the ``dict.ltr.txt`` it was trained with, as for the published ``*_960h.pt`` files).

Output: a checkpoint of plain data only (loads with ``torch.load(weights_only=True)``) that
fairseq loads with ``checkpoint_utils.load_model_ensemble_and_task`` (plugin imported), and
that is self-contained: the pretrained model's config is inside, no ``w2v_path`` is read.

Key map: ``w2v_encoder.w2v_model.<fairseq wav2vec2 name>`` goes through
:func:`w2v2_plugin.interop.fairseq_wav2vec2.fairseq_to_plugin_state_dict` (the pretraining
model's documented map); ``w2v_encoder.proj.{weight,bias}`` (the CTC output layer) keeps its name. Any other key
raises, so nothing is silently dropped.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from fairseq.data import Dictionary

from ..data.labels import dictionary_from_state, dictionary_to_state, load_dictionary
from .checkpoint_io import (
    DICTIONARY_STATE_KEY,
    CheckpointError,
    checkpoint_model_cfg,
    load_checkpoint_file,
    save_checkpoint_atomic,
    to_plain,
)
from .fairseq_wav2vec2 import UnknownKeyError, fairseq_to_plugin_state_dict, registered_config_fields
from .pretrained import plain_w2v_args

ENCODER_PREFIX = "w2v_encoder.w2v_model."
HEAD_KEYS = ("w2v_encoder.proj.weight", "w2v_encoder.proj.bias")


class CtcConversionResult(NamedTuple):
    out_path: str
    layout: str  # "hydra" or "legacy"
    parameters: int
    vocab_size: int
    encoder_layers: int


def is_wav2vec_ctc(state: Mapping[str, Any]) -> bool:
    """True for a fairseq ``wav2vec_ctc`` checkpoint (by config name, else by weight names)."""
    try:
        name = checkpoint_model_cfg(state).get("_name")
    except CheckpointError:
        name = None
    if name is not None:
        return name == "wav2vec_ctc"
    return any(k.startswith(ENCODER_PREFIX + "feature_extractor.") for k in state.get("model", {}))


def convert_ctc_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fairseq ``wav2vec_ctc`` weights -> ``w2v2_ctc`` weights; raises on any unknown key."""
    encoder = {k[len(ENCODER_PREFIX):]: v for k, v in state_dict.items() if k.startswith(ENCODER_PREFIX)}
    other = [k for k in state_dict if not k.startswith(ENCODER_PREFIX) and k not in HEAD_KEYS]
    if other:
        raise UnknownKeyError(f"unknown wav2vec_ctc parameter {other[0]!r} (and {len(other) - 1} more): "
                              f"only {ENCODER_PREFIX}* and w2v_encoder.proj.* convert")
    if not encoder or any(k not in state_dict for k in HEAD_KEYS):
        raise CheckpointError("not a wav2vec_ctc state dict: needs w2v_encoder.w2v_model.* and "
                              "w2v_encoder.proj.{weight,bias}")
    out = {ENCODER_PREFIX + k: v for k, v in fairseq_to_plugin_state_dict(encoder).items()}
    for k in HEAD_KEYS:
        out[k] = state_dict[k]
    return out


def _ctc_model_cfg(model_cfg: Mapping[str, Any], w2v_args: dict[str, Any]) -> dict[str, Any]:
    """The ``w2v2_ctc`` model section: the fields its config knows, the pretrained config inside."""
    known = registered_config_fields("w2v2_ctc")
    out = {k: v for k, v in model_cfg.items() if k in known and k not in ("w2v_args", "_name")}
    out["_name"] = "w2v2_ctc"
    out["w2v_args"] = w2v_args
    out["normalize"] = bool(w2v_args.get("task", {}).get("normalize", False))
    out["data"] = str(model_cfg.get("data") or "")
    out["ddp_backend"] = "legacy_ddp"
    return out


def _dictionary(state: Mapping[str, Any], dict_path: str | None, vocab_rows: int) -> Dictionary:
    """The target dictionary: ``dict_path`` if given, else the one stored in the checkpoint."""
    d: Dictionary | None = None
    if dict_path:
        d = load_dictionary(dict_path)
    else:
        stored = (state.get("task_state") or {}).get("target_dictionary")
        if isinstance(stored, dict) and DICTIONARY_STATE_KEY in stored:
            stored = stored[DICTIONARY_STATE_KEY]
        if stored is not None:
            d = dictionary_from_state(stored)
    if d is None:
        raise CheckpointError("the checkpoint holds no target dictionary (legacy layout, e.g. the "
                              "published *_960h.pt): pass the dict.ltr.txt it was trained with")
    if len(d) != vocab_rows:
        raise CheckpointError(f"dictionary has {len(d)} symbols (with fairseq's 4 specials) but the "
                              f"output layer has {vocab_rows} rows: wrong dict file for this model")
    return d


def convert_wav2vec_ctc_checkpoint(state: Mapping[str, Any], dict_path: str | None = None
                                   ) -> dict[str, Any]:
    """A loaded fairseq ``wav2vec_ctc`` checkpoint -> a ``w2v2_ctc`` checkpoint dict (plain data)."""
    model_cfg = checkpoint_model_cfg(state)
    name = model_cfg.get("_name")
    if name == "w2v2_ctc":
        raise CheckpointError("already a w2v2_ctc checkpoint; nothing to convert")
    if name not in ("wav2vec_ctc", None):
        raise CheckpointError(f"not a fairseq wav2vec_ctc checkpoint (model {name!r})")
    layout = "hydra" if state.get("cfg") is not None else "legacy"
    w2v_args_raw = model_cfg.get("w2v_args")
    if not w2v_args_raw:
        raise CheckpointError("the wav2vec_ctc checkpoint has no w2v_args (pretrained model config); "
                              "it cannot be rebuilt")
    w2v_args = plain_w2v_args(w2v_args_raw)
    weights = convert_ctc_state_dict(state["model"])
    dictionary = _dictionary(state, dict_path, weights["w2v_encoder.proj.weight"].size(0))

    old_task = to_plain(state["cfg"]).get("task", {}) if layout == "hydra" else to_plain(state.get("args"))
    task = {"_name": "w2v2_finetuning", "data": str(old_task.get("data") or ""),
            "labels": old_task.get("labels") or "ltr",
            "normalize": w2v_args["task"].get("normalize", False),
            "sample_rate": int(old_task.get("sample_rate") or 16000),
            "enable_padding": False, "tpu": False, "seed": 1}
    criterion = {"_name": "w2v2_ctc", "zero_infinity": True, "sentence_avg": True,
                 "post_process": "letter"}
    return {
        "cfg": {"_name": None, "model": _ctc_model_cfg(model_cfg, w2v_args), "task": task,
                "criterion": criterion, "common": {"tpu": False, "seed": 1},
                "checkpoint": {}, "optimization": {"sentence_avg": True},
                "distributed_training": {"ddp_backend": "legacy_ddp"}},
        "args": None,
        "model": weights,
        "task_state": {"target_dictionary": {DICTIONARY_STATE_KEY: dictionary_to_state(dictionary)}},
        "optimizer_history": [{"criterion_name": "W2v2CtcCriterion", "optimizer_name": "converted",
                               "lr_scheduler_state": {}, "num_updates": 0}],
        "extra_state": {"converted_from": f"fairseq wav2vec_ctc ({layout} layout)"},
        "last_optimizer_state": None,
    }


def convert_wav2vec_ctc_file(in_path: str, out_path: str, dict_path: str | None = None
                             ) -> CtcConversionResult:
    """Read ``in_path``, write the converted checkpoint atomically to ``out_path``."""
    state = load_checkpoint_file(in_path)
    if not is_wav2vec_ctc(state):
        raise CheckpointError(f"{in_path}: not a fairseq wav2vec_ctc checkpoint")
    try:
        out = convert_wav2vec_ctc_checkpoint(state, dict_path)
    except (CheckpointError, UnknownKeyError) as e:
        raise CheckpointError(f"{in_path}: {e}") from None
    save_checkpoint_atomic(out, out_path)
    return CtcConversionResult(
        out_path=os.path.abspath(out_path),
        layout="hydra" if state.get("cfg") is not None else "legacy",
        parameters=sum(int(v.numel()) for v in out["model"].values()),
        vocab_size=int(out["model"]["w2v_encoder.proj.weight"].size(0)),
        encoder_layers=int(out["cfg"]["model"]["w2v_args"]["model"].get("encoder_layers", 0)),
    )
