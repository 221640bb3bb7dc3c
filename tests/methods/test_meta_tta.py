"""Meta-TTA: the multi-task and mask networks, the two training stages, head-only adaptation."""

import json

import numpy as np
import pytest
import torch

from napari_masked_denoise.core.axes import DenoiseError
from napari_masked_denoise.core.masks import Coords
from napari_masked_denoise.engine.store import output_array
from napari_masked_denoise.methods import get_method
from napari_masked_denoise.nets.meta import MetaNet, aux_loss, binarised, inner_steps

CPU = torch.device("cpu")


def _method(**kw):
    kw.setdefault("preset", "fast")
    kw.setdefault("mode", "per-tile")
    return get_method("meta-tta")(device=CPU, seed=0, **kw)


def _net(seed=0):
    torch.manual_seed(seed)
    net = MetaNet((8, 8, 16))
    with torch.no_grad():  # the primary head starts at zero: make it say something
        torch.nn.init.normal_(net.primary.net[-1].weight, std=0.1)
    return net


def test_network_shapes_residual_and_auxiliary_input():
    net = _net()
    x = torch.rand(2, 1, 32, 40)
    clean, res, rec = net.heads(net.features(x), x)
    assert clean.shape == res.shape == rec.shape == x.shape
    torch.testing.assert_close(clean, x + res)  # the primary head gives a residual
    torch.testing.assert_close(
        rec, net.aux(clean, res)
    )  # the auxiliary head sees [clean, residual]
    m = net.mask(x)
    assert m.shape == x.shape and float(m.min()) > 0 and float(m.max()) < 1
    assert not any(
        n.endswith("bias") for n, _ in net.named_parameters()
    )  # no biases, as the reference
    assert set(net.head_params()) == {
        n for n, _ in net.named_parameters() if n.startswith(("primary.", "aux."))
    }


def test_inner_steps_change_the_heads_only_and_never_the_module():
    net = _net()
    x = torch.rand(1, 1, 32, 32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    feats = net.features(x).detach()
    m = torch.ones_like(x)
    params = inner_steps(net, feats, x, m, 3)
    assert set(params) == set(net.head_params())
    assert any(not torch.equal(params[k], before[k]) for k in params)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k  # adapted weights live in the returned dict only
    loss = lambda p: float(aux_loss(net.heads(feats, x, p)[2], x, m))  # noqa: E731
    assert loss(params) < loss(None)  # the steps descend the auxiliary loss
    # the mask decides where the loss looks: an all-zero mask gives no step at all
    same = inner_steps(net, feats, x, torch.zeros_like(x), 3)
    assert all(torch.equal(same[k], before[k]) for k in same)


def test_binarised_mask_is_hard_forward_with_a_soft_gradient():
    s = torch.tensor([0.2, 0.6, 0.9], requires_grad=True)
    b = binarised(s)
    assert b.tolist() == [0.0, 1.0, 1.0]
    (b * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert s.grad.tolist() == [1.0, 2.0, 3.0]


def _cfg(image_folder, tmp_path, **kw):
    from napari_masked_denoise.training.meta_tta import MetaTTAConfig

    base = dict(
        data=(str(image_folder),),
        output=str(tmp_path / "s1.pt"),
        iterations=60,
        batch=4,
        crop=64,
        val_every=30,
        skimage=False,
        seed=1,
        lr=3e-3,
        clip=0.0,
        widths=(8, 8, 16),
        val_images=4,
        log=str(tmp_path / "log.jsonl"),
    )
    return MetaTTAConfig(**{**base, **kw})


def test_two_stage_training_writes_manifests_and_trains_every_part(image_folder, tmp_path):
    from napari_masked_denoise.training import train_meta_tta
    from napari_masked_denoise.weights import load_state

    torch.manual_seed(1)
    init = MetaNet((8, 8, 16)).state_dict()
    e1 = train_meta_tta(_cfg(image_folder, tmp_path), progress=lambda s: None)
    rows = [json.loads(r) for r in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [30, 60]
    assert (
        rows[-1]["val_psnr"] > rows[-1]["val_psnr_noisy"]
    )  # it learned to denoise the classic mix
    s1, loaded = load_state(str(tmp_path / "s1.pt"))
    assert loaded == e1 and e1["method"] == "meta-tta" and e1["stage"] == 1
    changed = lambda state, prefix: any(  # noqa: E731
        not torch.equal(state[k], init[k]) for k in state if k.startswith(prefix)
    )
    assert changed(s1, "body.") and changed(s1, "primary.") and changed(s1, "aux.")
    assert changed(s1, "mask.")  # the mask network learned through the virtual step
    assert torch.equal(s1["inner_log_lr"], init["inner_log_lr"])  # step sizes belong to stage 2

    e2 = train_meta_tta(
        _cfg(
            image_folder,
            tmp_path,
            stage=2,
            init=str(tmp_path / "s1.pt"),
            iterations=20,
            val_every=20,
            lr=1e-3,
            output=str(tmp_path / "s2.pt"),
            inner_steps=2,
        ),
        progress=lambda s: None,
    )
    s2, _ = load_state(str(tmp_path / "s2.pt"))
    assert e2["stage"] == 2 and e2["init"]["sha256"] == e1["sha256"]
    assert "val_psnr_adapted" in e2["final_validation"]
    assert changed(s2, "body.") and changed(s2, "mask.")
    assert not torch.equal(
        s2["inner_log_lr"], s1["inner_log_lr"]
    )  # the step sizes are meta-learned
    m = _method(weights=str(tmp_path / "s2.pt"))  # a weights file by path; widths from its manifest
    assert m.widths == (8, 8, 16)


@pytest.mark.parametrize(
    "extra", [{}, {"base_weight": 1.0, "classic_share": 1.0}, {"ct_share": 1.0}]
)
def test_maml_outer_gradient_reaches_body_mask_and_step_sizes(image_folder, tmp_path, extra):
    from napari_masked_denoise.training.meta_tta import _maml_loss

    net = _net()
    cfg = _cfg(image_folder, tmp_path, stage=2, inner_steps=2, **extra)
    x = torch.rand(2, 1, 32, 32) * 0.5 + 0.25
    _maml_loss(net, x, np.random.default_rng(0), cfg).backward()
    for name in (
        "body.inc.0.weight",
        "primary.net.0.weight",
        "aux.net.0.weight",
        "mask.net.0.weight",
        "inner_log_lr",
    ):
        g = dict(net.named_parameters())[name].grad
        assert g is not None and float(g.abs().sum()) > 0, name


def test_stage_two_needs_stage_one_weights(tmp_path, capsys):
    from napari_masked_denoise.cli import main

    assert main(["train", "meta-tta", "--stage", "2", "--output", str(tmp_path / "x.pt")]) == 2
    assert "--init" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"steps": -1}, {"optimizer": "sgd"}, {"lr": 0.0}])
def test_bad_options(bad):
    with pytest.raises(DenoiseError):
        _method(weights="none", **bad)


def test_halo_covers_the_receptive_field():
    from napari_masked_denoise.nets import KNOWN_RADIUS, receptive_radius

    for (kind, widths), r in KNOWN_RADIUS.items():
        if kind == "meta":
            assert receptive_radius(kind, widths, measure=True) == r
    m = _method(weights="none")
    net, r = m.net, m.halo
    with torch.no_grad():
        torch.nn.init.normal_(net.primary.net[-1].weight, std=0.3)
    x = torch.rand(1, 1, 256, 256)
    y0, m0 = net.denoise(x)[0, 0, 128, 128], net.mask(x)[0, 0, 128, 128]
    x2 = x.clone()
    x2[..., :, : 128 - r - 1] = 5.0
    x2[..., :, 128 + r + 1 :] = 5.0
    assert torch.allclose(net.denoise(x2)[0, 0, 128, 128], y0, atol=1e-5)
    assert torch.allclose(net.mask(x2)[0, 0, 128, 128], m0, atol=1e-6)


def test_engine_stores_the_loss_mask_and_tiled_equals_untiled(tmp_path):
    import zarr

    from napari_masked_denoise import denoise
    from napari_masked_denoise.engine import denoise_iter, run_to_completion

    rng = np.random.default_rng(0)
    img = (0.4 + 0.1 * rng.standard_normal((2, 100, 120))).astype(np.float32)
    kw = dict(
        method="meta-tta", axes="ZYX", mode="once", options={"weights": "none", "mask_layer": True}
    )
    a = run_to_completion(denoise_iter(img, str(tmp_path / "a.zarr"), **kw))
    b = run_to_completion(denoise_iter(img, str(tmp_path / "b.zarr"), tile=32, **kw))
    assert a.info["tiles"] == 1 < b.info["tiles"]
    np.testing.assert_allclose(b.denoised[...], a.denoised[...], atol=1e-4)
    np.testing.assert_allclose(b.extras["loss_mask"][...], a.extras["loss_mask"][...], atol=1e-5)
    g = zarr.open_group(str(tmp_path / "a.zarr"), mode="r")
    m = output_array(g, "loss_mask")[...]
    assert m.shape == img.shape and set(np.unique(m)) <= {
        0.0,
        1.0,
    }  # binarised, as the loss uses it
    res = denoise(img, method="meta-tta", axes="ZYX", weights="none", mask_layer=True)
    np.testing.assert_array_equal(res.extras["loss_mask"], m)
    assert denoise(img, method="meta-tta", axes="ZYX", weights="none").extras == {}


def test_shipped_weights_and_presets():
    from napari_masked_denoise.weights import load_state, manifest

    _, entry = load_state("meta-tta")
    assert entry["method"] == "meta-tta" and entry["stage"] == 2 and isinstance(entry["seed"], int)
    for key in ("command", "data", "iterations", "final_validation", "sha256"):
        assert entry[key], key
    assert (
        entry["init"]["sha256"] == manifest("meta-tta-stage1")["sha256"]
    )  # stage 2 started from stage 1
    assert not any("Set12" in d or "BSD68" in d or "microscopy" in d for d in entry["data"])
    assert _method(preset="no-adapt").options["steps"] == 0
    assert _method(preset="reference").options["optimizer"] == "adam"
    with pytest.raises(DenoiseError, match="ttt-mim"):
        _method(weights="ttt-mim")


def test_meta_trained_adaptation_helps_on_strong_shot_noise(camera_noisy, psnr):
    """Microscope-like noise, strong (Poisson, 15 photons at intensity 1, plus read noise),
    on an image that is not in the training data: the meta-trained network denoises, and
    5 head-only steps do not make it worse. (They used to add about 0.1 dB here: most of
    it was correcting the network's intensity shift, which every output now undoes with
    the input's local means, ``base.keep_means``.)"""
    from napari_masked_denoise.noise import simulate as noise_models

    clean, _ = camera_noisy
    noisy = noise_models.poisson_gaussian(
        clean, np.random.default_rng(5), photons=15, read=0.02, offset=0.0
    )
    base = _method(preset="no-adapt").denoise(noisy[None], Coords([0]))[0]
    m = _method()
    adapted = m.denoise(noisy[None], Coords([0]))[0]
    assert psnr(clean, base) > psnr(clean, noisy) + 5.0
    assert psnr(clean, adapted) > psnr(clean, base) - 0.05
    assert np.abs(adapted - base).max() > 1e-4  # the steps did change the heads
    np.testing.assert_allclose(
        m.denoise(noisy[None], Coords([0]))[0], adapted, atol=1e-6
    )  # per tile, from scratch


def test_once_mode_adapts_on_the_sample_and_saves_the_heads(camera_noisy):
    _, noisy = camera_noisy
    m = _method(mode="once")
    before = m.denoise(noisy[None], Coords([0]))[0]
    assert list(m.adapt(noisy[None, :64, :64], Coords([0]))) == [(5, 5)]
    after = m.denoise(noisy[None], Coords([0]))[0]
    assert not np.allclose(before, after)
    m2 = _method(mode="once")
    m2.load_state_bytes(m.state_bytes())
    np.testing.assert_array_equal(m2.denoise(noisy[None], Coords([0]))[0], after)


def test_cli_runs_meta_tta_with_the_mask(noisy_zarr_volume, tmp_path, capsys):
    import zarr

    from napari_masked_denoise.cli import main

    inp, vol = noisy_zarr_volume
    rc = main(
        [
            "run",
            str(inp),
            str(tmp_path / "out.zarr"),
            "--method",
            "meta-tta",
            "--axes",
            "ZYX",
            "-o",
            "mask_layer=true",
            "-q",
        ]
    )
    assert rc == 0
    assert "loss_mask" in capsys.readouterr().out
    g = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert (
        g.attrs["napari_masked_denoise"]["complete"] is True
        and output_array(g, "loss_mask").shape == vol.shape
    )
    assert float(np.std(output_array(g, "denoised")[:])) < float(np.std(vol))
