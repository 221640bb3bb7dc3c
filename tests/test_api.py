import numpy as np
import pytest

import napari_masked_denoise as nmd
from napari_masked_denoise.core.axes import AxesGuessedWarning


def test_denoise_returns_float32_arrays_of_the_input_shape(camera_noisy, psnr):
    clean, noisy = camera_noisy
    img = (np.clip(noisy, 0, 1) * 65535).astype(np.uint16)
    before = img.copy()
    r = nmd.denoise(img, method="tv", preset="fixed", axes="YX", device="cpu", seed=0)
    assert r.denoised.shape == r.noise_map.shape == img.shape
    assert r.denoised.dtype == r.noise_map.dtype == np.float32
    np.testing.assert_array_equal(img, before)  # the input is never modified
    assert psnr(clean, r.denoised / 65535) > psnr(clean, img / 65535) + 2.0
    # the noise estimates are in the input's units and near the true sigma (0.1 * 65535)
    assert 0.5 * 6553 < r.sigma < 1.5 * 6553
    assert 0.5 * 6553 < np.median(r.noise_map) < 1.5 * 6553
    assert r.mode == "per-tile" and r.axes == "YX" and not r.axes_guessed


def test_axes_are_guessed_and_said_so():
    vol = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    with pytest.warns(AxesGuessedWarning, match="ZYX"):
        r = nmd.denoise(vol, method="zero-shot", iterations=2, fill_passes=1)
    assert r.axes == "ZYX" and r.axes_guessed and r.mode == "once"


def test_rgb_channels_are_denoised_independently():
    img = np.random.default_rng(0).random((40, 40, 3)).astype(np.float32)
    r = nmd.denoise(img, axes="YXC", method="zero-shot", iterations=2)
    assert r.denoised.shape == img.shape


def test_denoise_to_zarr_and_list_methods(tmp_path):
    vol = np.random.default_rng(0).random((3, 40, 40)).astype(np.float32)
    res = nmd.denoise_to_zarr(
        vol, tmp_path / "o.zarr", axes="ZYX", method="zero-shot", iterations=2, fill_passes=1
    )
    assert res.complete and res.denoised.shape == vol.shape
    assert "zero-shot" in nmd.list_methods() and "fast" in nmd.list_methods()["zero-shot"]


def test_import_pulls_in_no_qt_and_no_torch():
    import subprocess
    import sys

    code = (
        "import sys, napari_masked_denoise, napari_masked_denoise.cli as c; "
        "c.build_parser(); "
        "bad = [m for m in ('torch', 'zarr', 'dask', 'napari', 'qtpy', 'PyQt5', 'magicgui') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
