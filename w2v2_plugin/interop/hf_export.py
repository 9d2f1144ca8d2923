"""Export a ``w2v2_ctc`` model to a Hugging Face transformers ``Wav2Vec2ForCTC`` directory.

Writes ``config.json`` and the weights (``model.safetensors``, via ``save_pretrained``),
``vocab.json`` / ``tokenizer_config.json`` / ``special_tokens_map.json`` (a
``Wav2Vec2CTCTokenizer``) and ``preprocessor_config.json`` (a ``Wav2Vec2FeatureExtractor``),
so ``Wav2Vec2ForCTC.from_pretrained(dir)`` and ``Wav2Vec2Processor.from_pretrained(dir)`` work.

Vocabulary: fairseq's index 0 (``<s>``) is the CTC blank; transformers uses ``pad_token_id``
as the blank, so index 0 is named ``<pad>`` and index 1 ``<s>`` in ``vocab.json``, the
convention of the published ``facebook/wav2vec2-*-960h`` conversions. Indices are unchanged.

``transformers`` is an optional extra (``pip install w2v2-plugin[hf]``).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import torch
from fairseq.data import Dictionary

from w2v2_common.errors import W2v2Error
from w2v2_common.fileio import atomic_dir

from .checkpoint_io import DEFAULT_OPT_IN, UnsafeCheckpointError, load_model_ensemble_and_task
from .fairseq_wav2vec2 import Rules, rename_key, split_fused_qkv

ModelOrCheckpoint = str | os.PathLike[str] | torch.nn.Module
# (channels, kernel, stride) of each feature-encoder conv layer, as the model was built
ConvLayers = Sequence[tuple[int, int, int]]


class HfExportError(W2v2Error, ValueError):
    """The model cannot be exported (or transformers is missing); the message says why."""


class HfExportResult(NamedTuple):
    out_dir: str
    vocab_size: int
    parameters: int
    layers: int


def _require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise HfExportError("Hugging Face export needs transformers: pip install 'w2v2-plugin[hf]' "
                            "(or pip install transformers)") from None
    return transformers


def hf_config_dict(w2v_cfg: Any, ctc_cfg: Any, vocab_size: int, conv_layers: ConvLayers) -> dict[str, Any]:
    """transformers ``Wav2Vec2Config`` arguments describing the same network.

    ``conv_layers`` is the parsed ``w2v_cfg.conv_feature_layers`` as the model was built with it
    (``W2v2Model.feature_encoder.conv_layers_spec``): taken from the caller, as the parser
    belongs to the model package, which this one sits below.
    """
    layers = list(conv_layers)
    mode = str(w2v_cfg.extractor_mode)
    act = str(w2v_cfg.activation_fn)
    if act not in ("gelu", "relu", "tanh"):
        raise HfExportError(f"activation_fn={act!r} has no transformers equivalent here")
    return dict(
        vocab_size=vocab_size,
        hidden_size=w2v_cfg.encoder_embed_dim,
        num_hidden_layers=w2v_cfg.encoder_layers,
        num_attention_heads=w2v_cfg.encoder_attention_heads,
        intermediate_size=w2v_cfg.encoder_ffn_embed_dim,
        hidden_act=act,
        conv_dim=[c for c, _, _ in layers],
        conv_kernel=[k for _, k, _ in layers],
        conv_stride=[s for _, _, s in layers],
        conv_bias=bool(w2v_cfg.conv_bias),
        feat_extract_norm="group" if mode == "default" else "layer",
        feat_extract_activation="gelu",
        num_conv_pos_embeddings=w2v_cfg.conv_pos,
        num_conv_pos_embedding_groups=w2v_cfg.conv_pos_groups,
        do_stable_layer_norm=bool(w2v_cfg.layer_norm_first),
        layer_norm_eps=1e-5,
        hidden_dropout=float(w2v_cfg.dropout),
        attention_dropout=float(w2v_cfg.attention_dropout),
        activation_dropout=float(w2v_cfg.activation_dropout),
        feat_proj_dropout=float(w2v_cfg.dropout_input),
        final_dropout=float(getattr(ctc_cfg, "final_dropout", 0.0)),
        layerdrop=float(w2v_cfg.encoder_layerdrop),
        apply_spec_augment=bool(getattr(ctc_cfg, "apply_mask", False)),
        mask_time_prob=float(w2v_cfg.mask_prob),
        mask_time_length=int(w2v_cfg.mask_length),
        mask_feature_prob=float(w2v_cfg.mask_channel_prob),
        mask_feature_length=int(w2v_cfg.mask_channel_length),
        ctc_loss_reduction="sum",
        ctc_zero_infinity=True,
        pad_token_id=0,  # the CTC blank (fairseq's <s>, index 0)
        bos_token_id=1,
        eos_token_id=2,
        architectures=["Wav2Vec2ForCTC"],
    )


PLUGIN_TO_HF: Rules = [
    (r"feature_encoder\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"wav2vec2.feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_encoder\.conv_layers\.(\d+)\.norm\.(weight|bias)",
     r"wav2vec2.feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"feature_norm\.(weight|bias)", r"wav2vec2.feature_projection.layer_norm.\1"),
    (r"feature_projection\.(weight|bias)", r"wav2vec2.feature_projection.projection.\1"),
    (r"mask_embedding", r"wav2vec2.masked_spec_embed"),
    (r"encoder\.pos_conv\.conv\.(.+)", r"wav2vec2.encoder.pos_conv_embed.conv.\1"),
    (r"encoder\.layer_norm\.(weight|bias)", r"wav2vec2.encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.attention\.out_proj\.(weight|bias)",
     r"wav2vec2.encoder.layers.\1.attention.out_proj.\2"),
    (r"encoder\.layers\.(\d+)\.attention_norm\.(weight|bias)", r"wav2vec2.encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.fc1\.(weight|bias)",
     r"wav2vec2.encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.fc2\.(weight|bias)",
     r"wav2vec2.encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_norm\.(weight|bias)", r"wav2vec2.encoder.layers.\1.final_layer_norm.\2"),
]
_HF_QKV_TEMPLATE = "wav2vec2.encoder.layers.{layer}.attention.{proj}_proj.{kind}"


def hf_state_dict(model: torch.nn.Module, hf_keys: set[str]) -> dict[str, torch.Tensor]:
    """``w2v2_ctc`` weights under transformers' ``Wav2Vec2ForCTC`` names.

    Every plugin parameter must map to an HF key that exists, and every HF key must be
    filled: anything else raises (nothing silently dropped or left at its random init).
    """
    ctc = cast(Any, model)  # a w2v2_ctc model (export_to_hf checks); interop names no model class
    w2v = ctc.w2v_encoder.w2v_model
    out: dict[str, torch.Tensor] = {}
    for key, value in w2v.state_dict().items():
        parts = split_fused_qkv(key, value, _HF_QKV_TEMPLATE)
        if parts is not None:
            out.update((name, part.clone()) for name, part in parts.items())
            continue
        new = rename_key(key, PLUGIN_TO_HF)
        if new is None:
            raise HfExportError(f"w2v2 parameter {key!r} has no transformers counterpart")
        out[new] = value.clone()
    if w2v.feature_projection is None:
        # the plugin skips the projection when dims agree; transformers always has one
        dim = w2v.cfg.encoder_embed_dim
        out["wav2vec2.feature_projection.projection.weight"] = torch.eye(dim)
        out["wav2vec2.feature_projection.projection.bias"] = torch.zeros(dim)
    out["lm_head.weight"] = ctc.w2v_encoder.proj.weight.detach().clone()
    out["lm_head.bias"] = ctc.w2v_encoder.proj.bias.detach().clone()
    if "wav2vec2.encoder.pos_conv_embed.conv.weight_g" in hf_keys:  # older transformers naming
        for a, b in (("original0", "weight_g"), ("original1", "weight_v")):
            src = f"wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.{a}"
            out[f"wav2vec2.encoder.pos_conv_embed.conv.{b}"] = out.pop(src)
    extra, missing = set(out) - hf_keys, hf_keys - set(out)
    if extra or missing:
        raise HfExportError(f"transformers' Wav2Vec2ForCTC layout differs: unexpected {sorted(extra)[:3]}, "
                            f"missing {sorted(missing)[:3]} (transformers version?)")
    return out


def hf_vocab(dictionary: Dictionary) -> dict[str, int]:
    vocab = {sym: i for i, sym in enumerate(dictionary.symbols)}
    names = {i: s for s, i in vocab.items()}
    names[0], names[1] = "<pad>", "<s>"  # index 0 is the blank = transformers' pad token
    return {s: i for i, s in sorted(names.items())}


def _load(model_or_ckpt: ModelOrCheckpoint, dictionary: Dictionary | None,
          trust: bool = False, opt_in: str = DEFAULT_OPT_IN) -> tuple[torch.nn.Module, Dictionary]:
    """The model and its dictionary: as given, or loaded from a ``w2v2_ctc`` checkpoint."""
    if isinstance(model_or_ckpt, torch.nn.Module):
        if dictionary is None:
            raise HfExportError("pass the target dictionary with a model object")
        return model_or_ckpt, dictionary
    path = str(model_or_ckpt)
    if not os.path.isfile(path):
        raise HfExportError(f"{path}: no such checkpoint")
    try:
        models, _cfg, task = load_model_ensemble_and_task(path, trust=trust, opt_in=opt_in)
    except UnsafeCheckpointError as e:
        raise HfExportError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - any failure here means "not a w2v2_ctc checkpoint"
        raise HfExportError(f"{path}: cannot load as a w2v2_ctc checkpoint ({type(e).__name__}: {e}); "
                            f"convert fairseq wav2vec_ctc checkpoints with w2v2-convert first") from None
    return models[0], dictionary if dictionary is not None else task.target_dictionary


def export_to_hf(model_or_ckpt: ModelOrCheckpoint, dictionary: Dictionary | None,
                 out_dir: str, overwrite: bool = False, trust: bool = False,
                 opt_in: str = DEFAULT_OPT_IN) -> HfExportResult:
    """Write a transformers ``Wav2Vec2ForCTC`` directory for a ``w2v2_ctc`` model or checkpoint.

    ``dictionary`` may be None for a checkpoint (its own target dictionary is used). The
    directory is assembled beside ``out_dir`` and renamed into place: never half-written.
    A checkpoint is read by :func:`w2v2_plugin.interop.checkpoint_io.load_checkpoint_file` (no
    code run from it; ``trust=True`` is the user's opt-in for files that need more).
    """
    transformers = _require_transformers()
    model, dictionary = _load(model_or_ckpt, dictionary, trust, opt_in)
    if not hasattr(model, "w2v_encoder") or not hasattr(model.w2v_encoder, "w2v_model"):
        raise HfExportError(f"{type(model).__name__} is not a w2v2_ctc model")
    ctc = cast(Any, model)  # a w2v2_ctc model's attributes (checked above); interop names no model class
    vocab_size = ctc.w2v_encoder.proj.out_features
    if len(dictionary) != vocab_size:
        raise HfExportError(f"dictionary has {len(dictionary)} symbols, the model outputs {vocab_size}")
    if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
        raise HfExportError(f"{out_dir}: exists and is not empty; choose a new directory or remove it")

    w2v = ctc.w2v_encoder.w2v_model
    config = transformers.Wav2Vec2Config(**hf_config_dict(w2v.cfg, ctc.cfg, vocab_size,
                                                                w2v.feature_encoder.conv_layers_spec))
    hf = transformers.Wav2Vec2ForCTC(config).eval()
    hf.load_state_dict(hf_state_dict(model, set(hf.state_dict())), strict=True)
    with atomic_dir(out_dir, prefix=".hf-export-") as tmp:
        hf.save_pretrained(tmp)
        _save_processor(transformers, tmp, dictionary, model.cfg, config)
    return HfExportResult(out_dir=os.path.abspath(out_dir), vocab_size=vocab_size,
                          parameters=sum(p.numel() for p in hf.parameters()),
                          layers=config.num_hidden_layers)


def _save_processor(transformers: Any, directory: str, dictionary: Dictionary, ctc_cfg: Any, config: Any) -> None:
    """The tokenizer (``vocab.json`` ...) and the feature extractor of ``Wav2Vec2Processor``."""
    vocab_path = os.path.join(directory, "vocab.json")
    with open(vocab_path, "w", encoding="utf-8") as f:
        json.dump(hf_vocab(dictionary), f, ensure_ascii=False, indent=1)
    tokenizer = transformers.Wav2Vec2CTCTokenizer(
        vocab_path, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",  # noqa: S106 - tokens
        word_delimiter_token="|" if "|" in dictionary.indices else None)
    tokenizer.save_pretrained(directory)
    normalize = bool((getattr(ctc_cfg, "w2v_args", None) or {}).get("task", {}).get("normalize", False))
    transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=normalize,
        return_attention_mask=config.feat_extract_norm == "layer").save_pretrained(directory)
