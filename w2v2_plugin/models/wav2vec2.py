"""The ``w2v2`` model: wav2vec 2.0 (Baevski et al., 2020) for fairseq.

Written for this plugin (not wrapping fairseq's ``wav2vec2``) with the same public
interface, so fairseq's trainer, criteria and downstream code that call fairseq's model work
unchanged: ``forward`` returns the same dict, ``extract_features`` returns ``x`` (B, T, C),
``padding_mask`` and ``layer_results``, and ``get_logits`` / ``get_targets`` /
``get_extra_losses`` follow fairseq's criterion contract.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from fairseq.models import BaseFairseqModel, register_model

from ..precision import fp32_region
from .components import (
    ConvPositionalEmbedding,
    EncoderLayer,
    FeatureEncoder,
    FeedForward,
    GradMultiply,
    GumbelQuantizer,
    SelfAttention,
    TransformerEncoder,
    lengths_to_padding_mask,
)
from .config import W2v2Config, check_supported, parse_conv_layers, parse_latent_temp
from .contrastive import contrastive_logits
from .masking import compute_mask_indices, sample_negatives


def _init_bert_params(module: nn.Module) -> None:
    """BERT-style init used by fairseq's transformer: N(0, 0.02) linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_transformer_encoder(cfg: W2v2Config) -> TransformerEncoder:
    """Plain factory: the context network described by ``cfg``."""
    dim = cfg.encoder_embed_dim
    layers = [
        EncoderLayer(
            attention=SelfAttention(dim, cfg.encoder_attention_heads, cfg.attention_dropout),
            feed_forward=FeedForward(dim, cfg.encoder_ffn_embed_dim, str(cfg.activation_fn), cfg.activation_dropout),
            dim=dim,
            dropout=cfg.dropout,
            layer_norm_first=cfg.layer_norm_first,
        )
        for _ in range(cfg.encoder_layers)
    ]
    for layer in layers:
        layer.apply(_init_bert_params)
    return TransformerEncoder(
        pos_conv=ConvPositionalEmbedding(dim, cfg.conv_pos, cfg.conv_pos_groups),
        layers=layers,
        dim=dim,
        dropout=cfg.dropout,
        layerdrop=cfg.encoder_layerdrop,
        layer_norm_first=cfg.layer_norm_first,
        checkpoint_activations=cfg.checkpoint_activations,
    )


@register_model("w2v2", dataclass=W2v2Config)
class W2v2Model(BaseFairseqModel):
    def __init__(self, cfg: W2v2Config) -> None:
        super().__init__()
        check_supported(cfg)
        self.cfg = cfg
        self.conv_layers = parse_conv_layers(cfg.conv_feature_layers)
        self.embed = self.conv_layers[-1][0]
        self.feature_encoder = FeatureEncoder(self.conv_layers, str(cfg.extractor_mode), cfg.conv_bias)
        self.feature_norm = nn.LayerNorm(self.embed)
        self.feature_projection: Optional[nn.Linear] = (
            nn.Linear(self.embed, cfg.encoder_embed_dim) if self.embed != cfg.encoder_embed_dim else None)
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.dropout_features = nn.Dropout(cfg.dropout_features)
        self.mask_embedding = nn.Parameter(torch.empty(cfg.encoder_embed_dim).uniform_())
        self.encoder = build_transformer_encoder(cfg)

        final_dim = cfg.final_dim if cfg.final_dim > 0 else cfg.encoder_embed_dim
        self.quantizer: Optional[GumbelQuantizer] = None
        if cfg.quantize_targets:
            vq_dim = cfg.latent_dim if cfg.latent_dim > 0 else final_dim
            self.quantizer = GumbelQuantizer(
                self.embed, cfg.latent_vars, cfg.latent_groups, vq_dim, parse_latent_temp(cfg.latent_temp),
                cfg.quantizer_depth, cfg.quantizer_factor)
            self.target_projection: Optional[nn.Linear] = nn.Linear(vq_dim, final_dim)
        else:
            self.target_projection = nn.Linear(self.embed, final_dim)
        self.target_glu: Optional[nn.Module] = (
            nn.Sequential(nn.Linear(final_dim, final_dim * 2), nn.GLU()) if cfg.target_glu else None)
        self.context_projection: Optional[nn.Linear] = nn.Linear(cfg.encoder_embed_dim, final_dim)
        self.num_updates = 0

    @classmethod
    def build_model(cls, cfg: W2v2Config, task=None) -> "W2v2Model":
        return cls(cfg)

    # ---- fairseq model hooks -------------------------------------------------------------
    def set_num_updates(self, num_updates: int) -> None:
        super().set_num_updates(num_updates)
        self.num_updates = num_updates
        if self.quantizer is not None:
            self.quantizer.set_num_updates(num_updates)

    def upgrade_state_dict_named(self, state_dict: Dict[str, torch.Tensor], name: str) -> Dict[str, torch.Tensor]:
        """Accept fairseq ``wav2vec2`` state dicts too: they are mapped through the key map."""
        from ..conversion import looks_like_fairseq_wav2vec2, fairseq_to_plugin_state_dict

        prefix = name + "." if name else ""
        own = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if own and looks_like_fairseq_wav2vec2(own):
            for k in [k for k in state_dict if k.startswith(prefix)]:
                del state_dict[k]
            for k, v in fairseq_to_plugin_state_dict(own).items():
                state_dict[prefix + k] = v
        return state_dict

    # ---- lengths ------------------------------------------------------------------------
    def _get_feat_extract_output_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        return self.feature_encoder.output_lengths(input_lengths)

    def frame_padding_mask(self, padding_mask: Optional[torch.Tensor], num_frames: int) -> Optional[torch.Tensor]:
        """Sample-level padding mask (B, S) -> frame-level (B, T), None when nothing is padded."""
        if padding_mask is None or not padding_mask.any():
            return None
        input_lengths = (~padding_mask).long().sum(-1)
        return lengths_to_padding_mask(self._get_feat_extract_output_lengths(input_lengths), num_frames)

    # ---- masking ------------------------------------------------------------------------
    def apply_mask(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor],
                   mask_indices: Optional[torch.Tensor] = None,
                   mask_channel_indices: Optional[torch.Tensor] = None):
        # x: (batch, frame, feature)
        cfg = self.cfg
        bsz, tsz, csz = x.shape
        if cfg.mask_channel_prob > 0 and cfg.mask_channel_before:
            if mask_channel_indices is None:
                mask_channel_indices = self._channel_mask(bsz, csz, x.device)
            x = x.masked_fill(_as_bool(mask_channel_indices, x.device).unsqueeze(1), 0.0)
            mask_channel_indices = None
        if cfg.mask_prob > 0:
            if mask_indices is None:
                mask_indices = compute_mask_indices(
                    (bsz, tsz), padding_mask, cfg.mask_prob, cfg.mask_length, str(cfg.mask_selection),
                    cfg.mask_other, min_masks=2, no_overlap=cfg.no_mask_overlap, min_space=cfg.mask_min_space,
                    require_same_masks=cfg.require_same_masks, mask_dropout=cfg.mask_dropout, device=x.device)
            mask_indices = _as_bool(mask_indices, x.device)
            x = torch.where(mask_indices.unsqueeze(-1), self.mask_embedding.to(x.dtype), x)
        else:
            mask_indices = None
        if cfg.mask_channel_prob > 0 and not cfg.mask_channel_before:
            if mask_channel_indices is None:
                mask_channel_indices = self._channel_mask(bsz, csz, x.device)
            x = x.masked_fill(_as_bool(mask_channel_indices, x.device).unsqueeze(1), 0.0)
        return x, mask_indices

    def _channel_mask(self, bsz: int, csz: int, device: torch.device) -> torch.Tensor:
        cfg = self.cfg
        return compute_mask_indices(
            (bsz, csz), None, cfg.mask_channel_prob, cfg.mask_channel_length, str(cfg.mask_channel_selection),
            cfg.mask_channel_other, no_overlap=cfg.no_mask_channel_overlap, min_space=cfg.mask_channel_min_space,
            device=device)

    # ---- contrastive head ----------------------------------------------------------------
    def negative_indices(self, num_rows: int, num_steps: int, device: torch.device) -> torch.Tensor:
        """Distractors for (num_rows, num_steps) targets: (rows, steps, K) flat indices into rows * steps."""
        return sample_negatives(num_rows, num_steps, self.cfg.num_negatives, self.cfg.cross_sample_negatives,
                                device=device)

    # ---- forward ------------------------------------------------------------------------
    def forward(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor] = None, mask: bool = True,
                features_only: bool = False, layer: Optional[int] = None,
                mask_indices: Optional[torch.Tensor] = None, mask_channel_indices: Optional[torch.Tensor] = None,
                padding_count: Optional[int] = None, **unused: Any) -> Dict[str, Any]:
        # source: (batch, sample); padding_mask: (batch, sample), True on padding
        cfg = self.cfg
        if cfg.feature_grad_mult > 0:
            features = self.feature_encoder(source)
            if cfg.feature_grad_mult != 1.0:
                features = GradMultiply.apply(features, cfg.feature_grad_mult)
        else:
            with torch.no_grad():  # frozen encoder: no graph is built
                features = self.feature_encoder(source)
        features_pen = features.float().pow(2).mean()

        features = self.feature_norm(features)  # (batch, frame, channel)
        unmasked_features = features
        padding_mask = self.frame_padding_mask(padding_mask, features.size(1))

        drop = features.size(1) % cfg.crop_seq_to_multiple
        if drop:
            features = features[:, :-drop]
            unmasked_features = unmasked_features[:, :-drop]
            if padding_mask is not None:
                padding_mask = padding_mask[:, :-drop]

        if self.feature_projection is not None:
            features = self.feature_projection(features)
        features = self.dropout_input(features)
        unmasked_features = self.dropout_features(unmasked_features)

        if mask:
            x, mask_indices = self.apply_mask(features, padding_mask, mask_indices, mask_channel_indices)
            if mask_indices is not None and not features_only:
                counts = mask_indices.sum(-1)
                if bool((counts != counts[0]).any()):
                    raise ValueError("pretraining needs the same number of masked steps in every row "
                                     "(set model.require_same_masks=true)")
                y = unmasked_features[mask_indices].view(unmasked_features.size(0), -1, unmasked_features.size(-1))
            else:
                y = unmasked_features
        else:
            x, y, mask_indices = features, unmasked_features, None

        enc = self.encoder(x, padding_mask=padding_mask, layer=layer)
        x = enc.x
        if features_only:
            return {"x": x, "padding_mask": padding_mask, "features": unmasked_features,
                    "layer_results": enc.layer_results}

        result: Dict[str, Any] = {"padding_mask": padding_mask, "features_pen": features_pen}
        # Candidates: the targets at the masked steps, or with negatives_from_everywhere the
        # targets at every step (distractors drawn from all of them, as fairseq).
        candidates = unmasked_features if cfg.negatives_from_everywhere else y
        if self.quantizer is not None:
            q = self.quantizer(candidates)
            candidates = q.x
            result.update(prob_perplexity=q.prob_perplexity, code_perplexity=q.code_perplexity,
                          num_vars=q.num_vars, temp=q.temp)
        # The contrastive space in fp32 also under autocast: cosine similarities divided by a
        # temperature of 0.1 magnify bf16's rounding of these small projections tenfold.
        with fp32_region(candidates):
            candidates = self.target_projection(candidates.float())  # (batch, cand, final_dim)
        bsz, csz = candidates.shape[:2]
        negatives = self.negative_indices(bsz, csz, candidates.device)  # (batch, cand, K)
        positive = torch.arange(csz, device=candidates.device).expand(bsz, csz)  # true target = own step
        if cfg.negatives_from_everywhere and mask_indices is not None:  # keep the masked steps' rows
            positive = positive[mask_indices].view(bsz, -1)
            negatives = negatives.gather(1, positive.unsqueeze(-1).expand(-1, -1, negatives.size(-1)))

        if mask_indices is not None:
            x = x[mask_indices].view(x.size(0), -1, x.size(-1))
        with fp32_region(x):
            if self.target_glu is not None:
                candidates = self.target_glu(candidates)
            x = self.context_projection(x.float())  # (batch, masked steps, final_dim)
        result["x"] = contrastive_logits(x, candidates, positive, negatives, cfg.logit_temp,
                                         cross_sample=cfg.cross_sample_negatives > 0)
        return result

    def extract_features(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor] = None,
                         mask: bool = False, layer: Optional[int] = None, **unused: Any) -> Dict[str, Any]:
        return self.forward(source, padding_mask, mask=mask, features_only=True, layer=layer)

    def quantize(self, source: torch.Tensor):
        """Quantized vectors and codebook indices of raw audio: ((B, T, D), (B, T, G))."""
        if self.quantizer is None:
            raise ValueError("this model has no quantizer (quantize_targets=false or pretraining modules removed)")
        features = self.feature_norm(self.feature_encoder(source))
        q = self.quantizer(features, produce_targets=True)
        return q.x, q.targets

    # ---- criterion contract -----------------------------------------------------------------
    def get_logits(self, net_output: Dict[str, Any]) -> torch.Tensor:
        logits = net_output["x"].transpose(0, 2)  # (T, B, K+1)
        return logits.reshape(-1, logits.size(-1))

    def get_targets(self, sample: Dict[str, Any], net_output: Dict[str, Any], expand_steps: bool = True) -> torch.Tensor:
        x = net_output["x"]
        return x.new_zeros(x.size(1) * x.size(2), dtype=torch.long)  # the true target is candidate 0

    def get_extra_losses(self, net_output: Dict[str, Any]) -> List[torch.Tensor]:
        pen = []
        if "prob_perplexity" in net_output:
            pen.append((net_output["num_vars"] - net_output["prob_perplexity"]) / net_output["num_vars"])
        if "features_pen" in net_output:
            pen.append(net_output["features_pen"])
        return pen

    def remove_pretraining_modules(self, last_layer: Optional[int] = None) -> None:
        self.quantizer = None
        self.target_projection = None
        self.target_glu = None
        self.context_projection = None
        if last_layer is not None:
            self.encoder.layers = nn.ModuleList(l for i, l in enumerate(self.encoder.layers) if i <= last_layer)


def _as_bool(mask, device: torch.device) -> torch.Tensor:
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    return mask.to(device=device, dtype=torch.bool)
