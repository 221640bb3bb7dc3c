"""The data every trainer shares: clean images, random crops, the held-out validation set.

Validation never touches a test set: a fixed share of each training folder (every
:data:`VAL_EVERY_NTH`-th file, sorted by name) is held out. Plain numpy and scikit-image:
no torch here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..noise.simulate import RECIPES

__all__ = [
    "SKIMAGE_IMAGES",
    "VAL_EVERY_NTH",
    "gray01",
    "training_images",
    "random_crops",
    "val_set",
    "psnr",
]

# scikit-image's bundled images used as extra clean training data. ``camera`` (the
# cameraman, also in Set12) and ``cell`` (the source of our sample data) are left out.
SKIMAGE_IMAGES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "moon",
    "page",
    "text",
    "brick",
    "grass",
    "gravel",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "clock",
)

VAL_EVERY_NTH = 20
"""Every ``VAL_EVERY_NTH``-th file of a training folder (sorted) is held out."""

_SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".bmp"}


def gray01(a: np.ndarray) -> np.ndarray:
    """An image as grayscale float32, 8- and 16-bit integers scaled to [0, 1].

    Parameters
    ----------
    a : numpy.ndarray
        Grayscale ``(Y, X)`` or colour ``(Y, X, C)`` image (RGB or RGBA: converted by
        luminance, scikit-image's ``rgb2gray``).

    Returns
    -------
    numpy.ndarray
        float32 ``(Y, X)``; uint8 divided by 255, uint16 by 65535, other types as they are.
    """
    a = np.asarray(a)
    if a.ndim == 3:
        from skimage.color import rgb2gray

        a = rgb2gray(a[..., :3])
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return a.astype(np.float32)


def training_images(
    data_dirs, *, skimage: bool = True
) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Load clean grayscale images in [0, 1].

    Parameters
    ----------
    data_dirs : iterable of str or path
        Folders of clean images (PNG, TIFF, JPEG, BMP).
    skimage : bool
        Add scikit-image's bundled images (:data:`SKIMAGE_IMAGES`) to the training images.

    Returns
    -------
    train, val : list of numpy.ndarray
        Training and held-out images: every :data:`VAL_EVERY_NTH`-th file of each folder
        (sorted by name) is held out.
    sources : list of str
        One line per source, for the manifest.

    Raises
    ------
    FileNotFoundError
        A folder does not exist or holds no images.
    """
    from skimage import io

    train, val, sources = [], [], []
    for d in data_dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"training data folder {d} does not exist")
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in _SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no images in training data folder {d}")
        for i, f in enumerate(files):
            img = gray01(io.imread(f))
            (val if i % VAL_EVERY_NTH == VAL_EVERY_NTH - 1 else train).append(img)
        sources.append(f"{d} ({len(files)} images, every {VAL_EVERY_NTH}th held out)")
    if skimage:
        import skimage.data as skd

        for name in SKIMAGE_IMAGES:
            train.append(gray01(getattr(skd, name)()))
        sources.append("scikit-image bundled: " + ", ".join(SKIMAGE_IMAGES))
    return train, val, sources


def random_crops(rng: np.random.Generator, images, n: int, crop: int) -> np.ndarray:
    """A batch of ``n`` random square crops with flips, rotations and intensity scaling.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    images : sequence of numpy.ndarray
        ``(Y, X)`` images to crop from (reflect-padded where smaller than ``crop``).
    n, crop : int
        Batch size and crop size.

    Returns
    -------
    numpy.ndarray
        float32 ``(n, 1, crop, crop)``: each crop rotated by a random multiple of 90
        degrees, mirrored with probability 1/2 and mapped to ``c * gain + offset`` with
        ``gain`` in [0.5, 1] and the result within [0, 1].
    """
    out = np.empty((n, 1, crop, crop), np.float32)
    for k in range(n):
        img = images[rng.integers(len(images))]
        h, w = img.shape
        if h < crop or w < crop:
            img = np.pad(img, ((0, max(0, crop - h)), (0, max(0, crop - w))), mode="reflect")
            h, w = img.shape
        y, x = rng.integers(h - crop + 1), rng.integers(w - crop + 1)
        c = img[y : y + crop, x : x + crop]
        c = np.rot90(c, rng.integers(4))
        if rng.random() < 0.5:
            c = c[:, ::-1]
        gain = rng.uniform(0.5, 1.0)
        offset = rng.uniform(0.0, 1.0 - gain)
        out[k, 0] = c * gain + offset
    return out


def val_set(val, crop: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixed validation crops of a run: one crop of each of the first ``n`` held-out
    images.

    Parameters
    ----------
    val : sequence of numpy.ndarray
        Held-out images (:func:`training_images`).
    crop, n : int
        Crop size and the most images used.
    seed : int
        The run's seed (the crops and noise depend on it only).

    Returns
    -------
    clean, noisy, uniforms : numpy.ndarray
        float32 ``(m, 1, crop, crop)``: the crops, the crops with the noise recipe
        ``"g25-f32"`` (Gaussian, sigma 25/255) and uniforms in [0, 1) for masks.
    """
    rng = np.random.default_rng(seed + 12345)
    imgs = val[:n] if len(val) >= n else val
    clean = random_crops(rng, imgs, len(imgs), crop)
    noisy = RECIPES["g25-f32"](clean, rng)
    masks = rng.random(clean.shape).astype(np.float32)
    return clean, noisy, masks


def psnr(a, b) -> float:
    """Peak signal-to-noise ratio of two images in [0, 1].

    Parameters
    ----------
    a, b : array_like
        The images (same shape); both are clipped to [0, 1].

    Returns
    -------
    float
        ``10 log10(1 / MSE)`` in dB (data range 1; the MSE floored at 1e-12).
    """
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))
