"""Opening ``model.w2v_path``: the pretrained model a ``w2v2_ctc`` fine-tuning starts from.

``w2v_path`` may name a plugin ``w2v2`` checkpoint or a fairseq 0.12 ``wav2vec2`` checkpoint
(hydra ``cfg`` or legacy ``args`` layout, as published); fairseq weights go through the key map
of :mod:`w2v2_plugin.interop.fairseq_wav2vec2`. The result is plain data: the pretrained model's
config as ``w2v_args`` (what a fine-tuned checkpoint stores, so it never opens ``w2v_path``
again) and its weights under plugin names. Building the model is ``w2v2_plugin.models.ctc``'s job.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from omegaconf import MISSING

from w2v2_common.errors import W2v2Error

from .checkpoint_io import CheckpointError, UnsafeCheckpointError, checkpoint_model_cfg, load_checkpoint_file, to_plain
from .fairseq_wav2vec2 import fairseq_to_plugin_state_dict, looks_like_fairseq_wav2vec2, model_cfg_to_w2v2

# model names of fine-tuned checkpoints: a common mistake for w2v_path, refused with a hint
_FINETUNED_MODELS = ("wav2vec_ctc", "w2v2_ctc", "wav2vec_seq2seq")


class PretrainedModelError(W2v2Error, ValueError):
    """``w2v_path`` is missing or is not a wav2vec 2.0 pretraining checkpoint."""


class Pretrained(NamedTuple):
    """A pretrained model's config (plain ``w2v_args``) and its weights under plugin names."""

    w2v_args: dict[str, Any]
    state_dict: dict[str, torch.Tensor] | None


def read_pretrained(path: str, trust: bool = False) -> Pretrained:
    """Open ``w2v_path``: a plugin ``w2v2`` or fairseq ``wav2vec2`` pretraining checkpoint, read
    without running code from it unless ``trust`` (``model.trust_checkpoint``)."""
    state, model_cfg = _open_pretraining_checkpoint(path, trust)
    name = model_cfg.get("_name")
    weights = state["model"]
    if name == "wav2vec2" or (name is None and looks_like_fairseq_wav2vec2(weights)):
        weights = dict(fairseq_to_plugin_state_dict(weights))
    elif name != "w2v2":
        raise PretrainedModelError(f"{path}: model.w2v_path is not a wav2vec 2.0 pretraining checkpoint "
                                   f"(its model is {name!r}; expected w2v2 or wav2vec2)")
    task = _task_section(state)
    w2v_args = {"model": model_cfg_to_w2v2(model_cfg),
                "task": {"normalize": bool(task.get("normalize", False)),
                         "sample_rate": int(task.get("sample_rate", 16000) or 16000)},
                "source": {"path": os.path.abspath(path), "model": name or "wav2vec2"}}
    return Pretrained(to_plain(w2v_args), weights)


def _open_pretraining_checkpoint(path: str, trust: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint at ``path`` and its model section; every way it can be the wrong file is a
    :class:`PretrainedModelError` that says what ``w2v_path`` should be."""
    if not path or path == MISSING or str(path).startswith("???"):
        raise PretrainedModelError("model.w2v_path is not set: point it at a pretrained wav2vec 2.0 "
                                   "checkpoint (w2v2 or fairseq wav2vec2)")
    if not os.path.isfile(path):
        raise PretrainedModelError(f"{path}: model.w2v_path does not exist; point it at a pretrained "
                                   f"wav2vec 2.0 checkpoint (w2v2 or fairseq wav2vec2)")
    try:
        state = load_checkpoint_file(path, trust=trust, opt_in="set model.trust_checkpoint=true")
        model_cfg = checkpoint_model_cfg(state)
    except UnsafeCheckpointError as e:
        raise PretrainedModelError(f"model.w2v_path={e}") from None
    except CheckpointError as e:
        raise PretrainedModelError(f"{path}: model.w2v_path is not a wav2vec 2.0 checkpoint ({e})") from None
    name = model_cfg.get("_name")
    if name in _FINETUNED_MODELS:
        raise PretrainedModelError(
            f"{path}: model.w2v_path is a fine-tuned {name} checkpoint, not a pretrained one; "
            f"point w2v_path at the pretrained model (to continue fine-tuning, use "
            f"checkpoint.restore_file or checkpoint.finetune_from_model)")
    return state, model_cfg


def _task_section(state: Mapping[str, Any]) -> dict[str, Any]:
    """The task config of a hydra checkpoint, or the flat legacy ``args`` (which hold it too)."""
    if state.get("cfg") is not None:
        task = to_plain(state["cfg"]).get("task") or {}
        return task if isinstance(task, dict) else {}
    args = to_plain(state.get("args") or {})
    return args if isinstance(args, dict) else {}


def plain_w2v_args(w2v_args: Any) -> dict[str, Any]:
    """Stored ``w2v_args`` (DictConfig after a checkpoint load, or a legacy Namespace) -> dict."""
    args = to_plain(w2v_args)
    if "model" not in args:  # a legacy flat Namespace of the pretraining run
        args = {"model": model_cfg_to_w2v2(dict(args, _name="wav2vec2")),
                "task": {"normalize": bool(args.get("normalize", False))}}
    else:
        args["model"] = model_cfg_to_w2v2(args["model"])
    return args
