"""Synthetic noise for training: the classic mix, and noise as microscopes and CT make it.

Every function takes clean images ``x`` (any shape, last two axes Y and X, values about
[0, 1]) and a ``numpy.random.Generator``, and returns a new float32 array; ``x`` is never
modified. Parameters not given are drawn from the ranges documented per function, so a
call per training crop gives a different noise each time.

- :func:`gaussian`, :func:`speckle`, :func:`salt_and_pepper`: the mixed synthetic noise
  of meta-auxiliary pre-training (``../shared/METHODS.md`` section 3), combined in random
  order by :func:`classic_mix`;
- :func:`poisson_gaussian` (photon shot noise with a detector gain, offset and Gaussian
  read noise), :func:`correlated` (white noise blurred by a small Gaussian kernel, as
  demosaicing, interpolation and CT reconstruction make it), :func:`row_column` (per-row
  and per-column offsets of line-scanning and CMOS read-out), :func:`ct` (the streaky,
  high-pass noise of filtered back-projection from a low-dose scan), combined by
  :func:`realistic`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "gaussian", "speckle", "salt_and_pepper", "classic_mix",
    "poisson_gaussian", "correlated", "row_column", "ct", "realistic",
]


def _f32(x) -> np.ndarray:
    return np.array(x, dtype=np.float32, copy=True)


def _blurred(n: np.ndarray, width: float, std: float) -> np.ndarray:
    """Noise ``n`` filtered by a Gaussian of ``width`` pixels in Y and X, rescaled to ``std``."""
    from scipy.ndimage import gaussian_filter

    n = gaussian_filter(n, [0.0] * (n.ndim - 2) + [width, width], mode="wrap")
    return n * (std / max(float(n.std()), 1e-12))


def gaussian(x, rng: np.random.Generator, sigma: float | None = None) -> np.ndarray:
    """Additive white Gaussian noise; ``sigma`` drawn from [5, 50] / 255."""
    s = rng.uniform(5, 50) / 255 if sigma is None else float(sigma)
    return (_f32(x) + rng.normal(0, s, np.shape(x))).astype(np.float32)


def speckle(x, rng: np.random.Generator, sigma: float | None = None) -> np.ndarray:
    """Multiplicative noise ``x + x * n``; ``sigma`` of ``n`` drawn from [5, 50] / 255."""
    s = rng.uniform(5, 50) / 255 if sigma is None else float(sigma)
    y = _f32(x)
    return (y + y * rng.normal(0, s, y.shape)).astype(np.float32)


def salt_and_pepper(x, rng: np.random.Generator, amount: float | None = None) -> np.ndarray:
    """A share ``amount`` (drawn from [0, 0.01]) of pixels set to 0 or 1, half each."""
    a = rng.uniform(0, 0.01) if amount is None else float(amount)
    y = _f32(x)
    u = rng.random(y.shape)
    y[u < a / 2] = 0.0
    y[(u >= a / 2) & (u < a)] = 1.0
    return y


def classic_mix(x, rng: np.random.Generator) -> np.ndarray:
    """Gaussian, speckle and salt-and-pepper, each applied with probability 1/2 (at least
    one), in random order."""
    ops = [gaussian, speckle, salt_and_pepper]
    use = rng.random(3) < 0.5
    if not use.any():
        use[rng.integers(3)] = True
    y = _f32(x)
    for k in rng.permutation(3):
        if use[k]:
            y = ops[k](y, rng)
    return y


def poisson_gaussian(x, rng: np.random.Generator, photons: float | None = None,
                     read: float | None = None, offset: float | None = None) -> np.ndarray:
    """Shot noise and read noise: ``(Poisson(photons * x) / photons) + N(0, read) + offset``.

    ``photons`` at intensity 1 drawn log-uniformly from [12, 1200] (a shot-noise std of
    0.2 to 0.02 at mid-grey: the range of the classic mix's Gaussian noise, 5-50/255);
    ``read`` from [0, 0.05];
    ``offset`` (a detector baseline) from [0, 0.1]. Negative intensities count as zero
    photons.
    """
    p = float(np.exp(rng.uniform(np.log(12), np.log(1200)))) if photons is None else float(photons)
    r = rng.uniform(0, 0.05) if read is None else float(read)
    o = rng.uniform(0, 0.1) if offset is None else float(offset)
    lam = np.clip(_f32(x), 0, None) * p
    y = rng.poisson(lam) / p + rng.normal(0, r, lam.shape) + o
    return y.astype(np.float32)


def correlated(x, rng: np.random.Generator, sigma: float | None = None,
               width: float | None = None) -> np.ndarray:
    """Spatially correlated Gaussian noise of standard deviation ``sigma`` (drawn from
    [5, 50] / 255): white noise filtered by a Gaussian of ``width`` pixels (drawn from
    [0.5, 1.5]) in Y and X, rescaled to ``sigma``."""
    s = rng.uniform(5, 50) / 255 if sigma is None else float(sigma)
    w = rng.uniform(0.5, 1.5) if width is None else float(width)
    y = _f32(x)
    return (y + _blurred(rng.normal(0, 1, y.shape), w, s)).astype(np.float32)


def row_column(x, rng: np.random.Generator, sigma: float | None = None) -> np.ndarray:
    """Per-row offsets (and, with probability 1/2, per-column offsets) of standard
    deviation ``sigma`` (drawn from [1, 10] / 255), constant along each line."""
    s = rng.uniform(1, 10) / 255 if sigma is None else float(sigma)
    y = _f32(x)
    lead, (h, w) = y.shape[:-2], y.shape[-2:]
    y += rng.normal(0, s, (*lead, h, 1)).astype(np.float32)
    if rng.random() < 0.5:
        y += rng.normal(0, s, (*lead, 1, w)).astype(np.float32)
    return y


def ct(x, rng: np.random.Generator, sigma: float | None = None,
       attenuation: float | None = None) -> np.ndarray:
    """Low-dose CT noise: ``x`` taken as the attenuation map of a parallel-beam scan.

    Its sinogram ``p`` (as many angles over 180 degrees as pixels) is scaled so that the
    thickest ray is attenuated by ``exp(-attenuation)`` (drawn from [1, 4]). Photon noise
    on the log-transformed counts has a variance proportional to ``exp(p)`` (the Gaussian
    approximation of Poisson counts ``I0 exp(-p)``); reconstructed by filtered back-projection
    (ramp filter) it becomes streaks along dense structures and fine, anti-correlated grain.
    The noise is rescaled to standard deviation ``sigma`` (drawn from [5, 50] / 255) and
    added to ``x``. Any shape with Y and X last; each plane gets its own draw.
    """
    from skimage.transform import iradon, radon

    y = _f32(x)
    lead, (h, w) = y.shape[:-2], y.shape[-2:]
    n = max(h, w)
    theta = np.linspace(0.0, 180.0, n, endpoint=False)
    planes = y.reshape(-1, h, w)
    for k in range(planes.shape[0]):
        s = rng.uniform(5, 50) / 255 if sigma is None else float(sigma)
        att = rng.uniform(1, 4) if attenuation is None else float(attenuation)
        a = np.zeros((n, n), np.float64)
        a[:h, :w] = np.clip(planes[k], 0, None)
        p = radon(a, theta, circle=False)
        p *= att / max(float(p.max()), 1e-12)
        e = rng.normal(0, 1, p.shape) * np.exp(p / 2)
        noise = iradon(e, theta, filter_name="ramp", circle=False, output_size=n)[:h, :w]
        planes[k] += (noise * (s / max(float(noise.std()), 1e-12))).astype(np.float32)
    return planes.reshape(*lead, h, w)


def realistic(x, rng: np.random.Generator, offset: float | None = None,
              ct_share: float = 0.0) -> np.ndarray:
    """With probability ``ct_share``: low-dose CT noise (:func:`ct`) plus ``offset``.
    Otherwise Poisson-Gaussian noise, then with probability 1/2 each: spatial correlation
    of the noise and row/column offsets. ``offset`` is the detector baseline (drawn from
    [0, 0.1] when not given); a training target that should keep it is ``x + offset``."""
    clean = _f32(x)
    if ct_share and rng.random() < ct_share:  # no draw at all without CT noise
        o = rng.uniform(0, 0.1) if offset is None else float(offset)
        return (ct(clean, rng) + o).astype(np.float32)
    y = poisson_gaussian(clean, rng, offset=offset)
    if rng.random() < 0.5:
        # correlate the noise, not the signal: blur the residual, keep its level
        n = y - clean
        y = clean + _blurred(n, rng.uniform(0.5, 1.5), float(n.std()))
    if rng.random() < 0.5:
        y = row_column(y, rng)
    return y.astype(np.float32)
