"""The ``w2v2`` model: wav2vec 2.0 (Baevski et al., 2020) for fairseq.

Written for this plugin (not wrapping fairseq's ``wav2vec2``) with the same public
interface, so fairseq's trainer, criteria and downstream code that call fairseq's model work
unchanged: ``forward`` returns the same dict, ``extract_features`` returns ``x`` (B, T, C),
``padding_mask`` and ``layer_results``, and ``get_logits`` / ``get_targets`` /
``get_extra_losses`` follow fairseq's criterion contract.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from fairseq.models import BaseFairseqModel, register_model
from torch import nn

from ..interop.fairseq_wav2vec2 import fairseq_to_plugin_state_dict, looks_like_fairseq_wav2vec2
from ..precision import fp32_region
from .config import W2v2Config, check_supported, parse_latent_temp
from .contrastive import compute_diversity_loss, compute_features_penalty, contrastive_logits, sample_negatives
from .conv_geometry import parse_conv_layers
from .dropout import make_dropout
from .feature_cache import FrozenFeatureCache
from .feature_encoder import FeatureEncoder, GradMultiply, lengths_to_padding_mask
from .masking import compute_mask_indices
from .quantizer import GumbelQuantizer
from .transformer import build_transformer_encoder


class Distractors(NamedTuple):
    """Where each masked step's true target and its K distractors sit among the candidates."""

    positive: torch.Tensor  # (batch, masked steps) long, index into the step's own row of candidates
    negatives: torch.Tensor  # (batch, masked steps, K) long, flat index into (batch * candidates)


@register_model("w2v2", dataclass=W2v2Config)
class W2v2Model(BaseFairseqModel):
    """wav2vec 2.0 pretraining model; attributes and the paper's symbols (section 2, 3):

    - raw audio X: ``source`` (batch, sample) of ``forward``;
    - ``feature_encoder`` is f: X -> Z, a temporal conv stack; Z = z_1..z_T are the latent
      features, ``feature_dim`` (C, 512) channels, one frame per 20 ms; ``feature_norm`` is the
      layer norm on Z; ``cfg.feature_grad_mult`` scales f's gradient;
    - ``feature_projection`` maps Z to the transformer width (``cfg.encoder_embed_dim``);
    - masking (section 3.1): span starts with probability p (``cfg.mask_prob``/``cfg.mask_length``),
      spans of M = ``cfg.mask_length`` steps, masked steps replaced by ``mask_embedding``;
    - ``encoder`` is g: Z -> C, the context network (Transformer); C = c_1..c_T;
    - ``quantizer`` is q: Z -> Q, Gumbel product quantization, G = ``cfg.latent_groups``
      codebooks of V = ``cfg.latent_vars`` entries, temperature tau = ``cfg.latent_temp``;
      Q = q_1..q_T are the targets (``quantize_targets``; otherwise Z itself);
    - ``target_projection`` and ``context_projection`` map q_t and c_t into the contrastive
      space (``cfg.final_dim``); ``target_glu`` optionally follows the target side;
    - K = ``cfg.num_negatives`` distractors per masked step, from the other masked steps of the
      same utterance; kappa = ``cfg.logit_temp`` divides the cosine similarities;
    - alpha (diversity weight, 0.1) and the feature-penalty weight (10 in BASE) are the
      criterion's ``loss_weights``, applied to :meth:`get_extra_losses`.
    """

    def __init__(self, cfg: W2v2Config) -> None:
        super().__init__()
        check_supported(cfg)
        self.cfg = cfg
        conv_layers = parse_conv_layers(cfg.conv_feature_layers)
        self.feature_dim = conv_layers[-1][0]  # channels of the latent features Z
        self.feature_encoder = FeatureEncoder(conv_layers, str(cfg.extractor_mode), cfg.conv_bias)
        self.feature_norm = nn.LayerNorm(self.feature_dim)
        self.feature_projection: nn.Linear | None = (
            nn.Linear(self.feature_dim, cfg.encoder_embed_dim) if self.feature_dim != cfg.encoder_embed_dim else None)
        self.dropout_input = make_dropout(cfg.dropout_input, cfg.packed_dropout)
        self.dropout_features = make_dropout(cfg.dropout_features, cfg.packed_dropout)
        self.mask_embedding = nn.Parameter(torch.empty(cfg.encoder_embed_dim).uniform_())
        self.encoder = build_transformer_encoder(cfg)

        final_dim = cfg.final_dim if cfg.final_dim > 0 else cfg.encoder_embed_dim
        self.quantizer: GumbelQuantizer | None = None
        if cfg.quantize_targets:
            vq_dim = cfg.latent_dim if cfg.latent_dim > 0 else final_dim
            self.quantizer = GumbelQuantizer(
                self.feature_dim, cfg.latent_vars, cfg.latent_groups, vq_dim, parse_latent_temp(cfg.latent_temp),
                cfg.quantizer_depth, cfg.quantizer_factor)
            self.target_projection: nn.Linear | None = nn.Linear(vq_dim, final_dim)
        else:
            self.target_projection = nn.Linear(self.feature_dim, final_dim)
        self.target_glu: nn.Module | None = (
            nn.Sequential(nn.Linear(final_dim, final_dim * 2), nn.GLU()) if cfg.target_glu else None)
        self.context_projection: nn.Linear | None = nn.Linear(cfg.encoder_embed_dim, final_dim)
        # set by fine-tuning (model.feature_cache_mb) for a frozen encoder; not part of the state
        self.frozen_feature_cache: FrozenFeatureCache | None = None

    @classmethod
    def build_model(cls, cfg: W2v2Config, task=None) -> W2v2Model:
        return cls(cfg)

    # ---- fairseq model hooks -------------------------------------------------------------
    def set_num_updates(self, num_updates: int) -> None:
        """The trainer's update count anneals the quantizer's Gumbel temperature."""
        super().set_num_updates(num_updates)
        if self.quantizer is not None:
            self.quantizer.set_num_updates(num_updates)

    def upgrade_state_dict_named(self, state_dict: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
        """Accept fairseq ``wav2vec2`` state dicts too: they are mapped through the key map."""
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

    def frame_padding_mask(self, padding_mask: torch.Tensor | None, num_frames: int) -> torch.Tensor | None:
        """Sample-level padding mask (B, S) -> frame-level (B, T), None when nothing is padded."""
        if padding_mask is None or not padding_mask.any():
            return None
        input_lengths = (~padding_mask).long().sum(-1)
        return lengths_to_padding_mask(self._get_feat_extract_output_lengths(input_lengths), num_frames)

    # ---- masking ------------------------------------------------------------------------
    def apply_mask(self, x: torch.Tensor, padding_mask: torch.Tensor | None,
                   mask_indices: torch.Tensor | None = None,
                   mask_channel_indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Time masking (masked steps -> ``mask_embedding``) and optional channel masking (-> 0).

        x: (batch, frame, feature). Returns the masked x and the (batch, frame) bool time mask,
        or None when ``mask_prob`` is 0.
        """
        cfg = self.cfg
        bsz, tsz, num_channels = x.shape
        if cfg.mask_channel_prob > 0 and cfg.mask_channel_before:
            if mask_channel_indices is None:
                mask_channel_indices = self._channel_mask(bsz, num_channels, x.device)
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
                mask_channel_indices = self._channel_mask(bsz, num_channels, x.device)
            x = x.masked_fill(_as_bool(mask_channel_indices, x.device).unsqueeze(1), 0.0)
        return x, mask_indices

    def _channel_mask(self, bsz: int, num_channels: int, device: torch.device) -> torch.Tensor:
        cfg = self.cfg
        return compute_mask_indices(
            (bsz, num_channels), None, cfg.mask_channel_prob, cfg.mask_channel_length,
            str(cfg.mask_channel_selection), cfg.mask_channel_other, no_overlap=cfg.no_mask_channel_overlap,
            min_space=cfg.mask_channel_min_space, device=device)

    # ---- the paper's steps, in the order forward takes them --------------------------------
    def encode_features(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Z = f(X) and the feature penalty on it.

        source: (batch, sample) -> features (batch, frame, C) before the layer norm, penalty ().
        f's gradient is scaled by ``feature_grad_mult``; at 0 no graph is built at all, and a
        ``frozen_feature_cache``, when set, returns the rows it has seen (models/feature_cache.py).
        """
        cfg = self.cfg
        if cfg.feature_grad_mult > 0:
            features = self.feature_encoder(source)
            if cfg.feature_grad_mult != 1.0:
                features = GradMultiply.apply(features, cfg.feature_grad_mult)
        elif self.frozen_feature_cache is not None:
            features = self.frozen_feature_cache.features(self.feature_encoder, source)
        else:
            with torch.no_grad():  # frozen encoder: no graph is built
                features = self.feature_encoder(source)
        return features, compute_features_penalty(features)

    def crop_frames(self, features: torch.Tensor, padding_mask: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Drop trailing frames so that T is a multiple of ``crop_seq_to_multiple``.

        features: (batch, frame, C); padding_mask: (batch, frame) or None; both cropped alike.
        """
        drop = features.size(1) % self.cfg.crop_seq_to_multiple
        if drop:
            features = features[:, :-drop]
            if padding_mask is not None:
                padding_mask = padding_mask[:, :-drop]
        return features, padding_mask

    def project_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized Z (batch, frame, C) -> the transformer input (batch, frame, D) after
        ``dropout_input``, and the unmasked features (batch, frame, C) after ``dropout_features``,
        which the targets are made from."""
        x = features if self.feature_projection is None else self.feature_projection(features)
        x = self.dropout_input(x)
        return x, self.dropout_features(features)

    def targets_at_masked_steps(self, unmasked_features: torch.Tensor, mask_indices: torch.Tensor) -> torch.Tensor:
        """(batch, frame, C) -> (batch, masked steps, C); every row must mask as many steps."""
        counts = mask_indices.sum(-1)
        if bool((counts != counts[0]).any()):
            raise ValueError("pretraining needs the same number of masked steps in every row "
                             "(set model.require_same_masks=true)")
        return _masked_steps(unmasked_features, mask_indices)

    def quantize_targets(self, candidates: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Q = q(Z) at the candidate steps, (batch, cand, C) -> (batch, cand, vq_dim), and the
        quantizer's statistics for the output dict; unchanged (and no statistics) without a quantizer."""
        if self.quantizer is None:
            return candidates, {}
        q = self.quantizer(candidates)
        return q.x, {"prob_perplexity": q.prob_perplexity, "code_perplexity": q.code_perplexity,
                     "num_vars": q.num_vars, "temp": q.temp}

    def project_targets(self, candidates: torch.Tensor) -> torch.Tensor:
        """(batch, cand, vq_dim or C) -> (batch, cand, final_dim), fp32 also under autocast:
        cosine similarities divided by a temperature of 0.1 magnify bf16's rounding of these
        small projections tenfold."""
        if self.target_projection is None:  # set in __init__; only remove_pretraining_modules drops it
            raise AssertionError("project_targets needs the pretraining modules (removed for fine-tuning)")
        with fp32_region(candidates):
            return self.target_projection(candidates.float())

    def negative_indices(self, num_rows: int, num_steps: int, device: torch.device) -> torch.Tensor:
        """Distractors for (num_rows, num_steps) targets: (rows, steps, K) flat indices into rows * steps."""
        return sample_negatives(num_rows, num_steps, self.cfg.num_negatives, self.cfg.cross_sample_negatives,
                                device=device)

    def sample_distractors(self, candidates: torch.Tensor, mask_indices: torch.Tensor | None) -> Distractors:
        """The true target (the step itself) and K distractors of each masked step.

        candidates: (batch, cand, final_dim), the masked steps' targets, or with
        ``negatives_from_everywhere`` every step's (distractors then come from all of them, as
        fairseq, and only the masked steps' rows are kept).
        """
        bsz, num_candidates = candidates.shape[:2]
        negatives = self.negative_indices(bsz, num_candidates, candidates.device)  # (batch, cand, K)
        positive = torch.arange(num_candidates, device=candidates.device).expand(bsz, num_candidates)
        if self.cfg.negatives_from_everywhere and mask_indices is not None:
            positive = positive[mask_indices].view(bsz, -1)  # (batch, masked steps)
            negatives = negatives.gather(1, positive.unsqueeze(-1).expand(-1, -1, negatives.size(-1)))
        return Distractors(positive, negatives)

    def project_context(self, context: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """c_t (batch, masked steps, D) -> (batch, masked steps, final_dim), and the optional GLU
        on the targets, both in fp32 (see ``project_targets``)."""
        with fp32_region(context):
            if self.target_glu is not None:
                candidates = self.target_glu(candidates)
            if self.context_projection is None:  # set in __init__; only remove_pretraining_modules drops it
                raise AssertionError("project_context needs the pretraining modules (removed for fine-tuning)")
            context = self.context_projection(context.float())
        return context, candidates

    # ---- forward ------------------------------------------------------------------------
    def forward(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None, mask: bool = True,
                features_only: bool = False, layer: int | None = None,
                mask_indices: torch.Tensor | None = None, mask_channel_indices: torch.Tensor | None = None,
                padding_count: int | None = None, **unused: Any) -> dict[str, Any]:
        # source: (batch, sample); padding_mask: (batch, sample), True on padding
        features, features_pen = self.encode_features(source)  # Z: (batch, frame, C); ()
        features = self.feature_norm(features)
        padding_mask = self.frame_padding_mask(padding_mask, features.size(1))  # (batch, frame) or None
        features, padding_mask = self.crop_frames(features, padding_mask)
        x, unmasked_features = self.project_features(features)  # (batch, frame, D); (batch, frame, C)
        if mask:
            x, mask_indices = self.apply_mask(x, padding_mask, mask_indices, mask_channel_indices)
        else:
            mask_indices = None
        targets = unmasked_features  # (batch, masked steps, C) once masked
        if mask_indices is not None and not features_only:
            targets = self.targets_at_masked_steps(unmasked_features, mask_indices)

        enc = self.encoder(x, padding_mask=padding_mask, layer=layer)  # C: (batch, frame, D)
        if features_only:
            return {"x": enc.x, "padding_mask": padding_mask, "features": unmasked_features,
                    "layer_results": enc.layer_results}

        result: dict[str, Any] = {"padding_mask": padding_mask, "features_pen": features_pen}
        candidates = unmasked_features if self.cfg.negatives_from_everywhere else targets
        candidates, quantizer_stats = self.quantize_targets(candidates)  # (batch, cand, vq_dim)
        result.update(quantizer_stats)
        candidates = self.project_targets(candidates)  # (batch, cand, final_dim)
        distractors = self.sample_distractors(candidates, mask_indices)
        context = enc.x if mask_indices is None else _masked_steps(enc.x, mask_indices)  # (batch, masked, D)
        context, candidates = self.project_context(context, candidates)  # (batch, masked steps, final_dim)
        result["x"] = contrastive_logits(context, candidates, distractors.positive, distractors.negatives,
                                         self.cfg.logit_temp, cross_sample=self.cfg.cross_sample_negatives > 0)
        return result  # result["x"]: (K+1, batch, masked steps)

    def extract_features(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None,
                         mask: bool = False, layer: int | None = None, **unused: Any) -> dict[str, Any]:
        return self.forward(source, padding_mask, mask=mask, features_only=True, layer=layer)

    def quantize(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Quantized vectors and codebook indices of raw audio: ((B, T, D), (B, T, G))."""
        if self.quantizer is None:
            raise ValueError("this model has no quantizer (quantize_targets=false or pretraining modules removed)")
        features = self.feature_norm(self.feature_encoder(source))
        q = self.quantizer(features, produce_targets=True)
        return q.x, q.targets

    # ---- criterion contract -----------------------------------------------------------------
    def get_logits(self, net_output: dict[str, Any]) -> torch.Tensor:
        logits = net_output["x"].transpose(0, 2)  # (T, B, K+1)
        return logits.reshape(-1, logits.size(-1))

    def get_targets(self, sample: dict[str, Any], net_output: dict[str, Any], expand_steps: bool = True
                    ) -> torch.Tensor:
        x = net_output["x"]
        return x.new_zeros(x.size(1) * x.size(2), dtype=torch.long)  # the true target is candidate 0

    def get_extra_losses(self, net_output: dict[str, Any]) -> list[torch.Tensor]:
        """[L_d (with a quantizer), feature penalty], the order of ``criterion.loss_weights``."""
        losses = []
        if "prob_perplexity" in net_output:
            losses.append(compute_diversity_loss(net_output["num_vars"], net_output["prob_perplexity"]))
        if "features_pen" in net_output:
            losses.append(net_output["features_pen"])
        return losses

    def remove_pretraining_modules(self, last_layer: int | None = None) -> None:
        self.quantizer = None
        self.target_projection = None
        self.target_glu = None
        self.context_projection = None
        if last_layer is not None:
            self.encoder.layers = nn.ModuleList(
                layer for i, layer in enumerate(self.encoder.layers) if i <= last_layer)


def _masked_steps(x: torch.Tensor, mask_indices: torch.Tensor) -> torch.Tensor:
    """(batch, frame, dim) -> (batch, masked steps, dim); rows mask equally many steps."""
    return x[mask_indices].view(x.size(0), -1, x.size(-1))


def _as_bool(mask: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    return mask.to(device=device, dtype=torch.bool)
