"""Overlapping tiles with smooth blending: the whole tiling contract of the engine.

Along each of the two image axes (Y, X) an axis of length ``n`` is cut into *cores*
of at most ``tile`` pixels whose neighbours overlap by ``overlap`` pixels. Each core is
read with a *halo* of context (the network's receptive-field radius) that is computed
and cropped away, so the core is the same as in an untiled run. Overlapping cores are
blended with raised-cosine weights that sum to one everywhere, so there are no seams.
The 2-D contract is ``out[core] += weight * pred[core - read.start]``. Where the
prediction does not depend on where tiles are cut (a fixed network whose receptive
field the halo covers), no overlap is needed: ``overlap=0`` makes the cores a partition
aligned to a chunk grid, and ``out[core] = pred[core - read.start]``.

The module is pure numpy and knows nothing of any method.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

__all__ = ["Span", "Tile", "axis_spans", "tile_grid"]


@dataclass(frozen=True)
class Span:
    """One tile along one axis.

    Attributes
    ----------
    read : tuple of int
        ``(start, stop)`` of the region read from the input (core plus halo).
    core : tuple of int
        ``(start, stop)`` of the region this tile contributes to.
    weight : numpy.ndarray
        Blend weights over the core, float64, length ``core[1] - core[0]``.
    """

    read: tuple[int, int]
    core: tuple[int, int]
    weight: np.ndarray

    @property
    def core_in_read(self) -> slice:
        """The core as a slice of the read region."""
        return slice(self.core[0] - self.read[0], self.core[1] - self.read[0])


@dataclass(frozen=True)
class Tile:
    """A 2-D tile: a :class:`Span` along Y and one along X."""

    y: Span
    x: Span

    @property
    def read(self) -> tuple[slice, slice]:
        return slice(*self.y.read), slice(*self.x.read)

    @property
    def core(self) -> tuple[slice, slice]:
        return slice(*self.y.core), slice(*self.x.core)

    @property
    def core_in_read(self) -> tuple[slice, slice]:
        return self.y.core_in_read, self.x.core_in_read

    def weight(self) -> np.ndarray:
        """2-D blend weights over the core (outer product of the axis weights)."""
        return np.outer(self.y.weight, self.x.weight).astype(np.float32)


def _core_starts(n: int, tile: int, overlap: int, align: int) -> list[int]:
    if n <= tile:
        return [0]
    if overlap == 0:  # a partition: cores at multiples of `tile`, the last one shorter
        return list(range(0, n, tile))
    stride = max(tile - overlap, align)
    stride -= stride % align
    starts = list(range(0, n - tile, stride))
    last = n - tile
    last -= last % align  # aligned; the core is then slightly longer than `tile`
    if not starts or starts[-1] != last:
        starts.append(last)
    return starts


def axis_spans(n: int, tile: int, halo: int, overlap: int, align: int = 1) -> list[Span]:
    """Cut an axis of length ``n`` into overlapping, blended spans.

    Parameters
    ----------
    n : int
        Length of the axis.
    tile : int
        Core length (the last core may be up to ``align - 1`` longer).
    halo : int
        Context read on each side of a core and cropped away after processing.
    overlap : int
        Overlap of neighbouring cores, blended with raised-cosine weights. With 0 the
        cores partition the axis at multiples of ``tile`` (weights all one): each
        output pixel comes from one tile, and cores match a chunk grid of ``tile``.
    align : int
        Read regions start at multiples of ``align`` (the network's total
        down-sampling), so a tile sees the same pixel grid as the whole image.

    Returns
    -------
    list of Span
        Cores cover ``[0, n)``; their weights sum to one at every position.
    """
    if n < 1 or tile < 1:
        raise ValueError(f"cannot tile an axis of length {n} with tile {tile}")
    overlap = max(0, min(overlap, tile // 2))
    starts = _core_starts(n, tile, overlap, align)
    cores = []
    for i, s in enumerate(starts):
        stop = n if i == len(starts) - 1 else min(s + tile, n)
        cores.append((s, stop))
    raw = []
    for i, (c0, c1) in enumerate(cores):
        r = np.ones(c1 - c0)
        pos = np.arange(c0, c1) + 0.5
        if i > 0 and cores[i - 1][1] > c0:  # ramp up over the overlap with the left neighbour
            o0, o1 = c0, cores[i - 1][1]
            t = np.clip((pos - o0) / (o1 - o0), 0, 1)
            r *= np.sin(0.5 * np.pi * t) ** 2
        if i + 1 < len(cores) and cores[i + 1][0] < c1:  # ramp down towards the right one
            o0, o1 = cores[i + 1][0], c1
            t = np.clip((pos - o0) / (o1 - o0), 0, 1)
            r *= np.cos(0.5 * np.pi * t) ** 2
        raw.append(r)
    total = np.zeros(n)
    for (c0, c1), r in zip(cores, raw):
        total[c0:c1] += r
    spans = []
    for (c0, c1), r in zip(cores, raw):
        r0 = max(0, c0 - halo)
        r0 -= r0 % align
        r1 = min(n, c1 + halo)
        spans.append(Span(read=(r0, r1), core=(c0, c1), weight=r / total[c0:c1]))
    return spans


def tile_grid(
    shape_yx: tuple[int, int], tile: int, halo: int, overlap: int, align: int = 1
) -> list[Tile]:
    """All 2-D tiles of a ``(Y, X)`` plane, Y-major; see :func:`axis_spans`."""
    ys = axis_spans(shape_yx[0], tile, halo, overlap, align)
    xs = axis_spans(shape_yx[1], tile, halo, overlap, align)
    return [Tile(y, x) for y, x in itertools.product(ys, xs)]
