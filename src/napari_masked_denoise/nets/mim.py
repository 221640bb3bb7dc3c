"""The TTT-MIM network (Mansour et al., ECCV 2024): one body, two heads, masking in feature space.

``input -> 1x1 projection -> [mask token where masked] -> U-Net body -> heads``

- the *main* head predicts the noise residual: ``denoised = x - main(x)``;
- the *reconstruction* head predicts the noisy input at masked positions.

Masks are patch-wise and applied to the projected features: a masked position's feature
vector is replaced by a learnable mask token (``../shared/METHODS.md`` section 2). The
reference body is a 4-level fastMRI U-Net with GroupNorm (7.8 M parameters); this body is
:class:`~.unet.UNet` without normalisation layers, so that the output at a pixel depends
only on its receptive field and tiled runs equal untiled ones.

The heads see the body's features plus the (masked) projected input. Measured on this
machine: with the body's features alone, a body this small never learned to predict the
noise under the joint loss (the main head's L1 stayed at the noise's own mean absolute
value for 400 steps, while the same network trained on the main loss alone learned in
60); with the projection added it learned in about 150. The last layer of each head
starts at zero, so the untrained network is the identity denoiser.
"""

from __future__ import annotations

import torch
from torch import nn

from .unet import UNet

__all__ = ["MIMNet"]


def _head(c: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(c, 1, 1)
    )


class MIMNet(nn.Module):
    """Shared body with a main (noise residual) head and a reconstruction head.

    Parameters
    ----------
    widths : tuple of int
        Channels per U-Net level, finest first; the projection has ``widths[0]`` channels.
    """

    def __init__(self, widths=(16, 32, 64)):
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        c = self.widths[0]
        self.proj = nn.Conv2d(1, c, 1)
        self.mask_token = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.body = UNet(c, 1, self.widths)
        del self.body.out  # the heads replace the U-Net's own output layer
        self.main = _head(c)
        self.recon = _head(c)
        for head in (self.main, self.recon):  # start as the identity denoiser
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    @property
    def align(self) -> int:
        return self.body.align

    def _features(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        f = self.proj(x)
        if mask is not None:
            f = torch.where(mask > 0, self.mask_token.to(f.dtype), f)
        return self.body.features(f) + f

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        """The main head on the unmasked input: ``x - noise``."""
        return x - self.main(self._features(x, None))

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """The main head's predicted noise on the unmasked input."""
        return self.main(self._features(x, None))

    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The reconstruction head on the input with ``mask`` (1 = masked) tokens."""
        return self.recon(self._features(x, mask))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.denoise(x)
