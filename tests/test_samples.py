"""Tests of the sample data (pure numpy / scikit-image, no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_masked_denoise import samples


def test_noisy_cell_shapes_and_noise():
    noisy, clean = samples.noisy_cell(seed=0)
    assert noisy.shape == clean.shape == (660, 550)
    assert noisy.dtype == clean.dtype == np.float32
    assert clean.min() == 0.0 and clean.max() == 1.0
    std = float((noisy - clean).std())
    # peak 30 photons + read 0.02: shot noise sqrt(c / 30) dominates
    assert 0.03 < std < 0.2
    assert abs(float((noisy - clean).mean())) < 0.01  # unbiased


def test_noisy_cell_deterministic():
    a, _ = samples.noisy_cell(seed=3)
    b, _ = samples.noisy_cell(seed=3)
    c, _ = samples.noisy_cell(seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_noise_is_signal_dependent():
    rng = np.random.default_rng(0)
    dark = samples.poisson_gaussian(np.full((200, 200), 0.05), rng)
    bright = samples.poisson_gaussian(np.full((200, 200), 0.9), rng)
    assert bright.std() > 2 * dark.std()
    zero = samples.poisson_gaussian(np.zeros((200, 200)), rng, sigma_read=0.02)
    assert zero.std() == pytest.approx(0.02, rel=0.1)


def test_lowdose_ct():
    noisy, clean = samples.lowdose_ct(n_slices=4, size=64, seed=1)
    assert noisy.shape == clean.shape == (4, 64, 64)
    assert noisy.dtype == clean.dtype == np.float32
    assert 0.8 < float(clean.max()) < 1.2
    std = float((noisy - clean).std())
    assert 0.005 < std < 0.2
    # slices differ (a 3-D-like stack), neighbouring ones less than distant ones
    d12 = np.abs(clean[2] - clean[1]).mean()
    d02 = np.abs(clean[2] - clean[0]).mean()
    assert 0 < d12 < d02
    again, clean2 = samples.lowdose_ct(n_slices=4, size=64, seed=1)
    np.testing.assert_array_equal(noisy, again)
    np.testing.assert_array_equal(clean, clean2)
    other, _ = samples.lowdose_ct(n_slices=4, size=64, seed=2)
    assert not np.array_equal(noisy, other)


def test_lowdose_ct_lower_dose_is_noisier():
    lo, clean = samples.lowdose_ct(n_slices=2, size=64, i0=1e3)
    hi, _ = samples.lowdose_ct(n_slices=2, size=64, i0=1e5)
    assert (lo - clean).std() > 3 * (hi - clean).std()


def test_noisy_volume():
    noisy, clean = samples.noisy_volume(shape=(16, 64, 48), seed=0)
    assert noisy.shape == clean.shape == (16, 64, 48)
    assert noisy.dtype == clean.dtype == np.float32
    assert clean.min() >= 0.0 and clean.max() == pytest.approx(1.0)
    assert 0.01 < float((noisy - clean).std()) < 0.2
    n2, c2 = samples.noisy_volume(shape=(16, 64, 48), seed=0)
    np.testing.assert_array_equal(noisy, n2)
    np.testing.assert_array_equal(clean, c2)
    n3, c3 = samples.noisy_volume(shape=(16, 64, 48), seed=1)
    assert not np.array_equal(clean, c3)
    with pytest.raises(ValueError):
        samples.noisy_volume(shape=(64, 64))


def test_write_samples_round_trip(tmp_path):
    import tifffile
    import zarr

    paths = samples.write_samples(tmp_path, seed=0)
    assert set(paths) == {
        "cell_noisy",
        "cell_clean",
        "ct_lowdose",
        "ct_clean",
        "volume",
        "volume_clean",
    }
    for p in paths.values():
        assert p.exists() and p.parent == tmp_path

    noisy, clean = samples.noisy_cell(seed=0)
    np.testing.assert_array_equal(tifffile.imread(paths["cell_noisy"]), noisy)
    np.testing.assert_array_equal(tifffile.imread(paths["cell_clean"]), clean)
    ct_noisy, ct_clean = samples.lowdose_ct(seed=0)
    np.testing.assert_array_equal(tifffile.imread(paths["ct_lowdose"]), ct_noisy)
    np.testing.assert_array_equal(tifffile.imread(paths["ct_clean"]), ct_clean)

    v_noisy, v_clean = samples.noisy_volume(seed=0)
    for name, ref in (("volume", v_noisy), ("volume_clean", v_clean)):
        arr = zarr.open_array(str(paths[name]), mode="r")
        assert arr.metadata.zarr_format == 3
        assert arr.dtype == np.float32
        assert arr.chunks == (8, 128, 128)
        assert tuple(arr.metadata.dimension_names) == ("z", "y", "x")
        np.testing.assert_array_equal(arr[...], ref)

    # deterministic and overwritable
    again = samples.write_samples(tmp_path, seed=0)
    np.testing.assert_array_equal(zarr.open_array(str(again["volume"]), mode="r")[...], v_noisy)
