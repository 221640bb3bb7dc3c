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

The held-out pixels hash their global position (:func:`napari_masked_denoise.core.masks.uniform`), so they are the
same whatever tile a pixel is processed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.masks import Coords, uniform

__all__ = [
    "HOLDOUT_DRAW",
    "HOLDOUT_FRAC",
    "holdout_mask",
    "hide",
    "holdout_loss",
    "noise_variance",
    "Estimate",
]

HOLDOUT_DRAW = (1 << 30) + 7
"""The mask draw of the held-out pixels; never one a method trains with."""
HOLDOUT_FRAC = 0.03
"""The share of pixels held out by default."""


def holdout_mask(
    shape, coords: Coords | None = None, seed: int = 0, frac: float = HOLDOUT_FRAC, radius: int = 0
) -> np.ndarray:
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


def hide(
    y: np.ndarray, mask: np.ndarray, radius: int = 0, fill: str = "residual", seed: int = 0
) -> np.ndarray:
    """A copy of ``y`` (``(N, H, W)``) with the blocks of ``radius`` around ``mask`` hidden.

    What a hidden pixel gets (never anything that depends on the hidden values):

    ``"mean"``
        the mean of the visible pixels in the ring just outside its block
        (``skimage.restoration.calibrate_denoiser``'s choice). That mean is itself a
        smoothing filter, so a method that leaves its input as it is scores like one.
    ``"neighbour"``
        the noisy value of a visible pixel ``2 * radius + 1`` away, in one of the 8
        directions (as Noise2Void does). Noise-like, but carries the neighbour's signal,
        which penalises methods that trust a pixel's own value where the signal varies.
    ``"residual"`` (default)
        the ring mean plus the residual (value minus its own ring mean) of such a
        neighbour: the local signal with a sample of the local noise.
    """
    from scipy.ndimage import binary_dilation

    y = np.asarray(y, dtype=np.float32)
    hidden = (
        mask
        if not radius
        else binary_dilation(mask, structure=np.ones((1, 2 * radius + 1, 2 * radius + 1), bool))
    )
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    out = y.copy()
    local = _ring_mean(y, hidden, radius)
    out[hidden] = local[hidden]  # "mean", and the rare pixel boxed in by hidden ones
    if fill == "mean":
        return out
    n, ys, xs, sy, sx = _donors(hidden, 2 * radius + 1, seed)
    if fill == "neighbour":
        out[n, ys, xs] = y[n, sy, sx]
    else:
        out[n, ys, xs] = local[n, ys, xs] + (y[n, sy, sx] - local[n, sy, sx])
    return out


FILLS = ("residual", "neighbour", "mean")


def _ring_mean(y: np.ndarray, hidden: np.ndarray, radius: int) -> np.ndarray:
    """Mean of the visible pixels on the ring at distance ``radius + 1`` of every pixel."""
    from scipy.ndimage import correlate

    k = 2 * radius + 3
    ring = np.ones((1, k, k), np.float32)
    ring[0, 1:-1, 1:-1] = 0.0
    visible = (~hidden).astype(np.float32)
    num = correlate(y * visible, ring, mode="mirror")
    den = correlate(visible, ring, mode="mirror")
    fallback = float(y[~hidden].mean()) if (~hidden).any() else 0.0
    return np.where(den > 0, num / np.maximum(den, 1e-12), fallback).astype(np.float32)


_DIRS = np.array([(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)])


def _donors(hidden: np.ndarray, step: int, seed: int):
    """For hidden pixels, a visible pixel ``step`` away in a random direction (the next
    direction when that one is hidden or outside); pixels boxed in (rare) are left out."""
    n, ys, xs = np.nonzero(hidden)
    _, h, w = hidden.shape
    start = np.random.default_rng(seed).integers(0, 8, n.size)
    sy, sx = ys.copy(), xs.copy()
    todo = np.ones(n.size, bool)
    for k in range(8):
        d = _DIRS[(start + k) % 8] * step
        ty, tx = ys + d[:, 0], xs + d[:, 1]
        ok = todo & (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
        ok[ok] &= ~hidden[n[ok], ty[ok], tx[ok]]
        sy[ok], sx[ok] = ty[ok], tx[ok]
        todo &= ~ok
    found = ~todo
    return n[found], ys[found], xs[found], sy[found], sx[found]


def holdout_loss(pred: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared difference between the prediction and the noisy values at ``mask``."""
    d = np.asarray(pred, dtype=np.float64)[mask] - np.asarray(y, dtype=np.float64)[mask]
    return float(np.mean(d * d)) if d.size else float("nan")


def noise_variance(y: np.ndarray, denoised: np.ndarray | None = None) -> float:
    """Noise variance of ``y`` (``(N, H, W)``).

    With ``denoised`` (an estimate of the clean image): the mean square of the finest
    diagonal Haar coefficients of ``y`` minus that of ``denoised``. For noise independent
    between pixels, whatever its distribution (Poisson, speckle, salt-and-pepper), those
    coefficients carry the noise at its full variance plus the signal's own, so the
    difference estimates the variance that enters a mean squared error. Without it:
    scikit-image's robust wavelet estimate (median absolute deviation), which ignores
    outliers, so it misses impulse noise and underestimates heavy-tailed noise. Neither
    sees the full variance of spatially correlated noise.
    """
    from .levels import haar_diagonal, wavelet_sigma

    if denoised is None:
        return wavelet_sigma(y) ** 2

    def energy(a):
        d = haar_diagonal(np.asarray(a, dtype=np.float64))
        return float(np.mean(d * d)) if d.size else 0.0

    return float(max(energy(y) - energy(denoised), 1e-12))


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
