import numpy as np
import pytest


@pytest.fixture
def camera_noisy():
    """A 128x128 crop of scikit-image's camera in [0, 1], its noisy version (sigma 0.1)."""
    from skimage import data

    clean = data.camera()[96:224, 160:288].astype(np.float32) / 255.0
    noisy = clean + np.random.default_rng(0).normal(0, 0.1, clean.shape).astype(np.float32)
    return clean, noisy


@pytest.fixture
def psnr():
    """PSNR on [0, 1]-clipped images, data range 1."""
    from skimage.metrics import peak_signal_noise_ratio

    return lambda clean, img: peak_signal_noise_ratio(clean, np.clip(img, 0, 1), data_range=1)


@pytest.fixture
def image_folder(tmp_path):
    """21 smooth random images (every 20th is held out for validation)."""
    from scipy.ndimage import gaussian_filter
    from skimage import io

    rng = np.random.default_rng(0)
    d = tmp_path / "clean"
    d.mkdir()
    for i in range(21):
        img = gaussian_filter(rng.random((96, 96)), 3)
        img = (img - img.min()) / (img.max() - img.min())
        io.imsave(d / f"{i:02d}.png", (img * 255).astype(np.uint8), check_contrast=False)
    return d


@pytest.fixture
def noisy_zarr_volume(tmp_path):
    """A 3x48x40 float32 zarr array of noise about 0.5 (std 0.1): ``(path, values)``."""
    import zarr

    vol = (0.5 + 0.1 * np.random.default_rng(0).standard_normal((3, 48, 40))).astype(np.float32)
    path = tmp_path / "in.zarr"
    zarr.create_array(store=str(path), shape=vol.shape, dtype="f4")[:] = vol
    return path, vol


@pytest.fixture
def ome_input(tmp_path):
    """An OME-Zarr input with units, scale and translation (as from a microscope)."""
    import zarr
    from ome_zarr_models.v05.axes import Axis
    from ome_zarr_models.v05.image import Image
    from pydantic_zarr.v3 import ArraySpec

    p = tmp_path / "cells.ome.zarr"
    data = np.random.default_rng(0).random((3, 160, 140)).astype("f4")
    image = Image.new(
        array_specs=[ArraySpec.from_array(data, dimension_names=["z", "y", "x"])],
        paths=["0"],
        axes=[Axis(name=a, type="space", unit="micrometer") for a in "zyx"],
        scales=[[2.0, 0.25, 0.25]],
        translations=[[10.0, 5.0, 1.0]],
    )
    g = image.to_zarr(zarr.storage.LocalStore(str(p)), "")
    g["0"][:] = data
    return p
