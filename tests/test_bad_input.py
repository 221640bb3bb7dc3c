import numpy as np
import pytest
import zarr

from napari_masked_denoise import DenoiseError, denoise, denoise_to_zarr
from napari_masked_denoise.engine import open_result

OK = np.zeros((32, 32), np.float32)


@pytest.mark.parametrize(
    "image,axes,match",
    [
        (np.zeros((32, 32), bool), "YX", "unsupported dtype bool"),
        (np.zeros((32, 32), np.complex64), "YX", "unsupported dtype complex64"),
        (np.full((32, 32), np.nan, np.float32), "YX", "NaN or Inf"),
        (np.zeros((0, 32), np.float32), "YX", "empty"),
        (np.zeros((8, 8), np.float32), "YX", "8x8 pixels"),
        (OK, "ZYX", "3 letters but the array has 2"),
        (OK, "YQ", "unknown letters"),
        (OK, "YY", "repeat"),
        (np.zeros((2, 32, 32), np.float32), "ZYC", "must contain both Y and X"),
        (np.zeros((2, 2, 32, 32), np.float32), None, "cannot guess the axes of a 4-D"),
    ],
)
def test_bad_arrays_get_one_line_errors(image, axes, match):
    with pytest.raises(DenoiseError, match=match) as err:
        denoise(image, axes=axes, method="zero-shot", iterations=1)
    assert "\n" not in str(err.value)


def test_inf_in_a_lazy_input_stops_with_an_incomplete_store(tmp_path):
    src = zarr.create_array(
        store=str(tmp_path / "in.zarr"), shape=(2, 48, 48), chunks=(1, 48, 48), dtype="f4"
    )
    data = np.random.default_rng(0).random((2, 48, 48)).astype(np.float32)
    data[1, 5, 5] = np.inf
    src[:] = data
    with pytest.raises(DenoiseError, match="NaN or Inf"):
        denoise_to_zarr(
            src,
            tmp_path / "out.zarr",
            axes="ZYX",
            mode="per-tile",
            method="zero-shot",
            iterations=1,
        )
    assert open_result(tmp_path / "out.zarr")["complete"] is False


def test_existing_output_needs_overwrite_and_non_stores_are_never_deleted(tmp_path):
    out = tmp_path / "o.zarr"
    denoise_to_zarr(OK, out, axes="YX", method="zero-shot", iterations=1)
    with pytest.raises(DenoiseError, match="exists; pass overwrite"):
        denoise_to_zarr(OK, out, axes="YX", method="zero-shot", iterations=1)
    denoise_to_zarr(OK, out, axes="YX", method="zero-shot", iterations=1, overwrite=True)
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("x")
    with pytest.raises(DenoiseError, match="not a zarr store"):
        denoise_to_zarr(OK, precious, axes="YX", method="zero-shot", iterations=1, overwrite=True)
    assert (precious / "chapter1.tex").exists()


def test_output_equal_to_input_is_refused(tmp_path):
    p = tmp_path / "in.zarr"
    src = zarr.create_array(store=str(p), shape=(32, 32), dtype="f4")
    src[:] = 1.0
    with pytest.raises(DenoiseError, match="would overwrite the input"):
        denoise_to_zarr(
            src, p, axes="YX", input_path=p, overwrite=True, method="zero-shot", iterations=1
        )
    assert zarr.open_array(str(p))[:].min() == 1.0


def test_bad_method_preset_mode_device():
    with pytest.raises(DenoiseError, match="unknown method"):
        denoise(OK, axes="YX", method="magic")
    with pytest.raises(DenoiseError, match="unknown preset"):
        denoise(OK, axes="YX", preset="slow")
    with pytest.raises(DenoiseError, match="unknown mode"):
        denoise(OK, axes="YX", mode="sometimes")
    with pytest.raises(DenoiseError, match="unknown device"):
        denoise(OK, axes="YX", device="tpu")
    with pytest.raises(DenoiseError, match="tile must be"):
        denoise(OK, axes="YX", tile=4)
