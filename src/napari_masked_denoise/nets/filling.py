"""Filling by a masked network: the fixed-network output of zero-shot filling.

A network trained to predict dropped pixels from ``[x * keep, keep]`` denoises without
adaptation by a few masked forward passes whose masks together drop every pixel at least
once, averaged at the dropped pixels. Zero-shot filling's ``once`` mode and the
validation of its pre-training both call :func:`fill`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["fill", "fill_passes", "rotating_drops"]


def fill_passes(ratio: float, least: int) -> int:
    """Passes that drop every pixel at least once at drop ``ratio``: at least ``least``."""
    return max(int(least), math.ceil(1.0 / ratio))


def rotating_drops(u: torch.Tensor, ratio: float, dtype=None) -> Callable[[int], torch.Tensor]:
    """Drop masks from uniforms ``u``: pass ``k`` drops where ``frac(u + k * ratio) < ratio``.

    Rotating the uniforms by ``ratio`` per pass drops every pixel at least once in
    ``ceil(1 / ratio)`` passes. The masks are 1 where dropped, of ``dtype`` (default
    ``u``'s).
    """
    dtype = u.dtype if dtype is None else dtype
    return lambda k: (torch.frac(u + k * ratio) < ratio).to(dtype)


def fill(net, x: torch.Tensor, drops: Callable[[int], torch.Tensor], passes: int) -> torch.Tensor:
    """Average of ``net``'s predictions at the dropped pixels over ``passes`` masked passes.

    Parameters
    ----------
    net : torch.nn.Module
        Maps ``[x * keep, keep]`` (channels concatenated) to a prediction of ``x``'s shape.
    x : torch.Tensor
        The input, ``(N, 1, H, W)``.
    drops : callable
        ``drops(k)``: the drop mask (1 = dropped) of pass ``k``, broadcastable to ``x``.
    passes : int
        Number of passes.

    Returns
    -------
    torch.Tensor
        Per pixel, the mean prediction over the passes that dropped it (0 where none did).
        The network's mode and gradient recording are the caller's.
    """
    acc = torch.zeros_like(x)
    cnt = torch.zeros_like(x)
    for k in range(passes):
        drop = drops(k)
        keep = 1.0 - drop
        pred = net(torch.cat([x * keep, keep], 1))
        acc += pred * drop
        cnt += drop
    return acc / cnt.clamp_min(1.0)
