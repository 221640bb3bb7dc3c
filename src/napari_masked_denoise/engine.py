"""The tiled volume engine: any N-d array in, a zarr store out, progress after every tile.

Every axis but Y and X indexes independent 2-D planes (channels included). The engine
cuts the planes into blocks along one of those axes and the YX plane into overlapping
tiles (:mod:`.tiling`), hands each block to a method, and adds the blended result into
the arrays ``denoised`` and ``noise_map`` of a zarr group. Memory stays bounded by a few
tiles whatever the size of the input. A ledger ``tiles_done`` and the attribute
``complete`` say how far a run got; ``resume=True`` finishes only the missing tiles.
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

from . import __version__
from ._axes import DenoiseError, check_array, check_finite, resolve_axes
from .masks import Coords
from .methods import MODES, default_preset, get_method
from .noise import WINDOW, local_noise_std, robust_sigma
from .tiling import tile_grid

__all__ = ["Progress", "StoreResult", "denoise_iter", "run_to_completion", "open_result"]

ATTR = "napari_masked_denoise"


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
    """Reads ``(N, H, W)`` tile blocks, decompressing each input chunk once.

    A zarr input chunked along the plane axis in chunks of more planes than a block
    would otherwise be decoded once per block: eight times for chunks of 8 slices read
    slice by slice. This reader loads the chunk-aligned range of planes of a tile once
    and serves the blocks inside it. The cache holds one range per tile and is used only
    while that stays under ``budget`` bytes.
    """

    def __init__(self, image, layout: _Layout, tiles, batch: int, budget: int = 512 * 2**20):
        self.image, self.layout, self.tiles = image, layout, tiles
        chunks = getattr(image, "chunks", None)
        self.zc = 1
        if layout.stack is not None and chunks is not None and isinstance(chunks[layout.stack], int | np.integer):
            zc = int(chunks[layout.stack])
            area = sum((t.y.read[1] - t.y.read[0]) * (t.x.read[1] - t.x.read[0]) for t in tiles)
            if zc > batch and zc * area * 4 <= budget:
                self.zc = zc
        self.cache: dict[int, tuple] = {}

    def read(self, prefix, planes: slice, ti: int) -> np.ndarray:
        t, lay = self.tiles[ti], self.layout
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
        Default: ``per-tile`` for a single 2-D plane, ``once`` otherwise.
    device : str or torch.device, optional
        ``"cpu"``, ``"cuda"``, ``"mps"``; default: the best available.
    seed : int
        Seed of the network initialisation and of every mask; equal seeds give equal
        results, also across cancel and resume.
    tile : int, optional
        Core tile size in Y and X; tiles are read with a halo of the network's
        receptive field and blended where they overlap. Default: the method's
        ``default_tile`` (256; larger for networks with a wide receptive field).
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

    The generator's return value (``StopIteration.value``) is a :class:`StoreResult`.
    Closing the generator stops between tiles and leaves ``complete = False``.
    """
    import torch
    import zarr

    from .device import select_device

    t0 = time.perf_counter()
    if not all(hasattr(image, a) for a in ("shape", "dtype", "__getitem__")):
        image = np.asarray(image)
    axes, guessed = resolve_axes(axes, tuple(image.shape))
    check_array(image, axes)
    layout = _Layout.of(image.shape, axes)
    if mode is None:
        mode = "per-tile" if layout.n_planes == 1 else "once"
    if mode not in MODES:
        raise DenoiseError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if tile is not None and int(tile) < 32:
        raise DenoiseError(f"tile must be at least 32 pixels, got {tile}")
    if scale is not None and len(scale) != len(axes):
        raise DenoiseError(f"scale has {len(scale)} values but the axes {axes!r} {len(axes)}")
    dev = select_device(device)
    preset = preset or default_preset(method)
    meth = get_method(method)(preset=preset, mode=mode, device=dev, seed=seed, **(options or {}))
    tile = int(tile if tile is not None else meth.default_tile)
    store, path = _prepare_output(output, input_path, overwrite, resume)

    tiles = tile_grid(layout.yx, int(tile), meth.halo + WINDOW // 2, max(16, int(tile) // 8), meth.align)
    core_hw = (min(int(tile), layout.yx[0]), min(int(tile), layout.yx[1]))
    n_stack = 1 if layout.stack is None else layout.shape[layout.stack]
    batch = int(plane_batch or _default_batch(core_hw, n_stack))
    blocks = list(layout.blocks(batch))
    jobs = list(itertools.product(range(len(blocks)), range(len(tiles))))
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
        chunks = [1] * len(axes)
        chunks[axes.index("Y")], chunks[axes.index("X")] = core_hw
        if layout.stack is not None:
            chunks[layout.stack] = batch
        for name in ("denoised", "noise_map", *extras):
            arr = group.create_array(
                name, shape=image.shape, chunks=tuple(chunks), dtype="float32", fill_value=0.0
            )
            arr.attrs.update({"axes": axes, "scale": list(scale) if scale is not None else None})
        tchunk = min(len(jobs), 4096)
        group.create_array("tiles_done", shape=(len(jobs),), chunks=(tchunk,), dtype="uint8", fill_value=0)
        group.create_array(
            "tile_sigma", shape=(len(jobs),), chunks=(tchunk,), dtype="float32", fill_value=np.nan
        )
        meta = {
            "fingerprint": fingerprint,
            "complete": False,
            "axes": axes,
            "scale": list(scale) if scale is not None else None,
            "input": str(input_path) if input_path is not None else None,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        group.attrs[ATTR] = meta

    result = StoreResult(
        group=group, axes=axes, axes_guessed=guessed, method=method, preset=preset, mode=mode,
        sigma=float("nan"), seconds=0.0, complete=False, path=path,
        info={"device": str(dev), "tiles": len(jobs), "plane_batch": batch, "halo": meta_halo(meth),
              "extras": extras, "intensity_range": (lo, hi)},
    )
    span = hi - lo

    # ---- once mode: adapt on a sample (or reload the adaptation of an earlier run)
    if mode == "once" or meth.needs_sample:
        if "method_state" in group:
            meth.load_state_bytes(bytes(group["method_state"][:]))
        else:
            sample, coords, meth.sample_origins = _sample(
                image, layout, meth.align, sample_tiles, sample_size, seed)
            for step, total in meth.adapt((sample - lo) / span, coords):
                yield Progress("adapt", step, total, time.perf_counter() - t0)
            state = np.frombuffer(meth.state_bytes(), dtype=np.uint8)
            group.create_array("method_state", shape=state.shape, dtype="uint8", chunks=state.shape)[:] = state

    # ---- the tiles
    done_arr, sig_arr = group["tiles_done"], group["tile_sigma"]
    done = np.asarray(done_arr[:], dtype=bool)
    den, nmap = group["denoised"], group["noise_map"]
    extra_arrs = {name: group[name] for name in extras}
    reader = _PlaneReader(image, layout, tiles, batch)
    n_done = int(done.sum())
    with torch.inference_mode(mode == "once"):
        for j, (bi, ti) in enumerate(jobs):
            if done[j]:
                continue
            prefix, planes = blocks[bi]
            t = tiles[ti]
            raw = reader.read(prefix, planes, ti)
            check_finite(raw, f"planes {planes.start}-{planes.stop - 1}, y {t.y.read}, x {t.x.read}")
            x = ((raw.astype(np.float32) - lo) / span).astype(np.float32)
            coords = Coords(layout.plane_ids(prefix, planes), t.y.read[0], t.x.read[0])
            pred = meth.process(x, coords)
            resid = (x - pred) * span
            std = local_noise_std(resid)
            cy, cx = t.core_in_read
            w = t.weight()
            out_idx = layout.index(prefix, planes, *t.core)
            den_c = (pred[:, cy, cx] * span + lo) * w
            std_c = std[:, cy, cx] * w
            den[out_idx] = den[out_idx] + layout.from_planes(den_c)
            nmap[out_idx] = nmap[out_idx] + layout.from_planes(std_c)
            for name, arr in extra_arrs.items():
                arr[out_idx] = arr[out_idx] + layout.from_planes(meth.last_extras[name][:, cy, cx] * w)
            sig_arr[j] = robust_sigma(resid[:, cy, cx][:, ::2, ::2])  # a quarter of the pixels is plenty
            done_arr[j] = 1
            n_done += 1
            yield Progress("tiles", n_done, len(jobs), time.perf_counter() - t0)

    sig = np.asarray(sig_arr[:], dtype=np.float64)
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
