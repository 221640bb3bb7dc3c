"""The noise model: what :func:`~.estimate.estimate_noise` found, in one frozen object.

A :class:`NoiseModel` gives the noise level against intensity (:meth:`NoiseModel.sigma`),
the normalised autocovariance to lag :data:`LAG` (:meth:`NoiseModel.correlation`, the
power spectrum :meth:`NoiseModel.psd`), flags (impulses, drift along a stack, clipping),
draws noise like it (:meth:`NoiseModel.sample`) and describes itself in one line.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, replace

import numpy as np

__all__ = ["NoiseModel", "LAG", "CORRELATED"]

LAG = 3
"""Largest lag (pixels) of the correlation kernel."""
CORRELATED = 0.2  # correlation at lag 1 above which the noise counts as correlated


# --------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class NoiseModel:
    """What :func:`estimate_noise` found, in the image's intensity units.

    Attributes
    ----------
    intensities, sigmas : tuple of float
        Noise standard deviation at the centre of each intensity bin.
    gain, black, read : float
        The Poisson-Gaussian fit ``var = gain * max(x - black, 0) + read**2``.
    affine : bool
        Whether that fit matches every bin within 15% in sigma; if not, :meth:`sigma`
        interpolates the bins.
    kernel : tuple of tuple of float
        The normalised noise autocovariance at lags ``-LAG..LAG`` in Y and X (centre 1).
    kernel_z : tuple of float
        Its values at lags ``0..LAG`` along the stacked axis of a volume (``()`` if none).
    impulse_share : float
        Share of isolated outliers (salt and pepper, hot pixels).
    drift : float
        Relative change of the noise level from the first to the last quarter of the
        stack (photobleaching lowers it); 0 for a single plane.
    clipped : tuple of bool
        Whether the darkest / brightest values pile up (clipped); those blocks are left out.
    channels : tuple of NoiseModel
        One model per channel when the image has a channel axis (this one pools them).
    """

    intensities: tuple[float, ...]
    sigmas: tuple[float, ...]
    gain: float
    black: float
    read: float
    affine: bool
    kernel: tuple[tuple[float, ...], ...]
    kernel_z: tuple[float, ...] = ()
    impulse_share: float = 0.0
    drift: float = 0.0
    clipped: tuple[bool, bool] = (False, False)
    channels: tuple[NoiseModel, ...] = field(default=())

    # -- the level ---------------------------------------------------------------------
    def sigma(self, x) -> np.ndarray:
        """Noise standard deviation at intensity ``x`` (array-like)."""
        x = np.asarray(x, dtype=np.float64)
        if self.affine:
            return np.sqrt(self.gain * np.maximum(x - self.black, 0.0) + self.read**2)
        return np.interp(x, self.intensities, self.sigmas)

    @property
    def level(self) -> float:
        """One number: the noise sigma at the median bin's intensity."""
        return float(np.median(self.sigmas))

    # -- the correlation -----------------------------------------------------------------
    def correlation(self, dy: int, dx: int) -> float:
        """Normalised autocovariance at lag ``(dy, dx)`` (0 beyond :data:`LAG`)."""
        if max(abs(dy), abs(dx)) > LAG:
            return 0.0
        return float(self.kernel[LAG + dy][LAG + dx])

    @property
    def correlated(self) -> bool:
        """Whether neighbouring pixels' noise correlates noticeably (above 0.2 at lag 1)."""
        return max(self.correlation(0, 1), self.correlation(1, 0)) > CORRELATED

    @property
    def correlation_length(self) -> int:
        """The largest lag along Y or X where the correlation is still above 0.1 (0: white)."""
        lags = [
            k
            for k in range(1, LAG + 1)
            if max(self.correlation(0, k), self.correlation(k, 0)) > 0.1
        ]
        return max(lags, default=0)

    def psd(self, shape: tuple[int, int]) -> np.ndarray:
        """The noise power spectrum of a ``shape`` plane for unit variance, in the
        convention of the ``bm3d`` package (``sigma**2 * psd`` is its ``sigma_psd``: a
        white noise of standard deviation ``s`` has the constant ``s**2 * H * W``)."""
        return _psd(self.kernel, tuple(int(s) for s in shape))

    # -- drawing noise -------------------------------------------------------------------
    def sample(self, shape, rng: np.random.Generator, signal=None) -> np.ndarray:
        """Noise drawn from the model: Gaussian with this correlation, scaled at every
        pixel by :meth:`sigma` of ``signal`` (an array of ``shape``; default: :attr:`level`).

        Parameters
        ----------
        shape : tuple of int
            ``(..., H, W)``; planes are drawn independently.
        rng : numpy.random.Generator
            The random source.
        signal : array-like, optional
            Clean intensities the noise level follows.

        Returns
        -------
        numpy.ndarray
            float32 noise of ``shape``.
        """
        from scipy import fft

        shape = tuple(int(s) for s in shape)
        h, w = shape[-2:]
        amp = np.sqrt(self.psd((h, w))[:, : w // 2 + 1] / (h * w)).astype(np.float32)
        unit = np.empty(shape, np.float32).reshape(-1, h, w)
        for k in range(len(unit)):  # one plane at a time, in float32: bounded memory
            white = rng.standard_normal((h, w), dtype=np.float32)
            unit[k] = fft.irfft2(fft.rfft2(white) * amp, s=(h, w))
        unit = unit.reshape(shape)
        level = self.level if signal is None else self.sigma(np.broadcast_to(signal, shape))
        return (unit * level).astype(np.float32)

    # -- reporting -----------------------------------------------------------------------
    def describe(self) -> str:
        """One plain line, e.g. ``Poisson-Gaussian, sigma 0.012 at black, correlated over
        about 2 px``."""
        if self.affine and self.gain > 0:
            kind = f"Poisson-Gaussian, sigma {self.read:.3g} at black, {self.level:.3g} at mid-grey"
        elif self.affine:
            kind = f"Gaussian, sigma {self.level:.3g}"
        else:
            lo, hi = min(self.sigmas), max(self.sigmas)
            kind = f"intensity-dependent (not Poisson-Gaussian), sigma {lo:.3g} to {hi:.3g}"
        length = self.correlation_length
        corr = (
            f"correlated over about {length} px"
            if self.correlated
            else "independent between pixels"
        )
        flags = [f"{100 * self.impulse_share:.1f}% impulses"] if self.impulse_share > 0.01 else []
        if abs(self.drift) > 0.2:
            flags.append(f"level drifts {100 * self.drift:+.0f}% along the stack")
        if any(self.clipped):
            flags.append("clipped")
        return ", ".join([kind, corr, *flags])

    def to_dict(self) -> dict:
        """JSON-able, for the store's metadata; :meth:`from_dict` reads it back."""
        d = asdict(self)
        d["channels"] = [c.to_dict() for c in self.channels]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NoiseModel:
        d = dict(d)
        d["channels"] = tuple(cls.from_dict(c) for c in d.get("channels", ()))
        d["kernel"] = tuple(tuple(float(v) for v in row) for row in d["kernel"])
        for key in ("intensities", "sigmas", "kernel_z", "clipped"):
            d[key] = tuple(d.get(key, ()))
        return cls(**d)

    def scaled(self, lo: float, span: float) -> NoiseModel:
        """The same noise in units where ``lo`` is 0 and ``lo + span`` is 1."""
        s = float(span)
        return replace(
            self,
            intensities=tuple((v - lo) / s for v in self.intensities),
            sigmas=tuple(v / s for v in self.sigmas),
            gain=self.gain / s,
            black=(self.black - lo) / s,
            read=self.read / s,
            channels=tuple(c.scaled(lo, span) for c in self.channels),
        )


@functools.lru_cache(maxsize=16)
def _psd(kernel: tuple, shape: tuple[int, int]) -> np.ndarray:
    cov = np.zeros(shape)
    for dy in range(-LAG, LAG + 1):
        for dx in range(-LAG, LAG + 1):
            cov[dy % shape[0], dx % shape[1]] += kernel[LAG + dy][LAG + dx]
    psd = np.maximum(np.fft.fft2(cov).real, 0.0)
    psd *= shape[0] * shape[1] / max(psd.mean(), 1e-12)  # unit variance
    psd.setflags(write=False)
    return psd
