import numpy as np
import pytest
import torch

from napari_masked_denoise.core.masks import Coords
from napari_masked_denoise.methods import get_method
from napari_masked_denoise.methods.zero_shot import receptive_radius


def _method(**kw):
    kw.setdefault("preset", "fast")
    kw.setdefault("mode", "per-tile")
    return get_method("zero-shot")(device=torch.device("cpu"), seed=0, **kw)


def test_per_tile_filling_clearly_reduces_the_error(camera_noisy, psnr):
    clean, noisy = camera_noisy
    out = _method(iterations=100).denoise(noisy[None], Coords([0]))[0]
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert psnr(clean, out) > psnr(clean, noisy) + 2.0


def test_once_mode_adapts_then_fills(camera_noisy, psnr):
    clean, noisy = camera_noisy
    m = _method(mode="once", iterations=100)
    steps = list(m.adapt(noisy[None], Coords([0])))
    assert steps[-1] == (100, 100)
    out = m.denoise(noisy[None], Coords([0]))[0]
    assert psnr(clean, out) > psnr(clean, noisy) + 1.5


def test_pixel_shuffle_denoises_correlated_noise_at_odd_sizes(camera_noisy, psnr):
    clean, _ = camera_noisy
    rng = np.random.default_rng(1)
    noise = np.kron(rng.normal(0, 0.1, (64, 64)), np.ones((2, 2))).astype(np.float32)
    noisy = (clean + noise)[None, :125, :99]  # noise shared by 2x2 blocks; odd sizes
    ref = clean[:125, :99]
    shuffled = _method(iterations=80, pixel_shuffle=2).denoise(noisy, Coords([0]))[0]
    assert shuffled.shape == (125, 99)
    assert psnr(ref, shuffled) > psnr(ref, noisy[0]) + 1.0


def test_same_seed_same_result_and_masks_follow_coordinates():
    x = np.random.default_rng(0).random((1, 64, 64)).astype(np.float32)
    a = _method(iterations=3).denoise(x, Coords([0]))
    b = _method(iterations=3).denoise(x, Coords([0]))
    c = _method(iterations=3).denoise(x, Coords([7]))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_receptive_radius_bounds_the_influence():
    r = receptive_radius((16, 32, 64))
    assert 8 < r < 64
    torch.manual_seed(0)
    from napari_masked_denoise.nets.unet import UNet

    net = UNet(2, 1, (16, 32, 64))
    x = torch.rand(1, 2, 128, 128)
    y0 = net(x)[0, 0, 64, 64]
    x2 = x.clone()
    x2[..., :, : 64 - r - 1] = 5.0  # change everything beyond the radius
    x2[..., :, 64 + r + 1 :] = 5.0
    assert torch.allclose(net(x2)[0, 0, 64, 64], y0, atol=1e-6)


@pytest.mark.parametrize("bad", [{"mask_ratio": 1.2}, {"pixel_shuffle": 3}, {"iterations": 0}])
def test_bad_options(bad):
    with pytest.raises(ValueError):
        _method(**bad)


def test_unknown_preset_and_option():
    with pytest.raises(ValueError, match="unknown preset"):
        _method(preset="nope")
    with pytest.raises(ValueError, match="unknown option"):
        _method(colour=3)


def test_shipped_weights_have_a_verified_manifest():
    from napari_masked_denoise.weights import available, load_state

    assert {"zero-shot-synthetic", "zero-shot-real"} <= set(available())
    for name in ("zero-shot-synthetic", "zero-shot-real"):
        state, entry = load_state(name)  # checks the sha256
        for key in ("command", "data", "iterations", "final_validation", "sha256"):
            assert entry[key], key
        assert isinstance(entry["seed"], int)
        assert not any("Set12" in d or "BSD68" in d for d in entry["data"])


def test_presets_pick_the_matching_checkpoint():
    assert _method(preset="fast").weights_info["file"] == "zero-shot-synthetic.pt"
    assert _method(preset="real-quality").weights_info["file"] == "zero-shot-real.pt"
    assert _method(preset="fast", weights="none").weights_info == {}


def test_pretrained_weights_beat_random_initialisation_at_equal_iterations(camera_noisy, psnr):
    clean, noisy = camera_noisy  # the cameraman is not in the training data
    pre = _method(iterations=50).denoise(noisy[None], Coords([0]))[0]
    rnd = _method(iterations=50, weights="none").denoise(noisy[None], Coords([0]))[0]
    assert psnr(clean, pre) > psnr(clean, rnd) + 1.0


def test_holdout_stopping_lands_near_the_best_iteration(camera_noisy, psnr):
    """The held-out loss tracks the true error along the iterations: the iteration it stops
    at is within 0.5 dB of the best one (it never sees the clean image)."""
    clean, noisy = camera_noisy
    noisy = noisy + np.random.default_rng(5).normal(0, 0.05, noisy.shape).astype(np.float32)
    m = _method(preset="stop", iterations=240, patience=240)
    x, c, info = m._to_net_space(noisy[None], Coords([0]))
    from napari_masked_denoise.core.masks import uniform
    from napari_masked_denoise.noise.holdout import HOLDOUT_DRAW

    held = (uniform(0, HOLDOUT_DRAW, c, x.shape[-2:]) < 0.03).float()
    m.net.load_state_dict(m._init_state)
    true = {}
    for t, _, ema in m._iterate(x, c, keep_ema=True, held=held):
        if t % 5 == 0:
            true[t] = psnr(clean, m._from_net_space(ema, info)[0])
    res = m.process(noisy[None], Coords([0]))
    out, t_stop = res.denoised[0], res.report["stopped_at"][0]
    assert psnr(clean, out) == pytest.approx(true[t_stop], abs=1e-4)
    assert true[t_stop] > max(true.values()) - 0.5
    assert max(true, key=true.get) < 240  # the trajectory has a peak: stopping matters here
