import numpy as np
import pytest

from napari_masked_denoise.engine.tiling import axis_spans, tile_grid


@pytest.mark.parametrize("n", [1, 17, 64, 100, 256, 257, 1000])
@pytest.mark.parametrize("tile,overlap,align", [(64, 8, 1), (64, 16, 4), (100, 20, 8), (32, 0, 2)])
def test_spans_cover_and_weights_sum_to_one(n, tile, overlap, align):
    spans = axis_spans(n, tile, halo=13, overlap=overlap, align=align)
    total = np.zeros(n)
    for s in spans:
        c0, c1 = s.core
        assert 0 <= s.read[0] <= c0 < c1 <= s.read[1] <= n
        assert s.read[0] % align == 0
        assert len(s.weight) == c1 - c0 and (s.weight >= 0).all()
        total[c0:c1] += s.weight
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_halo_is_read_around_the_core():
    spans = axis_spans(1000, 128, halo=20, overlap=16, align=1)
    inner = spans[1]
    assert inner.core[0] - inner.read[0] == 20
    assert inner.read[1] - inner.core[1] == 20


def test_weights_are_smooth_tapers():
    spans = axis_spans(300, 128, halo=0, overlap=32, align=1)
    w = spans[0].weight
    assert w[0] == 1.0 and w[-1] < 0.05  # no neighbour on the left, tapers on the right
    assert np.all(np.diff(w) <= 1e-12)  # monotone taper, no jump


def test_grid_2d_is_a_partition_of_unity():
    tiles = tile_grid((150, 333), 64, halo=10, overlap=16, align=4)
    acc = np.zeros((150, 333))
    for t in tiles:
        acc[t.core] += t.weight()
    np.testing.assert_allclose(acc, 1.0, atol=1e-6)
    assert len(tiles) == len({(t.y.core, t.x.core) for t in tiles})


def test_tiling_with_crop_equals_untiled_for_a_local_operator():
    from scipy.ndimage import uniform_filter

    rng = np.random.default_rng(1)
    img = rng.random((200, 300)).astype(np.float32)
    ref = uniform_filter(img, 9, mode="constant")
    out = np.zeros_like(img)
    for t in tile_grid(img.shape, 64, halo=4, overlap=16, align=1):
        pred = uniform_filter(img[t.read], 9, mode="constant")
        out[t.core] += t.weight() * pred[t.core_in_read]
    # the operator reaches 4 px; with a 4-px halo only image-border padding matters
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError):
        axis_spans(0, 64, 0, 0)


@pytest.mark.parametrize("n", [1, 64, 100, 257])
def test_zero_overlap_is_a_chunk_aligned_partition(n):
    spans = axis_spans(n, 64, halo=7, overlap=0, align=4)
    assert [s.core for s in spans] == [(c, min(c + 64, n)) for c in range(0, n, 64)]
    assert all((s.weight == 1).all() for s in spans)
    assert all(s.read[0] % 4 == 0 and s.read[0] <= max(0, s.core[0] - 7) for s in spans)
