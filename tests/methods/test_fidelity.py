"""Fidelity: intensities kept, clean and weakly noisy images not made worse.

The battery (small, generated here): a 128 x 128 crop of scikit-image's camera, clean,
with Gaussian noise of sigma 5/255, with Poisson noise at 1000 photons, and a flat
two-level background with noise of 10/255. Checked for the default preset of every
method but BM3D (an optional package the test environment lacks) and zero-shot filling
(minutes on this battery); `benchmarks/fidelity.py` measures those too.
"""

import numpy as np
import pytest

from napari_masked_denoise import denoise


def _battery():
    from skimage import data

    cam = data.camera()[96:224, 160:288].astype(np.float64) / 255
    rng = np.random.default_rng(0)
    flat = np.full((128, 128), 0.3)
    flat[:, 64:] = 0.6
    return {
        "clean": (cam, cam),
        "g5": (cam, cam + rng.normal(0, 5 / 255, cam.shape)),
        "poisson1000": (cam, rng.poisson(cam * 1000) / 1000),
        "flat": (flat, flat + rng.normal(0, 10 / 255, flat.shape)),
    }


def _psnr(clean, img):
    return 10 * np.log10(1.0 / np.mean((np.clip(img, 0, 1) - clean) ** 2))


def _blocks(a):
    return a.reshape(4, 32, 4, 32).mean(axis=(1, 3))


@pytest.mark.parametrize("method", ["identity", "tv", "nlm", "wavelet", "meta-tta", "ttt-mim"])
def test_default_preset_keeps_intensities_and_clean_images(method):
    for case, (clean, noisy) in _battery().items():
        out = denoise(noisy.astype(np.float32), method=method, axes="YX").denoised.astype(
            np.float64
        )
        span = clean.max() - clean.min()
        assert abs(out.mean() - clean.mean()) <= 0.005 * span, (method, case, "mean")
        assert np.sqrt(np.mean((_blocks(out) - _blocks(clean)) ** 2)) <= 0.01 * span, (method, case)
        if case == "clean":
            assert _psnr(clean, out) >= 40.0, (method, _psnr(clean, out))
        elif case in ("g5", "poisson1000"):
            assert _psnr(clean, out) >= _psnr(clean, noisy) - 0.05, (method, case)
        elif method != "identity":  # a flat background comes out flat
            assert out[:, 8:56].std() < 0.5 * noisy[:, 8:56].std(), (method, "flat")


def test_the_finest_details_raise_the_models_level_by_at_most_the_cap():
    # a fine texture reads as noise to the finest details' level; the model knows better
    import torch

    from napari_masked_denoise.methods import get_method
    from napari_masked_denoise.methods.classical import FLOOR_CAP
    from napari_masked_denoise.noise.estimate import estimate_noise
    from napari_masked_denoise.noise.levels import wavelet_sigma

    model = estimate_noise(0.5 + np.random.default_rng(2).normal(0, 0.01, (256, 256)))
    xx = np.arange(128)
    texture = 0.5 + 0.1 * np.sin(2.5 * xx)[None] * np.sin(2.2 * xx)[:, None]
    plane = texture + np.random.default_rng(0).normal(0, 0.01, (128, 128))
    assert not model.correlated and wavelet_sigma(plane[None]) > 2 * FLOOR_CAP * model.level
    wav = get_method("wavelet")(
        preset="default", mode="per-tile", device=torch.device("cpu"), noise=model
    )
    assert wav._level(plane[None]) == pytest.approx(FLOOR_CAP * model.level)
    quiet = 0.5 + np.random.default_rng(1).normal(0, 0.013, (128, 128))  # a third more noise
    assert wav._level(quiet[None]) == pytest.approx(wavelet_sigma(quiet[None]), rel=1e-6)


@pytest.mark.parametrize("method", ["meta-tta", "ttt-mim", "masked-transformer"])
def test_per_tile_blend_weights_are_an_adaptation_so_tiles_overlap(method):
    """Each tile's blend weight is its own in per-tile mode: exact, non-overlapping tiles
    would show seams where neighbouring weights differ (once mode: one weight, exact)."""
    from napari_masked_denoise.methods import get_method

    cls = get_method(method)
    opts = cls.merged_options("no-adapt" if "no-adapt" in cls.presets else "fast")
    assert cls.adapts_per_tile(opts)
    assert not cls.exact_tiling(opts, "per-tile") and cls.exact_tiling(opts, "once")
