"""Stein's unbiased risk estimate (SURE): a denoiser's error without a clean image.

For noise ``y = x + n`` with independent Gaussian ``n_i`` of variance ``v_i``,

    E |f(y) - x|^2 = E [ |f(y) - y|^2 - sum_i v_i + 2 sum_i v_i df_i/dy_i ]

(Stein 1981); for correlated Gaussian noise of covariance ``C`` the last term is
``2 trace(J C)``, ``J`` the Jacobian of ``f``. It is estimated by Monte Carlo from one more
run on a slightly perturbed input, ``b_i (f(y + eps b) - f(y))_i / eps`` with ``b`` random
of covariance ``C`` (Ramani, Blu and Unser, IEEE TIP 2008, for white noise), so any
denoiser, a network or BM3D, can be scored as it is. Unlike held-out pixels
(:mod:`napari_masked_denoise.noise.holdout`) it scores the output the user gets: a method that
uses a pixel's own value is not penalised for it.

The variances ``v_i`` come from a noise-level function, the noise variance as an affine
function of the local intensity, fitted on the finest diagonal Haar coefficients. That
covers Gaussian, Poisson and Poisson-Gaussian (fluorescence) noise, and approximately
multiplicative noise. SURE does not hold for impulse noise (salt and pepper), which
:func:`impulse_share` detects so that a caller can fall back to held-out pixels, nor for
spatially correlated noise: the finest Haar details miss part of its variance, and the
divergence term needs its covariance, ``2 trace(J C)``. A perturbation shaped like the
noise over three Haar levels was tried and misjudged a 3x3-smoothed noise by half, even
when made from the noise itself.
Measured in ``benchmarks/RESULTS.md`` ("which error estimate ranks the candidates").
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SURE_EPS",
    "IMPULSE_SHARE",
    "noise_level",
    "impulse_share",
    "probe",
    "divergence",
    "risk",
]

SURE_EPS = 0.01
"""The size of the perturbation :func:`probe` draws, which has about the noise's variance."""
IMPULSE_SHARE = 0.01
"""Above this share of isolated outliers (:func:`impulse_share`) the noise counts as impulsive."""

_BINS = 16
_KEEP = 0.95  # the share of squared coefficients kept per bin (the largest are edges)
_TRIMMED = 0.758843  # E[z^2 | z^2 below its 95th percentile] for a standard normal z


def noise_level(y: np.ndarray) -> np.ndarray:
    """Per-pixel noise variance of ``y`` (``(N, H, W)``): ``c0 + c1 u`` at the local (3x3
    mean) intensity ``u``, fitted by weighted least squares on the trimmed mean square of
    the finest diagonal Haar coefficients in 16 intensity bins (the mean square counts
    heavy-tailed noise; trimming the top 5% keeps most edges out)."""
    from scipy.ndimage import uniform_filter

    from .levels import haar_diagonal

    y = np.asarray(y, dtype=np.float64)
    h, w = y.shape[-2] // 2 * 2, y.shape[-1] // 2 * 2
    a = y[..., :h, :w]
    d2 = (haar_diagonal(a) ** 2).ravel()
    u = (
        (a[..., 0::2, 0::2] + a[..., 0::2, 1::2] + a[..., 1::2, 0::2] + a[..., 1::2, 1::2]) / 4
    ).ravel()
    local = uniform_filter(y, size=(1, 3, 3), mode="reflect")
    if d2.size < 8:
        return np.full(y.shape, float(np.mean(d2)) if d2.size else 0.0)
    edges = np.quantile(u, np.linspace(0, 1, _BINS + 1))
    idx = np.clip(np.searchsorted(edges, u, side="right") - 1, 0, _BINS - 1)
    us, vs, ns = [], [], []
    for i in range(_BINS):
        sel = idx == i
        if sel.sum() < 8:
            continue
        s = np.sort(d2[sel])[: max(int(_KEEP * sel.sum()), 1)]
        us.append(u[sel].mean())
        vs.append(s.mean() / _TRIMMED)
        ns.append(sel.sum())
    us, vs, ns = (np.asarray(v, float) for v in (us, vs, ns))
    floor = 0.05 * max(float(vs.min()), 1e-12)
    if us.size < 2 or np.ptp(us) <= 0:
        return np.full(y.shape, max(float(np.average(vs, weights=ns)), floor))
    sw = np.sqrt(ns)
    (c0, c1), *_ = np.linalg.lstsq(np.stack([sw, us * sw], 1), vs * sw, rcond=None)
    return np.maximum(c0 + c1 * local, floor)


def impulse_share(y: np.ndarray, k: float = 4.0) -> float:
    """Share of pixels more than ``k`` noise sigmas (robust, finest Haar details), and more
    than a tenth of the intensity range (1st to 99th percentile), above the largest or
    below the smallest of their 8 neighbours: isolated outliers, as impulse (salt-and-
    pepper) noise and hot pixels make them. About 0-0.3% for Gaussian, Poisson and speckle
    noise on natural images, 3-4% for 5% salt and pepper; the range condition keeps fine
    texture on a clean image (a tiny sigma) from counting."""
    from scipy.ndimage import maximum_filter, minimum_filter

    from .levels import haar_sigma

    y = np.asarray(y, dtype=np.float32)
    s = haar_sigma(y)
    if not np.isfinite(s):
        return 0.0
    fp = np.ones((1, 3, 3), bool)
    fp[0, 1, 1] = False
    mx = maximum_filter(y, footprint=fp, mode="reflect")
    mn = minimum_filter(y, footprint=fp, mode="reflect")
    lo, hi = np.percentile(y[..., ::2, ::2], (1, 99))
    return float(np.mean(np.maximum(y - mx, mn - y) > max(k * s, 0.1 * float(hi - lo))))


def probe(v: np.ndarray, seed: int) -> np.ndarray:
    """The random perturbation: ``+-sqrt(v_i)`` with random signs, so that it has the
    noise's variance at every pixel (white: noise independent between pixels)."""
    signs = np.random.default_rng([int(seed), 5_211]).choice(
        np.array([-1.0, 1.0]), size=np.shape(v)
    )
    return (signs * np.sqrt(np.asarray(v, np.float64))).astype(np.float32)


def divergence(f0: np.ndarray, f1: np.ndarray, b: np.ndarray, eps: float) -> float:
    """Mean over pixels of ``b_i (f1 - f0)_i / eps``, from outputs on ``y`` (``f0``) and on
    ``y + eps b`` (``f1``): estimates ``trace(J Cov(b)) / n``, with ``J`` the denoiser's
    Jacobian; with ``Cov(b)`` the noise covariance, the divergence term of SURE."""
    d = (np.asarray(f1, np.float64) - np.asarray(f0, np.float64)) / eps
    return float(np.mean(np.asarray(b, np.float64) * d))


def risk(y: np.ndarray, fy: np.ndarray, noise_var: float, div: float) -> float:
    """SURE: the estimated mean squared error of ``fy`` against the clean image, given the
    mean noise variance and :func:`divergence`."""
    r = np.asarray(fy, np.float64) - np.asarray(y, np.float64)
    return float(np.mean(r * r) - noise_var + 2.0 * div)
