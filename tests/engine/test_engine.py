import tracemalloc

import numpy as np
import pytest
import zarr

from napari_masked_denoise.engine import denoise_iter, open_result, run_to_completion
from napari_masked_denoise.engine.store import output_array

FAST = {"iterations": 4, "fill_passes": 2}


def _run(image, out=None, **kw):
    kw.setdefault("options", FAST)
    kw.setdefault("method", "zero-shot")
    return run_to_completion(denoise_iter(image, out, **kw))


def test_tiled_equals_untiled_for_a_fixed_network(camera_noisy):
    _, noisy = camera_noisy
    img = np.concatenate([noisy, noisy[:, :72]], axis=1)  # 128 x 200, not a tile multiple
    a = _run(img, axes="YX", mode="once", tile=512)
    b = _run(img, axes="YX", mode="once", tile=48)
    assert b.info["tiles"] > a.info["tiles"] == 1
    np.testing.assert_allclose(b.denoised[...], a.denoised[...], atol=1e-4)
    np.testing.assert_allclose(b.noise_map[...], a.noise_map[...], atol=1e-4)


def test_zarr_in_zarr_out_keeps_axes_scale_and_marks_complete(tmp_path):
    vol = np.random.default_rng(0).random((3, 2, 40, 48)).astype(np.float32)
    src = zarr.create_array(
        store=str(tmp_path / "in.zarr"), shape=vol.shape, chunks=(1, 1, 40, 48), dtype="f4"
    )
    src[:] = vol
    res = _run(src, tmp_path / "out.zarr", axes="ZCYX", tile=32, scale=[2.0, 1.0, 0.5, 0.5])
    g = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert output_array(g, "denoised").shape == output_array(g, "noise_map").shape == vol.shape
    assert output_array(g, "denoised").dtype == np.float32
    assert output_array(g, "denoised").attrs["axes"] == "ZCYX"
    assert output_array(g, "denoised").attrs["scale"] == [2.0, 1.0, 0.5, 0.5]
    meta = open_result(tmp_path / "out.zarr")
    assert meta["complete"] is True and np.isfinite(meta["sigma"])
    assert res.complete and output_array(g, "tiles_done")[:].all()
    np.testing.assert_array_equal(src[:], vol)  # input untouched


def test_dask_and_numpy_inputs_agree():
    da = pytest.importorskip("dask.array")
    vol = np.random.default_rng(2).random((4, 48, 48)).astype(np.float32)
    a = _run(vol, axes="ZYX", tile=32)
    b = _run(da.from_array(vol, chunks=(1, 24, 24)), axes="ZYX", tile=32)
    np.testing.assert_allclose(a.denoised[...], b.denoised[...], atol=1e-6)


@pytest.mark.parametrize("mode", ["per-tile", "once"])
def test_cancel_then_resume_equals_uninterrupted(tmp_path, mode):
    vol = np.random.default_rng(3).random((2, 64, 64)).astype(np.float32)
    kw = dict(axes="ZYX", tile=32, mode=mode, plane_batch=1, seed=5)
    full = _run(vol, tmp_path / "full.zarr", **kw)

    gen = denoise_iter(vol, tmp_path / "part.zarr", method="zero-shot", options=FAST, **kw)
    tiles_seen = 0
    for p in gen:
        tiles_seen += p.stage == "tiles"
        if tiles_seen == 3:
            break
    gen.close()
    meta = open_result(tmp_path / "part.zarr")
    assert meta["complete"] is False
    assert output_array(zarr.open_group(str(tmp_path / "part.zarr")), "tiles_done")[:].sum() == 3

    gen = denoise_iter(
        vol, tmp_path / "part.zarr", method="zero-shot", options=FAST, resume=True, **kw
    )
    steps = []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            res = stop.value
            break
    tile_steps = [p for p in steps if p.stage == "tiles"]
    assert len(tile_steps) == full.info["tiles"] - 3  # only the missing tiles ran
    assert not [p for p in steps if p.stage == "adapt"]  # the adaptation was reloaded
    assert res.complete and open_result(tmp_path / "part.zarr")["complete"] is True
    np.testing.assert_allclose(res.denoised[...], full.denoised[...], atol=1e-6)
    np.testing.assert_allclose(res.noise_map[...], full.noise_map[...], atol=1e-6)


def test_resume_with_other_settings_is_refused(tmp_path):
    vol = np.random.default_rng(3).random((2, 40, 40)).astype(np.float32)
    _run(vol, tmp_path / "o.zarr", axes="ZYX", tile=32)
    with pytest.raises(ValueError, match="different settings.*seed"):
        _run(vol, tmp_path / "o.zarr", axes="ZYX", tile=32, seed=9, resume=True)


def _traced_peak(tmp_path, planes: int) -> int:
    shape = (planes, 256, 256)
    src = zarr.create_array(
        store=str(tmp_path / f"in{planes}.zarr"), shape=shape, chunks=(1, 128, 128), dtype="f4"
    )
    rng = np.random.default_rng(0)
    for z in range(planes):
        src[z] = rng.random(shape[1:], dtype=np.float32)
    tracemalloc.start()
    try:
        res = _run(
            src,
            tmp_path / f"out{planes}.zarr",
            axes="ZYX",
            tile=128,
            plane_batch=2,
            mode="once",
            options={"iterations": 1, "fill_passes": 1, "mask_ratio": 0.5},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.complete
    return peak


def test_memory_stays_bounded_on_a_volume_larger_than_the_budget(tmp_path):
    _traced_peak(tmp_path, 2)  # warm-up: imports and caches are not the run's memory
    small = _traced_peak(tmp_path, 4)  # 1 MiB of float32
    big = _traced_peak(tmp_path, 32)  # 8 MiB of float32
    volume = 32 * 256 * 256 * 4
    assert big < 0.75 * volume, f"peak traced memory {big / 2**20:.1f} MiB for an 8 MiB volume"
    assert big < 1.5 * small, f"peak grew from {small / 2**20:.1f} to {big / 2**20:.1f} MiB"


def test_chunked_zarr_input_read_once_per_chunk_gives_the_same_result(tmp_path, monkeypatch):
    from napari_masked_denoise.engine import layout

    vol = np.random.default_rng(4).random((10, 40, 48)).astype(np.float32)
    src = zarr.create_array(
        store=str(tmp_path / "in.zarr"), shape=vol.shape, chunks=(8, 24, 24), dtype="f4"
    )
    src[:] = vol
    reads = []
    real_read = layout.read_block
    monkeypatch.setattr(
        layout, "read_block", lambda image, idx: reads.append(idx) or real_read(image, idx)
    )
    kw = dict(axes="ZYX", mode="once", tile=32, plane_batch=1)
    a = _run(src, **kw)
    n_cached = len(reads)
    b = _run(vol, **kw)
    np.testing.assert_allclose(a.denoised[...], b.denoised[...], atol=1e-6)
    # tile reads: 10 planes x 4 tiles for the numpy input, 2 chunk ranges x 4 tiles for zarr;
    # the other reads (intensity range, adaptation sample) are the same in both runs
    assert a.info["tiles"] == b.info["tiles"] == 40
    assert (len(reads) - n_cached) - n_cached == 10 * 4 - 2 * 4


@pytest.mark.parametrize("planes", [1, 3])
def test_out_of_memory_is_retried_in_smaller_pieces_with_the_same_result(monkeypatch, planes):
    import torch

    from napari_masked_denoise.methods import get_method
    from napari_masked_denoise.methods.ttt_mim import TTTMIM

    halo = get_method("ttt-mim")(preset="no-adapt", mode="once", device=torch.device("cpu")).halo
    side = 4 * halo + 64  # a plane whose quarter tiles, with their halo, are smaller than it
    from napari_masked_denoise.engine.jobs import EDGE  # mirrored context at the image's edges

    limit = (side // 2 + halo + 8 + EDGE) ** 2  # a device that holds a quarter tile, not a plane
    vol = np.random.default_rng(5).random((planes, side, side - 16)).astype(np.float32)
    kw = dict(
        method="ttt-mim", preset="no-adapt", axes="ZYX", mode="once", plane_batch=planes, options={}
    )
    ref = _run(vol, **kw)
    real, tried, ran = TTTMIM.process, [], []

    def small_memory(self, block, coords):
        tried.append(block.shape)
        if block.size > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        ran.append(block.shape)
        return real(self, block, coords)

    monkeypatch.setattr(TTTMIM, "process", small_memory)
    res = _run(vol, **kw)
    whole = tuple(n + 2 * EDGE for n in vol.shape[1:])
    assert tried[0] == (planes, *whole) and (1, *whole) in tried  # planes first
    assert ran and all(s[0] == 1 and s[1] * s[2] <= limit for s in ran)
    np.testing.assert_allclose(res.denoised[...], ref.denoised[...], atol=1e-5)
    np.testing.assert_allclose(res.noise_map[...], ref.noise_map[...], atol=1e-5)


def test_out_of_memory_on_the_smallest_piece_is_a_clear_error(monkeypatch):
    import torch

    from napari_masked_denoise.methods.ttt_mim import TTTMIM

    def no_memory(self, block, coords):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(TTTMIM, "process", no_memory)
    with pytest.raises(ValueError, match="out of GPU memory on a tile of 1x"):
        _run(
            np.zeros((2, 64, 64), np.float32) + 0.5,
            method="ttt-mim",
            preset="no-adapt",
            axes="ZYX",
            mode="once",
            options={},
        )


def test_mixed_precision_changes_the_result_only_slightly(camera_noisy):
    clean, noisy = camera_noisy
    kw = dict(method="ttt-mim", preset="no-adapt", axes="YX", mode="once", options={})
    ref = _run(noisy, **kw).denoised[...]
    mixed = _run(noisy, precision="mixed", **kw).denoised[...]
    diff = np.abs(mixed - ref)
    assert 0 < diff.max() < 0.05 and diff.mean() < 0.005  # bfloat16 on the CPU: 8 bits of mantissa
    with pytest.raises(ValueError, match="once mode"):
        _run(noisy, precision="mixed", **{**kw, "mode": "per-tile"})


@pytest.mark.parametrize("method", ["ttt-mim", "meta-tta", "zero-shot"])
def test_compile_wraps_the_calls_that_denoise_the_tiles(monkeypatch, method):
    """``compile=True`` hands the network calls of ``once`` mode to ``torch.compile`` (a
    recording stand-in here: a real CPU compilation takes minutes) and the tiles then go
    through them, with an unchanged result."""
    import torch

    compiled, called = [], []

    def fake_compile(fn, **kwargs):
        compiled.append(fn)

        def wrapper(*a, **k):
            called.append(fn)
            return fn(*a, **k)

        return wrapper

    vol = np.random.default_rng(6).random((2, 48, 48)).astype(np.float32)
    kw = dict(
        method=method,
        preset="fast",
        axes="ZYX",
        mode="once",
        options={"iterations": 2} if method == "zero-shot" else {},
    )
    ref = _run(vol, **kw)
    monkeypatch.setattr(torch, "compile", fake_compile)
    res = _run(vol, compile=True, **kw)
    assert (
        res.info["compiled"] and compiled and set(map(id, called)) >= {id(f) for f in compiled[:1]}
    )
    np.testing.assert_allclose(res.denoised[...], ref.denoised[...], atol=1e-6)
    with pytest.raises(ValueError, match="no network calls to compile"):
        _run(vol, compile=True, method="tv", axes="ZYX", mode="once", options={})
