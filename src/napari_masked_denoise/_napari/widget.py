"""The ``Masked denoise`` dock widget.

A thin Qt front end: it gathers the settings, runs
:func:`napari_masked_denoise.engine.denoise_iter` in a napari thread worker, drives a
progress bar from the :class:`~napari_masked_denoise.engine.Progress` reports and adds
the results as layers. All computing happens in the engine.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton, SpinBox
from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils import progress
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ..core.axes import DenoiseError
from ..engine import Progress, StoreResult, denoise_iter
from ..methods import get_method, method_names

if TYPE_CHECKING:
    import napari

__all__ = ["DenoiseWidget", "layer_axes", "MEMORY_LIMIT_VOXELS"]

MEMORY_LIMIT_VOXELS = 64 * 1024**2
"""Layers up to this many voxels are denoised in memory; larger ones into a temporary
zarr store on disk, so the result layers are lazy."""

_TEMP_FOLDERS: set[str] = set()
"""Folders of the temporary stores behind large layers' results, deleted when the last
layer that reads one is removed, when its run ends without results, or at exit."""


def _remove_temp(folder: str | None) -> None:
    if folder:
        _TEMP_FOLDERS.discard(folder)
        shutil.rmtree(folder, ignore_errors=True)


@atexit.register
def _remove_all_temp() -> None:
    for folder in list(_TEMP_FOLDERS):
        _remove_temp(folder)


DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class _Failed:
    """What the worker returns when the engine raised.

    Returning the error, rather than raising it in the thread, keeps it out of napari's
    traceback notifications and out of superqt's handling of :class:`RuntimeError`
    (which it takes for a deleted worker and drops; torch raises those, e.g. on
    out-of-memory).
    """

    error: Exception


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
    data = layer.data[0] if layer.multiscale else layer.data
    ndim = len(data.shape)
    lead = ndim - (3 if layer.rgb else 2)
    letters = {0: "", 1: "Z", 2: "TZ"} if layer.rgb else {0: "", 1: "Z", 2: "TZ", 3: "TCZ"}
    if lead not in letters:
        raise DenoiseError(f"cannot denoise a {ndim}-D {'RGB ' if layer.rgb else ''}layer")
    return letters[lead] + ("YXC" if layer.rgb else "YX")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "layer"


class DenoiseWidget(QWidget):
    """Dock widget: denoise an image layer tile by tile, or preview the current slice.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (injected by npe2).

    Attributes
    ----------
    options : dict
        Extra method options merged into every call (over the preset), e.g.
        ``{"iterations": 5}``; for previews they override the method's ``preview_options``.
    worker : GeneratorWorker or None
        The worker of the latest run or preview (kept after it finished).
    busy : bool
        True while a run or preview is in progress.
    last_result : StoreResult or None
        What the latest finished run or preview wrote.
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.options: dict[str, Any] = {}
        self.worker = None
        self.busy = False
        self.last_result: StoreResult | None = None
        self._engine_gen: Generator | None = None
        self._pbar: progress | None = None
        self._stage: str | None = None
        self._cancelled = False
        self._returned = False
        self._mask_supported = False
        self._temp_folder: str | None = None  # the running run's temporary store, if any
        self._shown = False  # whether the running run's results became layers

        self.layer_combo = ComboBox(label="image", choices=[])
        self.method_combo = ComboBox(label="method", choices=method_names())
        self.preset_combo = ComboBox(label="preset", choices=[])
        self.device_combo = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.tile_spin = SpinBox(label="tile size", value=256, min=32, max=8192, step=32)
        self.seed_spin = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.mask_check = CheckBox(text="add the loss mask as a layer", value=False,
                                   tooltip="meta-TTA: where the adaptation loss looked (white)")
        self.preview_button = PushButton(text="Preview slice")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="ready")
        self._container = Container(
            widgets=[
                self.layer_combo, self.method_combo, self.preset_combo, self.device_combo,
                self.tile_spin, self.seed_spin, self.mask_check, self.preview_button, self.run_button,
                self.cancel_button, self.status,
            ]
        )
        self.status.native.setWordWrap(True)
        layout = QVBoxLayout()
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._container.native)
        layout.addStretch(1)
        self.setLayout(layout)

        self.method_combo.changed.connect(self._refresh_presets)
        self.run_button.clicked.connect(self.run)
        self.preview_button.clicked.connect(self.preview)
        self.cancel_button.clicked.connect(self.cancel)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_layers)
        self._refresh_presets()
        self._refresh_layers()

    # ------------------------------------------------------------------ choices
    def _on_layers_changed(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if layer is not None and getattr(event, "type", "") == "inserted":
            layer.events.name.connect(self._refresh_layers)
        self._refresh_layers()

    def _refresh_layers(self, event=None) -> None:
        """List the viewer's Image layers, keeping the current choice if it remains."""
        names = [lay.name for lay in self.viewer.layers if isinstance(lay, Image)]
        try:
            current = self.layer_combo.value
            self.layer_combo.choices = names
            if current in names:
                self.layer_combo.value = current
        except RuntimeError:  # the Qt widget is gone (viewer closing)
            pass

    def _refresh_presets(self, event=None) -> None:
        """List the presets of the selected method; its tile size; its extra outputs."""
        name = self.method_combo.value
        described = get_method(name).presets if name else {}
        if name:
            self.tile_spin.value = get_method(name).default_tile
            self._mask_supported = "mask_layer" in get_method(name).defaults
            self.mask_check.visible = self._mask_supported
        presets = list(described)
        self.preset_combo.choices = presets
        self.preset_combo.tooltip = "\n".join(f"{k}: {v.description}" for k, v in described.items())
        if presets:
            self.preset_combo.value = presets[0]

    def set_layer(self, name: str) -> None:
        """Select the input layer by name (for scripts and tests)."""
        self.layer_combo.value = name

    # ------------------------------------------------------------------ inputs
    def _layer(self) -> Image:
        name = self.layer_combo.value
        if name is None or name not in self.viewer.layers:
            raise DenoiseError("choose an image layer")
        return self.viewer.layers[name]

    def _settings(self) -> dict[str, Any]:
        device = self.device_combo.value
        return {
            "method": self.method_combo.value,
            "preset": self.preset_combo.value,
            "device": None if device == "auto" else device,
            "tile": int(self.tile_spin.value),
            "seed": int(self.seed_spin.value),
        }

    # ------------------------------------------------------------------ actions
    def run(self) -> None:
        """Denoise the whole selected layer; results become two new layers."""
        if self.busy:
            return
        try:
            layer = self._layer()
            data = layer.data[0] if layer.multiscale else layer.data  # never np.asarray
            axes = layer_axes(layer)
            scale = [float(s) for s in layer.scale] + ([1.0] if layer.rgb else [])
            output = None
            if int(np.prod(data.shape, dtype=np.float64)) > MEMORY_LIMIT_VOXELS:
                folder = tempfile.mkdtemp(prefix="masked-denoise-")
                _TEMP_FOLDERS.add(folder)
                self._temp_folder = folder
                output = os.path.join(folder, f"{_safe_name(layer.name)}.zarr")
            options = dict(self.options)
            if self._mask_supported and self.mask_check.value:
                options.setdefault("mask_layer", True)
            kwargs = dict(self._settings(), axes=axes, scale=scale, options=options)
        except (DenoiseError, ValueError) as exc:
            self._report_error(exc)
            _remove_temp(self._temp_folder)
            self._temp_folder = None
            return
        gen = denoise_iter(data, output, **kwargs)
        self._start(gen, lambda res: self._add_results(layer, res), "denoising")

    def preview(self) -> None:
        """Denoise only the slice on screen, quickly, into the layer ``<name> preview``."""
        if self.busy:
            return
        try:
            layer = self._layer()
            data = layer.data[0] if layer.multiscale else layer.data
            axes = layer_axes(layer)
            n_lead = len(axes) - (3 if layer.rgb else 2)
            index = self._current_index(layer, n_lead, data.shape)
            plane = data[index]  # one 2-D plane (YXC for RGB); small, safe to read
            options = {**get_method(self.method_combo.value).preview_options, **self.options}
            kwargs = dict(self._settings(), axes=axes[n_lead:], options=options)
        except (DenoiseError, ValueError, IndexError) as exc:
            self._report_error(exc)
            return
        gen = denoise_iter(plane, None, **kwargs)
        self._start(gen, lambda res: self._show_preview(layer, index, res), "previewing")

    def cancel(self) -> None:
        """Stop the running worker after its current tile or adaptation step."""
        if self.worker is not None and self.busy:
            self._cancelled = True
            self.worker.quit()
            self.status.value = "cancelling..."

    # ------------------------------------------------------------------ worker
    def _start(self, gen: Generator, on_result, what: str) -> None:
        self.busy = True
        self._cancelled = False
        self._returned = False
        self._shown = False
        self._engine_gen = gen
        self._stage = None
        self.last_result = None
        self._set_buttons(running=True)
        self.status.value = f"{what}..."

        @thread_worker(start_thread=False)
        def work() -> Generator[Progress, None, StoreResult | _Failed]:
            try:
                return (yield from gen)
            except Exception as exc:  # reported in the GUI thread, never raised there
                return _Failed(exc)

        def on_returned(result: StoreResult | _Failed) -> None:
            self._returned = True
            if isinstance(result, _Failed):
                self._report_error(result.error)
            elif not self._cancelled:
                on_result(result)

        worker = work()
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(on_returned)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()

    def _on_progress(self, p: Progress) -> None:
        # creating a napari progress bar may process events, so the result can arrive
        # while this runs: never overwrite the final status with a stale report
        if self._cancelled or self._returned:
            return
        what = "adapting" if p.stage == "adapt" else "tiles"
        self.status.value = f"{what} {p.done}/{p.total}, {p.elapsed:.1f} s"
        if self._pbar is None or p.stage != self._stage:
            self._close_pbar()
            desc = "adapting" if p.stage == "adapt" else "denoising tiles"
            self._pbar = progress(total=p.total, desc=desc)
            self._stage = p.stage
            if not self.busy:  # the worker finished while the bar was being made
                self._close_pbar()
                return
        self._pbar.update(p.done - self._pbar.n)

    def _on_finished(self) -> None:
        gen, self._engine_gen = self._engine_gen, None
        if gen is not None:
            gen.close()  # a cancelled run: the store stays marked incomplete
        folder, self._temp_folder = self._temp_folder, None
        if folder and not self._shown:  # cancelled or failed: nothing reads the temporary store
            _remove_temp(folder)
        self._close_pbar()
        self._set_buttons(running=False)
        if self._cancelled:
            self.status.value = "cancelled"
        self.busy = False

    def _close_pbar(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    def _set_buttons(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.preview_button.enabled = not running
        self.cancel_button.enabled = running

    def _report_error(self, exc: BaseException) -> None:
        msg = str(exc) or type(exc).__name__
        self.status.value = f"error: {msg}"
        show_error(f"Masked denoise: {msg}")

    # ------------------------------------------------------------------ results
    def _current_index(self, layer: Image, n_lead: int, shape) -> tuple:
        """Index of the plane on screen along the layer's leading (non-YX) axes."""
        if n_lead == 0:
            return ()
        try:  # world position -> data index (handles scale and translate)
            pos = layer.world_to_data(self.viewer.dims.point)
            lead = [int(round(float(v))) for v in list(pos)[:n_lead]]
        except Exception:  # fall back to the viewer's step, trailing dims aligned
            step = list(self.viewer.dims.current_step)
            lead = [int(v) for v in step[len(step) - layer.ndim :][:n_lead]]
        return tuple(int(np.clip(v, 0, shape[i] - 1)) for i, v in enumerate(lead))

    def _add_results(self, layer: Image, res: StoreResult) -> None:
        self.last_result = res
        self._shown = True
        if self._temp_folder:
            self._watch_temp(self._temp_folder)
        in_memory = res.path is None
        den = np.asarray(res.denoised[...]) if in_memory else res.denoised
        nmap = np.asarray(res.noise_map[...]) if in_memory else res.noise_map
        meta = {
            "sigma": res.sigma, "seconds": res.seconds, "method": res.method,
            "preset": res.preset, "mode": res.mode, "axes": res.axes, "store": res.path,
            "source": layer.name, "method_report": res.info.get("method_report", {}),
        }
        common = {"scale": layer.scale, "translate": layer.translate, "rgb": layer.rgb}
        self.viewer.add_image(den, name=f"{layer.name} denoised", metadata=dict(meta), **common)
        if not layer.rgb:
            common["colormap"] = "magma"
        self.viewer.add_image(nmap, name=f"{layer.name} noise map", metadata=dict(meta), **common)
        if not layer.rgb:
            common["colormap"] = "gray"
        for key, arr in res.extras.items():  # e.g. meta-TTA's loss mask
            data = np.asarray(arr[...]) if in_memory else arr
            self.viewer.add_image(data, name=f"{layer.name} {key.replace('_', ' ')}", metadata=dict(meta),
                                  opacity=0.5, blending="additive", **common)
        self.status.value = f"done: {_choice(res)}sigma {res.sigma:.4g}, {res.seconds:.1f} s"

    def _watch_temp(self, folder: str) -> None:
        """Delete the temporary store once no layer of the viewer reads from it."""
        def reads(lay) -> bool:
            store = lay.metadata.get("store")
            return bool(store) and os.path.dirname(str(store)) == folder

        def on_removed(event=None) -> None:
            if folder not in _TEMP_FOLDERS:
                self.viewer.layers.events.removed.disconnect(on_removed)
            elif not any(reads(lay) for lay in self.viewer.layers):
                self.viewer.layers.events.removed.disconnect(on_removed)
                _remove_temp(folder)

        self.viewer.layers.events.removed.connect(on_removed)

    def _show_preview(self, layer: Image, index: tuple, res: StoreResult) -> None:
        self.last_result = res
        plane = np.asarray(res.denoised[...])
        n_lead = len(index)
        data = plane.reshape((1,) * n_lead + plane.shape)  # keep the layer's ndim
        scale = np.asarray(layer.scale, dtype=float)
        translate = np.asarray(layer.translate, dtype=float).copy()
        translate[:n_lead] += np.asarray(index, dtype=float) * scale[:n_lead]
        name = f"{layer.name} preview"
        meta = {
            "sigma": res.sigma, "seconds": res.seconds, "index": list(index), "source": layer.name
        }
        if name in self.viewer.layers and self.viewer.layers[name].rgb == layer.rgb:
            prev = self.viewer.layers[name]
            prev.data = data
            prev.scale, prev.translate = scale, translate
            prev.metadata = meta
            prev.reset_contrast_limits()
        else:
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            self.viewer.add_image(
                data, name=name, scale=scale, translate=translate, rgb=layer.rgb, metadata=meta
            )
        self.status.value = f"preview: sigma {res.sigma:.4g}, {res.seconds:.1f} s"


def _choice(res: StoreResult) -> str:
    """``auto``'s choice and estimated gain, for the status line ('' for other methods)."""
    rep = res.info.get("method_report") or {}
    if not rep.get("choice"):
        return ""
    gain = rep.get("estimated_gain_db")
    est = f", est. {gain:+.1f} dB" if gain is not None and np.isfinite(gain) else ""
    return f"auto chose {rep['choice']}{est}; "
