"""napari-masked-denoise: masked-image-modelling denoisers for large microscopy and CT data.

>>> from napari_masked_denoise import denoise
>>> r = denoise(image, method="zero-shot", preset="fast")   # doctest: +SKIP
>>> r.denoised, r.noise_map, r.sigma                         # doctest: +SKIP

Heavy modules (torch, zarr, dask) and anything Qt are imported only when used.
"""

from __future__ import annotations

from ._version import __version__

__all__ = [
    "denoise",
    "denoise_to_zarr",
    "denoise_layer",
    "DenoiseResult",
    "DenoiseError",
    "list_methods",
    "estimate_noise",
    "NoiseModel",
    "__version__",
]


def __getattr__(name):
    if name == "denoise_layer":  # napari's: imported only when asked for
        from ._napari.console import denoise_layer

        return denoise_layer
    if name in ("denoise", "denoise_to_zarr", "DenoiseResult", "list_methods"):
        from . import api

        return getattr(api, name)
    if name == "estimate_noise":
        from .noise.estimate import estimate_noise

        return estimate_noise
    if name == "NoiseModel":
        from .noise.model import NoiseModel

        return NoiseModel
    if name == "DenoiseError":
        from .core.axes import DenoiseError

        return DenoiseError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
