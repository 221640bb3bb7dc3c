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
  :func:`realistic`;
- :func:`poisson`, :func:`impulse`, :func:`filtered_gaussian`: noises of a fixed level,
  for validation sets, benchmarks and the bundled samples; :func:`lowdose_sinogram`:
  photon noise on a CT sinogram.

:data:`RECIPES` names the noises the package uses (``"g15"``, ``"poisson30"``,
``"classic"``, ``"realistic"``...): training, its validation sets, the sample data and the
benchmarks all draw their noise from it, so a name means one noise everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "gaussian",
    "speckle",
    "salt_and_pepper",
    "classic_mix",
    "poisson_gaussian",
    "correlated",
    "row_column",
    "ct",
    "realistic",
    "poisson",
    "impulse",
    "filtered_gaussian",
    "lowdose_sinogram",
    "camera_pipeline",
    "Recipe",
    "RECIPES",
    "recipe",
]


def _f32(x) -> np.ndarray:
    return np.array(x, dtype=np.float32, copy=True)


def _blurred(n: np.ndarray, width: float, std: float) -> np.ndarray:
    """Noise ``n`` filtered by a Gaussian of ``width`` pixels in Y and X, rescaled to ``std``."""
    from scipy.ndimage import gaussian_filter

    n = gaussian_filter(n, [0.0] * (n.ndim - 2) + [width, width], mode="wrap")
    return n * (std / max(float(n.std()), 1e-12))


def gaussian(
    x, rng: np.random.Generator, sigma: float | None = None, *, round_noise: bool = False
) -> np.ndarray:
    """Additive white Gaussian noise; ``sigma`` drawn from [5, 50] / 255.

    With ``round_noise`` the noise is rounded to float32 before it is added (as the
    training code adds float32 tensors); otherwise the sum is rounded once.
    """
    s = rng.uniform(5, 50) / 255 if sigma is None else float(sigma)
    n = rng.normal(0, s, np.shape(x))
    return (_f32(x) + (n.astype(np.float32) if round_noise else n)).astype(np.float32)


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


def poisson_gaussian(
    x,
    rng: np.random.Generator,
    photons: float | None = None,
    read: float | None = None,
    offset: float | None = None,
) -> np.ndarray:
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


def correlated(
    x, rng: np.random.Generator, sigma: float | None = None, width: float | None = None
) -> np.ndarray:
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


def ct(
    x, rng: np.random.Generator, sigma: float | None = None, attenuation: float | None = None
) -> np.ndarray:
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


def realistic(
    x, rng: np.random.Generator, offset: float | None = None, ct_share: float = 0.0
) -> np.ndarray:
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


# ------------------------------------------------------------------ fixed-level noises
def poisson(
    x, rng: np.random.Generator, peak: float, read: float | None = None, *, float64: bool = False
) -> np.ndarray:
    """Shot noise at ``peak`` photons at intensity 1: ``Poisson(peak * x) / peak``.

    Parameters
    ----------
    x : array_like
        Clean image(s); negative values count as zero photons.
    rng : numpy.random.Generator
        Source of randomness.
    peak : float
        Expected photons at intensity 1; lower is noisier.
    read : float, optional
        Standard deviation of Gaussian read noise added after the shot noise (none, and
        no draw for it, when not given).
    float64 : bool
        Compute the photon rates in float64; by default in the precision of ``x``.

    Returns
    -------
    numpy.ndarray
        The noisy image, float32.
    """
    a = np.asarray(x, dtype=np.float64) if float64 else np.asarray(x)
    lam = np.clip(a, 0, None) * float(peak)
    y = rng.poisson(lam) / float(peak)
    if read is not None:
        y = y + rng.normal(0.0, float(read), lam.shape)
    return y.astype(np.float32)


def impulse(x, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """Salt and pepper by one uniform draw per pixel: below ``low`` set to 0, above
    ``high`` set to 1 (``low = 1 - high = 0.025``: 5% of the pixels). :func:`salt_and_pepper`
    is the training mix's variant, with a random share."""
    y = _f32(x)
    u = rng.random(y.shape)
    y[u < low] = 0.0
    y[u > high] = 1.0
    return y


def filtered_gaussian(
    x, rng: np.random.Generator, level: float, kernel: str = "gaussian", width: float = 1.0
) -> np.ndarray:
    """Spatially correlated noise of standard deviation ``level / 255``: white Gaussian
    noise filtered in Y and X by a Gaussian of ``width`` pixels (``kernel="gaussian"``)
    or a ``width``-pixel box (``kernel="box"``), rescaled over the whole array."""
    from scipy.ndimage import gaussian_filter, uniform_filter

    n = rng.normal(0, 1, np.shape(x))
    lead = n.ndim - 2
    if kernel == "box":
        n = uniform_filter(n, [1] * lead + [int(width)] * 2, mode="wrap")
    elif kernel == "gaussian":
        n = gaussian_filter(n, [0.0] * lead + [float(width)] * 2, mode="wrap")
    else:
        raise ValueError(f"kernel must be 'gaussian' or 'box', got {kernel!r}")
    return (_f32(x) + n / n.std() * level / 255).astype(np.float32)


def lowdose_sinogram(p: np.ndarray, rng: np.random.Generator, i0: float, mu: float) -> np.ndarray:
    """Photon noise on a CT sinogram ``p`` (line integrals): Beer-Lambert counts
    ``I0 * exp(-mu * p)`` with Poisson noise, back to line integrals
    ``-log(max(counts, 1) / I0) / mu`` (float64)."""
    counts = rng.poisson(float(i0) * np.exp(-mu * p))
    return -np.log(np.maximum(counts, 1) / float(i0)) / mu


from .camera import camera_pipeline  # noqa: E402  (the table below names it)


# ---------------------------------------------------------------------- the recipes
@dataclass(frozen=True)
class Recipe:
    """A named noise: ``model(clean, rng, **params)``.

    Calling a recipe applies it; keyword arguments override its parameters for that
    call (``RECIPES["pg30"](x, rng, peak=10)``).
    """

    model: Callable[..., np.ndarray]
    params: Mapping[str, object] = field(default_factory=dict)
    about: str = ""

    def __call__(self, clean, rng: np.random.Generator, **overrides) -> np.ndarray:
        return self.model(clean, rng, **{**self.params, **overrides})


def _g(level: int, about: str) -> Recipe:
    return Recipe(gaussian, {"sigma": level / 255}, f"Gaussian, sigma {level}/255; {about}")


RECIPES: dict[str, Recipe] = {
    "camera": Recipe(
        camera_pipeline,
        {"peak": 60.0, "read": 0.01, "gamma": 2.2, "jpeg": 90},
        "a camera: Poisson-Gaussian on an RGGB mosaic, bilinear demosaicking, gamma 2.2, "
        "JPEG 90, grey; quality benchmark",
    ),
    "g15": _g(15, "the masked transformer's training noise; quality benchmark"),
    "g25": _g(25, "quality benchmark"),
    "g35": _g(35, "masked-transformer validation"),
    "g50": _g(50, "quality benchmark"),
    "g25-f32": Recipe(
        gaussian,
        {"sigma": 25 / 255, "round_noise": True},
        "Gaussian, sigma 25/255, noise rounded to float32: every trainer's "
        "held-out validation crops",
    ),
    "poisson20": Recipe(
        poisson, {"peak": 20.0}, "Poisson, 20 photons at 1: masked-transformer validation"
    ),
    "poisson30": Recipe(
        poisson, {"peak": 30.0}, "Poisson, 30 photons at 1: quality benchmark, TTT-MIM validation"
    ),
    "pg30": Recipe(
        poisson,
        {"peak": 30.0, "read": 0.02, "float64": True},
        "Poisson, 30 photons at 1, plus Gaussian read noise 0.02 (rates in float64): "
        "the bundled fluorescence samples",
    ),
    "speckle20": Recipe(speckle, {"sigma": 0.2}, "x + x * n, n of std 0.2: quality benchmark"),
    "speckle25": Recipe(
        speckle, {"sigma": 0.25}, "x + x * n, n of std 0.25: masked-transformer validation"
    ),
    "sp3": Recipe(
        impulse,
        {"low": 0.015, "high": 0.985},
        "salt and pepper on 3% of the pixels: masked-transformer validation",
    ),
    "sp5": Recipe(
        impulse,
        {"low": 0.025, "high": 0.975},
        "salt and pepper on 5% of the pixels: quality benchmark",
    ),
    "corr20": Recipe(
        filtered_gaussian,
        {"level": 20, "kernel": "gaussian", "width": 1.0},
        "white noise blurred by a Gaussian of 1 pixel, std 20/255: masked-transformer validation",
    ),
    "corr25-box3": Recipe(
        filtered_gaussian,
        {"level": 25, "kernel": "box", "width": 3},
        "white noise filtered by a 3x3 box, std 25/255: quality benchmark",
    ),
    "classic": Recipe(
        classic_mix,
        {},
        "the classic mix (Gaussian, speckle, salt and pepper), random levels: meta-TTA stage 1",
    ),
    "realistic": Recipe(
        realistic,
        {"offset": None, "ct_share": 0.0},
        "Poisson-Gaussian with offset, correlation and row/column offsets, or "
        "low-dose CT noise at ct_share, random levels: meta-TTA stage 2",
    ),
    "ct": Recipe(ct, {}, "low-dose CT noise (filtered back-projection), random level"),
}
"""The named noises; see :class:`Recipe`."""


def recipe(name: str) -> Recipe:
    """The recipe called ``name``; :class:`ValueError` naming the known ones otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"no noise recipe {name!r}; known: {', '.join(RECIPES)}") from None
