"""Checkpoint conversion between fairseq 0.12's ``wav2vec2`` and the plugin's ``w2v2``.

The key map (fairseq name -> plugin name), applied to every parameter; a key that matches
no rule raises ``UnknownKeyError`` so nothing is silently dropped:

    feature_extractor.conv_layers.N.0.{weight,bias}   -> feature_encoder.conv_layers.N.conv.{weight,bias}
    feature_extractor.conv_layers.0.2.{weight,bias}   -> feature_encoder.conv_layers.0.norm.*   (group norm, "default")
    feature_extractor.conv_layers.N.2.1.{weight,bias} -> feature_encoder.conv_layers.N.norm.*   (layer norm, "layer_norm")
    layer_norm.*                                       -> feature_norm.*
    post_extract_proj.*                                -> feature_projection.*
    mask_emb                                           -> mask_embedding
    encoder.pos_conv.0.bias                            -> encoder.pos_conv.conv.bias
    encoder.pos_conv.0.weight_g | .parametrizations.weight.original0
                                                       -> encoder.pos_conv.conv.parametrizations.weight.original0
    encoder.pos_conv.0.weight_v | .parametrizations.weight.original1
                                                       -> encoder.pos_conv.conv.parametrizations.weight.original1
    encoder.layer_norm.*                               -> encoder.layer_norm.*
    encoder.layers.N.self_attn.{q,k,v}_proj.*          -> encoder.layers.N.attention.in_proj.*  (rows concatenated q, k, v)
    encoder.layers.N.self_attn.out_proj.*              -> encoder.layers.N.attention.out_proj.*
    encoder.layers.N.self_attn_layer_norm.*            -> encoder.layers.N.attention_norm.*
    encoder.layers.N.fc1.* / fc2.*                     -> encoder.layers.N.feed_forward.fc1.* / fc2.*
    encoder.layers.N.final_layer_norm.*                -> encoder.layers.N.final_norm.*
    quantizer.vars                                     -> quantizer.codevectors
    quantizer.weight_proj.*                            -> quantizer.weight_proj.*
    project_q.*                                        -> target_projection.*
    final_proj.*                                       -> context_projection.*
    target_glu.0.*                                     -> target_glu.0.*

The inverse map (``plugin_to_fairseq_state_dict``) splits the fused projection again.
"""
from __future__ import annotations

import argparse
import re
from collections import OrderedDict
from dataclasses import fields
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

# the one checkpoint reader (weights_only, scoped safe globals) and its errors, re-exported here
from .checkpoint_io import CheckpointError, UnsafeCheckpointError, load_checkpoint_file  # noqa: F401

FAIRSEQ_TO_PLUGIN: List[Tuple[str, str]] = [
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
_QKV = re.compile(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)")
_IN_PROJ = re.compile(r"encoder\.layers\.(\d+)\.attention\.in_proj\.(weight|bias)")
# fairseq keeps this buffer-like entry in some versions; it carries no weights
_IGNORED_FAIRSEQ_KEYS = re.compile(r"encoder\.version|.*\._float_tensor")


class UnknownKeyError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it one plain line
        return str(self.args[0])


def looks_like_fairseq_wav2vec2(state_dict: Mapping[str, Any]) -> bool:
    return any(k.startswith("feature_extractor.conv_layers.") for k in state_dict)


def _map_key(key: str, rules: List[Tuple[str, str]]) -> Optional[str]:
    for pattern, repl in rules:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, repl, key)
    return None


def fairseq_to_plugin_state_dict(state_dict: Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Rename a fairseq ``wav2vec2`` state dict to ``w2v2`` names; raises on unknown keys."""
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    qkv: Dict[Tuple[str, str], Dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        m = _QKV.fullmatch(key)
        if m:
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        if _IGNORED_FAIRSEQ_KEYS.fullmatch(key):
            continue
        new = _map_key(key, FAIRSEQ_TO_PLUGIN)
        if new is None:
            raise UnknownKeyError(f"unknown fairseq wav2vec2 parameter {key!r}: not in the key map of "
                                  "w2v2_plugin.conversion (is this a wav2vec2 checkpoint?)")
        out[new] = value
    for (layer, kind), parts in sorted(qkv.items(), key=lambda kv: (int(kv[0][0]), kv[0][1])):
        if set(parts) != {"q", "k", "v"}:
            raise UnknownKeyError(f"layer {layer}: attention {kind} has only {sorted(parts)} of q/k/v projections")
        out[f"encoder.layers.{layer}.attention.in_proj.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def _inverse_rules() -> List[Tuple[str, str]]:
    """Plugin -> fairseq rules, derived from the forward map (group-norm form for norm 0)."""
    return [
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
                                 ) -> "OrderedDict[str, torch.Tensor]":
    """Inverse of ``fairseq_to_plugin_state_dict``; raises on unknown keys."""
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    norm = re.compile(r"feature_encoder\.conv_layers\.(\d+)\.norm\.(weight|bias)")
    for key, value in state_dict.items():
        m = _IN_PROJ.fullmatch(key)
        if m:
            for name, part in zip("qkv", value.chunk(3, dim=0)):
                out[f"encoder.layers.{m.group(1)}.self_attn.{name}_proj.{m.group(2)}"] = part
            continue
        m = norm.fullmatch(key)
        if m:
            sub = "2.1" if extractor_mode == "layer_norm" else "2"
            out[f"feature_extractor.conv_layers.{m.group(1)}.{sub}.{m.group(2)}"] = value
            continue
        new = _map_key(key, _inverse_rules())
        if new is None:
            raise UnknownKeyError(f"unknown w2v2 parameter {key!r}: not in the key map of w2v2_plugin.conversion")
        out[new] = value
    return out


# ---- whole checkpoints ------------------------------------------------------------------------

def to_plain(obj: Any) -> Any:
    """DictConfig / Namespace / enums / tuples -> plain python containers (weights_only-safe)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return to_plain(OmegaConf.to_container(obj, resolve=True, enum_to_str=True))
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, argparse.Namespace):
        return to_plain(vars(obj))
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "value") and isinstance(getattr(obj, "value"), (str, int)):  # Enum
        return obj.value
    return str(obj)


def checkpoint_model_cfg(state: Mapping[str, Any]) -> Dict[str, Any]:
    """The model section of a fairseq checkpoint's hydra ``cfg`` or legacy ``args``, as a dict."""
    if state.get("cfg") is not None:
        cfg = to_plain(state["cfg"])
        model = cfg.get("model")
        if isinstance(model, dict):
            return model
    if state.get("args") is not None:
        args = to_plain(state["args"])
        return dict(args, _name=args.get("arch", args.get("_name")))
    raise CheckpointError("checkpoint has neither a hydra 'cfg' with a model section nor legacy 'args'")


def model_cfg_to_w2v2(model_cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """Keep the fields the ``w2v2`` config knows (same names as fairseq's) and set ``_name``."""
    from .models.config import W2v2Config

    known = {f.name for f in fields(W2v2Config)}
    out = {k: v for k, v in model_cfg.items() if k in known and k != "_name"}
    if isinstance(out.get("latent_temp"), list):
        out["latent_temp"] = tuple(out["latent_temp"])
    out["_name"] = "w2v2"
    return out


_TASK_NAMES = {"audio_pretraining": "w2v2_pretraining", "audio_finetuning": "w2v2_finetuning"}
_CRITERION_NAMES = {"wav2vec": "w2v2_contrastive", "ctc": "w2v2_ctc"}


def _section(state: Mapping[str, Any], name: str) -> Dict[str, Any]:
    if state.get("cfg") is not None:
        sec = to_plain(state["cfg"]).get(name)
        return dict(sec) if isinstance(sec, dict) else {}
    args = to_plain(state.get("args") or {})
    key = {"task": "task", "criterion": "criterion"}[name]
    return {"_name": args.get(key)} | {k: v for k, v in args.items() if k in ("data", "sample_rate", "normalize",
                                                                              "max_sample_size", "min_sample_size",
                                                                              "labels", "enable_padding")}


def convert_wav2vec2_checkpoint(state: Mapping[str, Any]) -> Dict[str, Any]:
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


def _atomic_file(path: str, write) -> None:
    """``write(tmp)`` fills a temp file beside ``path`` (umask's usual mode), renamed into place:
    never a half-written file."""
    import os

    from w2v2_common.fileio import mkstemp, plain_file_mode

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1] or ".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, plain_file_mode())  # writers that replace the file (safetensors) make it 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint_atomic(state: Mapping[str, Any], path: str) -> None:
    """torch.save to a temp file beside ``path`` and rename: never a half-written file."""
    _atomic_file(path, lambda tmp: torch.save(dict(state), tmp))


def safetensors_path(checkpoint_path: str) -> str:
    """``OUT.pt`` -> ``OUT.safetensors`` (any other name gets ``.safetensors`` appended)."""
    return (checkpoint_path[:-3] if checkpoint_path.endswith(".pt") else checkpoint_path) + ".safetensors"


def safetensors_ready(weights: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The tensors as ``safetensors.torch.save_file`` takes them: detached, contiguous, and no
    two sharing storage (it refuses shared or overlapping tensors); copies only where needed."""
    out: Dict[str, torch.Tensor] = {}
    seen: set = set()
    for name, value in weights.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"weight {name!r} is a {type(value).__name__}, not a tensor")
        t = value.detach()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if not t.is_contiguous() or (ptr is not None and ptr in seen):
            t = t.contiguous().clone()
            ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None:
            seen.add(ptr)
        out[name] = t
    return out


def save_safetensors_atomic(weights: Mapping[str, torch.Tensor], path: str,
                            metadata: Optional[Mapping[str, str]] = None) -> None:
    """The weights as a ``.safetensors`` file (atomic, umask's usual mode)."""
    from safetensors.torch import save_file

    tensors = safetensors_ready(weights)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    _atomic_file(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
