"""Masked image training (Chen, Gu et al., CVPR 2023): one forward pass of a transformer.

A small Swin denoiser with per-pixel tokens (:class:`~..nets.swin.SwinDenoiser`) trained
on Gaussian noise of sigma 15 only, with 80-90% of the input pixels masked (set to -0.1)
and a share of the tokens zeroed in every attention layer (``masked-denoise train
masked-transformer``). Masking makes the network learn image structure rather than the
one noise it saw, so it holds up on noise it never saw. Nothing is trained at test time;
as for the other learned methods the output keeps the input's local means, and the share
of the network's change kept is chosen by the risk estimate under the image's noise model
(on the sample in ``once`` mode, per tile in ``per-tile`` mode), so that a clean image
is not made worse.

``attn_drop`` > 0 keeps the attention mask on at test time (the reference code does):
each pass zeroes a random share of the tokens, and ``passes`` passes are averaged. The
random numbers are a hash of the run seed, the pass, the layer and the token's global
position (:func:`~..masks.uniform`), so tiled runs still equal untiled ones. ``weights``
chooses the shipped masked network or the unmasked baseline trained with the same budget.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.masks import Coords, uniform
from ..nets import receptive_radius
from ..nets.swin import SwinDenoiser
from .base import Method, Preset, Processed
from .fidelity import KEEP_HALO, blend_weight, keep_means
from .options import integer, number

__all__ = ["MaskedTransformer"]


def _make(widths) -> SwinDenoiser:
    """``widths``: (token width, attention heads, blocks of each residual group...)."""
    return SwinDenoiser(int(widths[0]), int(widths[1]), tuple(int(d) for d in widths[2:]))


class MaskedTransformer(Method):
    exact_support = True  # the halo covers the receptive field (measured for the shipped depths)

    @classmethod
    def adapts_per_tile(cls, options: dict) -> bool:
        return True  # per-tile mode chooses the share of the change kept per tile

    name = "masked-transformer"
    summary = "one forward pass of a transformer trained with masked image training (no adaptation)"
    presets = {
        "fast": Preset(
            "one pass with the attention mask on (75% of tokens), as the reference at test time",
            {},
        ),
        "reference": Preset(
            "the attention mask on (75% of tokens), 4 passes averaged",
            {"attn_drop": 0.75, "passes": 4},
        ),
        "no-attention-mask": Preset(
            "one pass with the attention mask off (the network never saw that in training)",
            {"attn_drop": 0.0},
        ),
        "unmasked": Preset(
            "the baseline: the same network trained without masking, same budget",
            {"weights": "masked-transformer-unmasked", "attn_drop": 0.0, "passes": 1},
        ),
    }
    defaults = {
        "attn_drop": 0.75,  # benchmarks/mit_attention.py: on, one pass (held-out training images)
        "passes": 1,
        "weights": "masked-transformer",
        "widths": (24, 1, 2, 2),
    }
    default_tile = 512  # per-pixel tokens are memory-heavy; the halo is only 22 + 18 px

    checks = {"attn_drop": number(0, 1, open_hi=True), "passes": integer(1)}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from ..core.axes import DenoiseError

        o = self.options
        if o["weights"] in ("masked-transformer", "masked-transformer-unmasked"):
            from ..weights import available

            if o["weights"] not in available():
                raise DenoiseError(
                    f"the shipped weights {o['weights']!r} are missing from this installation; train with "
                    "'masked-denoise train masked-transformer' and pass weights=PATH.pt"
                )
        self._build_net(_make, kwargs)
        self.net.eval()
        self.halo = receptive_radius("swin", self.net.widths) + KEEP_HALO
        self.align = self.net.align

    def adapt(self, sample: np.ndarray, coords: Coords):
        """Nothing is trained: the share of the network's change to keep is chosen on the
        sample (:func:`~.fidelity.blend_weight`), once for the whole run."""
        self.weight = blend_weight(
            lambda b: self._forward(b, coords),
            sample,
            self._forward(sample, coords),
            self.noise,
            self.seed,
        )
        return {"blend_weight": round(self.weight, 4)}
        yield  # a generator

    def process(self, block: np.ndarray, coords: Coords) -> Processed:
        out = self._forward(block, coords)
        return Processed(self._blended(lambda b: self._forward(b, coords), block, out))

    def _forward(self, block: np.ndarray, coords: Coords) -> np.ndarray:
        """The network on ``block`` (the attention mask drawn from the positions of
        ``coords``, ``passes`` averaged), with the input's local means."""
        x, (h, w) = self._padded(block)
        x = x.contiguous(memory_format=torch.channels_last)
        drop = float(self.options["attn_drop"])
        passes = int(self.options["passes"]) if drop > 0 else 1

        def draws(p):
            def u(layer, th, tw):  # one number per token (pixel) of this block
                return uniform(self.seed, 1000 * p + layer, coords, (th, tw), self.device).permute(
                    0, 2, 3, 1
                )

            return u

        with torch.inference_mode():
            y = sum(self.net(x, drop=drop, uniform=draws(p)) for p in range(passes)) / passes
        return keep_means(block, y[:, 0, :h, :w].float().cpu().numpy())

    def state_bytes(self) -> bytes:
        return self._torch_bytes({"weight": self._weight_tensor()})

    def load_state_bytes(self, data: bytes) -> None:
        self._load_weight(self._torch_state(data))
