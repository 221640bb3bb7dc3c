"""The ``Masked denoise`` dock widget.

A thin Qt front end: it gathers the settings into a
:class:`~napari_masked_denoise.engine.RunSettings`, runs
:func:`napari_masked_denoise.engine.denoise_iter` in a napari thread worker, drives a
progress bar from the :class:`~napari_masked_denoise.engine.Progress` reports and adds
the results as layers (:mod:`.layers`). All computing happens in the engine; the status
line comes from :mod:`napari_masked_denoise.report`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QVBoxLayout, QWidget
from superqt import QCollapsible

from ..core.axes import DenoiseError
from ..engine import Progress, RunSettings, StoreResult, denoise_iter
from ..methods import get_method, method_names
from ..report import status_text, time_left
from .layers import (
    PREVIEW_SIDE,
    add_result_layers,
    current_index,
    layer_axes,
    layer_data,
    layer_default_tile,
    layer_scale,
    preview_crop,
    show_preview_layer,
)
from .noise_plot import NoisePlot
from .preview import grey_out_unavailable, preview_iter
from .temp_stores import new_temp_store, remove_temp, watch_temp

if TYPE_CHECKING:
    import napari

__all__ = ["DenoiseWidget", "layer_axes", "MEMORY_LIMIT_VOXELS"]

MEMORY_LIMIT_VOXELS = 64 * 1024**2
"""Layers up to this many voxels are denoised in memory; larger ones into a temporary
zarr store on disk (:mod:`.temp_stores`), so the result layers are lazy."""

DEVICES = ("auto", "cpu", "cuda", "mps")
AUTOMATIC = "automatic"
"""What the tile box shows when the engine chooses the tile on the image (``auto``)."""


@dataclass(frozen=True)
class _Failed:
    """What the worker returns when the engine raised.

    Returning the error, rather than raising it in the thread, keeps it out of napari's
    traceback notifications and out of superqt's handling of :class:`RuntimeError`
    (which it takes for a deleted worker and drops; torch raises those, e.g. on
    out-of-memory).
    """

    error: Exception


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
    tile_spin : magicgui.widgets.FloatSpinBox
        The tile size. It shows the engine's default for the chosen method, preset and
        layer (:func:`~napari_masked_denoise.engine.settings.default_tile`; ``automatic``
        when the method decides on the image); only a value the user sets is sent.
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
        self._options: dict[str, Any] = {}
        self.worker = None
        self.busy = False
        self.last_result: StoreResult | None = None
        self._engine_gen: Generator | None = None
        self._stage: str | None = None
        self._stage_t0, self._stage_done0 = 0.0, 0
        self._cancelled = False
        self._returned = False
        self._mask_supported = False
        self._tile_chosen = False  # whether the user set the tile box
        self._showing_tile = False  # while the widget itself sets the tile box
        self._temp_folder: str | None = None  # the running run's temporary store, if any
        self._shown = False  # whether the running run's results became layers
        self._build_controls()
        self._connect()
        self._refresh_presets()
        self._refresh_layers()

    def _build_controls(self) -> None:
        self.layer_combo = ComboBox(label="image", choices=[])
        self.method_combo = ComboBox(label="method", choices=method_names())
        self.preset_combo = ComboBox(label="preset", choices=[])
        self.device_combo = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.tile_spin = FloatSpinBox(
            label="tile size",
            value=0,
            min=0,
            max=8192,
            step=32,
            tooltip="tile size in Y and X; shown: the engine's default",
        )
        self.tile_spin.native.setDecimals(0)
        self.tile_spin.native.setSpecialValueText(AUTOMATIC)  # 0: the engine chooses
        self.seed_spin = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.mask_check = CheckBox(
            text="add the loss mask as a layer",
            value=False,
            tooltip="meta-TTA: where the adaptation loss looked (white)",
        )
        self.preview_button = PushButton(
            text="Preview",
            tooltip=f"denoise about {PREVIEW_SIDE}x{PREVIEW_SIDE} pixels around the centre "
            "of the view, on the slice shown",
        )
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress_bar = ProgressBar(value=0, min=0, max=1, visible=False)
        self.status = Label(value="ready")
        self._container = Container(
            widgets=[
                self.layer_combo,
                self.method_combo,
                self.preset_combo,
                self.mask_check,
                self.preview_button,
                self.run_button,
                self.cancel_button,
            ]
        )
        self._advanced = Container(widgets=[self.device_combo, self.tile_spin, self.seed_spin])
        self.advanced = QCollapsible("Advanced: device, tile size, seed")
        self.advanced.addWidget(self._advanced.native)
        self.status.native.setWordWrap(True)
        self._disable_unavailable()
        self.noise_plot = NoisePlot()
        layout = QVBoxLayout()
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._container.native)
        # the bar and the status span the dock's width (not the container's value column)
        layout.addWidget(self.progress_bar.native)
        layout.addWidget(self.status.native)
        layout.addWidget(self.advanced)
        layout.addWidget(self.noise_plot)
        layout.addStretch(1)
        self.setLayout(layout)

    def _disable_unavailable(self) -> None:
        """Methods this installation cannot run stay listed, greyed out, with the reason
        as their tooltip."""
        self.unavailable = grey_out_unavailable(self.method_combo.native)

    def _connect(self) -> None:
        self.method_combo.changed.connect(self._refresh_presets)
        self.preset_combo.changed.connect(self._refresh_tile)
        self.layer_combo.changed.connect(self._refresh_tile)
        self.tile_spin.changed.connect(self._on_tile_edited)
        self.run_button.clicked.connect(self.run)
        self.preview_button.clicked.connect(self.preview)
        self.cancel_button.clicked.connect(self.cancel)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_layers)

    @property
    def options(self) -> dict[str, Any]:
        """Extra method options merged into every call (see the class's attributes)."""
        return self._options

    @options.setter
    def options(self, value: dict[str, Any]) -> None:
        self._options = dict(value)
        self._refresh_tile()  # options can change the mode, and so the default tile

    @property
    def tile(self) -> int | None:
        """The tile sent to the engine: the user's value, else ``None`` (its default)."""
        value = int(self.tile_spin.value)
        return value if self._tile_chosen and value else None

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
        """List the presets of the selected method; its default tile; its extra outputs."""
        name = self.method_combo.value
        described = get_method(name).presets if name else {}
        if name:
            self._mask_supported = "mask_layer" in get_method(name).defaults
            self.mask_check.visible = self._mask_supported
        presets = list(described)
        self.preset_combo.choices = presets
        self.preset_combo.tooltip = "\n".join(f"{k}: {v.description}" for k, v in described.items())
        if presets:
            self.preset_combo.value = presets[0]
        self._refresh_tile(reset=True)  # a new method: its default tile again

    def _refresh_tile(self, event=None, reset: bool = False) -> None:
        """Show the engine's default tile, unless the user set one (kept until the method
        changes)."""
        if reset:
            self._tile_chosen = False
        if self._tile_chosen:
            return
        tile = self._default_tile()
        self._showing_tile = True
        try:
            self.tile_spin.value = 0 if tile is None else tile
        except RuntimeError:  # the Qt widget is gone (viewer closing)
            pass
        finally:
            self._showing_tile = False

    def _on_tile_edited(self, value=None) -> None:
        if not self._showing_tile:
            self._tile_chosen = True

    def _default_tile(self) -> int | None:
        try:
            layer = self._layer()
        except DenoiseError:  # no layer (yet): as for one 2-D image
            layer = None
        method, preset = self.method_combo.value, self.preset_combo.value or None
        return layer_default_tile(layer, method, preset, self.options)

    def set_layer(self, name: str) -> None:
        """Select the input layer by name (for scripts and tests)."""
        self.layer_combo.value = name

    # ------------------------------------------------------------------ inputs
    def _layer(self) -> Image:
        name = self.layer_combo.value
        if name is None or name not in self.viewer.layers:
            raise DenoiseError("choose an image layer")
        return self.viewer.layers[name]

    def _run_settings(self, **fields) -> RunSettings:
        """The settings of the controls, with ``fields`` (axes, scale, options)."""
        device = self.device_combo.value
        return RunSettings(
            method=self.method_combo.value,
            preset=self.preset_combo.value,
            device=None if device == "auto" else device,
            tile=self.tile,
            seed=int(self.seed_spin.value),
            **fields,
        )

    # ------------------------------------------------------------------ actions
    def run(self) -> None:
        """Denoise the whole selected layer; results become two new layers."""
        if self.busy:
            return
        try:
            layer = self._layer()
            data = layer_data(layer)  # never np.asarray
            options = dict(self.options)
            if self._mask_supported and self.mask_check.value:
                options.setdefault("mask_layer", True)
            settings = self._run_settings(
                axes=layer_axes(layer), scale=layer_scale(layer), options=options
            )
        except (DenoiseError, ValueError) as exc:
            self._report_error(exc)
            return
        output = None
        if int(np.prod(data.shape, dtype=np.float64)) > MEMORY_LIMIT_VOXELS:
            self._temp_folder, output = new_temp_store(layer.name)
        gen = denoise_iter(data, output, settings)
        self._start(gen, lambda res: self._add_results(layer, res), "denoising")

    def preview(self) -> None:
        """Denoise only the slice on screen, quickly, into the layer ``<name> preview``."""
        if self.busy:
            return
        try:
            layer = self._layer()
            data = layer_data(layer)
            axes = layer_axes(layer)
            n_lead = len(axes) - (3 if layer.rgb else 2)
            index = current_index(self.viewer, layer, n_lead, data.shape)
            crop = preview_crop(self.viewer, layer, index, data.shape[n_lead:])
            plane = np.asarray(data[(*index, *crop)])  # a crop of one plane: small to read
            options = {**get_method(self.method_combo.value).preview_options, **self.options}
            settings = self._run_settings(axes=axes[n_lead:], options=options)
            run = None
            if self.method_combo.value == "auto":  # choose as Run would, on the whole layer
                run = self._run_settings(
                    axes=axes, scale=layer_scale(layer), options=dict(self.options)
                )
        except (DenoiseError, ValueError, IndexError) as exc:
            self._report_error(exc)
            return
        gen = preview_iter(data, run, plane, settings)
        self._start(gen, lambda res: self._show_preview(layer, index, res, crop), "previewing")

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
        # the result can arrive while this runs: never overwrite the final status with a
        # stale report
        if self._cancelled or self._returned:
            return
        if p.stage != self._stage:
            self._stage, self._stage_t0, self._stage_done0 = p.stage, p.elapsed, p.done
        label = p.label or ("adapting" if p.stage == "adapt" else "denoising")
        d0 = self._stage_done0
        left = time_left(p.elapsed - self._stage_t0, p.done - d0, p.total - d0)
        self.status.value = f"{label}, {p.elapsed:.0f} s" + (f", {left} left" if left else "")
        try:
            self.progress_bar.visible = True
            self.progress_bar.max = max(1, p.total)
            self.progress_bar.value = min(p.done, p.total)
        except RuntimeError:  # the Qt widget is gone (viewer closing)
            pass

    def _on_finished(self) -> None:
        gen, self._engine_gen = self._engine_gen, None
        if gen is not None:
            gen.close()  # a cancelled run: the store stays marked incomplete
        folder, self._temp_folder = self._temp_folder, None
        if folder and not self._shown:  # cancelled or failed: nothing reads the temporary store
            remove_temp(folder)
        try:
            self.progress_bar.visible = False
        except RuntimeError:  # the Qt widget is gone (viewer closing)
            pass
        self._set_buttons(running=False)
        if self._cancelled:
            self.status.value = "cancelled"
        self.busy = False

    def _set_buttons(self, running: bool) -> None:
        self.run_button.enabled = not running
        self.preview_button.enabled = not running
        self.cancel_button.enabled = running

    def _report_error(self, exc: BaseException) -> None:
        msg = str(exc) or type(exc).__name__
        self.status.value = f"error: {msg}"
        show_error(f"Masked denoise: {msg}")

    # ------------------------------------------------------------------ results
    def _add_results(self, layer: Image, res: StoreResult) -> None:
        self.last_result = res
        self._shown = True
        if self._temp_folder:
            watch_temp(self.viewer, self._temp_folder)
        add_result_layers(self.viewer, layer, res)
        self.status.value = status_text(res)
        self.noise_plot.set_model(res.info.get("noise_model"))

    def _show_preview(self, layer: Image, index: tuple, res: StoreResult, crop) -> None:
        self.last_result = res
        show_preview_layer(self.viewer, layer, index, res, crop)
        self.status.value = status_text(res, preview=True)
        self.noise_plot.set_model(res.info.get("noise_model"))
