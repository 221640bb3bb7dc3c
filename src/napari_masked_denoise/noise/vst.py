"""Variance stabilisation: noise whose level follows the intensity made uniform.

For a Poisson-Gaussian model (``var = gain * (x - black) + read**2``) the generalised
Anscombe transform (Murtagh, Starck and Bijaoui 1995) ``f(x) = 2 / gain * sqrt(gain * (x -
black) + 3/8 gain**2 + read**2)`` gives noise of unit variance; its inverse is the
closed-form approximation of the exact unbiased inverse (Makitalo and Foi, IEEE TIP
2011 and 2013), which stays unbiased at low counts where the algebraic inverse is not.
For a level curve that is not Poisson-Gaussian, ``f(x) = integral dx / sigma(x)``
(numerically, with the algebraic inverse).
"""

from __future__ import annotations

import math

import numpy as np

from .model import NoiseModel

__all__ = ["Stabiliser", "SIGNAL_DEPENDENT"]

SIGNAL_DEPENDENT = 1.25
"""Above this ratio of the largest to the smallest sigma over the intensity bins the
noise counts as signal-dependent, and denoisers that assume one level stabilise it."""


class Stabiliser:
    """A variance-stabilising transform for a noise model (in the image's units).

    Parameters
    ----------
    model : NoiseModel
        The noise model of the image the transform is applied to.
    """

    def __init__(self, model: NoiseModel):
        self.model = model
        self.poisson = bool(model.affine and model.gain > 0)
        if not self.poisson:
            lo, hi = min(model.intensities), max(model.intensities)
            pad = 0.5 * (hi - lo) + 1e-6
            self._x = np.linspace(lo - pad, hi + pad, 512)
            inv = 1.0 / np.maximum(model.sigma(self._x), 1e-6)
            self._f = np.concatenate(
                [[0.0], np.cumsum((inv[1:] + inv[:-1]) / 2 * np.diff(self._x))]
            )

    @staticmethod
    def needed(model: NoiseModel | None) -> bool:
        """Whether the noise level changes enough with intensity to stabilise it."""
        if model is None or len(model.sigmas) < 2 or min(model.sigmas) <= 0:
            return False
        return max(model.sigmas) / min(model.sigmas) > SIGNAL_DEPENDENT

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` with noise of unit standard deviation."""
        m = self.model
        if self.poisson:
            a = m.gain
            return 2.0 / a * np.sqrt(np.maximum(a * (x - m.black) + 0.375 * a * a + m.read**2, 0.0))
        return np.interp(x, self._x, self._f, left=None, right=None) + _extrapolate(
            x, self._x, self._f
        )

    def inverse(self, d: np.ndarray) -> np.ndarray:
        """The intensity whose transformed noisy value has expectation ``d``."""
        m = self.model
        if not self.poisson:
            return np.interp(d, self._f, self._x) + _extrapolate(d, self._f, self._x)
        a = m.gain
        d = np.maximum(np.asarray(d, dtype=np.float64), 0.8)  # the approximation holds above ~0.8
        s6 = math.sqrt(1.5)
        z = (
            0.25 * d**2
            + 0.25 * s6 / d
            - 1.375 / d**2
            + 0.625 * s6 / d**3
            - 0.125
            - (m.read / a) ** 2
        )
        return a * np.maximum(z, 0.0) + m.black


def _extrapolate(x, grid, f) -> np.ndarray:
    """Linear extension of the tabulated transform beyond its grid."""
    x = np.asarray(x, dtype=np.float64)
    lo_slope = (f[1] - f[0]) / (grid[1] - grid[0])
    hi_slope = (f[-1] - f[-2]) / (grid[-1] - grid[-2])
    return np.where(x < grid[0], (x - grid[0]) * lo_slope, 0.0) + np.where(
        x > grid[-1], (x - grid[-1]) * hi_slope, 0.0
    )
