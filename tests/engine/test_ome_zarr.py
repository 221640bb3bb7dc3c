"""The output is an OME-Zarr (0.5) image with a pyramid, read back with ome-zarr-models
and with the package's napari reader; older stores still open."""

import numpy as np
import zarr

from napari_masked_denoise import denoise_to_zarr
from napari_masked_denoise.cli import main
from napari_masked_denoise.engine.pyramid import MIN_SIDE, level_shapes
from napari_masked_denoise.engine.store import output_array


def test_cli_output_is_ome_zarr_with_units_scale_translation_and_a_pyramid(ome_input, tmp_path):
    from ome_zarr_models.v05.image import Image

    out = tmp_path / "out.zarr"
    assert main(["run", str(ome_input), str(out), "--method", "tv", "--preset", "fixed", "-q"]) == 0
    g = zarr.open_group(str(out), mode="r")
    for group in (g, g["noise_map"]):
        image = Image.from_zarr(group)  # validates the metadata against OME-Zarr 0.5
        ms = image.ome_attributes.multiscales[0]
        assert [a.name for a in ms.axes] == ["z", "y", "x"]
        assert all(a.type == "space" and a.unit == "micrometer" for a in ms.axes)
        paths = [d.path for d in ms.datasets]
        assert paths == ["0", "1"]  # 160x140 -> 80x70; 40x35 would be under MIN_SIDE
        scale0, shift0 = ms.datasets[0].coordinateTransformations
        scale1, shift1 = ms.datasets[1].coordinateTransformations
        assert list(scale0.scale) == [2.0, 0.25, 0.25] and list(scale1.scale) == [2.0, 0.5, 0.5]
        assert list(shift0.translation) == [10.0, 5.0, 1.0]
        assert list(shift1.translation) == [10.0, 5.125, 1.125]  # the level's pixel centres
        assert group["0"].metadata.dimension_names == ("z", "y", "x")
    level0, level1 = np.asarray(g["0"][...]), np.asarray(g["1"][...])
    assert level1.shape == (3, 80, 70)
    np.testing.assert_allclose(
        level1, level0.reshape(3, 80, 2, 70, 2).mean(axis=(2, 4)), rtol=1e-6, atol=1e-6
    )
    # the bookkeeping is out of the image's way
    assert set(g["masked_denoise"].keys()) >= {"tiles_done", "tile_sigma"}
    assert "blend_undo" not in g["masked_denoise"]  # dropped once complete


def test_pyramid_levels_stop_at_the_minimum_side():
    assert level_shapes((5, 600, 130), (1, 2)) == [(5, 600, 130), (5, 300, 65)]
    assert level_shapes((MIN_SIDE - 1, MIN_SIDE - 1), (0, 1)) == [(MIN_SIDE - 1,) * 2]


def test_axes_ome_zarr_does_not_allow_keep_their_arrays_without_ome_metadata(tmp_path):
    rgb = np.random.default_rng(0).random((64, 64, 3)).astype("f4")
    res = denoise_to_zarr(rgb, tmp_path / "rgb.zarr", axes="YXC", method="tv", preset="fixed")
    g = zarr.open_group(str(tmp_path / "rgb.zarr"), mode="r")
    assert "ome" not in g.attrs and res.denoised.shape == (64, 64, 3)


def test_an_older_store_still_reads(tmp_path):
    """The layout before OME-Zarr: ``denoised`` and ``noise_map`` at the root."""
    from napari_masked_denoise._napari.reader import get_reader

    p = tmp_path / "old.zarr"
    g = zarr.open_group(str(p), mode="w")
    g.create_array("denoised", shape=(32, 32), dtype="f4")[:] = 1.0
    g.create_array("noise_map", shape=(32, 32), dtype="f4")[:] = 0.1
    g.attrs["napari_masked_denoise"] = {
        "complete": True,
        "axes": "YX",
        "fingerprint": {"method": "tv", "norm": [0.0, 1.0]},
    }
    assert output_array(g, "denoised")[0, 0] == 1.0
    layers = get_reader(str(p))(str(p))
    assert [kind for *_, kind in layers] == ["image", "image"]
    assert float(np.asarray(layers[-1][0])[0, 0]) == 1.0


def test_units_are_written_as_ome_zarr_names_them():
    from napari_masked_denoise.engine.ome import _unit

    assert _unit("µm") == _unit("micron") == _unit("micrometer") == "micrometer"
    assert _unit("ms") == "millisecond" and _unit("furlong") is None and _unit(None) is None
