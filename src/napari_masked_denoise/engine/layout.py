"""How an N-d array maps onto blocks of YX planes, and reading them.

Every axis but Y and X indexes independent 2-D planes (channels included). A
:class:`Layout` cuts the planes into blocks along the last of those axes (the others are
indexed one at a time) and converts between a block in the input's axis order and the
``(N, H, W)`` planes a method denoises. :class:`PlaneReader` reads the blocks of the
jobs, :func:`norm_stats` the intensity range every tile is normalised by, and
:func:`sample_crops` the crops ``once`` mode adapts on.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..core.axes import DenoiseError, check_finite
from ..core.masks import Coords

__all__ = [
    "Layout",
    "PlaneReader",
    "read_block",
    "normalise",
    "norm_stats",
    "sample_crops",
    "default_batch",
]


@dataclass(frozen=True)
class Layout:
    """How an N-d array maps onto blocks of YX planes."""

    shape: tuple[int, ...]
    axes: str
    stack: int | None  # index of the axis blocks are cut along (None: a single plane)
    prefix_axes: tuple[int, ...]  # other non-YX axes, indexed one at a time

    @classmethod
    def of(cls, shape, axes):
        other = [i for i, a in enumerate(axes) if a not in "YX"]
        stack = other[-1] if other else None
        return cls(tuple(shape), axes, stack, tuple(other[:-1]))

    @property
    def yx(self):
        return self.shape[self.axes.index("Y")], self.shape[self.axes.index("X")]

    @property
    def n_planes(self) -> int:
        return int(np.prod([self.shape[i] for i, a in enumerate(self.axes) if a not in "YX"]))

    def index(self, prefix, planes: slice, ys: slice, xs: slice) -> tuple:
        idx: list = [None] * len(self.shape)
        for i, p in zip(self.prefix_axes, prefix):
            idx[i] = p
        if self.stack is not None:
            idx[self.stack] = planes
        idx[self.axes.index("Y")] = ys
        idx[self.axes.index("X")] = xs
        return tuple(idx)

    def _kept(self) -> list[int]:
        """Input axes that remain after indexing, in input order."""
        return [i for i in range(len(self.shape)) if i not in self.prefix_axes]

    def to_planes(self, block: np.ndarray) -> np.ndarray:
        """Indexed block (input axis order) -> ``(N, H, W)``."""
        kept = self._kept()
        order = [kept.index(i) for i in self._target()]
        b = np.transpose(block, order)
        return b[None] if self.stack is None else b

    def from_planes(self, planes: np.ndarray) -> np.ndarray:
        """``(N, H, W)`` -> block in input axis order (inverse of :meth:`to_planes`)."""
        if self.stack is None:
            planes = planes[0]
        kept = self._kept()
        order = [self._target().index(i) for i in kept]
        return np.transpose(planes, order)

    def _target(self) -> list[int]:
        t = [self.axes.index("Y"), self.axes.index("X")]
        return t if self.stack is None else [self.stack, *t]

    def plane_ids(self, prefix, planes: slice) -> np.ndarray:
        """Global flat plane indices of a block."""
        dims = [self.shape[i] for i in (*self.prefix_axes, self.stack) if i is not None]
        if self.stack is None:
            return np.zeros(1, dtype=np.int64)
        ids = [np.ravel_multi_index((*prefix, s), dims) for s in range(planes.start, planes.stop)]
        return np.asarray(ids, dtype=np.int64)

    def blocks(self, batch: int):
        """``(prefix, planes)`` for every block of planes."""
        prefixes = itertools.product(*(range(self.shape[i]) for i in self.prefix_axes))
        n = 1 if self.stack is None else self.shape[self.stack]
        for prefix in prefixes:
            for s in range(0, n, batch):
                yield prefix, slice(s, min(s + batch, n))


def read_block(image, idx) -> np.ndarray:
    """``image[idx]`` as numpy; a read that fails (a corrupt or truncated chunk, a file
    gone) is a one-line :class:`DenoiseError` naming the array and its chunks there."""
    try:
        block = image[idx]
        if hasattr(block, "compute"):
            block = block.compute()
        return np.asarray(block)
    except (DenoiseError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:
        msg = (str(exc).strip().splitlines() or [""])[0]
        raise DenoiseError(
            f"cannot read the input {_where(image, idx)}: {type(exc).__name__}: {msg}"
        ) from None


def _where(image, idx) -> str:
    """``"array NAME, chunks (a, b-c, ...)"`` of the region ``idx`` of ``image``."""
    name = getattr(image, "store_path", None) or getattr(image, "name", None) or "array"
    chunks = getattr(image, "chunks", None)
    if not chunks or not all(isinstance(c, int | np.integer) for c in chunks):
        return f"{name} at {_region(idx)}"
    parts = []
    for sl, c, n in zip(idx, chunks, image.shape):
        if isinstance(sl, slice):
            a, b, _ = sl.indices(n)
            lo, hi = a // c, max(a, b - 1) // c
        else:
            lo = hi = int(sl) // c
        parts.append(str(lo) if lo == hi else f"{lo}-{hi}")
    return f"{name}, chunk ({', '.join(parts)})"


def _region(idx) -> str:
    return (
        "["
        + ", ".join(f"{s.start}:{s.stop}" if isinstance(s, slice) else str(s) for s in idx)
        + "]"
    )


class PlaneReader:
    """Reads the ``(N, H, W)`` input block of a job, decompressing each input chunk once.

    A zarr input chunked along the plane axis in chunks of more planes than a block
    would otherwise be decoded once per block: eight times for chunks of 8 slices read
    slice by slice. This reader loads the chunk-aligned range of planes of a tile once
    and serves the blocks inside it. The cache holds one range per tile and is used only
    while that stays under ``budget`` bytes. Not thread-safe: one thread reads.
    """

    def __init__(self, image, plan, budget: int = 512 * 2**20):
        self.image, self.plan = image, plan
        layout, tiles = plan.layout, plan.tiles
        batch = plan.blocks[0][1].stop - plan.blocks[0][1].start
        chunks = getattr(image, "chunks", None)
        self.zc = 1
        if (
            layout.stack is not None
            and chunks is not None
            and isinstance(chunks[layout.stack], int | np.integer)
        ):
            zc = int(chunks[layout.stack])
            area = sum((t.y.read[1] - t.y.read[0]) * (t.x.read[1] - t.x.read[0]) for t in tiles)
            if zc > batch and zc * area * 4 <= budget:
                self.zc = zc
        self.cache: dict[int, tuple] = {}

    def read(self, j: int) -> np.ndarray:
        job = self.plan.job(j)
        prefix, planes, t, lay = job.prefix, job.planes, job.tile, self.plan.layout
        if self.zc == 1:
            return lay.to_planes(read_block(self.image, lay.index(prefix, planes, *t.read)))
        hit = self.cache.get(job.tile_index)
        if (
            hit is None
            or hit[0] != prefix
            or not (hit[1] <= planes.start and planes.stop <= hit[2])
        ):
            n = lay.shape[lay.stack]
            z0 = planes.start // self.zc * self.zc
            z1 = min(n, -(-planes.stop // self.zc) * self.zc)
            block = lay.to_planes(read_block(self.image, lay.index(prefix, slice(z0, z1), *t.read)))
            hit = self.cache[job.tile_index] = (prefix, z0, z1, block)
        return hit[3][planes.start - hit[1] : planes.stop - hit[1]]


def normalise(block: np.ndarray, lo: float, span: float) -> np.ndarray:
    """``block`` as float32 in the normalised units methods work in: ``(x - lo) / span``,
    with ``lo`` and ``lo + span`` from :func:`norm_stats`."""
    return ((block.astype(np.float32) - lo) / span).astype(np.float32)


def norm_stats(image, layout: Layout) -> tuple[float, float]:
    """Robust intensity range (0.1 and 99.9 percentiles) from a strided subsample.

    The subsample depends only on the array, never on the tiling, so every tiling of
    an image normalises it identically.
    """
    ny, nx = layout.yx
    step = max(1, int(math.ceil(math.sqrt(ny * nx / 128**2))))
    blocks = list(layout.blocks(1))
    pick = np.linspace(0, len(blocks) - 1, min(len(blocks), 8)).round().astype(int)
    vals = []
    for i in sorted(set(pick)):
        prefix, planes = blocks[i]
        idx = layout.index(prefix, planes, slice(None, None, step), slice(None, None, step))
        vals.append(read_block(image, idx).astype(np.float32).ravel())
    v = np.concatenate(vals)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise DenoiseError("the image contains only NaN or Inf values")
    lo, hi = np.percentile(v, [0.1, 99.9])
    if not hi > lo:
        lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        hi = lo + 1.0  # constant image: any scale is fine
    return float(lo), float(hi)


def sample_crops(image, layout: Layout, align: int, n: int, size: int, seed: int):
    """Crops for ``once``-mode adaptation, chosen by ``seed`` and the array alone:
    ``(crops, coords)``, the crops ``(n, h, w)`` float32 and their coordinates, whose
    ``origins`` say where each crop lies in the image."""
    ny, nx = layout.yx
    sy = min(size, ny - ny % align if ny >= align else ny)
    sx = min(size, nx - nx % align if nx >= align else nx)
    rng = np.random.default_rng(seed)
    blocks = list(layout.blocks(1))
    crops, ids = [], []
    for _ in range(max(1, n)):
        prefix, planes = blocks[int(rng.integers(len(blocks)))]
        y0 = int(rng.integers(0, ny - sy + 1)) // align * align
        x0 = int(rng.integers(0, nx - sx + 1)) // align * align
        if any(i == (layout.plane_ids(prefix, planes)[0], y0, x0) for i in ids):
            continue  # the same crop again (an image no larger than a crop) adds nothing
        raw = layout.to_planes(
            read_block(image, layout.index(prefix, planes, slice(y0, y0 + sy), slice(x0, x0 + sx)))
        )
        check_finite(raw, f"sample at y {y0}, x {x0}", (planes.start, y0, x0))
        crops.append(raw[0].astype(np.float32))
        ids.append((layout.plane_ids(prefix, planes)[0], y0, x0))
    # the crops come from different places: give each its own coordinates by offsetting
    # its plane id, so that masks differ between crops
    planes = np.asarray([p * 1_000_003 + y * 7919 + x for p, y, x in ids], dtype=np.int64)
    origins = tuple(tuple(int(v) for v in i) for i in ids)
    return np.stack(crops), Coords(planes, 0, 0, origins=origins)


def default_batch(tile_hw: tuple[int, int], n: int) -> int:
    return int(max(1, min(n, (4 * 256 * 256) // max(1, tile_hw[0] * tile_hw[1]))))
