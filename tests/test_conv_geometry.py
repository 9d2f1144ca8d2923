"""The feature encoder's geometry has one owner (models/conv_geometry.py): the model and the
CTC emission code read conv_feature_layers through it, and the default comes from it."""
from __future__ import annotations

import logging

import pytest
import torch

from w2v2_common.errors import W2v2Error
from w2v2_plugin.decoding.errors import DecodingError
from w2v2_plugin.decoding.units import UnitDictionary
from w2v2_plugin.inference.emissions import AcousticModel
from w2v2_plugin.models.config import W2v2Config
from w2v2_plugin.models.conv_geometry import (
    DEFAULT_CONV_FEATURE_LAYERS,
    ConvSpecError,
    conv_output_lengths,
    default_conv_layers,
    frame_geometry,
    parse_conv_layers,
    receptive_field,
    total_stride,
)


class _WithConfig(torch.nn.Module):
    def __init__(self, spec: str | None) -> None:
        super().__init__()
        self.cfg = W2v2Config() if spec is None else W2v2Config(conv_feature_layers=spec)
        if spec == "":
            self.cfg = object()  # a config without the field


def test_default_is_wav2vec2_and_the_config_default() -> None:
    assert W2v2Config.conv_feature_layers == DEFAULT_CONV_FEATURE_LAYERS
    layers = default_conv_layers()
    assert layers == [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    assert (total_stride(layers), receptive_field(layers)) == (320, 400)  # 20 ms, 25 ms at 16 kHz
    assert frame_geometry(layers) == (320, 400)


@pytest.mark.parametrize("spec", ["[(8, 10, 5)] + [(8, 3, 2)] * 2", "[(4, 3, 1), (4, 4, 3), (4, 2, 2)]"])
def test_frame_count_formula_agrees_with_the_per_block_lengths(spec: str) -> None:
    layers = parse_conv_layers(spec)
    geometry = frame_geometry(layers)
    lengths = torch.arange(0, 300)
    per_block = conv_output_lengths(lengths, layers).tolist()
    assert per_block == [geometry.n_frames(int(n)) for n in lengths]


def test_parse_errors_are_user_errors_and_value_errors() -> None:
    with pytest.raises(ConvSpecError, match="conv_feature_layers") as e:
        parse_conv_layers("[(512, 10, 5)] + __import__('os').getcwd()")
    assert isinstance(e.value, W2v2Error) and isinstance(e.value, ValueError)


def test_emissions_read_the_config_through_the_owner() -> None:
    units = UnitDictionary.from_symbols(["<s>", "<pad>", "</s>", "<unk>", "|", "a"])
    am = AcousticModel(_WithConfig("[(8, 10, 5)] + [(8, 3, 2)] * 2"), units)
    assert am.geometry == (20, 40)  # stride 5*2*2; field 10 + 2*5 + 2*10
    with pytest.raises(DecodingError, match="conv_feature_layers"):
        AcousticModel(_WithConfig("[(8, 10, 5)] * len('ab')"), units)


def test_emissions_fall_back_to_the_owners_default_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    units = UnitDictionary.from_symbols(["<s>", "<pad>", "</s>", "<unk>", "|", "a"])
    with caplog.at_level(logging.WARNING):
        am = AcousticModel(_WithConfig(""), units)
    assert am.geometry == frame_geometry(default_conv_layers()) == (320, 400)
    assert "no conv_feature_layers" in caplog.text
