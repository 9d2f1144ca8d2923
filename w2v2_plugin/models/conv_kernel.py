"""A 1-D convolution on channels-last CPU data, written as one matrix product (im2col + GEMM).

Why: on CPU, oneDNN's direct convolution runs the feature encoder's strided 512 x 512 convs at
about half the speed MKL reaches on the same products written as one GEMM (forward and both
gradients; benchmarks/README numbers). Only the block input is kept for backward (not the
k/s-times larger window matrix, which is rebuilt), so memory matches a convolution's.
"""
from __future__ import annotations

import torch


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
