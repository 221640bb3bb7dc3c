"""Masked image training: the Swin denoiser, its attention mask, training, the method."""

import json

import numpy as np
import pytest
import torch

from napari_masked_denoise.core.axes import DenoiseError
from napari_masked_denoise.core.masks import Coords
from napari_masked_denoise.methods import get_method
from napari_masked_denoise.methods.fidelity import KEEP_HALO
from napari_masked_denoise.nets.swin import SwinDenoiser

CPU = torch.device("cpu")
SMALL = (8, 2, 2, 2)  # token width, heads, blocks per group


def _method(**kw):
    kw.setdefault("preset", "fast")
    kw.setdefault("mode", "per-tile")
    return get_method("masked-transformer")(device=CPU, seed=0, **kw)


def _net(seed=0):
    torch.manual_seed(seed)
    return SwinDenoiser(SMALL[0], SMALL[1], SMALL[2:]).eval()


def test_tokens_are_pixels_nothing_before_attention_sees_the_neighbours():
    """The first attention layer's input at a pixel is the same whatever share of its
    neighbours is masked: the layout the reference's masked training relies on."""
    net = _net()
    seen = []
    hook = (
        net.groups[0]
        .blocks[0]
        .attn.qkv.register_forward_hook(
            lambda m, args, out: seen.append(args[0].detach().reshape(-1, SMALL[0]))
        )
    )
    x = torch.rand(1, 1, 32, 32)
    masked = torch.where(torch.rand(1, 1, 32, 32) < 0.85, torch.tensor(-0.1), x)
    masked[0, 0, 11, 13] = x[0, 0, 11, 13]
    with torch.no_grad():
        net(x), net(masked)
    hook.remove()
    from napari_masked_denoise.nets.swin import _order

    order, _ = _order(32, 32, 8, 0, None)
    row = int(torch.nonzero(order == 11 * 32 + 13))  # the pixel's place among the windows
    torch.testing.assert_close(seen[0][row], seen[1][row], rtol=0, atol=0)
    assert not torch.equal(seen[0], seen[1])


def test_attention_mask_zeroes_tokens_and_follows_the_given_numbers():
    net = _net()
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        y = net(x)
        assert y.shape == x.shape
        torch.testing.assert_close(net(x), y)  # no attention mask: deterministic
        assert not torch.allclose(net(x, drop=0.75), y, atol=1e-4)
        # the same numbers give the same output; all numbers above `drop` drop nothing
        u = lambda layer, h, w: torch.full((2, h, w, 1), 0.9)  # noqa: E731
        torch.testing.assert_close(net(x, drop=0.75, uniform=u), y)
        g = torch.Generator().manual_seed(3)
        nums = {}

        def rnd(layer, h, w):
            return nums.setdefault(layer, torch.rand(2, h, w, 1, generator=g))

        a = net(x, drop=0.5, uniform=rnd)
        torch.testing.assert_close(net(x, drop=0.5, uniform=rnd), a)
        assert sorted(nums) == list(range(sum(SMALL[2:])))  # one draw per attention layer


def test_halo_is_the_receptive_field_at_every_window_phase():
    from napari_masked_denoise.nets import KNOWN_RADIUS

    net = _net()
    r = KNOWN_RADIUS[("swin", net.depths)]
    assert r <= net.radius  # the layout's bound
    x = torch.rand(1, 1, 192, 192)
    centres = [96 + k for k in range(8)]  # every phase of the 8-px window grid, on the diagonal

    def outside(reach):  # item k: everything farther than `reach` from centre k replaced
        xs = x.repeat(len(centres), 1, 1, 1)
        for k, c in enumerate(centres):
            keep = xs[k, 0, c - reach : c + reach + 1, c - reach : c + reach + 1].clone()
            xs[k] = 5.0
            xs[k, 0, c - reach : c + reach + 1, c - reach : c + reach + 1] = keep
        return xs

    def centre_values(xs):
        out = net(xs)
        return torch.stack([out[k, 0, c, c] for k, c in enumerate(centres)])

    with torch.no_grad():
        y = centre_values(x.repeat(len(centres), 1, 1, 1))
        assert torch.equal(
            centre_values(outside(r)), y
        )  # nothing beyond r counts, not even rounding
        assert not torch.equal(centre_values(outside(r - 1)), y)  # r is reached (weakly: 1e-7)
    assert _method(weights="none", widths=SMALL).halo == r + KEEP_HALO  # and the local means
    from napari_masked_denoise.nets import receptive_radius

    assert receptive_radius("swin", SMALL, measure=True) == r  # at every phase, by gradients


@pytest.mark.parametrize("options", [{}, {"attn_drop": 0.5, "passes": 2}])
def test_tiled_equals_untiled_with_and_without_the_attention_mask(tmp_path, options):
    from napari_masked_denoise.engine import denoise_iter, run_to_completion

    rng = np.random.default_rng(0)
    img = (0.4 + 0.1 * rng.standard_normal((2, 150, 170))).astype(np.float32)
    kw = dict(
        method="masked-transformer",
        axes="ZYX",
        mode="once",
        options={"weights": "none", "widths": SMALL, **options},
    )
    a = run_to_completion(denoise_iter(img, str(tmp_path / "a.zarr"), **kw))
    b = run_to_completion(denoise_iter(img, str(tmp_path / "b.zarr"), tile=32, **kw))
    assert a.info["tiles"] == 1 < b.info["tiles"]
    np.testing.assert_allclose(b.denoised[...], a.denoised[...], atol=1e-4)


def test_reference_preset_averages_passes_with_the_attention_mask():
    rng = np.random.default_rng(1)
    block = (0.5 + 0.1 * rng.standard_normal((1, 64, 64))).astype(np.float32)
    one = _method(weights="none", widths=SMALL, attn_drop=0.75, passes=1).denoise(
        block, Coords([0])
    )
    four = _method(weights="none", widths=SMALL, attn_drop=0.75, passes=4).denoise(
        block, Coords([0])
    )
    off = _method(weights="none", widths=SMALL, attn_drop=0.0).denoise(block, Coords([0]))
    assert not np.allclose(one, four) and not np.allclose(one, off)
    again = _method(weights="none", widths=SMALL, attn_drop=0.75, passes=4).denoise(
        block, Coords([0])
    )
    np.testing.assert_array_equal(four, again)  # seeded by the run seed and the position
    assert _method(weights="none", widths=SMALL, preset="reference").options["attn_drop"] == 0.75


@pytest.mark.parametrize("bad", [{"attn_drop": 1.0}, {"attn_drop": -0.1}, {"passes": 0}])
def test_bad_options(bad):
    with pytest.raises(DenoiseError):
        _method(weights="none", widths=SMALL, **bad)


def _cfg(image_folder, tmp_path, **kw):
    from napari_masked_denoise.training.masked_transformer import MaskedTransformerConfig

    base = dict(
        data=(str(image_folder),),
        output=str(tmp_path / "mt.pt"),
        iterations=40,
        batch=4,
        crop=64,
        val_every=20,
        skimage=False,
        seed=1,
        lr=2e-3,
        clip=0.0,
        widths=SMALL,
        val_images=4,
        mask_ratio=(0.8, 0.9),
        ema=0.9,
        log=str(tmp_path / "log.jsonl"),
    )
    return MaskedTransformerConfig(**{**base, **kw})


@pytest.mark.parametrize("masked", [True, False])
def test_training_masked_and_baseline_writes_the_average_weights(image_folder, tmp_path, masked):
    from napari_masked_denoise.training import MIT_VAL_NOISES, train_masked_transformer
    from napari_masked_denoise.weights import load_state

    entry = train_masked_transformer(
        _cfg(image_folder, tmp_path, masked=masked), progress=lambda s: None
    )
    rows = [json.loads(r) for r in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [20, 40]
    assert all(f"val_psnr_{k}" in rows[-1] for k in MIT_VAL_NOISES)
    assert ("val_psnr_g15_attn" in rows[-1]) is masked  # the attention mask as at test
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    state, loaded = load_state(str(tmp_path / "mt.pt"))
    assert loaded == entry and entry["method"] == "masked-transformer" and entry["masked"] is masked
    assert entry["attn_drop"] == (0.75 if masked else 0.0)
    m = _method(weights=str(tmp_path / "mt.pt"))  # loads by path, architecture from the manifest
    assert m.widths == SMALL


def test_masked_training_loss_masks_the_input_and_the_attention(image_folder, tmp_path):
    """With masking the loss sees a masked input (and dropped tokens); without, the plain one."""
    from napari_masked_denoise.training.masked_transformer import _mit_loss

    seen = []

    class Spy(torch.nn.Module):
        def forward(self, y, drop=0.0):
            seen.append((y.clone(), drop))
            return y

    x = torch.full((2, 1, 32, 32), 0.5)
    _mit_loss(Spy(), x, np.random.default_rng(0), _cfg(image_folder, tmp_path))
    _mit_loss(Spy(), x, np.random.default_rng(0), _cfg(image_folder, tmp_path, masked=False))
    (ym, dm), (yu, du) = seen
    masked = torch.isclose(ym, torch.tensor(-0.1)).float().mean(dim=(1, 2, 3))
    assert dm == 0.75 and du == 0.0
    assert all(0.75 < float(z) < 0.95 for z in masked)  # 80-90% of the pixels masked per crop
    assert float((ym[~torch.isclose(ym, torch.tensor(-0.1))] - 0.5).abs().max()) < 0.3
    assert float(torch.isclose(yu, torch.tensor(-0.1)).float().mean()) == 0.0
    assert abs(float((yu - 0.5).std()) - 15 / 255) < 0.005  # sigma 15 only


def test_training_continues_from_earlier_weights_of_the_same_kind(image_folder, tmp_path):
    from napari_masked_denoise.training import train_masked_transformer

    first = train_masked_transformer(
        _cfg(image_folder, tmp_path, iterations=4, val_every=4, log=None), progress=lambda s: None
    )
    more = train_masked_transformer(
        _cfg(
            image_folder,
            tmp_path,
            iterations=4,
            val_every=4,
            log=None,
            init=str(tmp_path / "mt.pt"),
            output=str(tmp_path / "mt2.pt"),
        ),
        progress=lambda s: None,
    )
    assert more["init"]["sha256"] == first["sha256"] and more["init"]["iterations"] == 4
    with pytest.raises(ValueError, match="masked"):
        train_masked_transformer(
            _cfg(
                image_folder,
                tmp_path,
                iterations=4,
                masked=False,
                log=None,
                init=str(tmp_path / "mt.pt"),
                output=str(tmp_path / "mt3.pt"),
            ),
            progress=lambda s: None,
        )


def test_missing_shipped_weights_are_a_one_line_error(monkeypatch):
    from napari_masked_denoise import weights

    monkeypatch.setattr(weights, "available", lambda: [])
    for preset in ("fast", "unmasked"):
        with pytest.raises(DenoiseError, match="train masked-transformer"):
            _method(preset=preset)


def test_shipped_networks_denoise_noise_they_never_saw():
    """On an image outside training and the test sets, with noise unlike sigma 15: the
    masked network gains, and more than the unmasked one on Poisson noise."""
    from skimage import color, data

    clean = color.rgb2gray(data.astronaut())[100:228, 200:328].astype(np.float32)
    rng = np.random.default_rng(0)
    noisy = (rng.poisson(clean * 20) / 20).astype(np.float32)

    def psnr(a):
        return -10 * np.log10(np.mean((np.clip(a, 0, 1) - clean) ** 2))

    masked = _method().denoise(noisy[None], Coords([0]))[0]
    unmasked = _method(preset="unmasked").denoise(noisy[None], Coords([0]))[0]
    assert psnr(masked) > psnr(noisy) + 3
    assert psnr(masked) > psnr(unmasked) + 0.5
    assert abs(float(masked.mean() - noisy.mean())) < 0.01  # intensities kept


def test_shifted_windows_need_the_mask_only_at_the_last_window_row_and_column():
    """Attention with the mask on the border windows only equals the full shifted-window
    mask on every window (SwinIR's)."""
    import torch.nn.functional as F

    from napari_masked_denoise.nets.swin import _Attention, _shift_mask, _windows

    h, w, win, s = 16, 24, 8, 4
    img = torch.zeros(1, h, w, 1)
    for n, (ys, xs) in enumerate(
        (ys, xs)
        for ys in (slice(0, -win), slice(-win, -s), slice(-s, None))
        for xs in (slice(0, -win), slice(-win, -s), slice(-s, None))
    ):
        img[:, ys, xs, :] = n
    lab = _windows(img, win).squeeze(-1)
    full = torch.zeros(len(lab), 64, 64).masked_fill(lab[:, None, :] != lab[:, :, None], -100.0)
    index, mask = _shift_mask(h, w, win, s, None)
    torch.testing.assert_close(full[index], mask)
    torch.manual_seed(0)
    attn = _Attention(8, 2, win).eval()
    x = torch.randn(2 * len(lab), 64, 8)
    with torch.no_grad():
        got = attn(x, (index, mask), batch=2)
        qkv = attn.qkv(x).view(len(x), 64, 3, 2, 4).permute(2, 0, 3, 1, 4)
        bias = attn.bias_table[attn.rel_index.view(-1)].view(64, 64, 2).permute(2, 0, 1)
        m = bias[None] + full.repeat(2, 1, 1)[:, None]
        want = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=m)
        want = attn.proj(want.transpose(1, 2).reshape(len(x), 64, 8))
    torch.testing.assert_close(got, want)


def test_training_stops_and_resumes_as_if_never_stopped(image_folder, tmp_path):
    from napari_masked_denoise.training import train_masked_transformer
    from napari_masked_denoise.training.loop import Stopped
    from napari_masked_denoise.weights import load_state

    kw = dict(iterations=6, val_every=2, log=None)
    whole = train_masked_transformer(
        _cfg(image_folder, tmp_path / "a", **kw), progress=lambda s: None
    )
    with pytest.raises(Stopped, match="iteration 2 of 6"):
        train_masked_transformer(
            _cfg(image_folder, tmp_path / "b", stop_after=2, **kw), progress=lambda s: None
        )
    ck = tmp_path / "b" / "mt.partial.pt"
    assert ck.is_file()
    sliced = json.loads((tmp_path / "b" / "mt.json").read_text())  # the weights so far
    assert sliced["finished"] is False and sliced["iterations"] == 2
    assert sliced["planned_iterations"] == 6 and whole["finished"] is True
    with pytest.raises(DenoiseError, match="--resume"):  # a fresh start would lose it
        train_masked_transformer(_cfg(image_folder, tmp_path / "b", **kw), progress=print)
    with pytest.raises(DenoiseError, match="batch=4, this run has batch=2"):
        train_masked_transformer(
            _cfg(image_folder, tmp_path / "b", resume=True, batch=2, **kw), progress=print
        )
    with pytest.raises(Stopped, match="iteration 4 of 6"):  # a second slice
        train_masked_transformer(
            _cfg(image_folder, tmp_path / "b", resume=True, stop_after=4, **kw),
            progress=lambda s: None,
        )
    resumed = train_masked_transformer(
        _cfg(image_folder, tmp_path / "b", resume=True, **kw), progress=lambda s: None
    )
    assert not ck.exists()
    a, _ = load_state(str(tmp_path / "a" / "mt.pt"))
    b, _ = load_state(str(tmp_path / "b" / "mt.pt"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["sha256"] == whole["sha256"]
    assert resumed["final_validation"]["val_psnr_g15"] == whole["final_validation"]["val_psnr_g15"]
    with pytest.raises(DenoiseError, match="multiple of --val-every"):
        train_masked_transformer(
            _cfg(image_folder, tmp_path / "c", stop_after=3, **kw), progress=print
        )
    with pytest.raises(DenoiseError, match="no checkpoint"):
        train_masked_transformer(
            _cfg(image_folder, tmp_path / "b", resume=True, **kw), progress=print
        )
