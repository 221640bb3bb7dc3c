"""Networks, and the receptive-field measurement the tiling engine's halo comes from."""

from __future__ import annotations

__all__ = ["measure_radius"]


def measure_radius(net, in_channels: int, align: int) -> int:
    """Receptive-field radius of ``net``, measured by back-propagation.

    The largest distance from an output pixel to an input pixel with non-zero gradient,
    over every phase of the down-sampling grid (``align``).
    """
    import torch

    phases = [(dy, dx) for dy in range(align) for dx in range(align)]
    size = 64
    while True:
        # one backward pass: batch item k holds the output pixel of phase k (the items are
        # independent: no normalisation layers couple them)
        x = torch.ones(len(phases), in_channels, size, size, requires_grad=True)
        y = net(x)
        c = size // 2
        target = sum(y[k, 0, c + dy, c + dx] for k, (dy, dx) in enumerate(phases))
        (g,) = torch.autograd.grad(target, x)
        radius = 0
        for k, (dy, dx) in enumerate(phases):
            nz = torch.nonzero(g[k].abs().sum(0) > 0)
            r = int(max((nz[:, 0] - (c + dy)).abs().max(), (nz[:, 1] - (c + dx)).abs().max()))
            radius = max(radius, r)
        if radius < c - align:
            return radius
        size *= 2
