"""Synthetic training noise: the statistics each model promises."""

import numpy as np
import pytest

from napari_masked_denoise.noise import simulate as nm


def _rng(seed=0):
    return np.random.default_rng(seed)


def _flat(v=0.5, shape=(256, 256)):
    return np.full(shape, v, dtype=np.float32)


def test_inputs_are_never_modified_and_seeds_reproduce():
    x = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    before = x.copy()
    for f in (
        nm.gaussian,
        nm.speckle,
        nm.salt_and_pepper,
        nm.classic_mix,
        nm.poisson_gaussian,
        nm.correlated,
        nm.row_column,
        nm.ct,
        nm.realistic,
    ):
        a, b = f(x, _rng(3)), f(x, _rng(3))
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32 and a.shape == x.shape
        assert not np.array_equal(a, x), f.__name__
    np.testing.assert_array_equal(x, before)


def test_gaussian_and_speckle_levels():
    assert nm.gaussian(_flat(), _rng(), sigma=0.1).std() == pytest.approx(0.1, rel=0.03)
    sp = nm.speckle(_flat(0.5), _rng(), sigma=0.2)
    assert sp.std() == pytest.approx(0.5 * 0.2, rel=0.03)
    assert nm.speckle(_flat(0.0), _rng(), sigma=0.2).std() == 0.0  # multiplicative


def test_salt_and_pepper_share():
    y = nm.salt_and_pepper(_flat(0.5), _rng(), amount=0.01)
    assert np.mean(y == 0) == pytest.approx(0.005, abs=0.001)
    assert np.mean(y == 1) == pytest.approx(0.005, abs=0.001)


def test_poisson_gaussian_variance_follows_the_signal():
    lo = nm.poisson_gaussian(_flat(0.2), _rng(), photons=50, read=0.01, offset=0.05)
    hi = nm.poisson_gaussian(_flat(0.8), _rng(), photons=50, read=0.01, offset=0.05)
    assert lo.mean() == pytest.approx(0.25, abs=0.005)
    assert lo.var() == pytest.approx(0.2 / 50 + 0.01**2, rel=0.05)
    assert hi.var() == pytest.approx(0.8 / 50 + 0.01**2, rel=0.05)


def test_correlated_noise_has_its_level_and_neighbour_correlation():
    n = nm.correlated(_flat(0.0), _rng(), sigma=0.1, width=1.0)
    assert n.std() == pytest.approx(0.1, rel=0.01)
    rho = np.corrcoef(n[:, :-1].ravel(), n[:, 1:].ravel())[0, 1]
    assert rho > 0.5
    white = nm.gaussian(_flat(0.0), _rng(), sigma=0.1)
    assert abs(np.corrcoef(white[:, :-1].ravel(), white[:, 1:].ravel())[0, 1]) < 0.05


def test_row_noise_is_constant_along_rows():
    y = nm.row_column(_flat(0.0, (4, 64, 64)), _rng(1), sigma=0.05)
    rows = y - y.mean(axis=-1, keepdims=True)  # what remains after the row offsets
    cols = y.mean(axis=-1)
    assert cols.std() > 0.02  # rows differ
    # rows are constant unless column offsets were added too; either way every row is
    # the same vector up to a constant
    assert np.allclose(rows, rows[:, :1, :], atol=1e-6)


def test_realistic_noise_keeps_the_signal_mean():
    x = _flat(0.5, (8, 64, 64))
    means = [float(nm.realistic(x, _rng(s)).mean()) for s in range(20)]
    assert 0.45 < np.mean(means) < 0.65  # offset up to 0.1, row offsets average out


def test_ct_noise_has_its_level_and_streaks_along_dense_structures():
    # two dense disks on one row: rays through both carry the most noise, so after
    # back-projection the band between them is noisier than a band far from them
    x = np.zeros((96, 96), np.float32)
    yy, xx = np.mgrid[:96, :96]
    for cx in (20, 76):
        x[(yy - 48) ** 2 + (xx - cx) ** 2 < 64] = 1.0
    rng = _rng()
    n = np.stack([nm.ct(x, rng, sigma=0.1, attenuation=4) - x for _ in range(20)])
    assert n.std() == pytest.approx(0.1, rel=0.01)
    sd = n.std(axis=0)
    assert sd[44:52, 32:64].mean() > 1.5 * sd[4:12, 32:64].mean()
    # planes of a stack get their own draws; shapes other than square work
    y = nm.ct(np.zeros((2, 50, 70), np.float32), rng, sigma=0.05)
    assert y.shape == (2, 50, 70) and not np.allclose(y[0], y[1])
    assert y[0].std() == pytest.approx(0.05, rel=0.01)


def test_realistic_noise_is_ct_noise_plus_offset_at_its_share():
    x = _flat(0.5, (64, 64))
    r = _rng(5)
    r.random()  # the draw that chooses the branch
    np.testing.assert_allclose(
        nm.realistic(x, _rng(5), offset=0.03, ct_share=1.0), nm.ct(x, r) + 0.03, atol=1e-6
    )
    assert not np.allclose(
        nm.realistic(x, _rng(5), offset=0.03, ct_share=0.0),
        nm.realistic(x, _rng(5), offset=0.03, ct_share=1.0),
    )


def test_every_recipe_is_reproducible_float32_and_leaves_its_input():
    x = np.linspace(0, 1, 4 * 48 * 48, dtype=np.float32).reshape(4, 1, 48, 48)
    before = x.copy()
    for name, recipe in nm.RECIPES.items():
        a, b = recipe(x, _rng(2)), recipe(x, _rng(2))
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.float32 and a.shape == x.shape, name
        assert not np.array_equal(a, x), name
    np.testing.assert_array_equal(x, before)


def test_fixed_recipes_have_their_levels():
    flat = _flat(0.5)
    assert (nm.RECIPES["g25"](flat, _rng()) - flat).std() == pytest.approx(25 / 255, rel=0.03)
    assert nm.RECIPES["poisson30"](flat, _rng()).var() == pytest.approx(0.5 / 30, rel=0.05)
    sp = nm.RECIPES["sp5"](flat, _rng())
    assert np.mean(sp == 0) == pytest.approx(0.025, abs=0.003)
    assert np.mean(sp == 1) == pytest.approx(0.025, abs=0.003)
    for name, level in (("corr25-box3", 25), ("corr20", 20)):
        n = nm.RECIPES[name](flat, _rng()) - flat
        assert n.std() == pytest.approx(level / 255, rel=0.01)
        assert np.corrcoef(n[:, :-1].ravel(), n[:, 1:].ravel())[0, 1] > 0.3


def test_recipe_parameters_can_be_overridden_and_unknown_names_are_refused():
    flat = _flat(0.5)
    dim = nm.RECIPES["pg30"](flat, _rng(), peak=5.0, read=0.0)
    assert dim.var() == pytest.approx(0.5 / 5, rel=0.05)
    np.testing.assert_array_equal(
        nm.RECIPES["g15"](flat, _rng()), nm.gaussian(flat, _rng(), sigma=15 / 255)
    )
    with pytest.raises(ValueError, match="g15"):
        nm.recipe("nope")
    assert nm.recipe("classic") is nm.RECIPES["classic"]


def test_rounded_gaussian_noise_is_added_in_float32():
    x = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    n = _rng(1).normal(0, 0.1, x.shape)
    np.testing.assert_array_equal(
        nm.gaussian(x, _rng(1), 0.1, round_noise=True), x + n.astype(np.float32)
    )
    np.testing.assert_array_equal(nm.gaussian(x, _rng(1), 0.1), (x + n).astype(np.float32))
