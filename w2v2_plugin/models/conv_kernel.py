"""A 1-D convolution on channels-last CPU data: written as one matrix product (im2col + GEMM,
:class:`StridedConv1d`), or as oneDNN's own convolution on a channels-last view
(:func:`conv1d_on_channels_last_view`).

Why: on CPU, oneDNN's direct convolution runs the feature encoder's strided 512 x 512 convs at
about half the speed MKL reaches on the same products written as one GEMM (forward and both
gradients; benchmarks/README numbers). Only the block input is kept for backward (not the
k/s-times larger window matrix, which is rebuilt), so memory matches a convolution's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv1d_on_channels_last_view(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` applied to (batch, sample, channel) data -> (batch, frame, channel), contiguous.

    The input is viewed, not copied, as a channels-last (batch, channel, 1, sample) image and
    run through oneDNN's 2-D convolution with ``conv``'s parameters, stride, padding and groups:
    oneDNN's kernels work in that layout, so forward and backward need none of the reorder
    copies a channels-first 1-D conv costs them (figures at the callers). Equal to ``conv`` on
    the transposed data up to float rounding.
    """
    image = x.transpose(1, 2).unsqueeze(2)  # (batch, channel, 1, sample), channels-last strides
    y = F.conv2d(image, conv.weight.unsqueeze(2), conv.bias, stride=(1, conv.stride[0]),
                 padding=(0, int(conv.padding[0])), groups=conv.groups)
    return y.squeeze(2).transpose(1, 2)  # (batch, frame, channel): a view of the channels-last output


def frame_windows(x: torch.Tensor, kernel: int, stride: int, frames: int) -> torch.Tensor:
    """(batch, sample, channel) contiguous -> (batch * frames, kernel * channel): row t holds input
    samples [t * stride, t * stride + kernel) back to back, i.e. the im2col matrix of a 1-D conv in
    channels-last order. One contiguous copy per row, no index tensors."""
    b, _, c = x.shape
    return x.as_strided((b, frames, kernel * c), (x.stride(0), stride * c, 1)).reshape(b * frames, kernel * c)


def scatter_window_gradients(gc: torch.Tensor, length: int, stride: int) -> torch.Tensor:
    """col2im: (batch, frame, kernel, channel) window gradients -> (batch, length, channel).

    Window slot j of frame t adds into sample t * stride + j. With kernel >= stride the first
    ``stride`` slots of every window tile samples [0, stride * frames) exactly once: one plain
    copy into a (batch, frame, stride * channel) view; the kernel - stride overlapping slots are
    added. kernel < stride leaves gaps between windows: every slot is added onto zeros.
    """
    b, frames, k, c = gc.shape
    s = stride
    grad_x = gc.new_empty(b, length, c)
    first = s if k >= s else 0  # slots placed by the copy
    if first:
        grad_x[:, :s * frames].view(b, frames, s, c).copy_(gc[:, :, :s])
        grad_x[:, s * frames:].zero_()
    else:
        grad_x.zero_()
    for j in range(first, k):
        grad_x[:, j: j + s * (frames - 1) + 1: s].add_(gc[:, :, j])
    return grad_x


class StridedConv1d(torch.autograd.Function):
    """1-D convolution of channels-last input as one matrix product, with its own backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor,
                weight: torch.Tensor, bias: torch.Tensor | None, kernel: int, stride: int) -> torch.Tensor:
        # x: (batch, sample, in_channel) contiguous;
        # weight: (out_channel, kernel * in_channel) in (kernel, channel) order
        x = x.contiguous()  # frame_windows' strides assume it
        b, length, _ = x.shape
        frames = (length - kernel) // stride + 1
        cols = frame_windows(x, kernel, stride, frames)  # (batch * frame, kernel * in_channel)
        y = cols @ weight.t() if bias is None else torch.addmm(bias, cols, weight.t())
        ctx.save_for_backward(x, weight)
        ctx.kernel, ctx.stride, ctx.has_bias = kernel, stride, bias is not None
        return y.view(b, frames, -1)  # (batch, frame, out_channel)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        k, s = ctx.kernel, ctx.stride
        b, length, c = x.shape
        frames = grad.size(1)
        g = grad.reshape(b * frames, -1)  # (batch * frame, out_channel)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_w = g.t() @ frame_windows(x, k, s, frames)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        if ctx.needs_input_grad[0]:
            gc = (g @ weight).view(b, frames, k, c)  # (batch, frame, kernel, in_channel)
            grad_x = scatter_window_gradients(gc, length, s)
        return grad_x, grad_w, grad_b, None, None
