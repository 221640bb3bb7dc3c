"""Cluster mode on a real dask.distributed LocalCluster with worker processes."""

import numpy as np
import pytest
import zarr

from napari_masked_denoise.engine import denoise_iter, open_result, run_to_completion
from napari_masked_denoise.engine.store import output_array

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def _volume(tmp_path, shape=(4, 96, 100)):
    rng = np.random.default_rng(7)
    vol = (0.4 + 0.2 * np.sin(np.arange(shape[-1]) / 9) + 0.1 * rng.standard_normal(shape)).astype(
        np.float32
    )
    src = zarr.create_array(
        store=str(tmp_path / "in.zarr"), shape=shape, chunks=(2, 48, 50), dtype="f4"
    )
    src[:] = vol
    return src, vol


def _no_local_tiles(monkeypatch):
    """Make the driver process unable to denoise tiles: only the workers can."""
    from napari_masked_denoise.engine import run as engine

    def refuse(*args, **kwargs):
        raise AssertionError("a tile ran in the driver process")

    monkeypatch.setattr(engine, "run_jobs", refuse)


def test_cluster_run_writes_the_same_store_as_a_single_process(tmp_path, client, monkeypatch):
    src, vol = _volume(tmp_path)
    kw = dict(
        method="ttt-mim", preset="fast", axes="ZYX", mode="once", tile=48, plane_batch=2, options={}
    )
    single = run_to_completion(denoise_iter(src, tmp_path / "one.zarr", **kw))
    _no_local_tiles(monkeypatch)
    multi = run_to_completion(denoise_iter(src, tmp_path / "many.zarr", scheduler=client, **kw))
    assert multi.info["tiling"] == "exact" and multi.info["tiles"] == 2 * (
        2 * 3
    )  # 2 blocks of 2 x 3 tiles
    assert multi.complete and open_result(tmp_path / "many.zarr")["complete"] is True
    g = zarr.open_group(str(tmp_path / "many.zarr"), mode="r")
    assert output_array(g, "tiles_done")[...].all()
    np.testing.assert_allclose(output_array(g, "denoised")[...], single.denoised[...], atol=1e-5)
    np.testing.assert_allclose(output_array(g, "noise_map")[...], single.noise_map[...], atol=1e-5)
    assert multi.sigma == pytest.approx(single.sigma, rel=1e-4)
    np.testing.assert_array_equal(src[...], vol)  # input untouched


def test_blended_per_tile_run_from_a_numpy_input_equals_a_single_process(
    tmp_path, client, monkeypatch
):
    vol = _volume(tmp_path, (3, 64, 72))[1]
    kw = dict(
        method="zero-shot",
        axes="ZYX",
        mode="per-tile",
        tile=40,
        plane_batch=1,
        options={"iterations": 3, "fill_passes": 2},
    )
    single = run_to_completion(denoise_iter(vol, tmp_path / "one.zarr", **kw))
    _no_local_tiles(monkeypatch)
    multi = run_to_completion(denoise_iter(vol, tmp_path / "many.zarr", scheduler=client, **kw))
    assert multi.info["tiling"] == "blended"
    np.testing.assert_allclose(multi.denoised[...], single.denoised[...], atol=1e-4)


def test_cluster_mode_needs_an_output_on_disk(client):
    with pytest.raises(ValueError, match="output path"):
        run_to_completion(
            denoise_iter(
                np.zeros((2, 40, 40), np.float32), None, scheduler=client, method="tv", axes="ZYX"
            )
        )


def test_cli_with_local_worker_processes(tmp_path, capsys):
    from napari_masked_denoise.cli import main

    src, _ = _volume(tmp_path, (2, 64, 64))
    args = [
        str(tmp_path / "in.zarr"),
        "--method",
        "meta-tta",
        "--preset",
        "no-adapt",
        "--axes",
        "ZYX",
        "--tile",
        "32",
        "-q",
    ]
    assert main(["run", *args[:1], str(tmp_path / "one.zarr"), *args[1:]]) == 0
    assert main(["run", *args[:1], str(tmp_path / "two.zarr"), *args[1:], "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "cluster local, 2 processes" in out
    one = output_array(zarr.open_group(str(tmp_path / "one.zarr"), mode="r"), "denoised")[...]
    two = output_array(zarr.open_group(str(tmp_path / "two.zarr"), mode="r"), "denoised")[...]
    np.testing.assert_allclose(two, one, atol=1e-5)


def test_tasks_join_consecutive_groups_without_splitting_one():
    from napari_masked_denoise.engine.cluster import _tasks

    groups = [[3 * g, 3 * g + 1, 3 * g + 2] for g in range(20)]
    tasks = _tasks(groups, workers=2)
    assert len(tasks) == 10 and [j for t in tasks for j in t] == list(range(60))
    assert all(len(t) % 3 == 0 for t in tasks)  # whole groups only
    assert len(_tasks(groups[:3], workers=2)) == 3  # fewer groups than slots: one task each
