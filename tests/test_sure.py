"""Stein's unbiased risk estimate (SURE) and what auto does with it."""

import numpy as np
import pytest

from napari_masked_denoise import denoise
from napari_masked_denoise.sure import divergence, impulse_share, noise_level, perturbation, risk


def _smooth_image(n=128):
    yy, xx = np.mgrid[0:n, 0:n] / n
    return (0.2 + 0.6 * xx + 0.1 * np.sin(6 * yy)).astype(np.float32)


def test_sure_estimates_the_true_error_of_a_linear_filter(camera_noisy):
    """With the true noise variance, SURE of a Gaussian filter is its true error (within
    the Monte-Carlo and sampling error), for weak and strong smoothing alike."""
    from scipy.ndimage import gaussian_filter

    clean, noisy = camera_noisy
    y = noisy[None].astype(np.float64)
    v = np.full(y.shape, 0.1 ** 2)
    b = perturbation(y.shape, 0)
    eps = 0.001
    for s in (0.5, 1.0, 2.0):
        def f(a):
            return gaussian_filter(a, (0, s, s))
        fy = f(y)
        est = risk(y, fy, v, divergence(fy, f(y + eps * b), b, eps, v))
        true = float(np.mean((fy[0] - clean) ** 2))
        assert abs(est - true) < 0.15 * true, (s, est, true)


def test_noise_level_follows_poisson_gaussian_variance():
    """Photon-counting noise: the variance grows with the intensity, and the fitted
    noise-level function follows it."""
    x = _smooth_image()
    rng = np.random.default_rng(0)
    y = (rng.poisson(x * 50) / 50 + rng.normal(0, 0.02, x.shape)).astype(np.float32)
    v = noise_level(y[None])[0]
    true = x / 50 + 0.02 ** 2
    dark, bright = x < 0.35, x > 0.65
    for region in (dark, bright):
        assert abs(v[region].mean() / true[region].mean() - 1) < 0.2
    assert v[bright].mean() > 1.5 * v[dark].mean()


def test_impulse_share_separates_salt_and_pepper_from_gaussian_noise(camera_noisy):
    from skimage.util import random_noise

    clean, noisy = camera_noisy
    sp = random_noise(clean, mode="s&p", amount=0.05, rng=0).astype(np.float32)
    assert impulse_share(noisy[None]) < 0.01 < impulse_share(sp[None])


def test_auto_scores_by_sure_and_falls_back_to_held_out_pixels_on_impulse_noise(camera_noisy):
    from skimage.util import random_noise

    clean, noisy = camera_noisy
    r = denoise(noisy, axes="YX", candidates="wavelet,tv:fixed")
    assert r.info["method_report"]["score"] == "sure"
    sp = random_noise(clean, mode="s&p", amount=0.05, rng=0).astype(np.float32)
    rep = denoise(sp, axes="YX", candidates="wavelet,tv:fixed").info["method_report"]
    assert rep["score"] == "held-out" and "impulse" in rep["score_reason"]
    rep = denoise(noisy, axes="YX", candidates="wavelet,tv:fixed", score="held-out").info["method_report"]
    assert rep["score"] == "held-out"


def test_auto_rejects_an_unknown_score():
    from napari_masked_denoise import DenoiseError

    with pytest.raises(DenoiseError, match="score must be"):
        denoise(np.zeros((32, 32), np.float32), axes="YX", score="psnr")
