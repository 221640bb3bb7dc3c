"""The napari reader contribution for output stores."""

import numpy as np

from napari_masked_denoise.cli import main


def test_the_napari_reader_opens_denoised_on_top_and_the_noise_map_hidden(
    make_napari_viewer, ome_input, tmp_path
):
    out = tmp_path / "result.zarr"
    assert main(["run", str(ome_input), str(out), "--method", "tv", "--preset", "fixed", "-q"]) == 0
    viewer = make_napari_viewer()
    viewer.open(str(out), plugin="napari-masked-denoise")
    names = [ly.name for ly in viewer.layers]
    assert names == ["result noise map (tv)", "result denoised (tv)"], names
    nmap, den = viewer.layers
    assert den.visible and not nmap.visible
    assert den.multiscale and len(den.data) == 2 and den.data[0].shape == (3, 160, 140)
    np.testing.assert_allclose(den.scale, [2.0, 0.25, 0.25])
    np.testing.assert_allclose(den.translate, [10.0, 5.0, 1.0])
    assert den.contrast_limits[1] > den.contrast_limits[0]
    assert nmap.colormap.name == "magma"
    # a folder that is not an output is left to other readers
    from napari_masked_denoise._napari.reader import get_reader

    assert get_reader(str(ome_input)) is None


def test_denoise_layer_from_the_console_adds_the_result_layers(make_napari_viewer):
    from napari_masked_denoise import denoise_layer

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((2, 64, 64)).astype("f4"), name="cells", scale=(3.0, 0.5, 0.5))
    res = denoise_layer("cells", viewer=viewer, method="tv", preset="fixed")
    names = [ly.name for ly in viewer.layers]
    assert names == ["cells", "cells noise map (tv fixed)", "cells denoised (tv fixed)"]
    den = viewer.layers[-1]
    assert den.visible and not viewer.layers[1].visible
    np.testing.assert_allclose(den.scale, [3.0, 0.5, 0.5])
    assert den.data.shape == (2, 64, 64) and res.axes == "ZYX"
