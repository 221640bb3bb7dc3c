"""Held-out pixels, the classical methods, and ``auto`` choosing between candidates."""

import numpy as np
import pytest
import zarr

from napari_masked_denoise import DenoiseError, denoise, denoise_to_zarr
from napari_masked_denoise.core.masks import Coords
from napari_masked_denoise.noise.holdout import (
    Estimate,
    hide,
    holdout_loss,
    holdout_mask,
    noise_variance,
)
from napari_masked_denoise.noise.model import NoiseModel

CHEAP = "wavelet,tv:fixed,nlm"


@pytest.mark.parametrize("radius", [0, 1, 2])
def test_holdout_mask_is_sparse_off_the_border_and_tiling_invariant(radius):
    m = holdout_mask((2, 200, 200), seed=3, frac=0.03, radius=radius)
    share = m.mean() * (2 * radius + 1)
    assert 0.012 < share < 0.031
    b = radius + 1
    assert (
        not m[:, :b].any()
        and not m[:, -b:].any()
        and not m[:, :, :b].any()
        and not m[:, :, -b:].any()
    )
    if radius:  # blocks never touch: no other centre within 2 * radius (Chebyshev)
        n, ys, xs = np.nonzero(m)
        for k in range(0, len(ys), 7):
            same = (n == n[k]) & (np.maximum(abs(ys - ys[k]), abs(xs - xs[k])) <= 2 * radius)
            assert same.sum() == 1
    else:  # a crop sees the same pixels as the whole image (positions are hashed)
        crop = holdout_mask((1, 80, 90), Coords([1], 50, 60), seed=3, frac=0.03)
        np.testing.assert_array_equal(crop[0, 1:-1, 1:-1], m[1, 51:129, 61:149])


@pytest.mark.parametrize("radius", [0, 2])
def test_hidden_input_never_depends_on_the_held_out_values(radius):
    rng = np.random.default_rng(0)
    y = rng.random((1, 64, 64)).astype(np.float32)
    keep = y.copy()
    m = holdout_mask(y.shape, frac=0.05, radius=radius)
    a = hide(y, m, radius)
    np.testing.assert_array_equal(y, keep)  # the input is not modified
    from scipy.ndimage import binary_dilation

    block = binary_dilation(m, np.ones((1, 2 * radius + 1, 2 * radius + 1), bool))
    y2 = y.copy()
    y2[block] = rng.random(int(block.sum()))
    np.testing.assert_array_equal(hide(y2, m, radius), a)
    assert np.array_equal(a[~block], y[~block]) and not np.allclose(a[block], y[block])


def test_holdout_loss_estimates_the_error_plus_the_noise_variance(camera_noisy):
    from scipy.ndimage import gaussian_filter

    clean, noisy = camera_noisy
    y, x = noisy[None], clean[None]
    m = holdout_mask(y.shape, frac=0.2)  # many pixels: a tight estimate for a test
    out = np.stack([gaussian_filter(p, 1.0) for p in hide(y, m)])
    loss = holdout_loss(out, y, m)
    true_mse = float(np.mean((out - x)[m] ** 2))
    assert abs((loss - 0.01) - true_mse) < 0.25 * true_mse
    est = Estimate(loss, noise_variance(y))
    assert abs(np.sqrt(est.noise_var) - 0.1) < 0.015
    assert abs(est.mse - true_mse) < 0.5 * true_mse and np.isfinite(est.gain_db)


@pytest.mark.parametrize(
    "method,preset",
    [
        ("tv", "fixed"),
        ("tv", "calibrated"),
        ("nlm", None),
        ("wavelet", None),
        ("bm3d", None),
        ("bm3d", "fast"),
    ],
)
def test_classical_methods_denoise(camera_noisy, psnr, method, preset):
    if method == "bm3d":
        pytest.importorskip("bm3d")
    clean, noisy = camera_noisy
    r = denoise(noisy, method=method, preset=preset, axes="YX")
    assert r.denoised.dtype == np.float32 and r.denoised.shape == noisy.shape
    assert psnr(clean, r.denoised) > psnr(clean, noisy) + 4.0


def test_bm3d_without_its_package_is_a_one_line_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bm3d", None)
    with pytest.raises(DenoiseError, match="pip install bm3d") as err:
        denoise(np.zeros((32, 32), np.float32), method="bm3d", axes="YX")
    assert "\n" not in str(err.value)


def test_nlm_tiled_equals_untiled_in_once_mode():
    vol = np.random.default_rng(1).random((2, 90, 100)).astype(np.float32)
    a = denoise(vol, method="nlm", axes="ZYX", mode="once", tile=512).denoised
    b = denoise(vol, method="nlm", axes="ZYX", mode="once", tile=32).denoised
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_auto_picks_a_near_best_candidate_and_reports_its_estimate(camera_noisy, psnr):
    clean, noisy = camera_noisy
    r = denoise(noisy, axes="YX", candidates=CHEAP)
    rep = r.info["method_report"]
    assert r.method == "auto" and rep["choice"] in rep["scores"]
    assert rep["choice"] == min(rep["scores"], key=lambda k: rep["scores"][k]["loss"])
    true = {}
    for spec in rep["scores"]:
        name, _, preset = spec.partition(":")
        true[spec] = psnr(clean, denoise(noisy, method=name, preset=preset, axes="YX").denoised)
    assert true[rep["choice"]] > max(true.values()) - 0.5
    np.testing.assert_allclose(
        r.denoised,
        denoise(
            noisy, method=rep["choice"].split(":")[0], preset=rep["choice"].split(":")[1], axes="YX"
        ).denoised,
    )
    # Stein's risk under the noise model estimates the output's own error
    assert rep["score"] == "model"
    true_gain = psnr(clean, r.denoised) - psnr(clean, noisy)
    assert abs(rep["estimated_gain_db"] - true_gain) < 1.0, (rep["estimated_gain_db"], true_gain)
    # held-out pixels, on request: a conservative gain (the chosen method never saw them)
    h = denoise(noisy, axes="YX", candidates=CHEAP, score="held-out").info["method_report"]
    assert h["score"] == "held-out" and h["estimated_gain_db"] < true_gain + 0.5


def test_auto_keeps_the_input_when_no_candidate_is_estimated_better(camera_noisy, psnr):
    from napari_masked_denoise.report import describe_report

    clean, _ = camera_noisy
    weak = clean + np.random.default_rng(1).normal(0, 2 / 255, clean.shape).astype(np.float32)
    for img in (clean, weak):
        r = denoise(img, axes="YX", candidates="identity,tv:fixed,wavelet")
        rep = r.info["method_report"]
        # the identity's estimated error is the model's noise variance (up to the probe)
        model = NoiseModel.from_dict(r.info["noise_model"])
        var = float(np.mean(model.sigma(img) ** 2))
        span = r.info["intensity_range"][1] - r.info["intensity_range"][0]
        np.testing.assert_allclose(
            rep["scores"]["identity:default"]["loss"] * span**2, var, rtol=0.1
        )
        assert psnr(clean, r.denoised) >= min(40.0, psnr(clean, img) - 0.05)
        if rep["choice"] == "identity:default":
            np.testing.assert_allclose(r.denoised, img, atol=1e-6)
            assert any("kept     the input" in line for line in describe_report(rep))


def test_auto_on_a_volume_chooses_once_and_resumes_with_its_choice(tmp_path):
    vol = np.random.default_rng(2).normal(0.5, 0.1, (3, 64, 64)).astype(np.float32)
    out = tmp_path / "o.zarr"
    gen_res = denoise_to_zarr(vol, out, axes="ZYX", candidates="wavelet,tv:fixed", tile=32)
    rep = gen_res.info["method_report"]
    assert gen_res.mode == "once" and set(rep["scores"]) == {"wavelet:default", "tv:fixed"}
    meta = zarr.open_group(str(out), mode="r").attrs["napari_masked_denoise"]
    assert meta["method_report"]["choice"] == rep["choice"]

    # an interrupted run finishes with the choice it made, without scoring again
    from napari_masked_denoise.engine import denoise_iter

    gen = denoise_iter(
        vol, tmp_path / "p.zarr", axes="ZYX", tile=32, options={"candidates": "wavelet,tv:fixed"}
    )
    for p in gen:
        if p.stage == "tiles" and p.done == 2:
            break
    gen.close()
    res = denoise_to_zarr(
        vol, tmp_path / "p.zarr", axes="ZYX", candidates="wavelet,tv:fixed", tile=32, resume=True
    )
    np.testing.assert_allclose(res.denoised[...], gen_res.denoised[...], atol=1e-6)
    assert res.info["method_report"]["choice"] == rep["choice"]


def test_auto_time_budget_and_bad_candidates():
    img = np.random.default_rng(3).random((48, 48)).astype(np.float32)
    r = denoise(img, axes="YX", candidates="wavelet,tv:calibrated", budget=1e-9)
    assert r.info["method_report"]["scores"]["tv:calibrated"]["skipped"] == "time budget"
    for cands, match in [
        ("magic", "unknown method"),
        ("tv:slow", "unknown preset"),
        ("", "at least one"),
        ("auto", "its own candidate"),
        ("nlm@strong", "strength after '@' must be a number"),
        ("nlm@0", "strength"),
    ]:
        with pytest.raises(DenoiseError, match=match):
            denoise(img, axes="YX", candidates=cands)


def test_cli_summary_says_what_auto_chose(tmp_path, capsys):
    from skimage import io

    from napari_masked_denoise.cli import main

    img = (np.random.default_rng(4).random((64, 64)) * 255).astype(np.uint8)
    io.imsave(tmp_path / "a.png", img, check_contrast=False)
    assert (
        main(
            [
                "run",
                str(tmp_path / "a.png"),
                str(tmp_path / "o.zarr"),
                "-q",
                "-o",
                f"candidates={CHEAP}",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "method   auto / fast" in text and "chose    " in text and "est. rms error" in text


def test_overlapping_sample_crops_hold_out_the_same_pixels():
    """A pixel held out in one crop is held out in every crop that contains it: otherwise a
    candidate that learns from the whole sample (zero-shot filling) trains on it."""
    import torch

    from napari_masked_denoise.methods import get_method

    auto = get_method("auto")(
        preset="fast", mode="per-tile", device=torch.device("cpu"), seed=0, candidates="wavelet"
    )
    m = auto._holdout(
        np.zeros((2, 64, 64), np.float32), Coords([11, 12], origins=[(0, 0, 0), (0, 10, 20)])
    )
    assert m.any()
    np.testing.assert_array_equal(m[0, 11:-1, 21:-1], m[1, 1:-11, 1:-21])


def test_noise_variance_from_a_denoised_estimate_counts_impulse_noise(camera_noisy):
    from skimage.util import random_noise

    clean, _ = camera_noisy
    sp = random_noise(clean, mode="s&p", amount=0.05, rng=0).astype(np.float32)
    true = float(np.mean((sp - clean) ** 2))
    assert noise_variance(sp[None]) < 0.3 * true  # the robust estimate ignores impulses
    from scipy.ndimage import median_filter

    est = noise_variance(sp[None], median_filter(sp, 3)[None])
    assert 0.7 * true < est < 1.3 * true


def test_auto_warns_when_the_noise_looks_spatially_correlated(camera_noisy):
    from scipy.ndimage import gaussian_filter

    from napari_masked_denoise.noise.levels import CORRELATED, correlation_ratio
    from napari_masked_denoise.report import describe_report

    clean, noisy = camera_noisy
    n = gaussian_filter(np.random.default_rng(1).normal(0, 1, clean.shape), 1.0)
    corr = (clean + 0.1 * n / n.std()).astype(np.float32)
    assert correlation_ratio(noisy) < CORRELATED < correlation_ratio(corr)
    from skimage.util import random_noise

    sp = random_noise(clean, mode="s&p", amount=0.05, rng=0).astype(np.float32)

    def warned(img, score):
        r = denoise(img, axes="YX", candidates="wavelet,tv:fixed", score=score)
        lines = describe_report(r.info["method_report"], r.info["intensity_range"])
        return any(
            line.startswith("warning  the noise looks spatially correlated") for line in lines
        )

    # held-out pixels assume independent noise: they warn (impulses are not correlation)
    assert [warned(img, "held-out") for img in (noisy, corr, sp)] == [False, True, False]
    assert not warned(corr, "model")  # the risk under the noise model knows the correlation


def test_reports_say_in_plain_words_when_auto_kept_the_input():
    from types import SimpleNamespace

    from napari_masked_denoise.report import choice_text, describe_report

    rep = {
        "choice": "identity:default",
        "score": "model",
        "scores": {
            "identity:default": {"loss": 1e-4, "seconds": 0.0},
            "tv:fixed": {"loss": 2e-4, "seconds": 0.1},
        },
        "estimated_mse": 1e-4,
        "estimated_gain_db": 0.0,
        "noise_sigma": 0.01,
    }
    assert any(line.startswith("kept     the input unchanged") for line in describe_report(rep))
    text = choice_text(SimpleNamespace(info={"method_report": rep}))
    assert text.startswith("auto kept the input")
    rep["choice"] = "tv:fixed"
    assert not any(line.startswith("kept") for line in describe_report(rep))
    assert choice_text(SimpleNamespace(info={"method_report": rep})).startswith(
        "auto chose total variation (tv:fixed)"
    )


def test_an_output_estimated_worse_than_the_input_is_not_applied(camera_noisy):
    # held-out pixels can rank a candidate first whose estimated gain is below 0 (the
    # clean crop): auto then keeps the input, whatever the score
    clean, _ = camera_noisy
    r = denoise(clean, axes="YX", candidates="identity,wavelet,tv:fixed", score="held-out")
    rep = r.info["method_report"]
    assert rep["choice"] == "identity:default" and "estimated at -" in rep["kept_reason"]
    assert rep["estimated_gain_db"] == 0.0
    np.testing.assert_allclose(r.denoised, clean, atol=1e-6)


def test_a_strength_sweep_scales_the_level_and_is_scored_as_its_own_candidate(camera_noisy):
    clean, noisy = camera_noisy
    mild, strong = (
        denoise(noisy, method="wavelet", axes="YX", strength=s).denoised for s in (0.5, 2.0)
    )
    base = denoise(noisy, method="wavelet", axes="YX").denoised
    # a lower level leaves more of the input, a higher one smooths more
    rough = [float(np.mean(np.abs(np.diff(x, axis=1)))) for x in (mild, base, strong)]
    assert rough[0] > rough[1] > rough[2]
    r = denoise(noisy, axes="YX", candidates="wavelet,wavelet@0.5,wavelet@2").info
    scores = r["method_report"]["scores"]
    assert set(scores) == {"wavelet:default", "wavelet:default@0.5", "wavelet:default@2"}
    assert r["method_report"]["choice"] == min(scores, key=lambda k: scores[k]["loss"])


def test_an_estimated_gain_beyond_what_the_estimate_supports_is_said_as_a_bound():
    from napari_masked_denoise.report import GAIN_TRUSTED_DB, gain_text

    assert gain_text(6.24) == "+6.2 dB" and gain_text(-1.0) == "-1.0 dB"
    assert gain_text(GAIN_TRUSTED_DB + 5) == f"over +{GAIN_TRUSTED_DB:.0f} dB"
