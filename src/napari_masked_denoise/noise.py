"""Noise maps: the residual's local robust standard deviation and a global sigma."""

from __future__ import annotations

import numpy as np

__all__ = ["local_noise_std", "robust_sigma", "WINDOW"]

WINDOW = 7
_MAD = 1.4826  # MAD to standard deviation for Gaussian noise


def local_noise_std(residual: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Windowed robust noise standard deviation of a residual ``(N, H, W)``.

    ``1.4826 * median(|r|)`` over a ``window x window`` neighbourhood of every pixel of
    every plane: insensitive to the few edges a denoiser leaves in its residual.
    """
    from scipy.ndimage import median_filter

    r = np.abs(residual.astype(np.float32, copy=False))
    return (_MAD * median_filter(r, size=(1, window, window), mode="reflect")).astype(np.float32)


def robust_sigma(residual: np.ndarray) -> float:
    """Global noise sigma of a residual: ``1.4826 * MAD``."""
    r = np.asarray(residual, dtype=np.float64).ravel()
    return float(_MAD * np.median(np.abs(r - np.median(r))))
