"""Networks, and the receptive-field measurement the tiling engine's halo comes from."""

from __future__ import annotations

__all__ = ["measure_radius"]


def measure_radius(net, in_channels: int, align: int) -> int:
    """Receptive-field radius of ``net``, measured by back-propagation.

    The largest distance from an output pixel to an input pixel with non-zero gradient,
    over every phase of the down-sampling grid (``align``).
    """
    import torch

    size = 64
    while True:
        x = torch.ones(1, in_channels, size, size, requires_grad=True)
        y = net(x)
        c = size // 2
        radius = 0
        for dy in range(align):
            for dx in range(align):
                (g,) = torch.autograd.grad(y[0, 0, c + dy, c + dx], x, retain_graph=True)
                nz = torch.nonzero(g[0].abs().sum(0) > 0)
                r = int(max((nz[:, 0] - (c + dy)).abs().max(), (nz[:, 1] - (c + dx)).abs().max()))
                radius = max(radius, r)
        if radius < c - align:
            return radius
        size *= 2
