"""The output store: a zarr group that owns the run's arrays, ledger and metadata.

A :class:`Store` is the only code that knows the names of the arrays in the group
(:data:`DENOISED`, :data:`NOISE_MAP`, extras, the ledger :data:`TILES_DONE` and
:data:`TILE_SIGMA`, the adaptation :data:`METHOD_STATE`), the settings fingerprint a
resume is checked against, and the ``complete`` flag. The ledger has one row per block
of planes and one chunk per row of tiles of a block, so parallel writers never share a
chunk.
"""

from __future__ import annotations

import errno
import time

import numpy as np

from ..core.axes import DenoiseError
from .ome import write_ome
from .output import ATTR, prepare_output, size_text

__all__ = ["Store", "open_result", "jsonable", "ATTR", "DENOISED", "NOISE_MAP"]

DENOISED, NOISE_MAP = "denoised", "noise_map"
TILES_DONE, TILE_SIGMA, METHOD_STATE = "tiles_done", "tile_sigma", "method_state"
BOOK = "masked_denoise"
"""The sub-group of the run's bookkeeping (ledger, adaptation, undo), which viewers
ignore; the image itself is the group's OME-Zarr multiscale image."""
UNDO = "blend_undo"
"""Blended tilings: per block, what the cores of the tile being added held before."""
WRITING = 2
"""A ledger entry of a blended tile whose addition may be half done (1: written)."""


_BOOKKEEPING = (TILES_DONE, TILE_SIGMA, METHOD_STATE, UNDO)


def key(name: str, level: int = 0) -> str:
    """Where array ``name`` (at pyramid ``level``) lies in an output group: the denoised
    image's levels at ``0``, ``1``... (the group is its OME-Zarr image), the noise map's
    and extras' in sub-groups of their name, bookkeeping under :data:`BOOK`."""
    if name in _BOOKKEEPING:
        return f"{BOOK}/{name}"
    return str(level) if name == DENOISED else f"{name}/{level}"


def _legacy(group) -> bool:
    """Whether ``group`` has the layout before OME-Zarr (arrays by name at its root)."""
    import zarr

    return DENOISED in group and isinstance(group[DENOISED], zarr.Array)


def output_array(group, name: str, level: int = 0):
    """Array ``name`` of an output group (either layout)."""
    return group[name] if _legacy(group) else group[key(name, level)]


def jsonable(obj):
    """``obj`` with non-finite floats as None and tuples as lists (zarr attributes are
    strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


class Store:
    """The zarr group of one run.

    Parameters
    ----------
    group : zarr.Group
        The open group.
    path : str or None
        Its path on disk (``None`` in memory or for a store object given by the caller).
    """

    def __init__(self, group, path: str | None):
        self.group, self.path = group, path
        self.legacy = _legacy(group)  # once: every lookup below would read it again

    def _get(self, name: str, level: int = 0):
        return self.group[name if self.legacy else key(name, level)]

    def _has(self, name: str) -> bool:
        return (name if self.legacy else key(name)) in self.group

    def _create(self, name: str, level: int = 0, **kw):
        parent, _, leaf = key(name, level).rpartition("/")
        group = self.group.require_group(parent) if parent else self.group
        return group.create_array(leaf, **kw)

    @classmethod
    def open(cls, output, settings, fingerprint: dict) -> Store:
        """Create the store (``overwrite`` replacing an old one), or reopen it to resume
        when it was written with the same ``fingerprint``."""
        import zarr

        store, path = prepare_output(
            output, settings.input_path, settings.overwrite, settings.resume
        )
        if settings.resume:
            group = zarr.open_group(store, mode="r+")
            if _legacy(group):
                raise DenoiseError(
                    f"cannot resume {path}: it was written by an earlier version (arrays at "
                    "its root, not OME-Zarr); replace it with overwrite instead"
                )
            old = dict(group.attrs.get(ATTR, {})).get("fingerprint")
            if old != fingerprint:
                diff = sorted(k for k in fingerprint if (old or {}).get(k) != fingerprint[k])
                raise DenoiseError(
                    f"cannot resume {path}: it was written with different settings "
                    f"({', '.join(diff) or 'not a masked-denoise store'}); use overwrite instead"
                )
            return cls(group, path)
        group = zarr.open_group(store, mode="w")
        group.attrs[ATTR] = {
            "fingerprint": fingerprint,
            "complete": False,
            "axes": settings.axes,
            "scale": list(settings.scale) if settings.scale is not None else None,
            "translation": (
                list(settings.translation) if settings.translation is not None else None
            ),
            "input": settings.input_path,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        return cls(group, path)

    # -- metadata ------------------------------------------------------------------------
    @property
    def meta(self) -> dict:
        return dict(self.group.attrs.get(ATTR, {}))

    def update_meta(self, **values) -> None:
        meta = self.meta
        meta.update(jsonable(values))
        self.group.attrs[ATTR] = meta

    def noise_model(self):
        """The image's noise model the run estimated, in the normalised units methods
        work in (``None`` if it could not be estimated)."""
        from ..noise.model import NoiseModel

        meta = self.meta
        if not meta.get("noise_model"):
            return None
        lo, hi = meta["fingerprint"]["norm"]
        return NoiseModel.from_dict(meta["noise_model"]).scaled(lo, hi - lo)

    # -- the adaptation --------------------------------------------------------------------
    def method_state(self) -> bytes | None:
        """The adapted state an earlier run of these settings saved, if any."""
        return bytes(self._get(METHOD_STATE)[:]) if self._has(METHOD_STATE) else None

    def save_method_state(self, data: bytes) -> None:
        state = np.frombuffer(data, dtype=np.uint8)
        arr = self._create(METHOD_STATE, shape=state.shape, dtype="uint8", chunks=state.shape)
        arr[:] = state

    # -- the arrays ------------------------------------------------------------------------
    def create_arrays(self, plan, shape, axes: str, extras, settings) -> None:
        """The output arrays (float32, the input's shape, chunked as the plan writes them;
        the levels of their pyramid), their OME-Zarr metadata and the ledger, unless they
        exist (a resumed run)."""
        from .pyramid import level_shapes

        if not plan.exact and not self._has(UNDO):
            names = len((DENOISED, NOISE_MAP, *extras))
            # the largest core (the last along an axis may exceed the tile by the alignment)
            area = max(
                (t.y.core[1] - t.y.core[0]) * (t.x.core[1] - t.x.core[0]) for t in plan.tiles
            )
            slot = max(b[1].stop - b[1].start for b in plan.blocks) * int(area)
            self._create(
                UNDO,
                shape=(len(plan.blocks), names, slot),
                chunks=(1, names, slot),
                dtype="float32",
                fill_value=0.0,
            )
        if self._has(DENOISED) and self.meta.get("levels"):
            return  # a resumed run: every array is there ("levels" is written last)
        self._drop_partial(extras)  # a run killed while it created them: again, whole
        yx = (axes.index("Y"), axes.index("X"))
        levels = level_shapes(tuple(shape), yx)
        dims = tuple(a.lower() for a in axes)
        for name in (DENOISED, NOISE_MAP, *extras):
            for k, lshape in enumerate(levels):
                chunks = tuple(min(c, n) for c, n in zip(plan.chunks, lshape))
                arr = self._create(
                    name,
                    k,
                    shape=lshape,
                    chunks=chunks,
                    dtype="float32",
                    fill_value=0.0,
                    dimension_names=dims,
                )
                scale = None
                if settings.scale is not None:
                    scale = [
                        float(v) * (2.0**k if a in yx else 1.0)
                        for a, v in enumerate(settings.scale)
                    ]
                arr.attrs.update({"axes": axes, "scale": scale})
            group = self.group if name == DENOISED else self.group[name]
            write_ome(group, name, axes, levels, settings)
        ledger, chunk = (len(plan.blocks), len(plan.tiles)), (1, plan.n_tx)
        self._create(TILES_DONE, shape=ledger, chunks=chunk, dtype="uint8", fill_value=0)
        self._create(TILE_SIGMA, shape=ledger, chunks=chunk, dtype="float32", fill_value=np.nan)
        self.update_meta(levels=len(levels), extras=list(extras))

    def _drop_partial(self, extras) -> None:
        """Remove image arrays and ledger a run left half created (no tile is written
        before all of them exist, so nothing is lost)."""
        for k in [k for k in self.group.keys() if k.isdigit() or k in (NOISE_MAP, *extras)]:
            del self.group[k]
        for name in (TILES_DONE, TILE_SIGMA):
            if self._has(name):
                del self.group[key(name)]

    def writers(self, extras) -> dict:
        """The arrays a job writes, opened once (zarr re-reads metadata on every lookup)."""
        names = (DENOISED, NOISE_MAP, TILE_SIGMA, TILES_DONE, *extras)
        return {name: self._get(name) for name in (*names, UNDO) if self._has(name)}

    def done(self) -> np.ndarray:
        """Which jobs the ledger lists as written, flat in job order."""
        return (np.asarray(self._get(TILES_DONE)[...]) == 1).ravel()

    def repair(self, plan, extras) -> int:
        """Undo the additions a hard kill left half done (blended tilings): each such
        tile's cores get back what they held before it, and its ledger entry is cleared,
        so that resuming adds it exactly once. Returns how many tiles were undone."""
        ledger = self._get(TILES_DONE)
        torn = np.argwhere(np.asarray(ledger[...]) == WRITING)
        if not len(torn):
            return 0
        arrays = self.writers(extras)
        names = (DENOISED, NOISE_MAP, *extras)
        for block, tile in torn:
            job = plan.job(int(block) * len(plan.tiles) + int(tile))
            idx = plan.layout.index(job.prefix, job.planes, *job.tile.core)
            before = np.asarray(arrays[UNDO][int(block)])
            for k, name in enumerate(names):
                shape = arrays[name][idx].shape
                arrays[name][idx] = before[k, : int(np.prod(shape))].reshape(shape)
            ledger[int(block), int(tile)] = 0
        return len(torn)

    def mark_incomplete(self, reason: str) -> None:
        """Say in the metadata that the run stopped, and why (never raises: the store
        may be what failed)."""
        try:
            self.update_meta(complete=False, incomplete_reason=reason)
        except Exception:
            pass

    def sigma(self) -> float:
        """Median over tiles of the residual's robust noise sigma (NaN before any tile)."""
        sig = np.asarray(self._get(TILE_SIGMA)[...], dtype=np.float64)
        return float(np.nanmedian(sig)) if np.isfinite(sig).any() else float("nan")

    def _build_pyramid(self) -> None:
        """Levels 1, 2... of every image from the level above (assignments: a rerun
        writes the same values)."""
        from .pyramid import build_level

        if self.legacy:
            return
        meta = self.meta
        axes, n = meta["axes"], int(meta.get("levels") or 1)
        yx = (axes.index("Y"), axes.index("X"))
        for name in (DENOISED, NOISE_MAP, *meta.get("extras", ())):
            for k in range(1, n):
                build_level(self._get(name, k - 1), self._get(name, k), yx)

    def finish(self, sigma: float, report: dict) -> None:
        """Mark the store complete, with the run's sigma and the method's report."""
        if self._has(UNDO):
            del self.group[key(UNDO)]
        self._build_pyramid()
        self.update_meta(
            complete=True,
            incomplete_reason=None,
            sigma=sigma,
            finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
            **({"method_report": report} if report else {}),
        )


def write_job(plan, arrays: dict, j: int, out: dict, sigma: float) -> None:
    """Write job ``j``'s cores (assign when the tiling is exact, add when blended), then
    its ledger entry. A blended job first keeps what its cores held (:data:`UNDO`) and
    marks its entry :data:`WRITING`, so :meth:`Store.repair` can undo a torn addition."""
    try:
        _write_job(plan, arrays, j, out, sigma)
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        need = sum(int(np.prod(arrays[n].shape)) * 4 for n in out)
        raise DenoiseError(
            f"the disk of the output is full ({exc.strerror}); the output needs about "
            f"{size_text(need)} uncompressed: free space and finish it with resume (--resume)"
        ) from None


_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _write_job(plan, arrays: dict, j: int, out: dict, sigma: float) -> None:
    job = plan.job(j)
    idx = plan.layout.index(job.prefix, job.planes, *job.tile.core)
    ledger, at = arrays[TILES_DONE], (job.block, job.tile_index)
    if plan.exact:  # assignments: a repeated job writes the same values
        for name, val in out.items():
            arrays[name][idx] = plan.layout.from_planes(val)
    else:  # additions: what they add to is kept first, so a hard kill can be undone
        before = {name: np.asarray(arrays[name][idx]) for name in out}
        slot = np.zeros(arrays[UNDO].shape[1:], np.float32)
        for k, name in enumerate(out):
            slot[k, : before[name].size] = before[name].ravel()
        arrays[UNDO][job.block] = slot
        ledger[at] = WRITING
        for name, val in out.items():
            arrays[name][idx] = before[name] + plan.layout.from_planes(val)
    arrays[TILE_SIGMA][at] = sigma
    ledger[at] = 1


def open_result(path) -> dict:
    """The metadata of an output store (``complete``, ``sigma``, settings)."""
    import zarr

    return dict(zarr.open_group(str(path), mode="r").attrs.get(ATTR, {}))
