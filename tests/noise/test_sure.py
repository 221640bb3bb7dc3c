"""Stein's unbiased risk estimate (SURE) and what auto does with it."""

import numpy as np
import pytest

from napari_masked_denoise import denoise
from napari_masked_denoise.noise.sure import divergence, impulse_share, noise_level, probe, risk


def _smooth_image(n=128):
    yy, xx = np.mgrid[0:n, 0:n] / n
    return (0.2 + 0.6 * xx + 0.1 * np.sin(6 * yy)).astype(np.float32)


def _sure(f, y, b, noise_var, eps=0.01):
    fy = f(y)
    return fy, risk(y, fy, noise_var, divergence(fy, f(y + eps * b), b, eps))


def test_sure_estimates_the_true_error_of_a_linear_filter(camera_noisy):
    """With the true noise variance, SURE of a Gaussian filter is its
    true error (within the Monte-Carlo and sampling error), weak and strong smoothing alike."""
    from scipy.ndimage import gaussian_filter

    clean, noisy = camera_noisy
    y = noisy[None].astype(np.float64)
    b = probe(np.full(y.shape, 0.1**2), seed=0)
    for s in (0.5, 1.0, 2.0):
        fy, est = _sure(lambda a, s=s: gaussian_filter(a, (0, s, s)), y, b, 0.1**2)
        true = float(np.mean((fy[0] - clean) ** 2))
        assert abs(est - true) < 0.15 * true, (s, est, true)


def test_noise_level_follows_poisson_gaussian_variance():
    """Photon-counting noise: the variance grows with the intensity, and the fitted
    noise-level function follows it."""
    x = _smooth_image()
    rng = np.random.default_rng(0)
    y = (rng.poisson(x * 50) / 50 + rng.normal(0, 0.02, x.shape)).astype(np.float32)
    v = noise_level(y[None])[0]
    true = x / 50 + 0.02**2
    dark, bright = x < 0.35, x > 0.65
    for region in (dark, bright):
        assert abs(v[region].mean() / true[region].mean() - 1) < 0.2
    assert v[bright].mean() > 1.5 * v[dark].mean()


def test_impulse_share_separates_salt_and_pepper_from_gaussian_noise(camera_noisy):
    from skimage.util import random_noise

    clean, noisy = camera_noisy
    sp = random_noise(clean, mode="s&p", amount=0.05, rng=0).astype(np.float32)
    assert impulse_share(noisy[None]) < 0.01 < impulse_share(sp[None])


def test_auto_with_sure_picks_the_best_candidate_and_estimates_its_gain(camera_noisy, psnr):
    """Gaussian noise: with ``score=sure`` auto picks the truly best of its candidates (its
    error estimate is unbiased there), and the estimated gain is within 2 dB of the truth
    (it moves one for one with the estimated noise variance)."""
    clean, noisy = camera_noisy
    cands = "wavelet,tv:fixed,nlm"
    r = denoise(noisy, axes="YX", candidates=cands, score="sure")
    rep = r.info["method_report"]
    assert rep["score"] == "sure" and rep["impulse_share"] < 0.01
    true = {
        s: psnr(
            clean,
            denoise(noisy, method=s.split(":")[0], preset=s.split(":")[1], axes="YX").denoised,
        )
        for s in rep["scores"]
    }
    assert true[rep["choice"]] == max(true.values())
    true_gain = psnr(clean, r.denoised) - psnr(clean, noisy)
    assert abs(rep["estimated_gain_db"] - true_gain) < 2.0


def test_auto_sure_falls_back_to_held_out_pixels_on_impulse_noise(camera_noisy):
    from skimage.util import random_noise

    clean, noisy = camera_noisy
    sp = random_noise(clean, mode="s&p", amount=0.05, rng=0).astype(np.float32)
    for score in ("sure", "model"):  # neither form of Stein's estimate holds for impulses
        rep = denoise(sp, axes="YX", candidates="wavelet,tv:fixed", score=score).info[
            "method_report"
        ]
        # (this image's impulses pile up at 0 and 1: too clipped for a noise model at all)
        why = ("impulse",) if score == "sure" else ("impulse", "no noise model")
        assert rep["score"] == "held-out" and any(w in rep["score_reason"] for w in why)
    rep = denoise(noisy, axes="YX", candidates="wavelet,tv:fixed").info["method_report"]
    assert rep["score"] == "model" and "score_reason" not in rep  # the default


def test_auto_rejects_an_unknown_score():
    from napari_masked_denoise import DenoiseError

    with pytest.raises(DenoiseError, match="score must be"):
        denoise(np.zeros((32, 32), np.float32), axes="YX", score="psnr")
