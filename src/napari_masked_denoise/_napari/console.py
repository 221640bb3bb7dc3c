"""One call from the napari console: denoise a layer and add the result as layers."""

from __future__ import annotations

import napari

from ..api import denoise_to_zarr
from ..core.axes import DenoiseError
from .layers import add_result_layers, layer_axes, layer_data, layer_scale

__all__ = ["denoise_layer"]


def denoise_layer(layer, viewer=None, method: str = "auto", preset: str | None = None, **kw):
    """Denoise a napari image layer and add the result as layers, in one call (the napari
    console: ``denoise_layer(viewer.layers["cells"])``).

    The denoised layer goes on top, visible, named with the method; the noise map below
    it, hidden. Axes and scale come from the layer; the run is in memory unless
    ``output`` (a zarr path) is given, for layers larger than memory.

    Parameters
    ----------
    layer : napari.layers.Image or str
        The layer, or its name in ``viewer``.
    viewer : napari.Viewer, optional
        Where the layers go (default: the current viewer).
    method, preset, **kw
        As for :func:`denoise_to_zarr` (``output=...``, ``mode=...``, options).

    Returns
    -------
    StoreResult
        What the run wrote.
    """
    viewer = viewer if viewer is not None else napari.current_viewer()
    if viewer is None:
        raise DenoiseError("no napari viewer is open; pass viewer=")
    if isinstance(layer, str):
        layer = viewer.layers[layer]
    output = kw.pop("output", None)
    res = denoise_to_zarr(
        layer_data(layer),
        output,
        method=method,
        preset=preset,
        axes=layer_axes(layer),
        scale=layer_scale(layer),
        **kw,
    )
    add_result_layers(viewer, layer, res)
    return res
