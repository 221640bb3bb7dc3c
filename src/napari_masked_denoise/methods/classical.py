"""Classical denoisers behind the same interface: TV, non-local means, wavelet, BM3D.

They denoise each plane of a block with scikit-image (or the optional ``bm3d`` package).
Non-local means, wavelets and BM3D take the noise level from the image's noise model
(:mod:`napari_masked_denoise.noise.estimate`), stabilising noise whose level follows the
intensity first; BM3D also takes its power spectrum, so that it knows correlated noise.
Without a model (an image too small to measure, or ``noise="blind"``) the level is
scikit-image's wavelet estimate (``estimate_sigma``, the median over planes), set once
from the sample in ``once`` mode and per tile in ``per-tile`` mode. The calibrated TV
weight is the one of 12 (0.01 to 1) of least risk under the noise model (Stein's
estimate, :func:`~.fidelity.risk`; it holds for correlated and signal-dependent noise),
or without a model the one with the lowest held-out loss
(:mod:`napari_masked_denoise.noise.holdout`).

The halo is a practical context, not an exact receptive field: TV and the wavelet
thresholds are global, so a tiled result differs slightly from an untiled one near tile
borders (non-local means is exact: its support is the search window plus the patch).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator

import numpy as np

from ..core.masks import Coords
from .base import Method, Preset, Processed
from .fidelity import blend, blend_weight, risk
from .options import Check, integer, number, one_of

__all__ = ["TV", "NonLocalMeans", "Wavelet", "BM3D", "TV_WEIGHTS"]

TV_WEIGHTS = tuple(float(w) for w in np.geomspace(0.01, 1.0, 12))
FLOOR_CAP = 1.5
"""The finest details' level raises the model's by at most this factor: on a small
textured tile they read texture as noise (3 times the level on a 128 x 128 crop of the
camera's coat), and the method would remove the texture."""


class _Classical(Method):
    """Per-plane classical denoiser with one parameter set from the data (``self.param``)."""

    halo = 16
    align = 1
    default_tile = 512

    keeps_change = False
    """Whether the output keeps only the share of the change that Stein's risk estimate
    under the noise model picks (:func:`~.fidelity.blend_weight`): TV and non-local means,
    which otherwise remove detail from clean or weakly noisy images."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.param: float | None = None

    def _fit(self, block: np.ndarray, coords: Coords) -> float:
        """The parameter for this data (noise sigma by default)."""
        from ..noise.levels import wavelet_sigma

        return wavelet_sigma(block)

    def _plane(self, plane: np.ndarray, param: float) -> np.ndarray:
        raise NotImplementedError

    def adapt(self, sample: np.ndarray, coords: Coords) -> Iterator[tuple[int, int]]:
        self.param = self._fit(sample, coords)
        self._fit_more(sample)
        if self.keeps_change and self.noise is not None:
            out = self._run(sample, coords)
            self.weight = blend_weight(
                lambda b: self._run(b, coords), sample, out, self.noise, self.seed
            )
        yield 1, 1

    def _fit_more(self, sample: np.ndarray) -> None:
        """What else ``once`` mode fixes on the sample (nothing here)."""

    def process(self, block: np.ndarray, coords: Coords) -> Processed:
        param = self._param(block, coords)
        out = self._run(block, coords, param)
        if self.keeps_change and self.noise is not None:
            w = self.weight if self.mode == "once" and self.weight is not None else None
            if w is None:  # the parameter is piecewise constant in the input: the probe keeps it
                w = blend_weight(
                    lambda b: self._run(b, coords, param), block, out, self.noise, self.seed
                )
            out = blend(block, out, w)
        return Processed(out)

    def _param(self, block: np.ndarray, coords: Coords):
        """The parameter for ``block``: fixed on the sample in ``once`` mode, else fitted."""
        return (
            self.param
            if self.mode == "once" and self.param is not None
            else self._fit(block, coords)
        )

    def _run(self, block: np.ndarray, coords: Coords, param=None) -> np.ndarray:
        """The denoised block at ``param`` (default: :meth:`_param`), float32."""
        param = self._param(block, coords) if param is None else param
        out = [self._plane(np.asarray(p, dtype=np.float64), param) for p in block]
        return np.asarray(out, dtype=np.float32).reshape(block.shape)

    def state_bytes(self) -> bytes:
        return json.dumps(
            {"param": self.param, "floor": getattr(self, "floor", None), "weight": self.weight}
        ).encode()

    def load_state_bytes(self, data: bytes) -> None:
        state = json.loads(data.decode()) if data else {}
        self.param = state.get("param")
        self.weight = state.get("weight")
        if "floor" in state:
            self.floor = state["floor"]


class _OneLevel(_Classical):
    """A denoiser of one noise level. With the image's noise model (option ``noise``
    ``"model"``, the default, whenever the engine measured it) the level is the model's,
    noise whose level follows the intensity is stabilised first (:mod:`..noise.vst`) and
    denoised at level 1, and BM3D also gets the noise's power spectrum; without one (or
    ``noise="blind"``) the level is the blind wavelet estimate of white noise."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from ..noise.vst import Stabiliser

        use = self.noise is not None and self.options["noise"] == "model"
        self._model = self.noise if use else None
        self._stab = Stabiliser(self._model) if use and Stabiliser.needed(self._model) else None
        self.floor: float | None = None  # once mode: the level's floor, fixed on the sample

    def _level(self, stabilised: np.ndarray) -> float:
        """The level to denoise at: the model's (1 once stabilised), and for noise
        independent between pixels at least what the finest details show (the flat-block
        estimate can miss noise that varies in space, as in CT); times option ``strength``."""
        from ..noise.levels import wavelet_sigma

        level = 1.0 if self._stab is not None else self._model.level
        if self._model.correlated:
            return float(self.options["strength"]) * level
        floor = (
            self.floor
            if self.mode == "once" and self.floor is not None
            else wavelet_sigma(stabilised)
        )
        return float(self.options["strength"]) * max(level, min(floor, FLOOR_CAP * level))

    def _fit_more(self, sample: np.ndarray) -> None:
        if self._model is not None:
            from ..noise.levels import wavelet_sigma

            z = np.asarray(sample, dtype=np.float64)
            self.floor = wavelet_sigma(self._stab.forward(z) if self._stab is not None else z)

    def _param(self, block: np.ndarray, coords: Coords):
        # with the model the level comes from it (:meth:`_level`): no blind fit per block
        return super()._param(block, coords) if self._model is None else None

    def _run(self, block: np.ndarray, coords: Coords, param=None) -> np.ndarray:
        if self._model is None:  # the blind level, fitted (or fixed on the sample)
            param = self._param(block, coords) if param is None else param
            return super()._run(block, coords, float(self.options["strength"]) * param)
        out = []
        for plane in np.asarray(block, dtype=np.float64):
            z = self._stab.forward(plane) if self._stab is not None else plane
            d = self._plane_model(z, self._level(z[None]))
            out.append(self._stab.inverse(d) if self._stab is not None else d)
        return np.asarray(out, dtype=np.float32).reshape(block.shape)

    def _plane_model(self, plane: np.ndarray, sigma: float) -> np.ndarray:
        """One plane at noise level ``sigma`` (its noise model's correlation is known)."""
        return self._plane(plane, sigma)


_MODEL_OPTION = {"noise": one_of("model", "blind"), "strength": number(0, 10, open_lo=True)}
_MODEL_DEFAULTS = {"noise": "model", "strength": 1.0}
"""``strength`` multiplies the level the method denoises at (``auto`` sweeps it)."""


class TV(_Classical):
    name = "tv"
    summary = (
        "total-variation denoising (Chambolle), weight fixed or of least risk under the noise model"
    )
    presets = {
        "calibrated": Preset(
            "weight chosen from 12 (0.01-1) by Stein's risk estimate under the noise model "
            "(the held-out loss without one)",
            {"weight": "calibrated"},
        ),
        "fixed": Preset("weight 0.1 (a strong simple peer on fluorescence)", {"weight": 0.1}),
    }
    keeps_change = True
    defaults = {"weight": "calibrated"}
    checks = {
        "weight": Check(
            "'calibrated' or a positive number",
            lambda v: v == "calibrated" or number(0, open_lo=True).ok(v),
        )
    }

    def _fit(self, block, coords):
        if self.options["weight"] != "calibrated":
            return float(self.options["weight"])
        if self.noise is not None:  # the weight of least risk under the noise model
            risks = []
            for w in TV_WEIGHTS:
                run = functools.partial(self._run, coords=coords, param=w)
                risks.append(risk(run, block, run(block), self.noise, self.seed))
            return TV_WEIGHTS[int(np.nanargmin(risks))]
        from ..noise.holdout import hide, holdout_loss, holdout_mask

        m = holdout_mask(block.shape, coords, self.seed, frac=0.03)
        hidden = hide(block, m)
        losses = [
            holdout_loss(np.stack([self._plane(p, w) for p in hidden.astype(np.float64)]), block, m)
            for w in TV_WEIGHTS
        ]
        return TV_WEIGHTS[int(np.nanargmin(losses))]

    def _plane(self, plane, weight):
        from skimage.restoration import denoise_tv_chambolle

        return denoise_tv_chambolle(plane, weight=float(weight))


class NonLocalMeans(_OneLevel):
    name = "nlm"
    summary = (
        "non-local means (h = 0.8 sigma, patch 5, search distance 6), sigma from the noise model"
    )
    presets = {"default": Preset("h = 0.8 sigma, patch 5, distance 6, fast mode", {})}
    keeps_change = True
    defaults = {"h": 0.8, "patch_size": 5, "patch_distance": 6, **_MODEL_DEFAULTS}
    checks = {
        "h": number(0, open_lo=True),
        "patch_size": integer(1),
        "patch_distance": integer(1),
        **_MODEL_OPTION,
    }
    halo = 8  # search distance + half the patch: exact
    exact_support = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.halo = int(self.options["patch_distance"]) + int(self.options["patch_size"]) // 2

    def _plane(self, plane, sigma):
        from skimage.restoration import denoise_nl_means

        o = self.options
        return denoise_nl_means(
            plane,
            h=float(o["h"]) * sigma,
            sigma=sigma,
            fast_mode=True,
            patch_size=int(o["patch_size"]),
            patch_distance=int(o["patch_distance"]),
        )


class Wavelet(_OneLevel):
    name = "wavelet"
    summary = "wavelet shrinkage (BayesShrink, soft thresholds), sigma from the noise model"
    presets = {"default": Preset("BayesShrink, db1, soft thresholds", {})}
    defaults = _MODEL_DEFAULTS
    checks = _MODEL_OPTION

    def _plane(self, plane, sigma):
        from skimage.restoration import denoise_wavelet

        return denoise_wavelet(plane, sigma=sigma, method="BayesShrink", mode="soft")


class BM3D(_OneLevel):
    name = "bm3d"
    summary = "BM3D (the optional 'bm3d' package) with the noise model's level and power spectrum"
    presets = {
        "default": Preset(
            "BM3D, all stages, the noise model's level and spectrum, stabilised where "
            "the level follows the intensity",
            {},
        ),
        "fast": Preset(
            "as default with block step 5 and search window 25 (step 3, window 39): 2.4x "
            "faster, 0.07 dB lower on held-out training images",
            {"step": 5, "window": 25},
        ),
        "blind": Preset(
            "BM3D at the blind wavelet estimate of white noise (the usual blind BM3D)",
            {"noise": "blind"},
        ),
    }
    defaults = {**_MODEL_DEFAULTS, "step": 3, "window": 39}
    checks = {**_MODEL_OPTION, "step": integer(1, 8), "window": integer(9, 79)}
    halo = 24

    def __init__(self, **kwargs):
        try:
            import bm3d  # noqa: F401
        except ImportError:
            from ..core.axes import DenoiseError

            raise DenoiseError(
                "method 'bm3d' needs the optional package: pip install bm3d"
            ) from None
        super().__init__(**kwargs)

    def _bm3d(self, plane, sigma_psd):
        import bm3d

        if not hasattr(np, "trapz"):  # bm4d 4.2.5 (bm3d's engine) still calls np.trapz on PSDs
            np.trapz = np.trapezoid
        profile = bm3d.BM3DProfile()
        profile.step_ht = profile.step_wiener = int(self.options["step"])
        profile.search_window_ht = profile.search_window_wiener = int(self.options["window"])
        return np.asarray(bm3d.bm3d(plane, sigma_psd=sigma_psd, profile=profile), np.float64)

    def _plane(self, plane, sigma):
        return self._bm3d(plane, max(float(sigma), 1e-6))

    def _plane_model(self, plane, sigma):
        """BM3D for correlated noise: the model's power spectrum at level ``sigma``."""
        if not self._model.correlated:
            return self._plane(plane, sigma)
        return self._bm3d(plane, max(float(sigma), 1e-6) ** 2 * self._model.psd(plane.shape))
