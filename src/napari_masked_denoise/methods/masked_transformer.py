"""Masked image training (Chen, Gu et al., CVPR 2023): one forward pass of a transformer.

A small Swin denoiser (:class:`~..nets.swin.SwinDenoiser`) trained on Gaussian noise of
sigma 15 only, with 80-90% of the input pixels masked and a share of the tokens zeroed in
every attention layer (``masked-denoise train masked-transformer``). Masking makes the
network learn image structure rather than the one noise it saw, so it holds up on noise
it never saw. There is no adaptation: ``per-tile`` and ``once`` give the same result.

``attn_drop`` > 0 keeps the attention mask on at test time (the reference code does):
each pass zeroes a random share of the tokens, and ``passes`` passes are averaged. The
random numbers are a hash of the run seed, the pass, the layer and the token's global
position (:func:`~..masks.uniform`), so tiled runs still equal untiled ones. ``weights`` chooses the
shipped masked network or the unmasked baseline trained with the same budget.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.masks import Coords, uniform
from ..nets import receptive_radius
from ..nets.swin import SwinDenoiser
from .base import Method, Preset, Processed
from .options import integer, number

__all__ = ["MaskedTransformer"]


def _make(widths) -> SwinDenoiser:
    """``widths``: (convolution channels, token width, blocks of each attention group...)."""
    return SwinDenoiser(int(widths[0]), int(widths[1]), tuple(int(d) for d in widths[2:]))


class MaskedTransformer(Method):
    exact_support = True  # the halo is the measured receptive field

    @classmethod
    def adapts_per_tile(cls, options: dict) -> bool:
        return False  # one pass of a fixed network

    name = "masked-transformer"
    summary = "one forward pass of a transformer trained with masked image training (no adaptation)"
    presets = {
        "fast": Preset("one pass of the masked-trained network, attention mask off", {}),
        "reference": Preset(
            "attention mask on at test time (75% of tokens), 4 passes averaged",
            {"attn_drop": 0.75, "passes": 4},
        ),
        "unmasked": Preset(
            "the baseline: the same network trained without masking, same budget",
            {"weights": "masked-transformer-unmasked"},
        ),
    }
    defaults = {
        "attn_drop": 0.0,
        "passes": 1,
        "weights": "masked-transformer",
        "widths": (16, 48, 2, 2),
    }
    default_tile = 1024  # the receptive field is 95 px: large tiles keep the halo's share small

    checks = {"attn_drop": number(0, 1, open_hi=True), "passes": integer(1)}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from ..core.axes import DenoiseError

        o = self.options
        if o["weights"] in ("masked-transformer", "masked-transformer-unmasked"):
            from ..weights import available

            if o["weights"] not in available():
                raise DenoiseError(
                    f"no shipped weights {o['weights']!r} yet: the first CPU training run did not learn to "
                    "denoise (benchmarks/RESULTS.md); train with 'masked-denoise train masked-transformer' "
                    "and pass weights=PATH.pt"
                )
        self._build_net(_make, kwargs)
        self.net.eval()
        self.halo = receptive_radius("swin", (self.net.conv, self.net.dim, *self.net.depths))
        self.align = self.net.align

    def process(self, block: np.ndarray, coords: Coords) -> Processed:
        x, (h, w) = self._padded(block)
        x = x.contiguous(memory_format=torch.channels_last)
        drop = float(self.options["attn_drop"])
        passes = int(self.options["passes"]) if drop > 0 else 1
        full_h = x.shape[-2]

        def draws(p):
            def u(layer, th, tw):  # tokens of th x tw on this block; scale to the image grid
                f = full_h // th
                c = Coords(coords.planes, coords.y0 // f, coords.x0 // f)
                return uniform(self.seed, 1000 * p + layer, c, (th, tw), self.device).permute(
                    0, 2, 3, 1
                )

            return u

        with torch.inference_mode():
            y = sum(self.net(x, drop=drop, uniform=draws(p)) for p in range(passes)) / passes
        return Processed(y[:, 0, :h, :w].float().cpu().numpy())
