"""Configuration of the ``w2v2`` model.

Every field keeps the name, default and meaning of fairseq's ``Wav2Vec2Config`` so that a
user's existing fairseq wav2vec2 yaml runs after changing only ``_name``. Fields that belong
to fairseq's experimental variants (conformer layers, adapters, input quantization, codebook
negatives) are accepted so configs parse, and rejected with a clear error when they ask for
something this implementation does not build (see ``check_supported``).
"""
# No "from __future__ import annotations" here: fairseq-train's argparse bridge reads the
# dataclass field types at run time and needs real types, not strings.
import ast
from dataclasses import dataclass, field
from typing import Tuple  # noqa: UP035  # reason: see the note above

from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from w2v2_common.errors import W2v2Error

from .conv_geometry import DEFAULT_CONV_FEATURE_LAYERS

EXTRACTOR_MODE_CHOICES = ChoiceEnum(["default", "layer_norm"])
MASKING_DISTRIBUTION_CHOICES = ChoiceEnum(["static", "uniform", "normal", "poisson"])
LAYER_TYPE_CHOICES = ChoiceEnum(["transformer", "conformer", "trf_adp"])
ACTIVATION_CHOICES = ChoiceEnum(["relu", "gelu", "gelu_accurate", "tanh", "linear"])


@dataclass
class W2v2Config(FairseqDataclass):
    extractor_mode: EXTRACTOR_MODE_CHOICES = field(  # type: ignore[valid-type]  # reason: fairseq's ChoiceEnum is a runtime-made Enum
        default="default",
        metadata={"help": "feature encoder normalization: 'default' = one group norm (a group per "
                  "channel) in the first conv block (BASE); 'layer_norm' = layer norm in every "
                  "block (LARGE, use with task.normalize=true)"})
    encoder_layers: int = field(default=12, metadata={"help": "number of transformer layers"})
    encoder_embed_dim: int = field(default=768, metadata={"help": "transformer model dimension"})
    encoder_ffn_embed_dim: int = field(default=3072, metadata={"help": "transformer FFN inner dimension"})
    encoder_attention_heads: int = field(default=12, metadata={"help": "attention heads per layer"})
    activation_fn: ACTIVATION_CHOICES = field(  # type: ignore[valid-type]  # reason: fairseq's ChoiceEnum is a runtime-made Enum
        default="gelu", metadata={"help": "FFN activation"})
    layer_type: LAYER_TYPE_CHOICES = field(  # type: ignore[valid-type]  # reason: fairseq's ChoiceEnum is a runtime-made Enum
        default="transformer", metadata={"help": "encoder layer type; only 'transformer' is built here"})
    dropout: float = field(default=0.1, metadata={"help": "dropout in the transformer"})
    attention_dropout: float = field(default=0.1, metadata={"help": "dropout on attention weights"})
    activation_dropout: float = field(default=0.0, metadata={"help": "dropout after the FFN activation"})
    encoder_layerdrop: float = field(default=0.0,
        metadata={"help": "LayerDrop: probability of skipping a layer in training"})
    dropout_input: float = field(default=0.0,
        metadata={"help": "dropout on the projected features (transformer input)"})
    dropout_features: float = field(default=0.0, metadata={"help": "dropout on the unmasked features used as targets"})
    packed_dropout: bool = field(default=False, metadata={
        "help": "plugin-only: on CPU, draw dropout masks from 16-bit lanes of 64-bit random numbers (a quarter "
                "of torch's random draws; drop rate exact to 1/65536) instead of torch's per-element "
                "Bernoulli; a different random stream, so not bit-for-bit a run without it "
                "(models/dropout.py). Attention-weight dropout stays torch's"})
    final_dim: int = field(
        default=0, metadata={"help": "dimension of the contrastive space (context and targets); 0 = encoder_embed_dim"})
    layer_norm_first: bool = field(default=False,
        metadata={"help": "pre-LN transformer (LARGE); post-LN when false (BASE)"})
    conv_feature_layers: str = field(
        default=DEFAULT_CONV_FEATURE_LAYERS,
        metadata={"help": "feature encoder blocks as a list expression of (channels, kernel, stride) "
                  "tuples, combined with + and *; parsed, never evaluated"})
    conv_bias: bool = field(default=False, metadata={"help": "bias in the feature encoder convolutions"})
    logit_temp: float = field(default=0.1, metadata={"help": "temperature kappa of the cosine logits"})
    quantize_targets: bool = field(default=False,
        metadata={"help": "use Gumbel-quantized targets (the paper's setting)"})
    quantize_input: bool = field(default=False, metadata={"help": "quantize the transformer input (not supported)"})
    same_quantizer: bool = field(default=False,
        metadata={"help": "share the quantizer between inputs and targets (not supported)"})
    target_glu: bool = field(default=False, metadata={"help": "Linear + GLU on the targets"})
    feature_grad_mult: float = field(
        default=1.0, metadata={"help": "scale of the feature encoder's gradient; 0 freezes it (no graph built)"})
    quantizer_depth: int = field(default=1, metadata={"help": "layers of the quantizer's logit projection"})
    quantizer_factor: int = field(default=3,
        metadata={"help": "inner width factor of the quantizer projection when depth > 1"})
    latent_vars: int = field(default=320, metadata={"help": "codebook entries V per group"})
    latent_groups: int = field(default=2, metadata={"help": "codebooks G"})
    latent_dim: int = field(
        default=0, metadata={"help": "quantized vector dimension (split over groups); 0 = final_dim"})
    mask_length: int = field(default=10, metadata={"help": "span length M of time masks"})
    mask_prob: float = field(
        default=0.65, metadata={"help": "fraction used to set the number of spans: mask_prob * T / mask_length "
                                "(0.65 with length 10 masks ~49% of steps)"})
    mask_selection: MASKING_DISTRIBUTION_CHOICES = field(default="static",  # type: ignore[valid-type]  # reason: fairseq's ChoiceEnum is a runtime-made Enum
        metadata={"help": "how span lengths are drawn"})
    mask_other: float = field(default=0, metadata={"help": "second parameter of the span-length distribution"})
    no_mask_overlap: bool = field(default=False, metadata={"help": "forbid overlapping spans"})
    mask_min_space: int = field(default=1, metadata={"help": "unmasked steps kept between spans when no_mask_overlap"})
    require_same_masks: bool = field(
        default=True, metadata={"help": "mask the same number of steps in every row of a batch"})
    mask_dropout: float = field(default=0.0, metadata={"help": "fraction of masked steps to unmask again per row"})
    mask_channel_length: int = field(default=10, metadata={"help": "span length of channel masks"})
    mask_channel_prob: float = field(default=0.0, metadata={"help": "channel masking probability (as mask_prob)"})
    mask_channel_before: bool = field(default=False, metadata={"help": "mask channels before time masking"})
    mask_channel_selection: MASKING_DISTRIBUTION_CHOICES = field(default="static",  # type: ignore[valid-type]  # reason: fairseq's ChoiceEnum is a runtime-made Enum
        metadata={"help": "channel span-length distribution"})
    mask_channel_other: float = field(default=0, metadata={"help": "second parameter of the channel span distribution"})
    no_mask_channel_overlap: bool = field(default=False, metadata={"help": "forbid overlapping channel spans"})
    mask_channel_min_space: int = field(default=1, metadata={"help": "space between channel spans when no overlap"})
    num_negatives: int = field(default=100, metadata={"help": "distractors K from masked steps of the same utterance"})
    negatives_from_everywhere: bool = field(
        default=False, metadata={"help": "draw distractors from all steps, not only masked ones"})
    cross_sample_negatives: int = field(default=0, metadata={"help": "distractors from any utterance of the batch"})
    codebook_negatives: int = field(default=0,
        metadata={"help": "distractors sampled from the codebook (not supported)"})
    conv_pos: int = field(default=128, metadata={"help": "kernel size of the convolutional positional embedding"})
    conv_pos_groups: int = field(default=16, metadata={"help": "groups of the convolutional positional embedding"})
    pos_conv_depth: int = field(default=1, metadata={"help": "depth of the positional conv (only 1 is built here)"})
    latent_temp: Tuple[float, float, float] = field(  # noqa: UP006  # reason: runtime types for fairseq
        default=(2, 0.5, 0.999995),
        metadata={"help": "Gumbel temperature (start, end, decay per update)"})
    max_positions: int = field(default=100000, metadata={"help": "maximum number of frames"})
    checkpoint_activations: bool = field(
        default=False, metadata={"help": "recompute transformer layers in backward to save memory"})
    required_seq_len_multiple: int = field(
        default=2, metadata={"help": "fairseq pads frames to this multiple for speed; attention masks the pad, so "
                             "outputs do not depend on it and it is ignored here"})
    crop_seq_to_multiple: int = field(
        default=1, metadata={"help": "crop the feature frames to a multiple of this"})
    depthwise_conv_kernel_size: int = field(default=31, metadata={"help": "conformer only (not supported)"})
    attn_type: str = field(default="", metadata={"help": "conformer only (not supported)"})
    pos_enc_type: str = field(default="abs", metadata={"help": "conformer only (not supported)"})
    fp16: bool = field(default=False, metadata={"help": "set by fairseq when training in fp16"})
    adp_num: int = field(default=-1, metadata={"help": "adapters (not supported)"})
    adp_dim: int = field(default=64, metadata={"help": "adapters (not supported)"})
    adp_act_fn: str = field(default="relu", metadata={"help": "adapters (not supported)"})
    adp_trf_idx: str = field(default="all", metadata={"help": "adapters (not supported)"})


class UnsupportedConfigError(W2v2Error, ValueError):
    """A model setting of fairseq's wav2vec2 variants that this implementation does not build."""


def check_supported(cfg: W2v2Config) -> None:
    """Raise an UnsupportedConfigError naming the field for settings this implementation does not build."""
    unsupported = {
        "layer_type": (cfg.layer_type, "transformer"),
        "quantize_input": (cfg.quantize_input, False),
        "codebook_negatives": (cfg.codebook_negatives, 0),
        "pos_conv_depth": (cfg.pos_conv_depth, 1),
    }
    for name, (value, supported) in unsupported.items():
        if value != supported:
            raise UnsupportedConfigError(
                f"model.{name}={value!r} is not supported by the w2v2 model (only {supported!r}); "
                f"use fairseq's own wav2vec2 for that variant")


def parse_latent_temp(value) -> tuple[float, float, float]:
    """(start, end, decay) from a tuple/list or its string form, e.g. "(2,0.5,0.999995)"."""
    if isinstance(value, str):
        value = ast.literal_eval(value)
    temps = tuple(float(v) for v in value)
    if len(temps) != 3:
        raise ValueError(f"latent_temp needs 3 values (start, end, decay), got {value!r}")
    start, end, decay = temps
    return start, end, decay
