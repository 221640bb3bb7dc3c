"""The engine on its own: the identity method through every layout, tiling and store path.

A denoiser would blur what goes wrong; the identity method returns its input, so any
misplaced tile, seam, transposed axis or double write shows as a difference.
"""

import numpy as np
import pytest
import zarr

from napari_masked_denoise.engine import RunSettings, denoise_iter, open_result, run_to_completion
from napari_masked_denoise.engine.store import output_array
from napari_masked_denoise.methods import _REGISTRY
from napari_masked_denoise.methods.identity import Identity


class BlendedIdentity(Identity):
    """The identity, tiled with overlapping blended tiles as adaptive methods are."""

    name = "blended-identity"
    exact_support = False


def _run(image, output=None, settings=None, **fields):
    return run_to_completion(denoise_iter(image, output, settings, **fields))


def _ramp(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (100 + 1000 * rng.random(shape)).astype(np.float32)


@pytest.mark.parametrize(
    "axes, shape",
    [
        ("YX", (70, 53)),
        ("ZYX", (3, 41, 66)),
        ("YXC", (40, 37, 3)),
        ("TZYX", (2, 3, 33, 35)),
        ("CZYX", (2, 2, 34, 40)),
    ],
)
def test_every_layout_comes_back_unchanged(axes, shape):
    img = _ramp(shape)
    res = _run(img, method="identity", axes=axes, tile=32)
    assert res.complete and res.axes == axes and res.info["tiling"] == "exact"
    assert res.info["tiles"] > 1
    np.testing.assert_allclose(res.denoised[...], img, rtol=1e-6, atol=1e-3)
    assert float(np.abs(res.noise_map[...]).max()) < 1e-3


def test_blended_tiles_add_up_to_the_input(monkeypatch):
    monkeypatch.setitem(_REGISTRY, "blended-identity", BlendedIdentity)
    img = _ramp((2, 90, 77), seed=1)
    res = _run(img, method="blended-identity", axes="ZYX", tile=32)
    assert res.info["tiling"] == "blended" and res.info["tiles"] > 4
    np.testing.assert_allclose(res.denoised[...], img, rtol=1e-5, atol=1e-2)


def test_integer_dask_and_zarr_inputs_give_the_same_store(tmp_path):
    import dask.array as da

    img = (np.random.default_rng(2).integers(0, 4000, (4, 48, 50))).astype(np.uint16)
    src = zarr.create_array(
        store=str(tmp_path / "in.zarr"), shape=img.shape, chunks=(2, 24, 24), dtype="u2"
    )
    src[:] = img
    outs = [
        _run(x, tmp_path / f"out{i}.zarr", method="identity", axes="ZYX", tile=32).denoised[...]
        for i, x in enumerate((img, da.from_array(img, chunks=(1, 48, 50)), src))
    ]
    for out in outs:
        np.testing.assert_allclose(out, img, atol=5e-3)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    assert open_result(tmp_path / "out2.zarr")["complete"]


@pytest.mark.parametrize("method", ["identity", "blended-identity"])
def test_a_stopped_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, method):
    monkeypatch.setitem(_REGISTRY, "blended-identity", BlendedIdentity)
    img = _ramp((3, 64, 64), seed=3)
    settings = RunSettings(method=method, axes="ZYX", tile=32, plane_batch=1)
    ref = _run(img, tmp_path / "ref.zarr", settings)
    gen = denoise_iter(img, tmp_path / "out.zarr", settings)
    seen = [next(gen) for _ in range(5)]
    gen.close()
    assert seen[-1].stage == "tiles" and not open_result(tmp_path / "out.zarr")["complete"]
    done = output_array(zarr.open_group(str(tmp_path / "out.zarr"), mode="r"), "tiles_done")[...]
    assert 0 < done.sum() < done.size
    res = _run(img, tmp_path / "out.zarr", settings.replace(resume=True))
    assert res.complete
    np.testing.assert_array_equal(res.denoised[...], ref.denoised[...])


def test_settings_are_checked_before_anything_is_read_or_written(tmp_path):
    from napari_masked_denoise import DenoiseError

    bad = [
        dict(tile=8),
        dict(seed=-1),
        dict(method="nope"),
        dict(preset="nope"),
        dict(mode="nope"),
        dict(precision="half"),
        dict(plane_batch=0),
        dict(options={"nope": 1}),
        dict(seed="abc"),
    ]
    for fields in bad:
        with pytest.raises(DenoiseError):
            RunSettings(**{"method": "identity", **fields})
    with pytest.raises(DenoiseError, match="steps must be a whole number"):
        RunSettings(method="ttt-mim", options={"steps": "abc"})
    assert not any(tmp_path.iterdir())


def test_settings_take_numpy_numbers_numeric_strings_and_a_new_methods_preset():
    s = RunSettings(
        method="ttt-mim", seed=np.int64(3), tile=np.int32(64), options={"steps": np.int64(2)}
    )
    assert (s.seed, s.tile) == (3, 64)
    RunSettings(
        method="ttt-mim", options={"steps": "3", "lr": "1e-4"}
    )  # as int() and float() read them
    tv = s.replace(method="tv", options={})
    assert tv.method == "tv" and tv.preset == "calibrated"  # not ttt-mim's preset
