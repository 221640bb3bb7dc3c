"""A camera's noise: what a consumer camera's processing makes of shot and read noise.

Demosaicking spreads each pixel's noise over its neighbours, the gamma curve makes the
level depend on intensity in a way no Poisson-Gaussian law describes, and JPEG removes
noise in flat areas: the real camera noise that white-noise estimates and networks
trained on white noise do not know.
"""

from __future__ import annotations

import numpy as np

__all__ = ["camera_pipeline"]


def _bilinear_demosaic(mosaic: np.ndarray) -> np.ndarray:
    """RGGB mosaic ``(H, W)`` -> RGB ``(H, W, 3)`` by bilinear interpolation."""
    from scipy.ndimage import convolve

    h, w = mosaic.shape
    masks = np.zeros((3, h, w))
    masks[0, 0::2, 0::2] = 1
    masks[1, 0::2, 1::2] = masks[1, 1::2, 0::2] = 1
    masks[2, 1::2, 1::2] = 1
    k_g = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4.0
    k_rb = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4.0
    out = [convolve(mosaic * m, k, mode="mirror") for m, k in zip(masks, (k_rb, k_g, k_rb))]
    return np.stack(out, -1)


def camera_pipeline(
    x,
    rng: np.random.Generator | None,
    peak: float = 60.0,
    read: float = 0.01,
    gamma: float | None = 2.2,
    jpeg: int | None = 90,
) -> np.ndarray:
    """What a camera makes of a linear grey scene ``x`` (``(..., H, W)`` in [0, 1]).

    Each plane on its own (an odd last row or column is dropped): an RGGB Bayer mosaic,
    shot noise at ``peak`` photons at 1 and Gaussian read noise ``read`` on it, bilinear
    demosaicking, the gamma curve ``x ** (1 / gamma)``, JPEG at quality ``jpeg``, then grey
    (ITU-R 601 luma). The result, float32 in [0, 1], has spatially correlated,
    signal-dependent noise. ``rng=None`` runs the same pipeline without noise: the
    difference of the two is the pipeline's noise.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim > 2:
        planes = [
            camera_pipeline(p, rng, peak, read, gamma, jpeg) for p in x.reshape(-1, *x.shape[-2:])
        ]
        return np.stack(planes).reshape(*x.shape[:-2], *planes[0].shape)
    rgb = np.repeat(x[..., None], 3, -1)
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    rgb = rgb[:h, :w]
    mosaic = np.empty((h, w))
    mosaic[0::2, 0::2] = rgb[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = rgb[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = rgb[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = rgb[1::2, 1::2, 2]
    if rng is not None:
        mosaic = rng.poisson(np.clip(mosaic, 0, None) * peak) / peak + rng.normal(
            0, read, mosaic.shape
        )
    out = np.clip(_bilinear_demosaic(mosaic), 0.0, 1.0)
    if gamma:
        out = out ** (1.0 / gamma)
    if jpeg:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.round(out * 255).astype(np.uint8)).save(
            buf, format="JPEG", quality=int(jpeg)
        )
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float64) / 255.0
    grey = out @ np.array([0.299, 0.587, 0.114])
    return grey.astype(np.float32)
