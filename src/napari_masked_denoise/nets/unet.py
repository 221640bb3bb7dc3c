"""A small U-Net without normalisation layers.

No BatchNorm or GroupNorm on purpose: their statistics couple every pixel of a tile,
so a tiled run would differ from an untiled one. Without them the output at a pixel
depends only on its receptive field, and the tiling engine can be exact.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["UNet"]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.LeakyReLU(0.2, inplace=True),
    )


class UNet(nn.Module):
    """U-Net with ``len(widths)`` levels, stride-2 conv down, nearest up, additive skips.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of input and output.
    widths : tuple of int
        Channels per level, finest first. ``(16, 32, 64)`` has 0.12 M parameters.
    """

    def __init__(self, in_channels: int = 2, out_channels: int = 1, widths=(16, 32, 64)):
        super().__init__()
        self.widths = tuple(widths)
        self.inc = _block(in_channels, widths[0])
        self.downs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1)
            for i in range(len(widths) - 1)
        )
        self.enc = nn.ModuleList(
            _block(widths[i + 1], widths[i + 1]) for i in range(len(widths) - 1)
        )
        self.ups = nn.ModuleList(
            nn.Conv2d(widths[i + 1], widths[i], 1) for i in range(len(widths) - 1)
        )
        self.dec = nn.ModuleList(_block(widths[i], widths[i]) for i in range(len(widths) - 1))
        self.out = nn.Conv2d(widths[0], out_channels, 1)

    @property
    def align(self) -> int:
        """Input sizes and tile origins must be multiples of this."""
        return 2 ** (len(self.widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last decoder features ``(N, widths[0], H, W)``, before the 1x1 output."""
        h = self.inc(x)
        skips = []
        for down, enc in zip(self.downs, self.enc):
            skips.append(h)
            h = enc(down(h))
        for i in reversed(range(len(self.ups))):
            # the 1x1 convolution commutes with nearest up-sampling: apply it at the coarse
            # scale, on 4x fewer pixels, and up-sample fewer channels
            h = nn.functional.interpolate(self.ups[i](h), scale_factor=2, mode="nearest")
            h = self.dec[i](h + skips[i])
        return h
