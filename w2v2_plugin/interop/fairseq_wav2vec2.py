"""fairseq 0.12 ``wav2vec2`` pretraining checkpoints <-> the plugin's ``w2v2``.

The key map (fairseq name -> plugin name), applied to every parameter; a key that matches
no rule raises ``UnknownKeyError`` so nothing is silently dropped:

    feature_extractor.conv_layers.N.0.{weight,bias}   -> feature_encoder.conv_layers.N.conv.{weight,bias}
    feature_extractor.conv_layers.0.2.{weight,bias}   -> feature_encoder.conv_layers.0.norm.*  (group norm, "default")
    feature_extractor.conv_layers.N.2.1.{weight,bias} -> feature_encoder.conv_layers.N.norm.*  (layer norm)
    layer_norm.*                                       -> feature_norm.*
    post_extract_proj.*                                -> feature_projection.*
    mask_emb                                           -> mask_embedding
    encoder.pos_conv.0.bias                            -> encoder.pos_conv.conv.bias
    encoder.pos_conv.0.weight_g | .parametrizations.weight.original0
                                                       -> encoder.pos_conv.conv.parametrizations.weight.original0
    encoder.pos_conv.0.weight_v | .parametrizations.weight.original1
                                                       -> encoder.pos_conv.conv.parametrizations.weight.original1
    encoder.layer_norm.*                               -> encoder.layer_norm.*
    encoder.layers.N.self_attn.{q,k,v}_proj.*          -> encoder.layers.N.attention.in_proj.*  (rows q; k; v)
    encoder.layers.N.self_attn.out_proj.*              -> encoder.layers.N.attention.out_proj.*
    encoder.layers.N.self_attn_layer_norm.*            -> encoder.layers.N.attention_norm.*
    encoder.layers.N.fc1.* / fc2.*                     -> encoder.layers.N.feed_forward.fc1.* / fc2.*
    encoder.layers.N.final_layer_norm.*                -> encoder.layers.N.final_norm.*
    quantizer.vars                                     -> quantizer.codevectors
    quantizer.weight_proj.*                            -> quantizer.weight_proj.*
    project_q.*                                        -> target_projection.*
    final_proj.*                                       -> context_projection.*
    target_glu.0.*                                     -> target_glu.0.*

The inverse map (``plugin_to_fairseq_state_dict``) splits the fused projection again
(:func:`split_fused_qkv`, also used by the Hugging Face export).

Config fields: the ``w2v2`` config's names are fairseq's; which of them the plugin knows is read
from fairseq's model registry (:func:`registered_config_fields`), so this package never imports
``w2v2_plugin.models`` (which imports this package).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import torch

from w2v2_common.errors import W2v2Error

from .checkpoint_io import CheckpointError, checkpoint_model_cfg, to_plain

Rules = list[tuple[str, str]]

FAIRSEQ_TO_PLUGIN: Rules = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_encoder.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_encoder.conv_layers.\1.norm.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.(weight|bias)", r"feature_encoder.conv_layers.\1.norm.\2"),
    (r"layer_norm\.(weight|bias)", r"feature_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.\1"),
    (r"mask_emb", r"mask_embedding"),
    (r"encoder\.pos_conv\.0\.bias", r"encoder.pos_conv.conv.bias"),
    (r"encoder\.pos_conv\.0\.(?:weight_g|parametrizations\.weight\.original0)",
     r"encoder.pos_conv.conv.parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.(?:weight_v|parametrizations\.weight\.original1)",
     r"encoder.pos_conv.conv.parametrizations.weight.original1"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"encoder.layers.\1.attention.out_proj.\2"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.attention_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc([12])\.(weight|bias)", r"encoder.layers.\1.feed_forward.fc\2.\3"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_norm.\2"),
    (r"quantizer\.vars", r"quantizer.codevectors"),
    (r"quantizer\.weight_proj\.(.+)", r"quantizer.weight_proj.\1"),
    (r"project_q\.(weight|bias)", r"target_projection.\1"),
    (r"final_proj\.(weight|bias)", r"context_projection.\1"),
    (r"target_glu\.0\.(weight|bias)", r"target_glu.0.\1"),
]
# fairseq keeps q, k and v apart; the plugin fuses them into one in_proj (rows q; k; v)
_FAIRSEQ_QKV = re.compile(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)")
FUSED_QKV_KEY = re.compile(r"encoder\.layers\.(\d+)\.attention\.in_proj\.(weight|bias)")
# fairseq keeps this buffer-like entry in some versions; it carries no weights
_IGNORED_FAIRSEQ_KEYS = re.compile(r"encoder\.version|.*\._float_tensor")
_NORM_KEY = re.compile(r"feature_encoder\.conv_layers\.(\d+)\.norm\.(weight|bias)")


class UnknownKeyError(W2v2Error, KeyError):
    """A parameter name outside the key map: converting would drop it silently."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it one plain line
        return str(self.args[0])


def registered_config_fields(model_name: str) -> frozenset[str]:
    """The field names of the config dataclass registered with fairseq for ``model_name``.

    Read from the registry rather than imported so that this package stays below
    ``w2v2_plugin.models``; importing any ``w2v2_plugin`` module registers the plugin's models.
    """
    from fairseq.models import MODEL_DATACLASS_REGISTRY

    if model_name not in MODEL_DATACLASS_REGISTRY:
        raise RuntimeError(f"model {model_name!r} is not registered with fairseq (import w2v2_plugin first)")
    return frozenset(f.name for f in fields(MODEL_DATACLASS_REGISTRY[model_name]))


def looks_like_fairseq_wav2vec2(state_dict: Mapping[str, Any]) -> bool:
    return any(k.startswith("feature_extractor.conv_layers.") for k in state_dict)


def rename_key(key: str, rules: Rules) -> str | None:
    """``key`` renamed by the first rule whose pattern matches all of it, or None."""
    for pattern, repl in rules:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, repl, key)
    return None


def split_fused_qkv(key: str, value: torch.Tensor, template: str) -> dict[str, torch.Tensor] | None:
    """A fused ``encoder.layers.N.attention.in_proj.*`` tensor as its q, k and v rows, named by
    ``template`` (``{layer}``, ``{proj}`` = q/k/v, ``{kind}`` = weight/bias); None for other keys."""
    m = FUSED_QKV_KEY.fullmatch(key)
    if m is None:
        return None
    return {template.format(layer=m.group(1), proj=proj, kind=m.group(2)): part
            for proj, part in zip("qkv", value.chunk(3, dim=0), strict=True)}


def fairseq_to_plugin_state_dict(state_dict: Mapping[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """Rename a fairseq ``wav2vec2`` state dict to ``w2v2`` names; raises on unknown keys."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        m = _FAIRSEQ_QKV.fullmatch(key)
        if m:
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        if _IGNORED_FAIRSEQ_KEYS.fullmatch(key):
            continue
        new = rename_key(key, FAIRSEQ_TO_PLUGIN)
        if new is None:
            raise UnknownKeyError(f"unknown fairseq wav2vec2 parameter {key!r}: not in the key map of "
                                  "w2v2_plugin.interop.fairseq_wav2vec2 (is this a wav2vec2 checkpoint?)")
        out[new] = value
    for (layer, kind), parts in sorted(qkv.items(), key=lambda kv: (int(kv[0][0]), kv[0][1])):
        if set(parts) != {"q", "k", "v"}:
            raise UnknownKeyError(f"layer {layer}: attention {kind} has only {sorted(parts)} of q/k/v projections")
        out[f"encoder.layers.{layer}.attention.in_proj.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


# Plugin -> fairseq, the forward map read backwards (the feature encoder's norms and the fused
# projection are handled in code: their fairseq names depend on extractor_mode / split rows).
PLUGIN_TO_FAIRSEQ: Rules = [
    (r"feature_encoder\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"feature_extractor.conv_layers.\1.0.\2"),
    (r"feature_norm\.(weight|bias)", r"layer_norm.\1"),
    (r"feature_projection\.(weight|bias)", r"post_extract_proj.\1"),
    (r"mask_embedding", r"mask_emb"),
    (r"encoder\.pos_conv\.conv\.bias", r"encoder.pos_conv.0.bias"),
    (r"encoder\.pos_conv\.conv\.parametrizations\.weight\.original0", r"encoder.pos_conv.0.weight_g"),
    (r"encoder\.pos_conv\.conv\.parametrizations\.weight\.original1", r"encoder.pos_conv.0.weight_v"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.attention\.out_proj\.(weight|bias)", r"encoder.layers.\1.self_attn.out_proj.\2"),
    (r"encoder\.layers\.(\d+)\.attention_norm\.(weight|bias)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.fc([12])\.(weight|bias)", r"encoder.layers.\1.fc\2.\3"),
    (r"encoder\.layers\.(\d+)\.final_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"quantizer\.codevectors", r"quantizer.vars"),
    (r"quantizer\.weight_proj\.(.+)", r"quantizer.weight_proj.\1"),
    (r"target_projection\.(weight|bias)", r"project_q.\1"),
    (r"context_projection\.(weight|bias)", r"final_proj.\1"),
    (r"target_glu\.0\.(weight|bias)", r"target_glu.0.\1"),
]


def plugin_to_fairseq_state_dict(state_dict: Mapping[str, torch.Tensor], extractor_mode: str = "default"
                                 ) -> OrderedDict[str, torch.Tensor]:
    """Inverse of ``fairseq_to_plugin_state_dict``; raises on unknown keys."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state_dict.items():
        parts = split_fused_qkv(key, value, "encoder.layers.{layer}.self_attn.{proj}_proj.{kind}")
        if parts is not None:
            out.update(parts)
            continue
        m = _NORM_KEY.fullmatch(key)
        if m:
            sub = "2.1" if extractor_mode == "layer_norm" else "2"
            out[f"feature_extractor.conv_layers.{m.group(1)}.{sub}.{m.group(2)}"] = value
            continue
        new = rename_key(key, PLUGIN_TO_FAIRSEQ)
        if new is None:
            raise UnknownKeyError(f"unknown w2v2 parameter {key!r}: not in the key map of "
                                  "w2v2_plugin.interop.fairseq_wav2vec2")
        out[new] = value
    return out


# ---- whole checkpoints ------------------------------------------------------------------------

def model_cfg_to_w2v2(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the fields the ``w2v2`` config knows (same names as fairseq's) and set ``_name``."""
    known = registered_config_fields("w2v2")
    out = {k: v for k, v in model_cfg.items() if k in known and k != "_name"}
    if isinstance(out.get("latent_temp"), list):
        out["latent_temp"] = tuple(out["latent_temp"])
    out["_name"] = "w2v2"
    return out


# looked up with a section's "_name", which may be missing
_TASK_NAMES: dict[str | None, str] = {"audio_pretraining": "w2v2_pretraining", "audio_finetuning": "w2v2_finetuning"}
_CRITERION_NAMES: dict[str | None, str] = {"wav2vec": "w2v2_contrastive", "ctc": "w2v2_ctc"}


def _section(state: Mapping[str, Any], name: str) -> dict[str, Any]:
    if state.get("cfg") is not None:
        sec = to_plain(state["cfg"]).get(name)
        return dict(sec) if isinstance(sec, dict) else {}
    args = to_plain(state.get("args") or {})
    key = {"task": "task", "criterion": "criterion"}[name]
    return {"_name": args.get(key)} | {k: v for k, v in args.items() if k in ("data", "sample_rate", "normalize",
                                                                              "max_sample_size", "min_sample_size",
                                                                              "labels", "enable_padding")}


def convert_wav2vec2_checkpoint(state: Mapping[str, Any]) -> dict[str, Any]:
    """A fairseq ``wav2vec2`` checkpoint -> a ``w2v2`` checkpoint dict of plain data only."""
    model_cfg = checkpoint_model_cfg(state)
    name = model_cfg.get("_name")
    if name not in ("wav2vec2", "w2v2", None) or not looks_like_fairseq_wav2vec2(state["model"]):
        raise CheckpointError(f"not a fairseq wav2vec2 pretraining checkpoint (model {name!r}); "
                              "fine-tuned wav2vec_ctc checkpoints convert to w2v2_ctc")
    task = _section(state, "task")
    task["_name"] = _TASK_NAMES.get(task.get("_name"), task.get("_name") or "w2v2_pretraining")
    criterion = _section(state, "criterion")
    criterion["_name"] = _CRITERION_NAMES.get(criterion.get("_name"), criterion.get("_name") or "w2v2_contrastive")
    return {
        "cfg": {"model": model_cfg_to_w2v2(model_cfg), "task": task, "criterion": criterion,
                "common": {}, "checkpoint": {}, "optimization": {}},
        "args": None,
        "model": dict(fairseq_to_plugin_state_dict(state["model"])),
        "optimizer_history": [{"criterion_name": "W2v2ContrastiveCriterion", "optimizer_name": "converted",
                               "lr_scheduler_state": {}, "num_updates": 0}],
        "extra_state": {"converted_from": "fairseq wav2vec2"},
        "last_optimizer_state": None,
    }
