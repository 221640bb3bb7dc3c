"""napari layers in and out: what the engine gets from an image layer, and the layers
its results become."""

from __future__ import annotations

import numpy as np
from napari.layers import Image

from ..core.axes import DenoiseError
from ..engine import RunSettings, StoreResult
from ..engine.layout import Layout
from ..engine.settings import default_mode, default_tile

__all__ = [
    "layer_axes",
    "layer_data",
    "layer_scale",
    "current_index",
    "add_result_layers",
    "show_preview_layer",
    "preview_crop",
]


def layer_data(layer: Image):
    """The array the engine denoises: ``layer.data`` (level 0 if multiscale), never
    converted to numpy (it may be a lazy dask or zarr array)."""
    return layer.data[0] if layer.multiscale else layer.data


def layer_axes(layer: Image) -> str:
    """The axes string the engine gets for ``layer.data`` (level 0 if multiscale).

    Parameters
    ----------
    layer : napari.layers.Image
        The input layer.

    Returns
    -------
    str
        ``"YX"``, ``"ZYX"``, ``"TZYX"``, ``"TCZYX"``; for RGB(A) layers the same with a
        trailing ``"C"`` (``"YXC"``, ``"ZYXC"``, ...).

    Raises
    ------
    DenoiseError
        When the layer has more leading axes than the letters T, C, Z can name.
    """
    ndim = len(layer_data(layer).shape)
    lead = ndim - (3 if layer.rgb else 2)
    letters = {0: "", 1: "Z", 2: "TZ"} if layer.rgb else {0: "", 1: "Z", 2: "TZ", 3: "TCZ"}
    if lead not in letters:
        raise DenoiseError(f"cannot denoise a {ndim}-D {'RGB ' if layer.rgb else ''}layer")
    return letters[lead] + ("YXC" if layer.rgb else "YX")


def layer_scale(layer: Image) -> list[float]:
    """The pixel size per axis of :func:`layer_axes` (1 for the colour axis)."""
    return [float(s) for s in layer.scale] + ([1.0] if layer.rgb else [])


def current_index(viewer, layer: Image, n_lead: int, shape) -> tuple:
    """Index of the plane on screen along the layer's ``n_lead`` leading (non-YX) axes."""
    if n_lead == 0:
        return ()
    try:  # world position -> data index (handles scale and translate)
        pos = layer.world_to_data(viewer.dims.point)
        lead = [int(round(float(v))) for v in list(pos)[:n_lead]]
    except Exception:  # fall back to the viewer's step, trailing dims aligned
        step = list(viewer.dims.current_step)
        lead = [int(v) for v in step[len(step) - layer.ndim :][:n_lead]]
    return tuple(int(np.clip(v, 0, shape[i] - 1)) for i, v in enumerate(lead))


PREVIEW_SIDE = 256
"""Preview denoises a crop of about this many pixels a side around the view's centre."""


def preview_crop(viewer, layer: Image, index: tuple, plane_shape) -> tuple[slice, slice]:
    """The YX crop of the plane on screen that Preview denoises: :data:`PREVIEW_SIDE`
    pixels a side (the whole plane if smaller) around the centre of the view, kept
    inside the image."""
    ny, nx = plane_shape[:2]
    cy, cx = ny / 2, nx / 2
    try:  # the view's centre, in the layer's data coordinates
        world = list(viewer.dims.point)
        shown = list(viewer.dims.displayed)
        for d, c in zip(shown[-2:], list(viewer.camera.center)[-2:]):
            world[d] = c
        pos = list(layer.world_to_data(world))
        cy, cx = float(pos[len(index)]), float(pos[len(index) + 1])
    except Exception:  # no view (headless or a 3-D display): the plane's centre
        pass
    out = []
    for c, n in ((cy, ny), (cx, nx)):
        side = min(PREVIEW_SIDE, n)
        start = int(np.clip(round(c - side / 2), 0, n - side))
        out.append(slice(start, start + side))
    return out[0], out[1]


def add_result_layers(viewer, layer: Image, res: StoreResult) -> None:
    """Add a run's results as layers ``<name> denoised``, ``<name> noise map`` and one per
    extra output, over ``layer`` (its scale and translate), lazily when on disk.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the layers go.
    layer : napari.layers.Image
        The input layer.
    res : StoreResult
        What the run wrote; the layers' metadata get its sigma, time, method and store.
    """
    in_memory = res.path is None
    den = np.asarray(res.denoised[...]) if in_memory else res.denoised
    nmap = np.asarray(res.noise_map[...]) if in_memory else res.noise_map
    meta = {
        "sigma": res.sigma,
        "seconds": res.seconds,
        "method": res.method,
        "preset": res.preset,
        "mode": res.mode,
        "axes": res.axes,
        "store": res.path,
        "source": layer.name,
        "method_report": res.info.get("method_report", {}),
    }
    common = {"scale": layer.scale, "translate": layer.translate, "rgb": layer.rgb}
    label = _label(res)
    # below the result and hidden: the noise map and any extra (meta-TTA's loss mask)
    extra = {} if layer.rgb else {"colormap": "magma"}
    viewer.add_image(
        nmap,
        name=f"{layer.name} noise map ({label})",
        metadata=dict(meta),
        visible=False,
        **common,
        **extra,
    )
    for key, arr in res.extras.items():
        data = np.asarray(arr[...]) if in_memory else arr
        viewer.add_image(
            data,
            name=f"{layer.name} {key.replace('_', ' ')} ({label})",
            metadata=dict(meta),
            visible=False,
            **common,
        )
    # the result on top, visible, in the input's contrast
    den_kw = {"contrast_limits": layer.contrast_limits} if not layer.rgb else {}
    viewer.add_image(
        den,
        name=f"{layer.name} denoised ({label})",
        metadata=dict(meta),
        **common,
        **den_kw,
    )


def _label(res: StoreResult) -> str:
    """The method that made a result, in a layer's name (``auto``'s choice when it chose)."""
    from ..report import short_spec

    choice = (res.info.get("method_report") or {}).get("choice")
    if res.method == "auto":
        return f"auto: {short_spec(choice)}" if choice else "auto"
    return short_spec(f"{res.method}:{res.preset}" if res.preset else res.method, " ")


def show_preview_layer(
    viewer, layer: Image, index: tuple, res: StoreResult, crop=(slice(0, None), slice(0, None))
) -> None:
    """Show a preview of a crop of one plane as the layer ``<name> preview``, placed at
    ``index`` and the crop's corner over ``layer``; an existing preview layer is
    updated in place.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the layer goes.
    layer : napari.layers.Image
        The input layer.
    index : tuple of int
        The plane's index along the layer's leading axes.
    res : StoreResult
        What the preview wrote (in memory).
    crop : tuple of slice
        The YX crop of the plane it denoised (:func:`preview_crop`).
    """
    plane = np.asarray(res.denoised[...])
    n_lead = len(index)
    data = plane.reshape((1,) * n_lead + plane.shape)  # keep the layer's ndim
    scale = np.asarray(layer.scale, dtype=float)
    translate = np.asarray(layer.translate, dtype=float).copy()
    translate[:n_lead] += np.asarray(index, dtype=float) * scale[:n_lead]
    corner = [crop[0].start or 0, crop[1].start or 0]
    translate[n_lead : n_lead + 2] += np.asarray(corner, float) * scale[n_lead : n_lead + 2]
    name = f"{layer.name} preview"
    meta = {
        "sigma": res.sigma,
        "seconds": res.seconds,
        "index": list(index),
        "crop": [[c.start, c.stop] for c in crop],
        "source": layer.name,
        "method_report": res.info.get("method_report", {}),
    }
    if name in viewer.layers and viewer.layers[name].rgb == layer.rgb:
        prev = viewer.layers[name]
        prev.data = data
        prev.scale, prev.translate = scale, translate
        prev.metadata = meta
        prev.reset_contrast_limits()
    else:
        if name in viewer.layers:
            viewer.layers.remove(name)
        viewer.add_image(
            data, name=name, scale=scale, translate=translate, rgb=layer.rgb, metadata=meta
        )


def layer_default_tile(layer, method: str | None, preset: str | None, options: dict) -> int | None:
    """The tile the engine gives a run of ``method`` on ``layer``.

    Parameters
    ----------
    layer : napari.layers.Image or None
        The input layer (``None``: as for one 2-D image).
    method, preset : str or None
        The chosen method and preset.
    options : dict
        The widget's extra options; ignored when the method does not take them (the run
        will say so).

    Returns
    -------
    int or None
        :func:`~napari_masked_denoise.engine.settings.default_tile` in the mode the engine
        gives the layer; ``None`` when the engine decides on the image (``auto``).
    """
    if not method:
        return None
    try:
        planes = (
            1 if layer is None else Layout.of(layer_data(layer).shape, layer_axes(layer)).n_planes
        )
    except DenoiseError:  # a layer the engine cannot take: Run will say why
        planes = 1
    for opts in (options, {}):
        try:
            s = RunSettings(method=method, preset=preset, options=opts)
        except DenoiseError:  # also a preset of the previous method, while it changes
            continue
        return default_tile(method, s.preset, s.options, default_mode(s, planes))
    return None
