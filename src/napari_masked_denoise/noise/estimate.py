"""Estimating the noise model from the image alone.

:func:`estimate_noise` looks at the image alone. It cuts planes into overlapping 12 x 12
blocks and keeps, per intensity bin, the flattest tenth of them (by the spread of a
lightly smoothed copy), where the block's content is mostly noise. In those blocks it
measures the noise autocovariance at lags up to 3 pixels, after removing each block's
mean and linear trend; the bias that removal causes is undone exactly (for noise
correlated over at most 3 pixels). That gives, per bin, the noise variance and the
normalised autocovariance (the correlation kernel). Choosing blocks by their own
smoothed content prefers blocks whose low-frequency noise happens to be weak, which
lowers the level and the correlation of strongly correlated noise; where the estimate
says the noise is correlated, that selection bias is measured on simulated noise of the
estimated correlation and taken out (a parametric bootstrap). The variance against
intensity is fitted by a clipped Poisson-Gaussian (affine) law, ``var = gain * (x - black)
+ read``; where the fit misses a bin by more than 15% in sigma, the per-bin curve is used.
The approach follows the blind, intensity- and frequency-dependent estimates of the Noise
Clinic (Lebrun, Colom and Morel, IPOL 2015) and of Colom et al., in a simpler form.

What it cannot see: noise weaker than the texture of the image's flattest blocks (then
the level is over-estimated and texture looks like correlation), and correlation longer
than 3 pixels. The measured accuracy is in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np

from .blocks import CHUNK
from .blocks import HALF as _HALF
from .blocks import detrend as _detrend
from .blocks import flat_bins as _flat
from .blocks import gather as _gather
from .blocks import index_blocks as _index
from .blocks import select_flat as _select
from .model import CORRELATED, LAG, NoiseModel

__all__ = ["estimate_noise"]

AFFINE_TOLERANCE = 0.15
TEXTURE = 0.3  # a bin this much above the others' law (in sigma) is texture, not noise
ANTICORRELATED = -0.04  # below this at lag 1, the estimate shows the selection's own bias


# --------------------------------------------------------------------------- estimation
def _kernel(rho_half: np.ndarray) -> tuple[tuple[float, ...], ...]:
    g = np.zeros((2 * LAG + 1, 2 * LAG + 1))
    for v, (dy, dx) in zip(rho_half, _HALF):
        g[LAG + dy, LAG + dx] = g[LAG - dy, LAG - dx] = float(np.clip(v, -1.0, 1.0))
    g[LAG, LAG] = 1.0
    return tuple(tuple(round(float(v), 4) for v in row) for row in g)


def _bootstrap(rho_half: np.ndarray, shape, seed: int):
    """The selection's bias on noise of this correlation alone: ``(variance ratio,
    correlation shift)``, measured on one simulated plane of unit variance."""
    kernel = _kernel(rho_half)
    h, w = min(shape[0], 256), min(shape[1], 256)
    unit = NoiseModel((0.0,), (1.0,), 0.0, 0.0, 1.0, True, kernel)
    noise = unit.sample((h, w), np.random.default_rng(seed))
    ((_, c, _),) = _flat((noise / noise.std() + 0.5)[None], None, 1)
    return c[0], c / c[0] - rho_half


def _fit(mus: np.ndarray, var: np.ndarray, weights: np.ndarray, black: float):
    """``(gain, black, read, affine, kept)``: ``var = gain * (x - black) + read**2`` by
    non-negative least squares, ``black`` the image's darkest level (so that the law
    carries on below the darkest bin the blocks measured); ``kept`` marks the bins the law
    rests on. Texture only adds variance, so a bin far above the law of the others (more
    than :data:`TEXTURE` in sigma) is taken for texture and left out, one at a time while
    more than half the bins remain."""
    from scipy.optimize import nnls

    black = float(min(black, mus.min()))

    def law(use):
        sw = np.sqrt(weights[use])
        (g, r2), _ = nnls(np.stack([(mus[use] - black) * sw, sw], 1), var[use] * sw)
        return g, r2, np.sqrt(var / np.maximum(g * (mus - black) + r2, 1e-30))

    kept = np.ones(mus.size, bool)
    while kept.sum() > 3 and 2 * (kept.sum() - 1) >= mus.size:  # three, and half, remain
        # each bin against the law of the other kept bins
        above = [
            law(kept & (np.arange(mus.size) != k))[2][k] if kept[k] else 0 for k in range(mus.size)
        ]
        worst = int(np.argmax(above))
        if above[worst] <= 1 + TEXTURE:
            break
        kept[worst] = False
    gain, read2, ratio = law(kept)
    affine = bool(np.all(np.abs(ratio[kept] - 1) <= AFFINE_TOLERANCE))
    return float(gain), black, float(math.sqrt(read2)), affine, kept


def _clip_mask(planes: np.ndarray):
    """Pixels at a piled-up extreme value (clipping; ``None`` when neither end is) and
    whether each end is clipped."""
    lo, hi = float(planes.min()), float(planes.max())
    clipped = (
        bool(np.count_nonzero(planes == lo) > 0.005 * planes.size),
        bool(np.count_nonzero(planes == hi) > 0.005 * planes.size),
    )
    if not any(clipped):
        return None, clipped
    bad = np.zeros(planes.shape, bool)
    for end, value in zip(clipped, (lo, hi)):
        if end:
            bad |= planes == value
    return bad, clipped


def _estimate_planes(planes: np.ndarray, stack: np.ndarray | None, seed: int) -> NoiseModel:
    """The model of a set of 2-D planes ``(N, H, W)``; ``stack``, when given, is a run of
    consecutive planes ``(K, H, W)`` for the correlation along the stack."""
    from .sure import impulse_share

    bad, clipped = _clip_mask(planes)
    bins = _flat(planes, bad)
    mus = np.array([b[0] for b in bins])
    c = np.stack([b[1] for b in bins])
    weights = np.array([b[2] for b in bins], float)
    dark = float(np.percentile(planes[:, ::4, ::4], 0.1))
    *_, kept = _fit(mus, c[:, 0], weights, dark)  # bins of texture tell nothing of the noise
    mus, c, weights = mus[kept], c[kept], weights[kept]
    var = c[:, 0]
    rho = np.median(c / var[:, None], axis=0)
    lag1 = rho[_HALF.index((0, 1))], rho[_HALF.index((1, 0))]
    if max(lag1) > CORRELATED or min(lag1) < ANTICORRELATED:
        ratio, shift = _bootstrap(rho, planes.shape[-2:], seed)
        var, rho = var / ratio, rho - shift
    gain, black, read, affine, kept = _fit(mus, var, weights, dark)
    mus, var = mus[kept], var[kept]
    lo, span = float(planes.min()), float(planes.max() - planes.min()) or 1.0
    impulses = np.mean([impulse_share(((p[None] - lo) / span).astype(np.float32)) for p in planes])
    return NoiseModel(
        intensities=tuple(float(v) for v in mus),
        sigmas=tuple(float(v) for v in np.sqrt(var)),
        gain=gain,
        black=black,
        read=read,
        affine=affine,
        kernel=_kernel(rho),
        kernel_z=() if stack is None else _correlation_z(stack),
        impulse_share=float(impulses),
        clipped=clipped,
    )


def _correlation_z(stack: np.ndarray) -> tuple[float, ...]:
    """Correlation of the noise between a plane and the next ``1..LAG`` planes, in the
    flat blocks of the first (the same detrending on both: its bias cancels in the ratio)."""
    oy, ox, mu, tau = _index(stack[0], None)
    if mu.size < 10:
        return ()
    flat = _select(mu, tau, 1)[0][:CHUNK]
    r0 = _detrend(_gather(stack[0], oy[flat], ox[flat]))
    out = [1.0]
    for k in range(1, min(LAG, len(stack) - 1) + 1):
        rk = _detrend(_gather(stack[k], oy[flat], ox[flat]))
        out.append(round(float(np.mean(r0 * rk) / max(np.mean(r0 * r0), 1e-30)), 4))
    return tuple(out)


# --------------------------------------------------------------------------- the API
def _plane(image, axes: str, index: dict, crop: tuple[slice, slice]) -> np.ndarray:
    """One YX plane (float64) at ``index`` (axis letter -> position), cropped."""
    idx = tuple(crop[0] if a == "Y" else crop[1] if a == "X" else index[a] for a in axes)
    block = image[idx]
    block = np.asarray(block.compute() if hasattr(block, "compute") else block, dtype=np.float32)
    return block.T if axes.index("X") < axes.index("Y") else block


def _drift(image, axes: str, stack: str, base: dict, crop) -> float:
    """Relative change of the finest-scale noise level from the first to the last
    quarter of the stack (16 planes at most)."""
    from .levels import haar_sigma

    n = image.shape[axes.index(stack)]
    if n < 4:
        return 0.0
    picks = np.unique(np.linspace(0, n - 1, min(n, 16)).round().astype(int))
    sig = np.array([haar_sigma(_plane(image, axes, {**base, stack: int(k)}, crop)) for k in picks])
    q = max(1, len(sig) // 4)
    mid = float(np.median(sig))
    return 0.0 if not mid > 0 else float((np.median(sig[-q:]) - np.median(sig[:q])) / mid)


def estimate_noise(
    image, axes: str | None = None, *, max_planes: int = 8, max_side: int = 1024, seed: int = 0
) -> NoiseModel:
    """Estimate the noise of ``image`` from the image alone.

    Parameters
    ----------
    image : array-like
        numpy, dask or zarr array; only the planes used are read.
    axes : str, optional
        e.g. ``"YX"``, ``"ZYX"``, ``"CZYX"``; guessed for 2-D and 3-D inputs.
    max_planes : int
        How many planes (evenly spaced through the non-YX axes) are looked at.
    max_side : int
        Planes larger than this are cropped to their centre.
    seed : int
        Seed of the simulated noise the selection bias is measured on.

    Returns
    -------
    NoiseModel
        The level against intensity, the correlation kernel (and along the stacked axis
        for volumes), impulse share, drift and clipping; per channel when there is a ``C``
        axis (the returned model pools them, its ``channels`` hold each).

    Raises
    ------
    DenoiseError
        For axes that do not fit the array, or an image too small or too flat to measure.
    """
    from ..core.axes import DenoiseError, check_array, resolve_axes

    if not all(hasattr(image, a) for a in ("shape", "dtype", "__getitem__")):
        image = np.asarray(image)
    axes, _ = resolve_axes(axes, tuple(image.shape))
    check_array(image, axes)
    size = {a: int(image.shape[i]) for i, a in enumerate(axes)}
    crop = tuple(
        slice(max(0, (size[a] - max_side) // 2), max(0, (size[a] - max_side) // 2) + max_side)
        for a in "YX"
    )
    others = [a for a in axes if a not in "YXC"]
    stack = others[-1] if others else None
    positions = list(itertools.product(*(range(size[a]) for a in others)))
    picks = sorted(
        {
            positions[int(k)]
            for k in np.linspace(0, len(positions) - 1, min(len(positions), max_planes))
        }
    )
    models = []
    for ch in range(size.get("C", 1)):
        base = {"C": ch} if "C" in axes else {}
        planes = np.stack(
            [_plane(image, axes, {**base, **dict(zip(others, p))}, crop) for p in picks]
        )
        run = None
        if stack is not None and size[stack] > 1:
            mid = {**base, **{a: size[a] // 2 for a in others}}
            k0 = min(size[stack] // 2, size[stack] - 2)
            run = np.stack(
                [
                    _plane(image, axes, {**mid, stack: k}, crop)
                    for k in range(k0, min(size[stack], k0 + LAG + 1))
                ]
            )
        try:
            m = _estimate_planes(planes, run, seed)
        except ValueError as exc:
            raise DenoiseError(f"cannot estimate the noise: {exc}") from None
        drift = (
            0.0
            if stack is None
            else _drift(image, axes, stack, {**base, **{a: 0 for a in others}}, crop)
        )
        models.append(replace(m, drift=drift))
    if len(models) == 1:
        return models[0]
    pooled = models[
        int(np.argsort([m.level for m in models])[len(models) // 2])
    ]  # the median channel
    return replace(pooled, channels=tuple(models))
