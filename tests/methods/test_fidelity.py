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
