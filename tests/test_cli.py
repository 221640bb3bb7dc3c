import numpy as np
import pytest
import tifffile
import zarr

from napari_masked_denoise.cli import main
from napari_masked_denoise.engine.store import output_array

FAST = ["--method", "zero-shot", "-o", "iterations=3", "-o", "fill_passes=1", "-q"]


@pytest.fixture
def volume_store(tmp_path):
    p = tmp_path / "vol.zarr"
    a = zarr.create_array(
        store=str(p),
        shape=(3, 48, 40),
        chunks=(1, 48, 40),
        dtype="u2",
        dimension_names=("z", "y", "x"),
    )
    a[:] = np.random.default_rng(0).integers(0, 4000, (3, 48, 40), dtype=np.uint16)
    return p


def test_run_on_zarr_prints_a_summary(volume_store, tmp_path, capsys):
    out = tmp_path / "out.zarr"
    assert main(["run", str(volume_store), str(out), *FAST]) == 0
    text = capsys.readouterr().out
    for word in ("shape (3, 48, 40)", "axes ZYX", "Mvoxel/s", "sigma", "once mode"):
        assert word in text
    g = zarr.open_group(str(out), mode="r")
    assert output_array(g, "denoised").shape == (3, 48, 40) and output_array(
        g, "noise_map"
    ).shape == (3, 48, 40)


def test_run_on_ome_zarr_uses_level_0_axes_and_scale(tmp_path):
    p = tmp_path / "ome.zarr"
    g = zarr.open_group(str(p), mode="w")
    g.create_array("0", shape=(2, 40, 40), dtype="f4")[:] = np.random.default_rng(0).random(
        (2, 40, 40)
    )
    g.create_array("1", shape=(2, 20, 20), dtype="f4")
    g.attrs["multiscales"] = [
        {
            "axes": [
                {"name": "z", "type": "space"},
                {"name": "y", "type": "space"},
                {"name": "x", "type": "space"},
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [2.0, 0.5, 0.5]}],
                },
                {
                    "path": "1",
                    "coordinateTransformations": [{"type": "scale", "scale": [2.0, 1.0, 1.0]}],
                },
            ],
        }
    ]
    assert main(["run", str(p), str(tmp_path / "o.zarr"), *FAST]) == 0
    out = output_array(zarr.open_group(str(tmp_path / "o.zarr"), mode="r"), "denoised")
    assert out.shape == (2, 40, 40) and out.attrs["scale"] == [2.0, 0.5, 0.5]


def test_run_on_tiff_and_png(tmp_path):
    from skimage import io

    img = (np.random.default_rng(0).random((40, 36)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", img)
    io.imsave(tmp_path / "b.png", img, check_contrast=False)
    for name in ("a.tif", "b.png"):
        out = tmp_path / f"{name}.zarr"
        assert main(["run", str(tmp_path / name), str(out), *FAST]) == 0
        assert output_array(zarr.open_group(str(out), mode="r"), "denoised").shape == (40, 36)


def test_resume_and_overwrite(volume_store, tmp_path, capsys):
    out = tmp_path / "out.zarr"
    assert main(["run", str(volume_store), str(out), *FAST]) == 0
    assert main(["run", str(volume_store), str(out), *FAST]) == 2
    assert "exists; pass overwrite" in capsys.readouterr().err
    assert main(["run", str(volume_store), str(out), "--resume", *FAST]) == 0  # nothing left to do
    assert main(["run", str(volume_store), str(out), "--overwrite", *FAST]) == 0


@pytest.mark.parametrize(
    "args,match",
    [
        (["run", "missing.zarr", "o.zarr"], "input not found"),
        (["run", "{vol}", "{vol}", "--overwrite"], "would overwrite the input"),
        (["run", "{vol}", "o.zarr", "--axes", "TZYX"], "4 letters but the array has 3"),
        (["run", "{vol}", "o.zarr", "--method", "nope"], "unknown method"),
        (["run", "{vol}", "o.zarr", "--device", "cuda"], "cuda"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(
    volume_store, tmp_path, capsys, monkeypatch, args, match
):
    monkeypatch.chdir(tmp_path)
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    args = [a.replace("{vol}", str(volume_store)) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err and err.startswith("masked-denoise: error:")


def test_methods_lists_presets(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "zero-shot" in out and "quality" in out and "real-fast" in out


def test_methods_lists_the_registry_without_torch(capsys):
    """``methods`` reads the written catalogue, which must equal the registry (rewrite it
    with ``python -m napari_masked_denoise.methods``), and imports no torch."""
    import subprocess
    import sys

    from napari_masked_denoise.methods import catalogue, read_catalogue

    assert read_catalogue() == catalogue(), "rewrite: python -m napari_masked_denoise.methods"
    code = (
        "import sys; from napari_masked_denoise.cli import main; main(['methods']); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.splitlines()[-1] == "False"
    assert "tv: total-variation" in out and "    calibrated" in out
