"""The positional conv's CPU path (a grouped conv on a channels-last view) against ``nn.Conv1d``
on the channels-first copy, the computation fairseq does: outputs and gradients equal within
float rounding, for even and odd kernels, a batch and a single row."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from w2v2_plugin.models.transformer import ConvPositionalEmbedding


def channels_first_reference(module: ConvPositionalEmbedding, x: torch.Tensor) -> torch.Tensor:
    y = module.conv(x.transpose(1, 2))
    if module.remove:
        y = y[:, :, :-module.remove]
    return F.gelu(y).transpose(1, 2)


@pytest.mark.parametrize("kernel", [16, 15])
@pytest.mark.parametrize("batch,frames", [(3, 40), (1, 7)])
def test_channels_last_view_equals_conv1d(kernel, batch, frames):
    torch.manual_seed(0)
    module = ConvPositionalEmbedding(64, kernel, 4)
    x = torch.randn(batch, frames, 64, requires_grad=True)
    ours = module(x)
    assert ours.shape == (batch, frames, 64) and ours.is_contiguous()
    grads = torch.autograd.grad(ours.square().sum(), [x, *module.parameters()])

    ref = channels_first_reference(module, x)
    ref_grads = torch.autograd.grad(ref.square().sum(), [x, *module.parameters()])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)


def test_one_row_of_a_batch_equals_that_row_alone():
    torch.manual_seed(1)
    module = ConvPositionalEmbedding(32, 8, 4)
    x = torch.randn(4, 20, 32)
    with torch.no_grad():
        torch.testing.assert_close(module(x)[2:3], module(x[2:3]), rtol=1e-5, atol=1e-6)


def test_zero_frames_fail_as_the_conv1d_does():
    module = ConvPositionalEmbedding(32, 8, 4)
    x = torch.randn(2, 0, 32)
    with pytest.raises(RuntimeError, match="zero"):
        module(x)
    with pytest.raises(RuntimeError, match="zero"):
        channels_first_reference(module, x)


def test_channels_last_view_under_bf16_autocast_is_close_to_conv1d():
    """Under CPU autocast both paths run the conv in bf16 (8 significant bits)."""
    torch.manual_seed(2)
    module = ConvPositionalEmbedding(64, 16, 4)
    x = torch.randn(2, 30, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        ours, ref = module(x), channels_first_reference(module, x)
    assert ours.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), ref.float(), rtol=2e-2, atol=2e-2)
