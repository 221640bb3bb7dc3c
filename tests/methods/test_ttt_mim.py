"""TTT-MIM: patch masks, the two-headed network, joint pre-training and test-time training."""

import json

import numpy as np
import pytest
import torch

from napari_masked_denoise.core.axes import DenoiseError
from napari_masked_denoise.core.masks import Coords, patch_mask
from napari_masked_denoise.engine.store import output_array
from napari_masked_denoise.methods import get_method
from napari_masked_denoise.nets.mim import MIMNet

CPU = torch.device("cpu")


def _method(**kw):
    kw.setdefault("preset", "fast")
    kw.setdefault("mode", "per-tile")
    return get_method("ttt-mim")(device=CPU, seed=0, **kw)


def test_patch_masks_are_patches_on_the_global_grid():
    whole = patch_mask(3, 0, Coords([5]), (64, 80), 4, 0.4)
    tile = patch_mask(3, 0, Coords([5], 13, 22), (30, 41), 4, 0.4)
    np.testing.assert_array_equal(tile[0, 0], whole[0, 0, 13:43, 22:63])
    blocks = whole[0, 0].reshape(16, 4, 20, 4)
    assert (blocks.amin((1, 3)) == blocks.amax((1, 3))).all()  # constant on every 4x4 patch
    assert 0.3 < float(whole.mean()) < 0.5
    other = patch_mask(3, 0, Coords([6]), (64, 80), 4, 0.4)
    assert not torch.equal(other, whole)  # every plane has its own mask


def test_mask_token_replaces_masked_features_only():
    torch.manual_seed(0)
    net = MIMNet((8, 16))
    for head in (net.main, net.recon):  # the heads start at zero; make them say something
        torch.nn.init.normal_(head[-1].weight, std=0.1)
    x = torch.rand(1, 1, 32, 32)
    m = torch.zeros(1, 1, 32, 32)
    assert torch.allclose(net.reconstruct(x, m), net.recon(net._features(x, None)))
    m[..., 8:16, 8:16] = 1
    x2 = x.clone()
    x2[..., 8:16, 8:16] = 7.0  # the masked pixels' values must not matter
    assert torch.allclose(net.reconstruct(x, m), net.reconstruct(x2, m), atol=1e-6)
    assert torch.allclose(net.denoise(x), x - net.noise(x))


def test_joint_pretraining_learns_to_denoise_and_writes_a_manifest(image_folder, tmp_path):
    from napari_masked_denoise.training.data import training_images, val_set
    from napari_masked_denoise.training.ttt_mim import (
        TTTMIMConfig,
        _validate_ttt_mim,
        train_ttt_mim,
    )
    from napari_masked_denoise.weights import load_state

    cfg = TTTMIMConfig(
        data=(str(image_folder),),
        output=str(tmp_path / "t.pt"),
        iterations=200,
        batch=4,
        crop=64,
        val_every=100,
        skimage=False,
        seed=1,
        lr=3e-3,
        clip=0.0,
        weight_decay=1e-4,
        mask_ratio=(0.6, 0.6),
        patch=7,
        widths=(8, 16),
        log=str(tmp_path / "log.jsonl"),
    )
    entry = train_ttt_mim(cfg, progress=lambda s: None)
    assert [
        json.loads(r)["iteration"] for r in (tmp_path / "log.jsonl").read_text().splitlines()
    ] == [100, 200]
    _, val, _ = training_images([image_folder], skimage=False)
    vc, _, _ = val_set(val, 64, 20, 1)
    torch.manual_seed(1)
    before = _validate_ttt_mim(MIMNet((8, 16)), vc, cfg.noise_var, cfg.seed)["val_denoise_psnr"]
    state, loaded = load_state(cfg.output)
    assert (
        loaded == entry
        and entry["method"] == "ttt-mim"
        and entry["architecture"]["widths"] == [8, 16]
    )
    net = MIMNet((8, 16))
    net.load_state_dict(state)
    after = _validate_ttt_mim(net, vc, cfg.noise_var, cfg.seed)["val_denoise_psnr"]
    assert after > before + 2.5
    m = _method(weights=cfg.output)  # a weights file by path; the widths come from its manifest
    assert m.widths == (8, 16)


def test_shipped_weights_and_presets():
    from napari_masked_denoise.weights import load_state

    _, entry = load_state("ttt-mim")
    assert entry["method"] == "ttt-mim" and isinstance(entry["seed"], int)
    for key in ("command", "data", "iterations", "final_validation", "sha256"):
        assert entry[key], key
    assert not any("Set12" in d or "BSD68" in d for d in entry["data"])
    assert _method(preset="no-adapt").options["steps"] == 0
    assert _method(preset="volume").widths == (8, 16, 32) and _method().widths == (16, 32, 64)
    assert _method(preset="safe").options["consistency"] == 0
    with pytest.raises(DenoiseError, match="zero-shot"):
        _method(weights="zero-shot-synthetic")


def test_pretrained_network_denoises_its_training_noise(camera_noisy, psnr):
    clean, _ = camera_noisy  # the cameraman is not in the training data
    noisy = clean + np.random.default_rng(2).normal(0, 0.005**0.5, clean.shape).astype(np.float32)
    out = _method(preset="no-adapt").denoise(noisy[None], Coords([0]))[0]
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert psnr(clean, out) > psnr(clean, noisy) + 4.0


def test_test_time_training_improves_on_shifted_noise(camera_noisy, psnr):
    clean, _ = camera_noisy
    noisy = clean + np.random.default_rng(3).normal(0, 50 / 255, clean.shape).astype(
        np.float32
    )  # sigma 50, not 18
    base = psnr(clean, _method(preset="no-adapt").denoise(noisy[None], Coords([0]))[0])
    fast = psnr(clean, _method(preset="fast").denoise(noisy[None], Coords([0]))[0])
    m = _method(preset="quality")
    adapted = m.denoise(noisy[None], Coords([0]))[0]
    assert fast > base + 0.2 and psnr(clean, adapted) > fast + 0.2
    # per-tile mode resets to the pretrained weights before every tile
    again = m.denoise(noisy[None], Coords([0]))[0]
    np.testing.assert_allclose(again, adapted, atol=1e-5)


def test_noise_normalisation_rescales_around_mid_grey(camera_noisy):
    _, noisy = camera_noisy
    m = _method(preset="no-adapt", normalise_noise=True)
    out = m.denoise(noisy[None], Coords([0]))[0]
    assert m.scale != 1.0 and np.isfinite(out).all()
    assert abs(float(out.mean()) - float(noisy.mean())) < 0.02


def test_once_mode_adapts_on_the_sample_then_runs_the_fixed_network(camera_noisy):
    _, noisy = camera_noisy
    m = _method(mode="once", steps=3)
    before = m.denoise(noisy[None], Coords([0]))[0]
    assert list(m.adapt(noisy[None, :64, :64], Coords([0]))) == [(1, 3), (2, 3), (3, 3)]
    after = m.denoise(noisy[None], Coords([0]))[0]
    assert not np.allclose(before, after)
    m2 = _method(mode="once", steps=3)
    m2.load_state_bytes(m.state_bytes())
    np.testing.assert_array_equal(m2.denoise(noisy[None], Coords([0]))[0], after)


def test_tiled_equals_untiled_in_once_mode(camera_noisy):
    from napari_masked_denoise.engine import denoise_iter, run_to_completion

    _, noisy = camera_noisy
    img = np.concatenate([noisy, noisy[:, :72]], axis=1)
    kw = dict(method="ttt-mim", axes="YX", mode="once", options={"steps": 2})
    a = run_to_completion(denoise_iter(img, tile=512, **kw))
    b = run_to_completion(denoise_iter(img, tile=48, **kw))
    assert b.info["tiles"] > a.info["tiles"] == 1
    np.testing.assert_allclose(b.denoised[...], a.denoised[...], atol=1e-4)


def test_halo_covers_the_receptive_field():
    m = _method(weights="none", widths=(8, 16, 32))
    net, r = m.net.float(), m.halo
    assert r >= 20
    torch.manual_seed(0)
    with torch.no_grad():
        torch.nn.init.normal_(net.main[-1].weight, std=0.3)
    x = torch.rand(1, 1, 160, 160)
    y0 = net.denoise(x)[0, 0, 80, 80]
    x2 = x.clone()
    x2[..., :, : 80 - r - 1] = 5.0
    x2[..., :, 80 + r + 1 :] = 5.0
    assert torch.allclose(net.denoise(x2)[0, 0, 80, 80], y0, atol=1e-5)


@pytest.mark.parametrize("bad", [{"mask_ratio": 1.0}, {"steps": -1}, {"patch": 0}, {"lr": 0.0}])
def test_bad_options(bad):
    with pytest.raises(DenoiseError):
        _method(**bad)


def test_cli_runs_ttt_mim_on_a_zarr_volume(noisy_zarr_volume, tmp_path, capsys):
    import zarr

    from napari_masked_denoise.cli import main

    inp, vol = noisy_zarr_volume
    rc = main(
        [
            "run",
            str(inp),
            str(tmp_path / "out.zarr"),
            "--method",
            "ttt-mim",
            "--axes",
            "ZYX",
            "-o",
            "steps=2",
            "-q",
        ]
    )
    assert rc == 0
    g = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert g.attrs["napari_masked_denoise"]["complete"] is True
    assert float(np.std(output_array(g, "denoised")[:])) < float(np.std(vol))
    assert main(["methods"]) == 0
    assert "ttt-mim" in capsys.readouterr().out


def test_plain_adam_matches_torch_adam():
    from napari_masked_denoise.methods._optim import Adam

    torch.manual_seed(0)
    a = torch.nn.Linear(5, 3)
    b = torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    ours, ref = Adam(a.parameters(), lr=1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    x = torch.randn(16, 5)
    for _ in range(10):
        for net, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            (net(x) ** 2).mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0)  # the same operations: bit-identical
    assert not torch.allclose(a.weight, torch.nn.Linear(5, 3).weight)


def test_haar_sigma_estimates_white_noise_on_an_image(camera_noisy):
    from napari_masked_denoise.noise.levels import haar_sigma

    clean, _ = camera_noisy
    for sigma in (0.03, 0.1, 0.3):
        noisy = clean + np.random.default_rng(5).normal(0, sigma, clean.shape)
        assert abs(haar_sigma(noisy) / sigma - 1) < 0.2  # texture inflates it most at low noise
    assert np.isnan(haar_sigma(np.zeros((1, 5))))
