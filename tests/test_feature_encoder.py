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


@pytest.mark.parametrize("norm", ["group", "layer", None])
def test_conv_block_on_a_channels_last_view_equals_channels_first(norm):
    """oneDNN's conv on the (batch, channel, 1, sample) channels-last view (the path under CPU
    autocast), in fp32 here so that it can be compared closely, forward and gradients."""
    from w2v2_plugin.models.feature_encoder import ConvBlock

    torch.manual_seed(4)
    block = ConvBlock(6, 8, 3, 2, True, norm)
    x = torch.randn(2, 6, 41, requires_grad=True)  # (batch, channel, sample)
    ref = block(x).transpose(1, 2)
    (g_ref,) = torch.autograd.grad((ref * torch.linspace(-1, 1, ref.numel()).view_as(ref)).sum(), x)
    got = block.forward_channels_last(x.transpose(1, 2), gemm=False)
    (g_got,) = torch.autograd.grad((got * torch.linspace(-1, 1, got.numel()).view_as(got)).sum(), x)
    assert torch.allclose(got, ref, atol=1e-5) and torch.allclose(g_got, g_ref, atol=1e-5)


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_waveform_block_channels_last_equals_channels_first(norm):
    """The first block as one GEMM with its norm on channels-last frames (ChannelNormGelu for the
    group norm) against nn.Conv1d + GroupNorm/LayerNorm + GELU: outputs and every gradient."""
    from w2v2_plugin.models.feature_encoder import ConvBlock

    torch.manual_seed(5)
    block = ConvBlock(1, 8, 10, 5, False, norm)
    audio = torch.randn(3, 403)
    ref = block(audio.unsqueeze(1)).transpose(1, 2)
    weights = torch.linspace(-1, 1, ref.numel()).view_as(ref)
    g_ref = torch.autograd.grad((ref * weights).sum(), list(block.parameters()))
    got = block.forward_waveform_channels_last(audio)
    g_got = torch.autograd.grad((got * weights).sum(), list(block.parameters()))
    assert got.is_contiguous() and torch.allclose(got, ref, atol=1e-5)
    for a, b in zip(g_got, g_ref):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_channel_norm_gelu_gradients_are_exact():
    """ChannelNormGelu's hand-written backward against autograd's numerical gradients (float64),
    a zero-variance channel included (eps keeps it finite)."""
    from w2v2_plugin.models.feature_encoder import ChannelNormGelu

    torch.manual_seed(6)
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    x[1, :, 2] = 0.5  # a constant channel
    x.requires_grad_()
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: ChannelNormGelu.apply(x, w, b, 1e-5), (x, w, b))
    ref = torch.nn.functional.gelu(torch.nn.functional.group_norm(x.transpose(1, 2), 3, w, b, 1e-5)).transpose(1, 2)
    assert torch.allclose(ChannelNormGelu.apply(x, w, b, 1e-5), ref)


@pytest.mark.parametrize("mode", ["default", "layer_norm"])
def test_encoder_under_cpu_autocast_follows_fp32_and_is_channels_last(mode):
    """Under bf16 autocast on CPU the encoder runs channels-last (waveform block in fp32, the
    rest with oneDNN in bf16): frames within bf16's rounding of the fp32 path, gradients pointing
    the same way, and the output a contiguous (batch, frame, channel) tensor (no copy at the end)."""
    torch.manual_seed(7)
    enc = FeatureEncoder([(32, 10, 5), (32, 3, 2), (32, 3, 2), (32, 2, 2)], mode)
    x = torch.randn(3, 1600)
    y32, g32 = run(enc, x, gemm=enc.gemm_on_cpu)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16 = enc(x)
    assert y16.dtype == torch.bfloat16 and y16.is_contiguous() and y16.shape == y32.shape
    assert float((y16.detach().float() - y32).norm() / y32.norm()) < 0.02
    enc.zero_grad()
    (y16.float() * torch.linspace(-1, 1, y16.numel()).view_as(y16)).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32
        assert float(torch.nn.functional.cosine_similarity(p.grad.flatten(), g32[name].flatten(), dim=0)) > 0.99, name
