"""Block statistics for the noise estimate: flat blocks and their lag covariances.

Planes are cut into overlapping :data:`BLOCK` x :data:`BLOCK` blocks (stride
:data:`STRIDE`); per intensity bin the flattest :data:`FLAT_SHARE` of them (by the spread
of a lightly smoothed copy) give the noise's lag covariances, measured after removing
each block's mean and linear trend and corrected for that removal exactly. Blocks are
handled :data:`CHUNK` at a time, so memory stays small whatever the plane size.
"""

from __future__ import annotations

import functools

import numpy as np

from .model import LAG

__all__ = ["HALF", "flat_bins", "index_blocks", "select_flat", "gather", "detrend"]

BLOCK, STRIDE = 12, 4
FLAT_SHARE = 0.1  # the flattest share of blocks per intensity bin
TRIM = 2.0  # blocks whose variance exceeds this many times the bin's median are texture
BLOCKS_PER_BIN = 400
MAX_BINS = 8
CHUNK = 256  # blocks handled at once: bounds the memory of the estimate
HALF = [(dy, dx) for dy in range(LAG + 1) for dx in range(-LAG, LAG + 1) if dy > 0 or dx >= 0]
"""The lags of the half plane (the autocovariance is symmetric)."""


def _pairs(b: int, dy: int, dx: int):
    """Slices of a ``b x b`` block: pixels and their partners at lag ``(dy, dx)``."""
    xs, xt = (slice(0, b - dx), slice(dx, b)) if dx >= 0 else (slice(-dx, b), slice(0, b + dx))
    return slice(0, b - dy), xs, slice(dy, b), xt


@functools.lru_cache(maxsize=2)
def _design(b: int):
    """The projection onto a block's mean and linear trend, and the inverse of the linear
    map from the noise's true lag covariances to their averages measured after removing
    that projection (exact for noise correlated over at most :data:`LAG` pixels)."""
    ii, jj = np.mgrid[:b, :b]
    x = np.stack([np.ones(b * b), ii.ravel() - (b - 1) / 2, jj.ravel() - (b - 1) / 2], 1)
    proj = x @ np.linalg.pinv(x)
    q = np.eye(b * b) - proj
    idx = np.arange(b * b).reshape(b, b)
    pairs = []
    for dy, dx in HALF:
        ys, xs, yt, xt = _pairs(b, dy, dx)
        pairs.append((idx[ys, xs].ravel(), idx[yt, xt].ravel()))
    m = np.zeros((len(HALF), len(HALF)))
    for k, (a, c) in enumerate(pairs):
        cov = np.zeros((b * b, b * b))
        cov[a, c] = cov[c, a] = 1.0
        seen = q @ cov @ q
        for j, (u, v) in enumerate(pairs):
            m[j, k] = seen[u, v].mean()
    return proj, np.linalg.inv(m)


def gather(a: np.ndarray, oy: np.ndarray, ox: np.ndarray) -> np.ndarray:
    """The ``BLOCK x BLOCK`` blocks of ``a`` at origins ``(oy, ox)``, float64."""
    ii = np.arange(BLOCK)
    return a[oy[:, None, None] + ii[None, :, None], ox[:, None, None] + ii[None, None, :]].astype(
        np.float64
    )


def detrend(w: np.ndarray) -> np.ndarray:
    proj, _ = _design(BLOCK)
    f = w.reshape(len(w), -1)
    return (f - f @ proj.T).reshape(w.shape)


def index_blocks(plane: np.ndarray, bad: np.ndarray | None):
    """Every block of ``plane`` (a grid of stride :data:`STRIDE`) not touching ``bad``
    pixels: origins, mean and texture (the spread of a lightly smoothed copy, trend
    removed), computed :data:`CHUNK` blocks at a time."""
    from scipy.ndimage import gaussian_filter

    gy, gx = np.meshgrid(
        np.arange(0, plane.shape[0] - BLOCK + 1, STRIDE),
        np.arange(0, plane.shape[1] - BLOCK + 1, STRIDE),
        indexing="ij",
    )
    oy, ox = gy.ravel(), gx.ravel()
    if bad is not None and bad.any():
        hit = np.concatenate(
            [
                gather(bad, oy[i : i + CHUNK], ox[i : i + CHUNK]).any(axis=(1, 2))
                for i in range(0, oy.size, CHUNK)
            ]
        )
        oy, ox = oy[~hit], ox[~hit]
    smooth = gaussian_filter(plane.astype(np.float32), 1.0)
    mu = np.empty(oy.size, np.float32)
    tau = np.empty(oy.size, np.float32)
    for i in range(0, oy.size, CHUNK):
        sl = slice(i, i + CHUNK)
        mu[sl] = gather(plane, oy[sl], ox[sl]).mean(axis=(1, 2))
        tau[sl] = detrend(gather(smooth, oy[sl], ox[sl])).std(axis=(1, 2))
    return oy, ox, mu, tau


def _covs(plane: np.ndarray, oy: np.ndarray, ox: np.ndarray) -> np.ndarray:
    """The lag covariances (:data:`HALF`) of the detrended blocks at ``(oy, ox)``."""
    out = np.empty((oy.size, len(HALF)))
    pairs = [_pairs(BLOCK, dy, dx) for dy, dx in HALF]
    for i in range(0, oy.size, CHUNK):
        r = detrend(gather(plane, oy[i : i + CHUNK], ox[i : i + CHUNK]))
        out[i : i + CHUNK] = np.stack(
            [np.mean(r[:, ys, xs] * r[:, yt, xt], axis=(1, 2)) for ys, xs, yt, xt in pairs], 1
        )
    return out


def select_flat(mu: np.ndarray, tau: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Per intensity bin (equal counts), the indices of its flattest blocks."""
    edges = np.quantile(mu, np.linspace(0, 1, n_bins + 1))
    which = np.clip(np.searchsorted(edges, mu, side="right") - 1, 0, n_bins - 1)
    out = []
    for k in range(n_bins):
        idx = np.flatnonzero(which == k)
        if idx.size >= 10:
            out.append(idx[tau[idx] <= np.quantile(tau[idx], FLAT_SHARE)])
    return out


def _bin_covariance(cov: np.ndarray) -> np.ndarray | None:
    """The true lag covariances of a bin from its flat blocks' measured ones: blocks far
    above the typical variance (texture) left out, the detrending's bias undone."""
    _, minv = _design(BLOCK)
    cov = cov[cov[:, 0] <= TRIM * np.median(cov[:, 0])]
    if len(cov) < 3:
        return None
    c = minv @ cov.mean(0)
    return c if c[0] > 0 else None


def flat_bins(planes: np.ndarray, bad, n_bins: int | None = None):
    """Per intensity bin: ``(mean intensity, lag covariances, number of blocks)`` from the
    flat blocks of every plane."""
    index = [
        index_blocks(p, None if bad is None else m)
        for p, m in zip(planes, bad if bad is not None else planes)
    ]
    mu = np.concatenate([ix[2] for ix in index])
    if mu.size < 10:
        raise ValueError("too few unclipped blocks to estimate the noise")
    tau = np.concatenate([ix[3] for ix in index])
    plane_of = np.concatenate([np.full(ix[0].size, k) for k, ix in enumerate(index)])
    at = np.concatenate([np.arange(ix[0].size) for ix in index])
    n_bins = n_bins or int(np.clip(mu.size // BLOCKS_PER_BIN, 1, MAX_BINS))
    out = []
    for sel in select_flat(mu, tau, n_bins):
        cov = np.concatenate(
            [
                _covs(
                    planes[k],
                    index[k][0][at[sel][plane_of[sel] == k]],
                    index[k][1][at[sel][plane_of[sel] == k]],
                )
                for k in np.unique(plane_of[sel])
            ]
        )
        c = _bin_covariance(cov)
        if c is not None:
            out.append((float(mu[sel].mean()), c, int(sel.size)))
    if not out:
        raise ValueError("no flat blocks to estimate the noise from")
    return _merge(out)


def _merge(bins: list) -> list:
    """Neighbouring bins whose intensities differ by less than their noise level are one
    intensity as far as the noise can tell (equal-count bins crowd where most pixels lie,
    e.g. a dark background): their covariances are pooled, weighted by their blocks."""
    out = [bins[0]]
    for mu, c, n in bins[1:]:
        mu0, c0, n0 = out[-1]
        if mu - mu0 < np.sqrt(max(c[0], c0[0])):
            out[-1] = ((mu0 * n0 + mu * n) / (n0 + n), (c0 * n0 + c * n) / (n0 + n), n0 + n)
        else:
            out.append((mu, c, n))
    return out
