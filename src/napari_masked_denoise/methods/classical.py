"""Classical denoisers behind the same interface: TV, non-local means, wavelet, BM3D.

They denoise each plane of a block with scikit-image (or the optional ``bm3d`` package).
Their one parameter, the noise level or the TV weight, is set once from the sample in
``once`` mode, so every tile of a volume is treated alike; in ``per-tile`` mode it is
set per tile. The noise level is scikit-image's wavelet estimate (``estimate_sigma``),
the median over planes; the calibrated TV weight is the one of 12 (0.01 to 1) with the
lowest held-out loss (:mod:`napari_masked_denoise.noise.holdout`).

The halo is a practical context, not an exact receptive field: TV and the wavelet
thresholds are global, so a tiled result differs slightly from an untiled one near tile
borders (non-local means is exact: its support is the search window plus the patch).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np

from ..core.masks import Coords
from .base import Method, Preset, Processed
from .options import Check, integer, number

__all__ = ["TV", "NonLocalMeans", "Wavelet", "BM3D", "TV_WEIGHTS"]

TV_WEIGHTS = tuple(float(w) for w in np.geomspace(0.01, 1.0, 12))


class _Classical(Method):
    """Per-plane classical denoiser with one parameter set from the data (``self.param``)."""

    halo = 16
    align = 1
    default_tile = 512

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
        yield 1, 1

    def process(self, block: np.ndarray, coords: Coords) -> Processed:
        param = (
            self.param
            if self.mode == "once" and self.param is not None
            else self._fit(block, coords)
        )
        out = [self._plane(np.asarray(p, dtype=np.float64), param) for p in block]
        return Processed(np.asarray(out, dtype=np.float32).reshape(block.shape))

    def state_bytes(self) -> bytes:
        return json.dumps({"param": self.param}).encode()

    def load_state_bytes(self, data: bytes) -> None:
        self.param = json.loads(data.decode())["param"] if data else None


class TV(_Classical):
    name = "tv"
    summary = "total-variation denoising (Chambolle), weight fixed or calibrated on held-out pixels"
    presets = {
        "calibrated": Preset(
            "weight chosen from 12 (0.01-1) by the held-out loss", {"weight": "calibrated"}
        ),
        "fixed": Preset("weight 0.1 (a strong simple peer on fluorescence)", {"weight": 0.1}),
    }
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


class NonLocalMeans(_Classical):
    name = "nlm"
    summary = "non-local means (h = 0.8 sigma, patch 5, search distance 6), blind sigma"
    presets = {"default": Preset("h = 0.8 sigma, patch 5, distance 6, fast mode", {})}
    defaults = {"h": 0.8, "patch_size": 5, "patch_distance": 6}
    checks = {"h": number(0, open_lo=True), "patch_size": integer(1), "patch_distance": integer(1)}
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


class Wavelet(_Classical):
    name = "wavelet"
    summary = "wavelet shrinkage (BayesShrink, soft thresholds), blind sigma"
    presets = {"default": Preset("BayesShrink, db1, soft thresholds", {})}
    defaults = {}

    def _plane(self, plane, sigma):
        from skimage.restoration import denoise_wavelet

        return denoise_wavelet(plane, sigma=sigma, method="BayesShrink", mode="soft")


class BM3D(_Classical):
    name = "bm3d"
    summary = "BM3D (the optional 'bm3d' package), blind sigma"
    presets = {"default": Preset("BM3D, all stages, sigma from the wavelet estimate", {})}
    defaults = {}
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

    def _plane(self, plane, sigma):
        import bm3d

        return np.asarray(bm3d.bm3d(plane, sigma_psd=max(float(sigma), 1e-6)), dtype=np.float64)
