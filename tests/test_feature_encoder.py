"""The feature encoder's CPU GEMM path (channels-last im2col) against nn.Conv1d."""
import pytest
import torch

from w2v2_plugin.models.conv_kernel import StridedConv1d as _StridedConv1d
from w2v2_plugin.models.feature_encoder import FeatureEncoder

SPEC = [(16, 10, 5), (16, 3, 2), (16, 3, 2), (16, 2, 2)]


def run(enc: FeatureEncoder, x: torch.Tensor, gemm: bool):
    enc.gemm_on_cpu = gemm
    enc.zero_grad()
    y = enc(x)  # (batch, frame, channel)
    weights = torch.linspace(-1, 1, y.numel()).view_as(y)  # a gradient that differs per element
    (y * weights).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in enc.named_parameters()}


@pytest.mark.parametrize("mode", ["default", "layer_norm"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("samples", [400, 401, 437])  # even, odd, and lengths the strides do not divide
def test_gemm_path_equals_conv1d_forward_and_gradients(mode, bias, samples):
    torch.manual_seed(0)
    enc = FeatureEncoder(SPEC, mode, bias)
    x = torch.randn(3, samples)
    y_conv, g_conv = run(enc, x, gemm=False)
    y_gemm, g_gemm = run(enc, x, gemm=True)
    assert y_gemm.shape == y_conv.shape == (3, int(enc.output_lengths(torch.tensor(samples))), 16)
    assert torch.allclose(y_gemm, y_conv, atol=1e-5, rtol=1e-4)
    for name in g_conv:
        assert torch.allclose(g_gemm[name], g_conv[name], atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("kernel,stride", [(3, 2), (2, 2), (10, 5), (4, 1), (1, 2), (5, 3)])
def test_strided_conv_matches_conv1d_including_input_gradient(kernel, stride):
    """Overlapping (k > s), tiling (k = s) and gapped (k < s) windows, input gradient included."""
    torch.manual_seed(1)
    x = torch.randn(2, 23, 4, dtype=torch.float64, requires_grad=True)  # (batch, sample, channel)
    w = torch.randn(5, 4, kernel, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.conv1d(x.transpose(1, 2), w, b, stride=stride).transpose(1, 2)
    w2 = w.transpose(1, 2).reshape(5, -1)
    got = _StridedConv1d.apply(x, w2, b, kernel, stride)
    assert torch.allclose(got, ref)
    assert torch.autograd.gradcheck(lambda x, w2, b: _StridedConv1d.apply(x, w2, b, kernel, stride), (x, w2, b))


def test_gemm_path_is_batch_invariant_for_the_layer_norm_extractor():
    """Each utterance alone gives the same frames as inside a batch (same lengths)."""
    torch.manual_seed(2)
    enc = FeatureEncoder(SPEC, "layer_norm").eval()
    x = torch.randn(4, 500)
    with torch.no_grad():
        batched = enc(x)
        single = torch.cat([enc(x[i:i + 1]) for i in range(4)])
    assert torch.allclose(batched, single, atol=1e-5)


def test_too_short_input_names_the_receptive_field():
    enc = FeatureEncoder(SPEC, "layer_norm")
    with pytest.raises(ValueError, match="receptive field"):
        enc(torch.randn(1, 20))


@pytest.mark.parametrize("norm", ["group", "layer", None])
def test_conv_block_channels_last_equals_channels_first(norm):
    from w2v2_plugin.models.feature_encoder import ConvBlock

    torch.manual_seed(3)
    block = ConvBlock(6, 8, 3, 2, True, norm)
    x = torch.randn(2, 6, 41)  # (batch, channel, sample)
    ref = block(x).transpose(1, 2)
    got = block.forward_channels_last(x.transpose(1, 2).contiguous())
    assert torch.allclose(got, ref, atol=1e-5)
