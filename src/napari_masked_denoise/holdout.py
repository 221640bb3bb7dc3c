"""Held-out pixels: an estimate of a denoiser's error without a clean image.

A few % of the pixels are held out: their noisy values are replaced by an interpolation
from pixels that are not held out, the denoiser runs on that input, and its output at
the held-out pixels is compared with their noisy values. The output there never saw the
values it is compared with, so for noise independent between pixels

    E (f(y')_i - y_i)^2  =  E (f(y')_i - x_i)^2  +  sigma^2

(Batson and Royer, Noise2Self, 2019; ``skimage.restoration.calibrate_denoiser`` uses
the same idea). The loss ranks denoisers by their true error, and minus an estimate of
``sigma^2`` it estimates that error.

For spatially correlated noise a held-out pixel's neighbours carry part of its noise,
which favours outputs that pass noise through. ``radius > 0`` hides a block of
``2 * radius + 1`` pixels around each scored pixel and interpolates it from the ring
outside, so nothing within ``radius`` of a scored pixel is seen.

The held-out pixels hash their global position (:func:`masks.uniform`), so they are the
same whatever tile a pixel is processed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .masks import Coords, uniform

__all__ = ["HOLDOUT_DRAW", "holdout_mask", "hide", "holdout_loss", "noise_variance", "Estimate"]

HOLDOUT_DRAW = (1 << 30) + 7
"""The mask draw of the held-out pixels; never one a method trains with."""


def holdout_mask(shape, coords: Coords | None = None, seed: int = 0, frac: float = 0.03,
                 radius: int = 0) -> np.ndarray:
    """Boolean ``(N, H, W)``: the scored pixels, at least ``radius + 1`` from the border and
    ``2 * radius + 1`` apart, about ``frac`` of the pixels (fewer for blocks)."""
    n, h, w = shape
    coords = coords if coords is not None else Coords(np.arange(n))
    u = uniform(seed, HOLDOUT_DRAW, coords, (h, w)).numpy()[:, 0]
    m = u < float(frac) / (1 + 2 * radius)  # blocks: fewer centres, a few % still hidden
    b = radius + 1
    m[:, :b] = m[:, -b:] = False
    m[:, :, :b] = m[:, :, -b:] = False
    if radius:
        # keep a centre only if no other centre's block touches its own block
        from scipy.ndimage import maximum_filter

        r2 = 2 * radius + 1
        u_m = np.where(m, u, -1.0)
        best = maximum_filter(u_m, size=(1, 2 * r2 - 1, 2 * r2 - 1), mode="constant", cval=-1.0)
        m &= u_m == best
    return m


def hide(y: np.ndarray, mask: np.ndarray, radius: int = 0) -> np.ndarray:
    """A copy of ``y`` (``(N, H, W)``) with the blocks of ``radius`` around ``mask``
    replaced by the mean of the visible pixels in the ring just outside them."""
    from scipy.ndimage import binary_dilation, correlate

    y = np.asarray(y, dtype=np.float32)
    hidden = mask if not radius else binary_dilation(
        mask, structure=np.ones((1, 2 * radius + 1, 2 * radius + 1), bool))
    k = 2 * radius + 3
    ring = np.ones((1, k, k), np.float32)
    ring[0, 1:-1, 1:-1] = 0.0
    if radius == 0:
        ring[0, 1, 1] = 0.0  # the 8 neighbours
    visible = (~hidden).astype(np.float32)
    num = correlate(y * visible, ring, mode="mirror")
    den = correlate(visible, ring, mode="mirror")
    fill = np.where(den > 0, num / np.maximum(den, 1e-12), y[~hidden].mean() if visible.any() else 0.0)
    out = y.copy()
    out[hidden] = fill[hidden]
    return out


def holdout_loss(pred: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared difference between the prediction and the noisy values at ``mask``."""
    d = np.asarray(pred, dtype=np.float64)[mask] - np.asarray(y, dtype=np.float64)[mask]
    return float(np.mean(d * d)) if d.size else float("nan")


def noise_variance(y: np.ndarray) -> float:
    """Noise variance, median over planes of scikit-image's wavelet estimate."""
    from skimage.restoration import estimate_sigma

    y = np.asarray(y, dtype=np.float64).reshape(-1, *np.shape(y)[-2:])
    return float(np.median([estimate_sigma(p) for p in y]) ** 2)


@dataclass
class Estimate:
    """A held-out loss, with the noise variance it is read against (data range 1)."""

    loss: float
    noise_var: float

    @property
    def mse(self) -> float:
        """Estimated mean squared error of the output: loss minus noise variance (>= 0)."""
        return max(self.loss - self.noise_var, 0.0)

    @property
    def psnr(self) -> float:
        """Estimated PSNR of the output (data range 1); inf when the estimate is 0."""
        return float(10 * np.log10(1.0 / self.mse)) if self.mse > 0 else float("inf")

    @property
    def gain_db(self) -> float:
        """Estimated PSNR gain over the noisy input."""
        if self.noise_var <= 0:
            return float("nan")
        return float(10 * np.log10(self.noise_var / self.mse)) if self.mse > 0 else float("inf")
