"""Networks, and their receptive fields, which the tiling engine's halo comes from.

:func:`receptive_radius` is the one place a method gets its network's radius: from
:data:`KNOWN_RADIUS` where it was measured before (a test re-measures every entry), else
measured once per process by back-propagation (:func:`measure_radius`, seconds on a CPU).
"""

from __future__ import annotations

import functools

__all__ = ["measure_radius", "receptive_radius", "KNOWN_RADIUS"]

KNOWN_RADIUS: dict[tuple[str, tuple[int, ...]], int] = {
    ("meta", (24, 32, 48)): 75,
    ("swin", (2, 2)): 22,
}
"""Radii measured before, by ``(kind, widths)``: measuring takes seconds on a CPU. The
masked transformer's radius depends only on its blocks per residual group (window 8):
its entries are keyed by those."""


def _probe(kind: str, widths: tuple[int, ...]):
    """``(net, in_channels, align)`` of network ``kind``, set up so that every path from
    input to output carries gradient (heads whose last layer starts at zero get ones)."""
    import torch

    torch.manual_seed(0)
    if kind == "unet":
        from .unet import UNet

        net = UNet(2, 1, widths)
        return net, 2, net.align
    if kind == "mim":
        from .mim import MIMNet

        net = MIMNet(widths)
        with torch.no_grad():
            for head in (net.main, net.recon):
                head[-1].weight.fill_(1.0)
        return net, 1, net.align
    if kind == "meta":
        from .meta import MetaNet

        net = MetaNet(widths)
        with torch.no_grad():
            net.primary.net[-1].weight.fill_(1.0)
        return net, 1, net.align
    raise ValueError(f"no receptive-field probe for network kind {kind!r}")


@functools.lru_cache(maxsize=16)
def receptive_radius(kind: str, widths: tuple[int, ...], *, measure: bool = False) -> int:
    """Receptive-field radius in pixels of network ``kind`` with ``widths``.

    Parameters
    ----------
    kind : {"unet", "mim", "meta", "swin"}
        The network: zero-shot filling's U-Net (2 input channels), TTT-MIM's, meta-TTA's
        (the larger of the primary output's and the mask network's), the masked
        transformer's (``widths`` = token width, heads, blocks per group).
    widths : tuple of int
        The network's widths.
    measure : bool
        Measure even when :data:`KNOWN_RADIUS` has the entry (the tests check it).

    Returns
    -------
    int
        The largest distance from an output pixel to an input pixel that affects it.
    """
    widths = tuple(int(w) for w in widths)
    known = KNOWN_RADIUS.get((kind, widths[2:] if kind == "swin" else widths))
    if known is not None and not measure:
        return known
    if kind == "swin":  # attention over windows: the layout's bound unless asked to measure
        from .swin import SwinDenoiser

        torch_net = SwinDenoiser(widths[0], widths[1], widths[2:]).eval()
        return measure_radius(torch_net, 1, torch_net.align) if measure else torch_net.radius
    net, channels, align = _probe(kind, widths)
    radius = measure_radius(net, channels, align)
    if kind == "meta":
        radius = max(radius, measure_radius(net.mask, 1, align))
    return radius


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
