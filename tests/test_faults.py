"""Bad input and faults against the command line: every case ends in success or in exit
code 2 with one line and no traceback, the input unchanged, and no output or one marked
incomplete with its reason; a resumed run equals an uninterrupted one.

Hard kills, signals and concurrent runs run the CLI in child processes; the rest call
``main`` here.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_masked_denoise.cli import main
from napari_masked_denoise.engine import open_result
from napari_masked_denoise.engine.lock import OutputLock
from napari_masked_denoise.engine.store import output_array

TV = ["--method", "tv", "--preset", "fixed", "-q"]
BLENDED = [*TV, "--tile", "32"]  # TV's tilings are blended: additions into the output


# ------------------------------------------------------------------------------ helpers
def digest(path: Path) -> str:
    """A hash of a file, or of every file under a folder (names and bytes)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def run_cli(argv, capsys) -> tuple[int, list[str]]:
    rc = main([str(a) for a in argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return rc, err


def assert_one_line_error(rc, err, match: str | None = None):
    assert rc == 2, (rc, err)
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("masked-denoise"), err
    if match is not None:
        assert match in err[0], err


def assert_no_output_or_incomplete(out: Path):
    if out.exists():
        meta = open_result(out)
        assert meta["complete"] is False and meta.get("incomplete_reason"), meta


def denoised(out: Path) -> np.ndarray:
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["napari_masked_denoise"]["complete"] is True
    return np.asarray(output_array(g, "denoised")[...]), np.asarray(
        output_array(g, "noise_map")[...]
    )


@pytest.fixture
def image(tmp_path) -> Path:
    """A small noisy 3-plane zarr volume, chunked per plane."""
    p = tmp_path / "in.zarr"
    a = zarr.create_array(store=str(p), shape=(3, 96, 96), chunks=(1, 96, 96), dtype="f4")
    rng = np.random.default_rng(0)
    a[:] = (np.linspace(0, 1, 96)[None, None] + 0.1 * rng.standard_normal((3, 96, 96))).astype("f4")
    return p


@pytest.fixture
def tif(tmp_path) -> Path:
    p = tmp_path / "in.tif"
    tifffile.imwrite(p, np.random.default_rng(1).random((64, 64)).astype("f4"))
    return p


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    """The uninterrupted blended run of the ``image`` fixture's data."""
    d = tmp_path_factory.mktemp("ref")
    p = d / "in.zarr"
    a = zarr.create_array(store=str(p), shape=(3, 96, 96), chunks=(1, 96, 96), dtype="f4")
    rng = np.random.default_rng(0)
    a[:] = (np.linspace(0, 1, 96)[None, None] + 0.1 * rng.standard_normal((3, 96, 96))).astype("f4")
    assert main(["run", str(p), str(d / "out.zarr"), *BLENDED]) == 0
    return denoised(d / "out.zarr")


# ------------------------------------------------------------------------------ inputs
def _png(path: Path, arr) -> None:
    from skimage import io

    io.imsave(path, arr, check_contrast=False)


BAD_INPUTS = {
    "missing": (lambda d: d / "nothing.tif", "input not found"),
    "empty-tif": (lambda d: _write(d / "e.tif", b""), "is empty"),
    "garbage-tif": (lambda d: _write(d / "g.tif", b"garbage" * 20), "cannot read"),
    "truncated-tif": (lambda d: _truncated_tif(d / "t.tif"), "cannot read"),
    "garbage-png": (lambda d: _write(d / "g.png", b"garbage" * 20), "cannot read"),
    "empty-png": (lambda d: _write(d / "e.png", b""), "is empty"),
    "rgba-png": (
        lambda d: _save(d / "a.png", np.zeros((32, 32, 4), np.uint8), _png),
        "alpha channel",
    ),
    "grey-alpha-png": (
        lambda d: _save(d / "la.png", np.zeros((32, 32, 2), np.uint8), _png),
        "alpha channel",
    ),
    "unknown-suffix": (lambda d: _write(d / "x.txt", b"1 2 3"), "unsupported input format"),
    "plain-folder": (lambda d: _folder(d / "folder"), "cannot open"),
    "two-array-group": (lambda d: _group(d / "two.zarr", 2), "name one"),
    "empty-group": (lambda d: _group(d / "none.zarr", 0), "name one"),
    "bool-tif": (
        lambda d: _save(d / "b.tif", np.zeros((32, 32), bool), tifffile.imwrite),
        "unsupported dtype",
    ),
    "tiny-tif": (
        lambda d: _save(d / "s.tif", np.zeros((8, 8), "f4"), tifffile.imwrite),
        "8x8 pixels",
    ),
    "nan-tif": (
        lambda d: _save(d / "n.tif", np.full((32, 32), np.nan, "f4"), tifffile.imwrite),
        "NaN or Inf",
    ),
    "4d-no-axes": (
        lambda d: _save(d / "4d.npy.zarr", np.zeros((2, 2, 32, 32), "f4"), _zarr_array),
        "cannot guess the axes",
    ),
}


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def _save(p: Path, arr, writer) -> Path:
    writer(p, arr)
    return p


def _truncated_tif(p: Path) -> Path:
    tifffile.imwrite(p, np.random.default_rng(0).random((64, 64)).astype("f4"), compression="zlib")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    return p


def _folder(p: Path) -> Path:
    p.mkdir()
    (p / "notes.txt").write_text("not an image")
    return p


def _group(p: Path, n: int) -> Path:
    g = zarr.open_group(str(p), mode="w")
    for i in range(n):
        g.create_array(f"a{i}", shape=(32, 32), dtype="f4")
    return p


def _zarr_array(p: Path, arr) -> None:
    zarr.create_array(store=str(p), shape=arr.shape, dtype=arr.dtype)[:] = arr


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_input_is_one_line_and_leaves_nothing(case, tmp_path, capsys):
    make, match = BAD_INPUTS[case]
    src = make(tmp_path)
    before = digest(src) if src.exists() else None
    out = tmp_path / "out.zarr"
    rc, err = run_cli(["run", src, out, *TV], capsys)
    assert_one_line_error(rc, err, match)
    assert (digest(src) if src.exists() else None) == before
    assert_no_output_or_incomplete(out)


def test_our_own_output_as_input_is_refused(image, tmp_path, capsys):
    out = tmp_path / "o.zarr"
    assert main(["run", str(image), str(out), *TV]) == 0
    rc, err = run_cli(["run", out, tmp_path / "o2.zarr", *TV], capsys)
    assert_one_line_error(rc, err, "masked-denoise output")


def _corrupt_chunk(image: Path, plane: int, how: str) -> None:
    chunk = image / "c" / str(plane) / "0" / "0"
    data = chunk.read_bytes()
    chunk.write_bytes(b"\x00" * len(data) if how == "garbage" else data[: len(data) // 2])


@pytest.mark.parametrize("how", ["garbage", "truncated"])
@pytest.mark.parametrize("plane", [0, 2])
def test_a_corrupt_chunk_names_the_array_and_chunk(image, tmp_path, capsys, how, plane):
    _corrupt_chunk(image, plane, how)
    before = digest(image)
    out = tmp_path / "out.zarr"
    rc, err = run_cli(["run", image, out, *TV, "--mode", "per-tile"], capsys)
    assert_one_line_error(rc, err, "cannot read the input")
    assert f"chunk ({plane}, 0, 0)" in err[0], err
    assert digest(image) == before
    assert_no_output_or_incomplete(out)


def test_nan_inside_a_volume_names_the_pixel_and_marks_the_store(tmp_path, capsys):
    p = tmp_path / "nan.zarr"
    a = zarr.create_array(store=str(p), shape=(4, 64, 64), chunks=(1, 64, 64), dtype="f4")
    data = np.random.default_rng(0).random((4, 64, 64)).astype("f4")
    data[3, 17, 40] = np.nan
    a[:] = data
    out = tmp_path / "out.zarr"
    rc, err = run_cli(["run", p, out, *TV, "--mode", "per-tile"], capsys)
    assert_one_line_error(rc, err, "NaN or Inf")
    assert "plane 3, y 17, x 40" in err[0], err
    assert_no_output_or_incomplete(out)


def test_huge_intensities_give_a_finite_noise_map(tmp_path, capsys):
    p = tmp_path / "big.tif"
    tifffile.imwrite(p, (np.random.default_rng(0).random((64, 64)) * 1e20).astype("f4"))
    out = tmp_path / "out.zarr"
    assert main(["run", str(p), str(out), *TV]) == 0
    den, noise = denoised(out)
    assert np.isfinite(den).all() and np.isfinite(noise).all() and noise.max() > 1e18


# ------------------------------------------------------------------------------ outputs
def test_an_existing_output_is_kept_without_overwrite(image, tmp_path, capsys):
    out = tmp_path / "o.zarr"
    assert main(["run", str(image), str(out), *TV]) == 0
    before = digest(out)
    rc, err = run_cli(["run", image, out, *TV], capsys)
    assert_one_line_error(rc, err, "exists")
    assert digest(out) == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_regular_file_is_never_replaced(image, tmp_path, capsys, overwrite):
    out = tmp_path / "results.txt"
    out.write_text("my results")
    rc, err = run_cli(["run", image, out, *TV, *(["--overwrite"] if overwrite else [])], capsys)
    assert_one_line_error(rc, err, "is a file")
    assert out.read_text() == "my results"


def test_overwrite_keeps_a_folder_that_is_not_our_store(image, tmp_path, capsys):
    out = _folder(tmp_path / "thesis")
    before = digest(out)
    rc, err = run_cli(["run", image, out, *TV, "--overwrite"], capsys)
    assert_one_line_error(rc, err, "not a zarr store written by masked-denoise")
    assert digest(out) == before


def test_overwrite_keeps_a_zarr_store_someone_else_wrote(image, tmp_path, capsys):
    out = tmp_path / "theirs.zarr"
    _zarr_array(out, np.ones((32, 32), "f4"))
    before = digest(out)
    rc, err = run_cli(["run", image, out, *TV, "--overwrite"], capsys)
    assert_one_line_error(rc, err, "not a zarr store written by masked-denoise")
    assert digest(out) == before


def test_the_input_itself_as_output_is_refused(image, capsys):
    before = digest(image)
    rc, err = run_cli(["run", image, image, *TV, "--overwrite"], capsys)
    assert_one_line_error(rc, err, "would overwrite the input")
    assert digest(image) == before


def test_an_output_inside_the_input_store_is_refused(tmp_path, capsys):
    p = tmp_path / "data.zarr"
    g = zarr.open_group(str(p), mode="w")
    g.create_array("raw", shape=(64, 64), dtype="f4")[:] = np.random.default_rng(0).random((64, 64))
    before = digest(p)
    rc, err = run_cli(["run", p / "raw", p / "denoised_run", *TV], capsys)
    assert_one_line_error(rc, err, "would overwrite the input")
    assert digest(p) == before


@pytest.mark.parametrize(
    "argv,match",
    [
        (["{out_missing_parent}"], "does not exist"),
        (["{out}", "--resume"], "cannot resume"),
    ],
)
def test_output_paths_checked_before_anything_runs(image, tmp_path, capsys, argv, match):
    out = tmp_path / "o.zarr"
    paths = {"out": out, "out_missing_parent": tmp_path / "no" / "such" / "o.zarr"}
    args = [a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]
    rc, err = run_cli(["run", image, *args, *TV], capsys)
    assert_one_line_error(rc, err, match)
    assert not out.exists()


def test_resume_with_other_settings_is_refused(image, tmp_path, capsys):
    out = tmp_path / "o.zarr"
    assert main(["run", str(image), str(out), *TV]) == 0
    before = digest(out)
    rc, err = run_cli(["run", image, out, *TV, "--seed", "3", "--resume"], capsys)
    assert_one_line_error(rc, err, "different settings")
    assert digest(out) == before


def test_a_second_run_on_a_locked_output_names_the_holder(image, tmp_path, capsys):
    out = tmp_path / "o.zarr"
    with OutputLock(out):
        rc, err = run_cli(["run", image, out, *TV], capsys)
        assert_one_line_error(rc, err, f"in use by another run (pid {os.getpid()}")
        rc, err = run_cli(["run", image, out, *TV, "--overwrite"], capsys)
        assert_one_line_error(rc, err, "in use by another run")
    assert not out.exists() and not (tmp_path / "o.zarr.lock").exists()
    assert main(["run", str(image), str(out), *TV]) == 0  # the lock went with its holder


def test_the_api_takes_the_same_lock(image, tmp_path):
    from napari_masked_denoise import DenoiseError, denoise_to_zarr

    out = tmp_path / "o.zarr"
    data = zarr.open_array(str(image), mode="r")
    with OutputLock(out), pytest.raises(DenoiseError, match="in use by another run"):
        denoise_to_zarr(data, out, axes="ZYX", method="tv", preset="fixed")


def test_an_incomplete_output_says_why_and_overwrite_replaces_it(
    image, tmp_path, capsys, monkeypatch, reference
):
    from napari_masked_denoise.engine import jobs

    real, calls = jobs.compute, {"n": 0}

    def fails_on_the_third(plan, meth, j, raw, precision):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the GPU fell off the bus")
        return real(plan, meth, j, raw, precision)

    monkeypatch.setattr(jobs, "compute", fails_on_the_third)
    out = tmp_path / "o.zarr"
    rc, err = run_cli(["run", image, out, *BLENDED], capsys)
    assert rc == 1 and len(err) == 1 and "please report it" in err[0], err
    assert open_result(out)["incomplete_reason"] == "RuntimeError: the GPU fell off the bus"
    monkeypatch.setattr(jobs, "compute", real)
    rc, err = run_cli(["run", image, out, *BLENDED], capsys)
    assert_one_line_error(rc, err, "is incomplete (RuntimeError: the GPU fell off the bus)")
    assert main(["run", str(image), str(out), *BLENDED, "--overwrite"]) == 0
    np.testing.assert_array_equal(denoised(out)[0], reference[0])
    assert "incomplete_reason" not in open_result(out) or not open_result(out)["incomplete_reason"]


# ------------------------------------------------------------------------------ options
BAD_OPTIONS = [
    (["--method", "tv", "-o", "weight=abc"], "weight must be"),
    (["--method", "ttt-mim", "-o", "steps=abc"], "steps must be"),
    (["--method", "tv", "-o", "nonsense=1"], "unknown option"),
    (["--method", "tv", "-o", "weight"], "not KEY=VALUE"),
    (["--method", "tv", "--seed", "-1"], "seed must be"),
    (["--method", "tv", "--seed", str(2**32)], "seed must be"),
    (["--method", "tv", "--seed", "abc"], "invalid int value"),
    (["--method", "tv", "--workers", "0"], "workers must be 1 or more"),
    (["--method", "tv", "--workers", "-2"], "workers must be 1 or more"),
    (["--method", "magic"], "unknown method"),
    (["--method", "tv", "--preset", "slow"], "unknown preset"),
    (["--method", "tv", "--tile", "4"], "tile must be"),
    (["--method", "tv", "--axes", "QQ"], "unknown letters"),
    (["--method", "tv", "--mode", "sometimes"], "invalid choice"),
    (["--method", "tv", "--precision", "bogus"], "invalid choice"),
    (["--method", "tv", "--device", "tpu"], "unknown device"),
    (["-o", "candidates=magic"], "unknown method"),
    (["-o", "candidates=nlm@strong"], "must be a number"),
    (["--method", "ttt-mim", "-o", "weights=/no/such/weights.pt"], "does not exist"),
    (["--bogus-flag"], "unrecognized arguments"),
]


@pytest.mark.parametrize("extra,match", BAD_OPTIONS, ids=[m for _, m in BAD_OPTIONS])
def test_a_bad_option_is_one_line_before_any_output(image, tmp_path, capsys, extra, match):
    out = tmp_path / "o.zarr"
    before = digest(image)
    try:
        rc, err = run_cli(["run", image, out, "-q", *extra], capsys)
    except SystemExit as exc:  # argparse
        rc, err = exc.code, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert_one_line_error(rc, err, match)
    assert not out.exists() and digest(image) == before


def test_workers_without_distributed_is_one_line(image, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "distributed" else real(n, *a)
    )
    out = tmp_path / "o.zarr"
    rc, err = run_cli(["run", image, out, *TV, "--workers", "2"], capsys)
    assert_one_line_error(rc, err, "needs dask.distributed")
    assert not out.exists()


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_weights_that_would_run_code_are_refused(image, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps(_Evil()))
    out = tmp_path / "o.zarr"
    rc, err = run_cli(["run", image, out, "--method", "ttt-mim", "-o", f"weights={bad}"], capsys)
    assert_one_line_error(rc, err, "could run code")
    assert not (tmp_path / "PWNED").exists()
    assert_no_output_or_incomplete(out)


def test_a_tampered_resume_state_is_refused(image, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o.zarr"
    args = [image, out, "--method", "ttt-mim", "--preset", "no-adapt", "--mode", "once", "-q"]
    assert main(["run", *map(str, args)]) == 0
    g = zarr.open_group(str(out), mode="r+")
    evil = np.frombuffer(pickle.dumps(_Evil()), np.uint8)
    del g["masked_denoise/method_state"]
    g["masked_denoise"].create_array("method_state", shape=evil.shape, dtype="uint8")[:] = evil
    g.attrs["napari_masked_denoise"] = {**g.attrs["napari_masked_denoise"], "complete": False}
    rc, err = run_cli(["run", *args, "--resume"], capsys)
    assert_one_line_error(rc, err)
    assert "could run code" in err[0] or "cannot be read" in err[0], err
    assert not (tmp_path / "PWNED").exists()


# ------------------------------------------------------------------------------ disk
def test_no_space_is_reported_before_the_output_is_made(image, tmp_path, capsys, monkeypatch):
    import shutil

    from napari_masked_denoise.engine import output

    monkeypatch.setattr(output.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 10))
    out = tmp_path / "o.zarr"
    rc, err = run_cli(["run", image, out, *TV], capsys)
    assert_one_line_error(rc, err, "not enough disk space")
    assert not out.exists()


def test_a_full_disk_mid_run_is_one_line_and_resume_finishes(
    image, tmp_path, capsys, monkeypatch, reference
):
    from zarr.storage import _local

    real, calls = _local._put, {"n": 0}

    def full(path, value, *a, **k):
        if "o.zarr/0/c/" in str(path).replace(os.sep, "/"):  # the denoised image's chunks
            calls["n"] += 1
            if calls["n"] > 4:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, value, *a, **k)

    monkeypatch.setattr(_local, "_put", full)
    out = tmp_path / "o.zarr"
    before = digest(image)
    rc, err = run_cli(["run", image, out, *BLENDED], capsys)
    assert_one_line_error(rc, err, "disk of the output is full")
    assert "full" in open_result(out)["incomplete_reason"]
    monkeypatch.setattr(_local, "_put", real)
    assert main(["run", str(image), str(out), *BLENDED, "--resume"]) == 0
    den, noise = denoised(out)
    np.testing.assert_array_equal(den, reference[0])
    np.testing.assert_array_equal(noise, reference[1])
    assert digest(image) == before


# ------------------------------------------------------------------------------ kills
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from napari_masked_denoise.cli import main
    from napari_masked_denoise.engine import store as st

    where, k = sys.argv[1], int(sys.argv[2])
    sig = {"kill": signal.SIGKILL, "int": signal.SIGINT, "term": signal.SIGTERM}
    count = {"n": 0}

    class Trap:
        def __init__(self, arr, name):
            self._arr, self._name = arr, name
        def __getattr__(self, a):
            return getattr(self._arr, a)
        def __getitem__(self, i):
            return self._arr[i]
        def __setitem__(self, i, v):
            done = self._name == "tiles_done" and int(v) == 1
            if done:
                count["n"] += 1
                if count["n"] == k and where == "before-ledger":
                    os.kill(os.getpid(), signal.SIGKILL)
            self._arr[i] = v
            if self._name == "denoised" and where == "mid-addition":
                count["d"] = count.get("d", 0) + 1
                if count["d"] == k:
                    os.kill(os.getpid(), signal.SIGKILL)
            if done and count["n"] == k and where in sig:
                os.kill(os.getpid(), sig[where])

    real = st.Store.writers
    st.Store.writers = lambda self, extras: {
        n: Trap(a, n) for n, a in real(self, extras).items()
    }
    sys.exit(main(sys.argv[3:]))
    """
)


def _child(tmp_path, where, k, argv, **kw) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen(
        [sys.executable, str(script), where, str(k), *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.mark.parametrize(
    "where,k", [("before-ledger", 3), ("mid-addition", 5), ("kill", 7), ("before-ledger", 1)]
)
def test_a_hard_kill_at_a_write_then_resume_equals_an_uninterrupted_run(
    image, tmp_path, reference, where, k
):
    out = tmp_path / "o.zarr"
    before = digest(image)
    p = _child(tmp_path, where, k, ["run", image, out, *BLENDED])
    p.communicate(timeout=300)
    assert p.returncode == -signal.SIGKILL
    assert open_result(out)["complete"] is False
    assert main(["run", str(image), str(out), *BLENDED, "--resume"]) == 0
    den, noise = denoised(out)
    np.testing.assert_array_equal(den, reference[0])
    np.testing.assert_array_equal(noise, reference[1])
    assert digest(image) == before
    assert not (tmp_path / "o.zarr.lock").exists()


@pytest.mark.parametrize("sig,code", [("int", 130), ("term", 143)])
def test_sigint_and_sigterm_mark_the_store_and_resume_finishes(
    image, tmp_path, reference, capsys, sig, code
):
    out = tmp_path / "o.zarr"
    p = _child(tmp_path, sig, 4, ["run", image, out, *BLENDED])
    _, err = p.communicate(timeout=300)
    assert p.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in err
    assert open_result(out)["incomplete_reason"] == "interrupted"
    assert main(["run", str(image), str(out), *BLENDED, "--resume"]) == 0
    np.testing.assert_array_equal(denoised(out)[0], reference[0])


@pytest.mark.parametrize("seed", [0, 1])
def test_kill_9_at_a_random_instant_then_resume(tmp_path, seed):
    p = tmp_path / "vol.zarr"
    a = zarr.create_array(store=str(p), shape=(6, 128, 128), chunks=(1, 128, 128), dtype="f4")
    a[:] = np.random.default_rng(5).random((6, 128, 128)).astype("f4")
    args = [p, tmp_path / "o.zarr", *BLENDED]
    child = subprocess.Popen(
        [sys.executable, "-m", "napari_masked_denoise.cli", "run", *map(str, args)],
        stderr=subprocess.PIPE,
    )
    ledger = tmp_path / "o.zarr" / "masked_denoise" / "tiles_done"
    t0 = time.monotonic()
    while not ledger.exists() and child.poll() is None and time.monotonic() - t0 < 120:
        time.sleep(0.05)
    time.sleep(np.random.default_rng(seed).uniform(0, 0.5))
    child.kill()
    child.wait()
    assert main(["run", *map(str, args), "--resume"]) == 0
    ref = tmp_path / "ref.zarr"
    assert main(["run", str(p), str(ref), *BLENDED]) == 0
    np.testing.assert_array_equal(denoised(tmp_path / "o.zarr")[0], denoised(ref)[0])


def test_two_concurrent_overwrites_never_corrupt_the_output(image, tmp_path, reference):
    out = tmp_path / "o.zarr"
    assert main(["run", str(image), str(out), *BLENDED]) == 0
    kids = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "napari_masked_denoise.cli",
                "run",
                str(image),
                str(out),
                *BLENDED,
                "--overwrite",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(k.wait(timeout=300), k.stderr.read()) for k in kids]
    assert all(rc in (0, 2) for rc, _ in results), results
    assert any(rc == 0 for rc, _ in results), results
    for rc, err in results:
        if rc == 2:
            assert "in use by another run" in err and "Traceback" not in err, err
    den, noise = denoised(out)
    np.testing.assert_array_equal(den, reference[0])
    np.testing.assert_array_equal(noise, reference[1])


def test_a_blended_network_run_whose_last_core_outgrows_the_tile(tmp_path):
    """Cores are aligned to the network's grid, so the last one can exceed the tile: the
    undo slot of blended additions must hold it."""
    from napari_masked_denoise import denoise

    img = np.random.default_rng(0).random((150, 150)).astype("f4")
    r = denoise(img, axes="YX", method="meta-tta", mode="per-tile", tile=64)
    assert r.denoised.shape == (150, 150) and np.isfinite(r.denoised).all()


def test_resuming_a_store_of_the_older_layout_is_refused(image, tmp_path, capsys):
    out = tmp_path / "old.zarr"
    g = zarr.open_group(str(out), mode="w")
    g.create_array("denoised", shape=(3, 96, 96), dtype="f4")
    g.attrs["napari_masked_denoise"] = {"complete": False, "fingerprint": {}}
    rc, err = run_cli(["run", image, out, *TV, "--resume"], capsys)
    assert_one_line_error(rc, err)
    assert "earlier version" in err[0] or "different settings" in err[0], err


def test_a_run_killed_while_creating_its_arrays_resumes(image, tmp_path, monkeypatch, reference):
    from napari_masked_denoise.engine import store as st

    real, calls = st.Store._create, {"n": 0}

    def dies_midway(self, name, level=0, **kw):
        calls["n"] += 1
        if calls["n"] == 4:  # after some of the image's levels, before the ledger
            raise KeyboardInterrupt
        return real(self, name, level, **kw)

    monkeypatch.setattr(st.Store, "_create", dies_midway)
    out = tmp_path / "o.zarr"
    assert main(["run", str(image), str(out), *BLENDED]) == 130
    monkeypatch.setattr(st.Store, "_create", real)
    assert main(["run", str(image), str(out), *BLENDED, "--resume"]) == 0
    np.testing.assert_array_equal(denoised(out)[0], reference[0])


def test_one_lock_whatever_path_names_the_store(tmp_path):
    from napari_masked_denoise import DenoiseError

    real = tmp_path / "real.zarr"
    real.mkdir()
    link = tmp_path / "link.zarr"
    link.symlink_to(real)
    with OutputLock(link), pytest.raises(DenoiseError, match="in use by another run"):
        OutputLock(real).acquire()
    with pytest.raises(DenoiseError, match="does not exist"):
        OutputLock(tmp_path / "no" / "such.zarr").acquire()
