"""The napari dock widget and the sample-data providers, in a real (headless) viewer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_masked_denoise._napari.widget import DenoiseWidget, layer_axes


def named(viewer, prefix: str):
    """The result layer ``prefix (method)``."""
    return next(ly for ly in viewer.layers if ly.name.startswith(prefix + " ("))


def has(viewer, prefix: str) -> bool:
    return any(ly.name.startswith(prefix + " (") for ly in viewer.layers)


PLUGIN = "napari-masked-denoise"
TIMEOUT = 60_000  # ms: a loaded machine (CI) runs these tiny runs several times slower

# small and fast: a handful of adaptation steps is enough to exercise the plumbing
FAST = {"iterations": 5, "widths": (8, 16), "fill_passes": 2, "weights": "none"}


def _image(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (0.5 + 0.1 * rng.standard_normal(shape)).astype(np.float32)


def _wait_idle(qtbot, widget: DenoiseWidget, timeout=TIMEOUT):
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)
    assert widget.worker is None or not widget.worker.is_running


@pytest.fixture
def viewer_widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Masked denoise test")
    widget.method_combo.value = "zero-shot"  # the default is auto
    widget.options = dict(FAST)
    widget.device_combo.value = "cpu"
    yield viewer, widget
    if widget.busy:  # never let a worker outlive its test
        widget.cancel()
        _wait_idle(qtbot, widget)


def test_dock_via_manifest_lists_image_layers(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(_image((64, 64)), name="cells")
    viewer.add_points(np.zeros((1, 2)), name="pts")
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Masked denoise")
    assert isinstance(widget, DenoiseWidget)
    assert list(widget.layer_combo.choices) == ["cells"]
    assert widget.method_combo.value == "auto"
    assert list(widget.preset_combo.choices) == ["fast", "quality"]
    viewer.add_image(_image((64, 64), 1), name="other")
    assert set(widget.layer_combo.choices) == {"cells", "other"}
    viewer.layers.remove("cells")
    assert list(widget.layer_combo.choices) == ["other"]
    viewer.layers["other"].name = "renamed"
    assert list(widget.layer_combo.choices) == ["renamed"]


def test_run_adds_denoised_and_noise_map(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_image((64, 64)), name="img", scale=(0.5, 2.0), translate=(3, 4))
    widget.set_layer("img")
    widget.run_button.clicked.emit()
    qtbot.waitUntil(
        lambda: has(viewer, "img denoised") and has(viewer, "img noise map"),
        timeout=TIMEOUT,
    )
    _wait_idle(qtbot, widget)
    den, nmap = named(viewer, "img denoised"), named(viewer, "img noise map")
    assert den.data.shape == nmap.data.shape == (64, 64)
    np.testing.assert_allclose(den.scale, (0.5, 2.0))
    np.testing.assert_allclose(nmap.translate, (3, 4))
    assert nmap.colormap.name == "magma"
    assert np.isfinite(den.metadata["sigma"]) and den.metadata["seconds"] > 0
    assert "sigma" in widget.status.value
    assert widget.last_result is not None and widget.last_result.complete


def test_run_volume_keeps_shape(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_image((4, 64, 64)), name="vol")
    widget.set_layer("vol")
    widget.run()
    _wait_idle(qtbot, widget)
    assert named(viewer, "vol denoised").data.shape == (4, 64, 64)
    assert named(viewer, "vol noise map").data.shape == (4, 64, 64)
    assert widget.last_result.axes == "ZYX"


def test_cancel_adds_no_layers(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_image((4, 96, 96)), name="vol")
    widget.set_layer("vol")
    widget.options = {**FAST, "iterations": 100_000}
    widget.tile_spin.value = 32
    seen = []
    widget.run()
    widget.worker.yielded.connect(seen.append)
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=TIMEOUT)  # it is really running
    widget.cancel_button.clicked.emit()
    _wait_idle(qtbot, widget)
    assert widget.worker.abort_requested
    assert widget.status.value == "cancelled"
    assert [lay.name for lay in viewer.layers] == ["vol"]
    assert widget.last_result is None
    assert seen[-1].done < seen[-1].total
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_large_layer_goes_to_a_lazy_zarr_store(viewer_widget, qtbot, monkeypatch):
    import shutil

    import dask.array as da
    import zarr

    from napari_masked_denoise._napari import widget as widget_mod

    monkeypatch.setattr(widget_mod, "MEMORY_LIMIT_VOXELS", 1000)  # "large": > 1000 voxels
    viewer, widget = viewer_widget
    lazy = da.from_array(_image((2, 64, 64)), chunks=(1, 32, 32))
    viewer.add_image(lazy, name="big", contrast_limits=(0, 1))
    widget.set_layer("big")
    widget.run()
    _wait_idle(qtbot, widget)
    res = widget.last_result
    try:
        assert res is not None and res.path is not None and res.path.endswith(".zarr")
        den = named(viewer, "big denoised").data
        assert isinstance(den, zarr.Array) and den.shape == (2, 64, 64)
        assert named(viewer, "big noise map").metadata["store"] == res.path
        # the temporary store lives as long as a layer reads it
        folder = Path(res.path).parent
        viewer.layers.remove(named(viewer, "big denoised"))
        assert folder.exists()
        viewer.layers.remove(named(viewer, "big noise map"))
        assert not folder.exists()
    finally:
        shutil.rmtree(Path(res.path).parent, ignore_errors=True)


def test_a_cancelled_large_run_leaves_no_temporary_store(viewer_widget, qtbot, monkeypatch):
    import dask.array as da

    from napari_masked_denoise._napari import temp_stores
    from napari_masked_denoise._napari import widget as widget_mod

    monkeypatch.setattr(widget_mod, "MEMORY_LIMIT_VOXELS", 1000)
    viewer, widget = viewer_widget
    viewer.add_image(da.from_array(_image((4, 96, 96)), chunks=(1, 48, 48)), name="big")
    widget.set_layer("big")
    widget.options = {**FAST, "iterations": 100_000}
    widget.tile_spin.value = 32
    seen = []
    widget.run()
    folder = widget._temp_folder
    assert folder and Path(folder).exists()
    widget.worker.yielded.connect(seen.append)
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=TIMEOUT)
    widget.cancel()
    _wait_idle(qtbot, widget)
    assert not Path(folder).exists() and folder not in temp_stores.TEMP_FOLDERS


def test_a_zarr_layer_is_read_tile_by_tile_while_the_viewer_stays_live(
    viewer_widget, qtbot, monkeypatch, tmp_path
):
    """A zarr-backed volume layer: no read of the input ever takes more than a tile's
    planes, the results are zarr arrays on disk, and the GUI thread keeps handling
    events while the worker denoises."""
    import zarr
    from qtpy.QtCore import QTimer

    from napari_masked_denoise._napari import widget as widget_mod

    monkeypatch.setattr(widget_mod, "MEMORY_LIMIT_VOXELS", 1000)
    vol = _image((6, 192, 192))
    src = zarr.create_array(
        store=str(tmp_path / "vol.zarr"), shape=vol.shape, chunks=(1, 48, 48), dtype="f4"
    )
    src[:] = vol
    viewer, widget = viewer_widget  # zero-shot with a small network
    viewer.add_image(src, name="vol", contrast_limits=(0, 1))
    widget.set_layer("vol")
    widget.tile_spin.value = 48
    reads, real_getitem = [], zarr.Array.__getitem__

    def recording(self, key):
        out = real_getitem(self, key)
        if str(tmp_path) in str(self.store_path):
            reads.append(np.size(out))
        return out

    monkeypatch.setattr(zarr.Array, "__getitem__", recording)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(widget.busy))
    timer.start(5)
    widget.run()
    _wait_idle(qtbot, widget)
    timer.stop()
    res = widget.last_result
    try:
        assert res is not None and res.complete
        assert any(ticks), "the GUI thread handled no event while the worker ran"
        tile_block = 6 * (48 + 2 * res.info["halo"] + 8) ** 2  # a tile's planes, halo, alignment
        assert reads and max(reads) <= tile_block < vol.size / 4
        den = named(viewer, "vol denoised").data
        assert isinstance(den, zarr.Array) and den.shape == vol.shape
    finally:
        for name in ("vol denoised", "vol noise map"):
            if name in viewer.layers:
                viewer.layers.remove(name)


def test_run_multiscale_and_rgb(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    base = _image((64, 64))
    viewer.add_image([base, base[::2, ::2]], name="pyr", multiscale=True, contrast_limits=(0, 1))
    viewer.add_image(np.clip(_image((64, 64, 3)), 0, 1), name="rgb", rgb=True)
    for name, shape in (("pyr", (64, 64)), ("rgb", (64, 64, 3))):
        widget.set_layer(name)
        widget.run()
        _wait_idle(qtbot, widget)
        assert named(viewer, f"{name} denoised").data.shape == shape
        assert named(viewer, f"{name} noise map").data.shape == shape
    assert named(viewer, "rgb denoised").rgb
    assert widget.last_result.axes == "YXC"


def test_preview_adds_preview_layer(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_image((4, 64, 64)), name="vol", scale=(2.0, 1.0, 1.0))
    widget.set_layer("vol")
    viewer.dims.set_current_step(0, 2)
    widget.preview_button.clicked.emit()
    qtbot.waitUntil(lambda: "vol preview" in viewer.layers, timeout=TIMEOUT)
    _wait_idle(qtbot, widget)
    prev = viewer.layers["vol preview"]
    assert prev.data.shape == (1, 64, 64)
    assert prev.metadata["index"] == [2]
    np.testing.assert_allclose(prev.translate, (4.0, 0.0, 0.0))
    # a second preview updates the same layer
    viewer.dims.set_current_step(0, 1)
    widget.preview()
    _wait_idle(qtbot, widget)
    assert [lay.name for lay in viewer.layers].count("vol preview") == 1
    assert viewer.layers["vol preview"].metadata["index"] == [1]


def test_preview_2d(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_image((64, 64)), name="img")
    widget.set_layer("img")
    widget.preview()
    _wait_idle(qtbot, widget)
    assert viewer.layers["img preview"].data.shape == (64, 64)


def test_engine_error_goes_to_status(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_image((8, 8)), name="tiny")  # smaller than the engine accepts
    widget.set_layer("tiny")
    widget.run()
    _wait_idle(qtbot, widget)
    assert widget.status.value.startswith("error:")
    assert [lay.name for lay in viewer.layers] == ["tiny"]


def test_layer_axes(make_napari_viewer):
    viewer = make_napari_viewer()
    assert layer_axes(viewer.add_image(np.zeros((32, 32)))) == "YX"
    assert layer_axes(viewer.add_image(np.zeros((3, 32, 32)))) == "ZYX"
    assert layer_axes(viewer.add_image(np.zeros((2, 3, 32, 32)))) == "TZYX"
    assert layer_axes(viewer.add_image(np.zeros((32, 32, 3)), rgb=True)) == "YXC"
    assert layer_axes(viewer.add_image(np.zeros((2, 32, 32, 3)), rgb=True)) == "ZYXC"


def test_the_tile_is_the_engines_unless_the_user_sets_one(viewer_widget, qtbot, monkeypatch):
    """The tile box shows the engine's default for the method and the layer; the widget
    sends ``tile=None`` (the engine's choice) unless the user set the box."""
    from napari_masked_denoise._napari import widget as widget_mod
    from napari_masked_denoise.engine.settings import default_tile

    sent, real = [], widget_mod.denoise_iter

    def recording(image, output=None, settings=None, **kw):
        sent.append(settings)
        return real(image, output, settings, **kw)

    monkeypatch.setattr(widget_mod, "denoise_iter", recording)
    viewer, widget = viewer_widget  # zero-shot
    viewer.add_image(_image((64, 64)), name="img")
    viewer.add_image(_image((2, 64, 64)), name="vol")
    widget.set_layer("img")  # one plane: per-tile mode
    assert widget.tile_spin.value == default_tile("zero-shot", "fast", None, "per-tile") == 256
    widget.set_layer("vol")  # a volume: once mode
    assert widget.tile_spin.value == default_tile("zero-shot", "fast", None, "once") == 1024
    widget.run()
    _wait_idle(qtbot, widget)
    assert sent[-1].tile is None and widget.last_result.complete
    widget.tile_spin.value = 64  # the user's choice is sent, and kept across layers
    widget.set_layer("img")
    assert widget.tile_spin.value == 64
    widget.run()
    _wait_idle(qtbot, widget)
    assert sent[-1].tile == 64 and widget.last_result.complete
    widget.method_combo.value = "auto"  # decides the tile on the image
    assert widget.tile_spin.native.text() == "automatic" and widget.tile is None
    widget.method_combo.value = "zero-shot"  # a new method: its default again
    assert widget.tile_spin.value == 256 and widget.tile is None


SAMPLES_READY = (
    Path(__file__).resolve().parents[2] / "src" / "napari_masked_denoise" / "samples.py"
).exists()


def test_sample_providers():
    assert SAMPLES_READY
    from napari_masked_denoise._napari.samples import cell_sample, ct_sample, volume_sample

    for provider, ndim in ((cell_sample, 2), (ct_sample, 3), (volume_sample, 3)):
        [(data, meta, kind)] = provider()
        assert kind == "image" and isinstance(meta["name"], str)
        assert data.ndim == ndim and data.dtype == np.float32


def test_open_sample_via_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample(PLUGIN, "noisy_cell")
    assert len(layers) == 1 and layers[0].data.ndim == 2
    assert viewer.layers[0].name == "noisy cell"


def test_ttt_mim_runs_and_previews_from_the_widget(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_image((3, 64, 64)), name="vol")
    widget.set_layer("vol")
    widget.method_combo.value = "ttt-mim"
    assert list(widget.preset_combo.choices) == ["fast", "quality", "safe", "volume", "no-adapt"]
    widget.options = {"steps": 2}
    widget.run()
    _wait_idle(qtbot, widget)
    assert widget.last_result.method == "ttt-mim" and widget.last_result.complete
    assert named(viewer, "vol denoised").data.shape == (3, 64, 64)
    assert float(np.std(named(viewer, "vol denoised").data)) < float(
        np.std(viewer.layers["vol"].data)
    )
    widget.preview()
    _wait_idle(qtbot, widget)
    assert "vol preview" in viewer.layers


def test_meta_tta_adds_the_loss_mask_layer_on_request(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_image((2, 64, 64)), name="vol")
    widget.set_layer("vol")
    widget.tile_spin.value = 64
    widget.method_combo.value = "meta-tta"
    assert widget.tile_spin.value == 1024  # a volume: once mode, exact tiles of 1024 or more
    assert list(widget.preset_combo.choices) == ["fast", "reference", "no-adapt"]
    widget.options = {}  # the fixture's zero-shot options
    widget.run()
    _wait_idle(qtbot, widget)
    assert widget.last_result.complete and "vol loss mask" not in viewer.layers
    widget.mask_check.value = True
    widget.run()
    _wait_idle(qtbot, widget)
    mask = named(viewer, "vol loss mask").data
    assert mask.shape == (2, 64, 64) and 0.0 <= float(np.min(mask)) and float(np.max(mask)) <= 1.0
    widget.preview()
    _wait_idle(qtbot, widget)
    assert "vol preview" in viewer.layers and widget.last_result.method == "meta-tta"
    widget.method_combo.value = "zero-shot"
    assert widget.tile_spin.value == 1024 and not widget._mask_supported


def test_masked_transformer_runs_from_the_widget(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_image((2, 64, 64)), name="vol")
    widget.set_layer("vol")
    widget.method_combo.value = "masked-transformer"
    assert widget.tile_spin.value == 1024 and not widget._mask_supported
    assert list(widget.preset_combo.choices) == [
        "fast",
        "reference",
        "no-attention-mask",
        "unmasked",
    ]
    widget.options = {"widths": (8, 2, 2, 2)}  # not the shipped network's: a one-line error
    widget.run()
    _wait_idle(qtbot, widget)
    assert widget.status.value.startswith("error:") and "widths" in widget.status.value
    assert [lay.name for lay in viewer.layers] == ["vol"]
    widget.options = {}  # the shipped weights
    widget.run()
    _wait_idle(qtbot, widget)
    assert widget.last_result.method == "masked-transformer" and widget.last_result.complete
    assert named(viewer, "vol denoised").data.shape == (2, 64, 64)


def test_auto_is_the_default_and_says_what_it_chose(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = DenoiseWidget(viewer)
    assert widget.method_combo.value == "auto" and widget.preset_combo.value == "fast"
    widget.device_combo.value = "cpu"
    widget.options = {"candidates": "wavelet,tv:fixed"}
    viewer.add_image(_image((3, 64, 64)), name="vol")
    widget.set_layer("vol")
    widget.run()
    _wait_idle(qtbot, widget)
    rep = named(viewer, "vol denoised").metadata["method_report"]
    assert rep["choice"] in ("wavelet:default", "tv:fixed")
    assert widget.status.value.startswith("done: auto chose ")
    assert f"({rep['choice']})" in widget.status.value


def test_a_layer_the_engine_cannot_take_does_not_break_the_widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((2, 2, 2, 2, 16, 16), np.float32), name="six-d")
    widget = DenoiseWidget(viewer)  # the tile default for a 6-D layer: as for one plane
    widget.set_layer("six-d")
    widget.method_combo.value = "tv"
    widget.run()
    assert "error" in widget.status.value and not widget.busy


def test_the_noise_model_is_shown_after_a_run(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_image((64, 64)), name="img")
    widget.set_layer("img")
    widget.method_combo.value = "wavelet"
    widget.options = {}  # the fixture's are zero-shot's
    assert widget.noise_plot.isHidden()
    widget.run()
    _wait_idle(qtbot, widget)
    model = widget.last_result.info["noise_model"]
    assert model and widget.noise_plot.model is not None and not widget.noise_plot.isHidden()
    x, s = widget.noise_plot.curve()
    assert len(x) == len(s) and np.all(s > 0)
    assert "between pixels" in widget.status.value  # the model's one line
    widget.noise_plot.grab()  # paints without error


def test_results_on_top_named_with_the_method_noise_map_hidden(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_image((64, 64)), name="img")
    widget.set_layer("img")
    widget.run()
    _wait_idle(qtbot, widget)
    names = [ly.name for ly in viewer.layers]
    assert names == ["img", "img noise map (zero-shot)", "img denoised (zero-shot)"]
    assert viewer.layers[-1].visible and not viewer.layers[1].visible


def test_progress_is_in_the_widget_with_stage_names_and_no_activity_bars(make_napari_viewer, qtbot):
    from napari.utils import progress

    viewer = make_napari_viewer()
    widget = DenoiseWidget(viewer)
    widget.device_combo.value = "cpu"
    widget.options = {"candidates": "wavelet,tv:fixed,nlm"}
    viewer.add_image(_image((3, 96, 96)), name="vol")
    widget.set_layer("vol")
    seen, real = [], widget._on_progress

    def record(p):
        real(p)
        seen.append(widget.status.value)

    widget._on_progress = record  # the worker connects to this attribute when it starts
    widget.run()
    _wait_idle(qtbot, widget)
    assert any(s.startswith("scoring 3 candidates") for s in seen), seen
    tiles = [s for s in seen if s.startswith("denoising tile ")]
    import re

    k, n = map(int, re.match(r"denoising tile (\d+) of (\d+)", tiles[-1]).groups())
    assert k == n >= 1, seen
    assert not widget.progress_bar.visible  # hidden again once done
    assert not list(progress._all_instances)  # nothing stacked in napari's activity dock


def test_methods_that_cannot_run_are_listed_disabled_with_the_reason(
    make_napari_viewer, monkeypatch
):
    from napari_masked_denoise._napari import preview as wmod

    monkeypatch.setattr(
        wmod,
        "unavailable",
        lambda name: "needs the optional bm3d package" if name == "bm3d" else None,
    )
    widget = DenoiseWidget(make_napari_viewer())
    combo = widget.method_combo.native
    i = combo.findText("bm3d")
    assert not combo.model().item(i).isEnabled()
    assert "bm3d package" in combo.model().item(i).toolTip()
    assert combo.model().item(combo.findText("tv")).isEnabled()
    assert widget.unavailable == {"bm3d": "needs the optional bm3d package"}


def test_preview_denoises_a_crop_around_the_view_and_says_what_auto_chose(
    make_napari_viewer, qtbot
):
    viewer = make_napari_viewer()
    widget = DenoiseWidget(viewer)
    widget.device_combo.value = "cpu"
    widget.options = {"candidates": "wavelet,tv:fixed"}
    viewer.add_image(_image((600, 500)), name="big", scale=(2.0, 2.0))
    widget.set_layer("big")
    viewer.camera.center = (2.0 * 100, 2.0 * 400)  # world coordinates: pixel (100, 400)
    widget.preview()
    _wait_idle(qtbot, widget)
    prev = viewer.layers["big preview"]
    assert prev.data.shape == (256, 256)
    y0, x0 = prev.metadata["crop"][0][0], prev.metadata["crop"][1][0]
    assert (y0, x0) == (0, 244)  # centred on (100, 400), kept inside the 600x500 image
    np.testing.assert_allclose(prev.translate, (2.0 * y0, 2.0 * x0))
    assert widget.status.value.startswith("preview: auto chose"), widget.status.value
    chose = prev.metadata["method_report"]["choice"]
    widget.run()  # Run makes the same choice: the same sample of the whole layer
    _wait_idle(qtbot, widget)
    assert widget.last_result.info["method_report"]["choice"] == chose
