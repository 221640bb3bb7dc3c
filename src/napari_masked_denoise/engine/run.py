"""The tiled volume engine: any N-d array in, a zarr store out, progress after every tile.

Every axis but Y and X indexes independent 2-D planes (channels included). The engine
cuts the planes into blocks along one of those axes and the YX plane into tiles
(:mod:`.tiling`), hands each block to a method, and writes the result into the arrays
``denoised`` and ``noise_map`` of a zarr group. Where a tile's result does not depend on
where it was cut (a fixed network whose receptive field the halo covers), the tiles are
a partition on the output's chunk grid, each written once by assignment; otherwise they
overlap and their blended results are added. A reader thread fetches the next blocks and
a writer thread writes finished ones while the main thread denoises. Memory stays
bounded by a few tiles whatever the size of the input. A ledger ``tiles_done`` (one row
per block, a chunk per row of tiles) and the attribute ``complete`` say how far a run
got; ``resume=True`` finishes only the missing tiles. The same jobs run as dask.distributed
tasks in cluster mode (:mod:`.cluster`).
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._version import __version__
from ..core.axes import DenoiseError, check_array, check_finite, resolve_axes
from ..core.masks import Coords
from ..methods import MODES, default_preset, get_method
from ..noise.levels import WINDOW, local_noise_std, robust_sigma
from .tiling import tile_grid

__all__ = ["Progress", "StoreResult", "denoise_iter", "run_to_completion", "open_result"]

ATTR = "napari_masked_denoise"
EXACT_TILE = 1024
"""Default tile of a fixed network whose halo covers its receptive field (``once`` mode)."""


@dataclass(frozen=True)
class Progress:
    """Reported after every tile (``stage="tiles"``) and adaptation step (``"adapt"``)."""

    stage: str
    done: int
    total: int
    elapsed: float


@dataclass
class StoreResult:
    """What a finished (or stopped) run wrote."""

    group: object
    axes: str
    axes_guessed: bool
    method: str
    preset: str
    mode: str
    sigma: float
    seconds: float
    complete: bool
    path: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def denoised(self):
        return self.group["denoised"]

    @property
    def noise_map(self):
        return self.group["noise_map"]

    @property
    def extras(self) -> dict:
        """Extra per-pixel outputs of the method (e.g. meta-TTA's ``loss_mask``), by name."""
        return {name: self.group[name] for name in self.info.get("extras", ())}

    @property
    def voxels(self) -> int:
        return int(np.prod(self.denoised.shape))


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class _Layout:
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


# --------------------------------------------------------------------------- helpers
def _read(image, idx) -> np.ndarray:
    block = image[idx]
    if hasattr(block, "compute"):
        block = block.compute()
    return np.asarray(block)


class _PlaneReader:
    """Reads the ``(N, H, W)`` input block of a job, decompressing each input chunk once.

    A zarr input chunked along the plane axis in chunks of more planes than a block
    would otherwise be decoded once per block: eight times for chunks of 8 slices read
    slice by slice. This reader loads the chunk-aligned range of planes of a tile once
    and serves the blocks inside it. The cache holds one range per tile and is used only
    while that stays under ``budget`` bytes. Not thread-safe: one thread reads.
    """

    def __init__(self, image, plan: "_Plan", budget: int = 512 * 2**20):
        self.image, self.plan = image, plan
        layout, tiles = plan.layout, plan.tiles
        batch = plan.blocks[0][1].stop - plan.blocks[0][1].start
        chunks = getattr(image, "chunks", None)
        self.zc = 1
        if layout.stack is not None and chunks is not None and isinstance(chunks[layout.stack], int | np.integer):
            zc = int(chunks[layout.stack])
            area = sum((t.y.read[1] - t.y.read[0]) * (t.x.read[1] - t.x.read[0]) for t in tiles)
            if zc > batch and zc * area * 4 <= budget:
                self.zc = zc
        self.cache: dict[int, tuple] = {}

    def read(self, j: int) -> np.ndarray:
        bi, ti = self.plan.job(j)
        prefix, planes = self.plan.blocks[bi]
        t, lay = self.plan.tiles[ti], self.plan.layout
        if self.zc == 1:
            return lay.to_planes(_read(self.image, lay.index(prefix, planes, *t.read)))
        hit = self.cache.get(ti)
        if hit is None or hit[0] != prefix or not (hit[1] <= planes.start and planes.stop <= hit[2]):
            n = lay.shape[lay.stack]
            z0 = planes.start // self.zc * self.zc
            z1 = min(n, -(-planes.stop // self.zc) * self.zc)
            block = lay.to_planes(_read(self.image, lay.index(prefix, slice(z0, z1), *t.read)))
            hit = self.cache[ti] = (prefix, z0, z1, block)
        return hit[3][planes.start - hit[1]:planes.stop - hit[1]]


def _norm_stats(image, layout: _Layout) -> tuple[float, float]:
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
        vals.append(_read(image, idx).astype(np.float32).ravel())
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


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in ("zarr.json", ".zgroup", ".zarray"))


def _prepare_output(output, input_path, overwrite: bool, resume: bool):
    """Return a zarr store (path or memory) and its path, refusing unsafe overwrites."""
    import zarr

    if output is None:
        return zarr.storage.MemoryStore(), None
    if not isinstance(output, str | os.PathLike):
        return output, None
    out = Path(output).expanduser().resolve()
    if input_path is not None:
        inp = Path(input_path).expanduser().resolve()
        if out == inp or inp in out.parents or out in inp.parents:
            raise DenoiseError(f"output {out} would overwrite the input {inp}; choose another path")
    if out.exists() and not resume:
        if not overwrite:
            raise DenoiseError(f"output {out} exists; pass overwrite (--overwrite) or resume")
        if not (_is_zarr_store(out) or out.is_file()):
            raise DenoiseError(f"refusing to overwrite {out}: it is not a zarr store")
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()
    if resume and not out.exists():
        raise DenoiseError(f"cannot resume: {out} does not exist")
    if not out.parent.exists():
        raise DenoiseError(f"the folder of the output {out.parent} does not exist")
    return str(out), str(out)


def _default_batch(tile_hw: tuple[int, int], n: int) -> int:
    return int(max(1, min(n, (4 * 256 * 256) // max(1, tile_hw[0] * tile_hw[1]))))


# --------------------------------------------------------------------------- the run
def denoise_iter(
    image,
    output=None,
    *,
    method: str = "auto",
    preset: str | None = None,
    axes: str | None = None,
    mode: str | None = None,
    device=None,
    seed: int = 0,
    tile: int | None = None,
    plane_batch: int | None = None,
    sample_tiles: int = 4,
    sample_size: int = 128,
    resume: bool = False,
    overwrite: bool = False,
    scale=None,
    input_path=None,
    options: dict | None = None,
    precision: str = "float32",
    compile: bool = False,
    scheduler=None,
) -> Generator[Progress, None, StoreResult]:
    """Denoise ``image`` tile by tile into a zarr group, yielding :class:`Progress`.

    Parameters
    ----------
    image : array-like
        numpy, dask or zarr array (anything with ``shape``, ``dtype`` and slicing).
    output : str, path, zarr store or None
        Where the group is written; ``None`` keeps it in memory.
    method, preset : str
        A registered method and one of its presets (``masked-denoise methods``); the
        default preset is the method's first.
    axes : str, optional
        e.g. ``"ZYX"``, ``"TCZYX"``; guessed for 2-D and 3-D inputs when omitted.
    mode : {"per-tile", "once"}, optional
        Adapt per tile, or once on a sample and then process every tile quickly.
        Default: ``per-tile`` for a single 2-D plane (unless the method adapts nothing
        per tile, e.g. a ``no-adapt`` preset), ``once`` otherwise.
    device : str or torch.device, optional
        ``"cpu"``, ``"cuda"``, ``"mps"``; default: the best available.
    seed : int
        Seed of the network initialisation and of every mask; equal seeds give equal
        results, also across cancel and resume.
    tile : int, optional
        Core tile size in Y and X; tiles are read with a halo of the network's
        receptive field. Default: 1024 for a fixed network in ``once`` mode (tiles
        cut exactly, without overlap); else the method's ``default_tile`` (256;
        512 for classical methods and meta-TTA), tiles overlapping and blended.
    plane_batch : int, optional
        Planes processed together; default keeps about 4 * 256^2 pixels per block.
    sample_tiles, sample_size : int
        ``once`` mode: how many crops, of what size, the method adapts on.
    resume, overwrite : bool
        Continue an incomplete store / replace an existing one.
    scale : sequence of float, optional
        Pixel size per axis, kept as metadata.
    input_path : str, optional
        The input's path, kept as metadata and checked against ``output``.
    options : dict, optional
        Method options that override the preset (e.g. ``{"iterations": 50}``).
    precision : {"float32", "mixed"}
        ``mixed`` runs the fixed network of ``once`` mode under autocast (float16 on
        CUDA, bfloat16 on the CPU): faster on GPUs, results differ by about 1e-3.
    compile : bool
        ``torch.compile`` the fixed network of ``once`` mode (pays a compilation of
        tens of seconds; for long runs).
    scheduler : str, int or distributed.Client, optional
        Run the tiles as tasks of a dask.distributed cluster writing straight into
        ``output`` (a path the workers can reach): a scheduler address, a ``Client``,
        or an int N for a local cluster of N worker processes. The adaptation runs
        here, once; the result equals the single-process one.

    The generator's return value (``StopIteration.value``) is a :class:`StoreResult`.
    Closing the generator stops between tiles and leaves ``complete = False``.
    """
    import zarr

    from ..core.device import select_device

    t0 = time.perf_counter()
    if not all(hasattr(image, a) for a in ("shape", "dtype", "__getitem__")):
        image = np.asarray(image)
    axes, guessed = resolve_axes(axes, tuple(image.shape))
    check_array(image, axes)
    layout = _Layout.of(image.shape, axes)
    preset = preset or default_preset(method)
    if mode is None:  # per-tile for one 2-D image, unless the method has nothing to adapt there
        cls = get_method(method)
        adapts = cls.adapts_per_tile(cls.merged_options(preset, options))
        mode = "per-tile" if layout.n_planes == 1 and adapts else "once"
    if mode not in MODES:
        raise DenoiseError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if tile is not None and int(tile) < 32:
        raise DenoiseError(f"tile must be at least 32 pixels, got {tile}")
    if scale is not None and len(scale) != len(axes):
        raise DenoiseError(f"scale has {len(scale)} values but the axes {axes!r} {len(axes)}")
    if precision not in ("float32", "mixed"):
        raise DenoiseError(f"precision must be 'float32' or 'mixed', got {precision!r}")
    if (precision == "mixed" or compile) and mode != "once":
        raise DenoiseError("mixed precision and compile apply to the fixed network of once mode (--mode once)")
    if scheduler is not None and not isinstance(output, str | os.PathLike):
        raise DenoiseError("a cluster run writes into a zarr store on disk that its workers reach; give an output path")
    dev = select_device(device)
    meth = get_method(method)(preset=preset, mode=mode, device=dev, seed=seed, **(options or {}))
    if tile is None:  # an exact tiling costs only its halo: large tiles read less of it
        tile = max(meth.default_tile, EXACT_TILE) if meth.tile_exact else meth.default_tile
    tile = int(tile)
    store, path = _prepare_output(output, input_path, overwrite, resume)

    core_hw = (min(int(tile), layout.yx[0]), min(int(tile), layout.yx[1]))
    n_stack = 1 if layout.stack is None else layout.shape[layout.stack]
    batch = int(plane_batch or _default_batch(core_hw, n_stack))
    blocks = list(layout.blocks(batch))
    lo, hi = _norm_stats(image, layout)
    extras = tuple(meth.extras)
    fingerprint = {
        "version": __version__,
        "method": method,
        "preset": preset,
        "mode": mode,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in meth.options.items()},
        "seed": int(seed),
        "tile": int(tile),
        "plane_batch": batch,
        "sample": [int(sample_tiles), int(sample_size)],
        "shape": list(image.shape),
        "axes": axes,
        "norm": [lo, hi],
        "precision": precision,
    }

    if resume:
        group = zarr.open_group(store, mode="r+")
        meta = dict(group.attrs.get(ATTR, {}))
        old = meta.get("fingerprint")
        if old != fingerprint:
            diff = sorted(k for k in fingerprint if (old or {}).get(k) != fingerprint[k])
            raise DenoiseError(
                f"cannot resume {path}: it was written with different settings "
                f"({', '.join(diff) or 'not a masked-denoise store'}); use overwrite instead"
            )
    else:
        group = zarr.open_group(store, mode="w")
        meta = {
            "fingerprint": fingerprint,
            "complete": False,
            "axes": axes,
            "scale": list(scale) if scale is not None else None,
            "input": str(input_path) if input_path is not None else None,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        group.attrs[ATTR] = meta

    # ---- once mode: adapt on a sample (or reload the adaptation of an earlier run)
    if mode == "once" or meth.needs_sample:
        if "method_state" in group:
            meth.load_state_bytes(bytes(group["method_state"][:]))
        else:
            sample, coords, meth.sample_origins = _sample(
                image, layout, meth.align, sample_tiles, sample_size, seed)
            for step, total in meth.adapt((sample - lo) / (hi - lo), coords):
                yield Progress("adapt", step, total, time.perf_counter() - t0)
            state = np.frombuffer(meth.state_bytes(), dtype=np.uint8)
            group.create_array("method_state", shape=state.shape, dtype="uint8", chunks=state.shape)[:] = state

    # ---- the tiling, now that the method (and auto's choice) is fixed
    plan = _Plan.make(layout, int(tile), meth, blocks, lo, hi)
    if "denoised" not in group:
        _create_arrays(group, plan, image.shape, axes, core_hw, extras, scale)
    result = StoreResult(
        group=group, axes=axes, axes_guessed=guessed, method=method, preset=preset, mode=mode,
        sigma=float("nan"), seconds=0.0, complete=False, path=path,
        info={"device": str(dev), "tiles": plan.n_jobs, "plane_batch": batch, "halo": meta_halo(meth),
              "tiling": "exact" if plan.exact else "blended", "extras": extras,
              "intensity_range": (lo, hi), "precision": precision, "compiled": bool(compile),
              "cluster": None if scheduler is None else _describe(scheduler)},
    )

    # ---- the tiles
    done = np.asarray(group["tiles_done"][...], dtype=bool).ravel()
    n_done = int(done.sum())
    todo = [j for j in range(plan.n_jobs) if not done[j]]
    if scheduler is not None and todo:
        from .cluster import run_on_cluster

        spec = dict(method=method, preset=preset, mode=mode, device=device if isinstance(device, str | None)
                    else str(device), seed=seed, options=options or {})
        runner = run_on_cluster(scheduler, plan, image, path, todo, spec, precision, compile)
    else:
        if compile and todo:
            meth.compile()
        runner = _run_jobs(plan, meth, image, group, todo, precision)
    for n in runner:
        n_done += n
        yield Progress("tiles", n_done, plan.n_jobs, time.perf_counter() - t0)

    sig = np.asarray(group["tile_sigma"][...], dtype=np.float64)
    result.sigma = float(np.nanmedian(sig)) if np.isfinite(sig).any() else float("nan")
    result.seconds = time.perf_counter() - t0
    result.complete = True
    if meth.report:
        result.info["method_report"] = meth.report
    meta = dict(group.attrs[ATTR])
    meta.update(
        complete=True, sigma=result.sigma, finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
        **({"method_report": _jsonable(meth.report)} if meth.report else {}),
    )
    group.attrs[ATTR] = meta
    return result


# --------------------------------------------------------------------------- the jobs
@dataclass
class _Plan:
    """Where every job of a run reads and writes: job ``j`` is block ``j // n_tiles`` and
    tile ``j % n_tiles``. Picklable, so that cluster workers get the same plan.

    ``exact`` tilings (a fixed network whose receptive field the halo covers) cut each
    plane into a partition aligned to the output chunks: every job writes whole chunks
    that no other job touches, by assignment, so jobs run in any order or in parallel
    and a repeated job writes the same values. Blended tilings overlap and add their
    weighted cores into the output; their jobs run one block after another.
    """

    layout: _Layout
    tiles: list
    blocks: list
    lo: float
    span: float
    exact: bool
    n_tx: int  # tiles along X: the ledger's chunk is one row of tiles of one block

    @classmethod
    def make(cls, layout, tile, meth, blocks, lo, hi):
        exact = bool(meth.tile_exact)
        overlap = 0 if exact else max(16, tile // 8)
        tiles = tile_grid(layout.yx, tile, meth.halo + WINDOW // 2, overlap, meth.align)
        n_tx = len({t.x.core for t in tiles})
        return cls(layout, tiles, blocks, lo, hi - lo, exact, n_tx)

    @property
    def n_jobs(self) -> int:
        return len(self.blocks) * len(self.tiles)

    def job(self, j: int) -> tuple[int, int]:
        return divmod(j, len(self.tiles))

    def groups(self, todo) -> list[list[int]]:
        """``todo`` split into groups whose writes (outputs and ledger chunks) are disjoint:
        one row of tiles of a block when exact, a whole block when blended."""
        per = self.n_tx if self.exact else len(self.tiles)
        out: dict[int, list[int]] = {}
        for j in todo:
            out.setdefault(j // per, []).append(j)
        return list(out.values())


def _create_arrays(group, plan: _Plan, shape, axes, core_hw, extras, scale) -> None:
    chunks = [1] * len(axes)
    chunks[axes.index("Y")], chunks[axes.index("X")] = core_hw
    if plan.layout.stack is not None:
        chunks[plan.layout.stack] = plan.blocks[0][1].stop - plan.blocks[0][1].start
    for name in ("denoised", "noise_map", *extras):
        arr = group.create_array(name, shape=shape, chunks=tuple(chunks), dtype="float32", fill_value=0.0)
        arr.attrs.update({"axes": axes, "scale": list(scale) if scale is not None else None})
    ledger = (len(plan.blocks), len(plan.tiles))
    group.create_array("tiles_done", shape=ledger, chunks=(1, plan.n_tx), dtype="uint8", fill_value=0)
    group.create_array("tile_sigma", shape=ledger, chunks=(1, plan.n_tx), dtype="float32", fill_value=np.nan)


def _predict(meth, x: np.ndarray, coords: Coords, exact: bool) -> np.ndarray:
    """``meth.process``; on running out of GPU memory, the same work in smaller pieces:
    half the planes, then (exact tilings) quarter tiles with the method's halo."""
    import torch

    try:
        return meth.process(x, coords)
    except torch.OutOfMemoryError:
        if getattr(meth.device, "type", "cpu") == "cuda":
            torch.cuda.empty_cache()
    n, h, w = x.shape
    parts = []
    if n > 1:
        k = n // 2
        for sl in (slice(0, k), slice(k, n)):
            parts.append((sl, slice(None), slice(None), Coords(coords.planes[sl], coords.y0, coords.x0)))
    elif exact and max(h, w) > 32 + 2 * meth.halo:
        size = max(32, -(-max(h, w) // 2 // max(1, meth.align)) * max(1, meth.align))
        for t in tile_grid((h, w), size, meth.halo, 0, meth.align):
            parts.append((t, *t.read, Coords(coords.planes, coords.y0 + t.y.read[0], coords.x0 + t.x.read[0])))
    else:
        raise DenoiseError(
            f"out of GPU memory on a tile of {n}x{h}x{w}; pass a smaller tile (--tile) or device=cpu")
    out = np.empty(x.shape, np.float32)
    extras: dict[str, np.ndarray] = {name: np.empty(x.shape, np.float32) for name in meth.extras}
    for part, ys, xs, c in parts:
        if isinstance(part, slice):  # a half of the planes
            out[part] = _predict(meth, x[part], c, exact)
            for name in extras:
                extras[name][part] = meth.last_extras[name]
        else:  # a sub-tile: keep its core
            pred = _predict(meth, np.ascontiguousarray(x[:, ys, xs]), c, exact)
            out[:, part.core[0], part.core[1]] = pred[:, part.core_in_read[0], part.core_in_read[1]]
            for name in extras:
                extras[name][:, part.core[0], part.core[1]] = meth.last_extras[name][
                    :, part.core_in_read[0], part.core_in_read[1]]
    if extras:
        meth.last_extras = extras
    return out


def _compute(plan: _Plan, meth, j: int, raw: np.ndarray, precision: str) -> tuple[dict, float]:
    """Denoise job ``j`` from its input block: its core values per output array, and the
    robust sigma of its residual."""
    import torch

    bi, ti = plan.job(j)
    prefix, planes = plan.blocks[bi]
    t, lay = plan.tiles[ti], plan.layout
    check_finite(raw, f"planes {planes.start}-{planes.stop - 1}, y {t.y.read}, x {t.x.read}")
    x = ((raw.astype(np.float32) - plan.lo) / plan.span).astype(np.float32)
    coords = Coords(lay.plane_ids(prefix, planes), t.y.read[0], t.x.read[0])
    if precision == "mixed":
        dev = meth.device.type
        with torch.autocast(dev, dtype=torch.float16 if dev == "cuda" else torch.bfloat16):
            pred = _predict(meth, x, coords, plan.exact)
    else:
        pred = _predict(meth, x, coords, plan.exact)
    pred = np.asarray(pred, dtype=np.float32)
    resid = (x - pred) * plan.span
    std = local_noise_std(resid)
    cy, cx = t.core_in_read
    out = {"denoised": pred[:, cy, cx] * plan.span + plan.lo, "noise_map": std[:, cy, cx]}
    for name in meth.extras:
        out[name] = meth.last_extras[name][:, cy, cx]
    if not plan.exact:
        w = t.weight()
        out = {k: v * w for k, v in out.items()}
    return out, robust_sigma(resid[:, cy, cx][:, ::2, ::2])  # a quarter of the pixels is plenty


def _write(plan: _Plan, group, j: int, out: dict, sigma: float) -> None:
    """Write job ``j``'s cores (assign when exact, add when blended), then its ledger."""
    bi, ti = plan.job(j)
    prefix, planes = plan.blocks[bi]
    idx = plan.layout.index(prefix, planes, *plan.tiles[ti].core)
    for name, val in out.items():
        arr = group[name]
        val = plan.layout.from_planes(val)
        arr[idx] = val if plan.exact else arr[idx] + val
    group["tile_sigma"][bi, ti] = sigma
    group["tiles_done"][bi, ti] = 1


PREFETCH = 2
"""Input blocks read ahead of the one being denoised."""


def _run_jobs(plan: _Plan, meth, image, group, todo: list[int], precision: str):
    """Run jobs ``todo`` in order; yields 1 per job handed to the writer.

    One thread reads the next blocks and another writes finished ones while this thread
    denoises. Closing the generator (or an error) waits for the writes already handed
    over, so the ledger then lists exactly the jobs yielded.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor, wait

    import torch

    if not todo:
        return
    reader = _PlaneReader(image, plan)
    # output arrays opened once: zarr re-reads metadata on every group[name]
    arrays = {name: group[name] for name in ("denoised", "noise_map", "tile_sigma", "tiles_done",
                                             *meth.extras)}
    with ThreadPoolExecutor(1) as rpool, ThreadPoolExecutor(1) as wpool:
        reads = deque(rpool.submit(reader.read, j) for j in todo[:PREFETCH])
        writes: deque = deque()
        try:
            for k, j in enumerate(todo):
                raw = reads.popleft().result()
                if k + PREFETCH < len(todo):
                    reads.append(rpool.submit(reader.read, todo[k + PREFETCH]))
                with torch.inference_mode(meth.mode == "once"):  # not held across the yield
                    out, sigma = _compute(plan, meth, j, raw, precision)
                writes.append(wpool.submit(_write, plan, arrays, j, out, sigma))
                while len(writes) > 2 or (writes and writes[0].done()):
                    writes.popleft().result()
                yield 1
            while writes:
                writes.popleft().result()
        finally:
            for f in reads:
                f.cancel()
            wait(writes)


def _describe(scheduler) -> str:
    if isinstance(scheduler, int) or (isinstance(scheduler, str) and scheduler.isdigit()):
        return f"local, {int(scheduler)} processes"
    return str(getattr(scheduler, "scheduler_info", lambda: {})().get("address", scheduler))


def _jsonable(obj):
    """``obj`` with non-finite floats as None (zarr attributes are strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def meta_halo(meth) -> int:
    return int(meth.halo + WINDOW // 2)


def _sample(image, layout: _Layout, align: int, n: int, size: int, seed: int):
    """Crops for ``once``-mode adaptation, chosen by ``seed`` and the array alone."""
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
        raw = layout.to_planes(_read(image, layout.index(prefix, planes, slice(y0, y0 + sy), slice(x0, x0 + sx))))
        check_finite(raw, f"sample at y {y0}, x {x0}")
        crops.append(raw[0].astype(np.float32))
        ids.append((layout.plane_ids(prefix, planes)[0], y0, x0))
    # the crops come from different places: give each its own coordinates by offsetting
    # its plane id, so that masks differ between crops
    planes = np.asarray([p * 1_000_003 + y * 7919 + x for p, y, x in ids], dtype=np.int64)
    return np.stack(crops), Coords(planes, 0, 0), [tuple(int(v) for v in i) for i in ids]


def run_to_completion(gen: Generator[Progress, None, StoreResult], callback=None) -> StoreResult:
    """Drive :func:`denoise_iter` to the end, calling ``callback(progress)`` per step."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(p)


def open_result(path) -> dict:
    """The metadata of an output store (``complete``, ``sigma``, settings)."""
    import zarr

    return dict(zarr.open_group(str(path), mode="r").attrs.get(ATTR, {}))
