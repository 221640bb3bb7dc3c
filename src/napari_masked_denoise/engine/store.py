"""The output store: a zarr group that owns the run's arrays, ledger and metadata.

A :class:`Store` is the only code that knows the names of the arrays in the group
(:data:`DENOISED`, :data:`NOISE_MAP`, extras, the ledger :data:`TILES_DONE` and
:data:`TILE_SIGMA`, the adaptation :data:`METHOD_STATE`), the settings fingerprint a
resume is checked against, and the ``complete`` flag. The ledger has one row per block
of planes and one chunk per row of tiles of a block, so parallel writers never share a
chunk.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from ..core.axes import DenoiseError

__all__ = ["Store", "open_result", "jsonable", "ATTR", "DENOISED", "NOISE_MAP"]

ATTR = "napari_masked_denoise"
"""The group attribute that holds the run's metadata."""
DENOISED, NOISE_MAP = "denoised", "noise_map"
TILES_DONE, TILE_SIGMA, METHOD_STATE = "tiles_done", "tile_sigma", "method_state"


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

    @classmethod
    def open(cls, output, settings, fingerprint: dict) -> Store:
        """Create the store (``overwrite`` replacing an old one), or reopen it to resume
        when it was written with the same ``fingerprint``."""
        import zarr

        store, path = _prepare_output(
            output, settings.input_path, settings.overwrite, settings.resume
        )
        if settings.resume:
            group = zarr.open_group(store, mode="r+")
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
        return bytes(self.group[METHOD_STATE][:]) if METHOD_STATE in self.group else None

    def save_method_state(self, data: bytes) -> None:
        state = np.frombuffer(data, dtype=np.uint8)
        arr = self.group.create_array(
            METHOD_STATE, shape=state.shape, dtype="uint8", chunks=state.shape
        )
        arr[:] = state

    # -- the arrays ------------------------------------------------------------------------
    def create_arrays(self, plan, shape, axes: str, extras, scale) -> None:
        """The output arrays (float32, the input's shape, chunked as the plan writes them)
        and the ledger, unless they exist (a resumed run)."""
        if DENOISED in self.group:
            return
        chunks = plan.chunks
        for name in (DENOISED, NOISE_MAP, *extras):
            arr = self.group.create_array(
                name, shape=shape, chunks=chunks, dtype="float32", fill_value=0.0
            )
            arr.attrs.update({"axes": axes, "scale": list(scale) if scale is not None else None})
        ledger, chunk = (len(plan.blocks), len(plan.tiles)), (1, plan.n_tx)
        self.group.create_array(TILES_DONE, shape=ledger, chunks=chunk, dtype="uint8", fill_value=0)
        self.group.create_array(
            TILE_SIGMA, shape=ledger, chunks=chunk, dtype="float32", fill_value=np.nan
        )

    def writers(self, extras) -> dict:
        """The arrays a job writes, opened once (zarr re-reads metadata on every lookup)."""
        return {
            name: self.group[name]
            for name in (DENOISED, NOISE_MAP, TILE_SIGMA, TILES_DONE, *extras)
        }

    def done(self) -> np.ndarray:
        """Which jobs the ledger lists as written, flat in job order."""
        return np.asarray(self.group[TILES_DONE][...], dtype=bool).ravel()

    def sigma(self) -> float:
        """Median over tiles of the residual's robust noise sigma (NaN before any tile)."""
        sig = np.asarray(self.group[TILE_SIGMA][...], dtype=np.float64)
        return float(np.nanmedian(sig)) if np.isfinite(sig).any() else float("nan")

    def finish(self, sigma: float, report: dict) -> None:
        """Mark the store complete, with the run's sigma and the method's report."""
        self.update_meta(
            complete=True,
            sigma=sigma,
            finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
            **({"method_report": report} if report else {}),
        )


def write_job(plan, arrays: dict, j: int, out: dict, sigma: float) -> None:
    """Write job ``j``'s cores (assign when the tiling is exact, add when blended), then
    its ledger entry."""
    job = plan.job(j)
    idx = plan.layout.index(job.prefix, job.planes, *job.tile.core)
    for name, val in out.items():
        arr = arrays[name]
        val = plan.layout.from_planes(val)
        arr[idx] = val if plan.exact else arr[idx] + val
    arrays[TILE_SIGMA][job.block, job.tile_index] = sigma
    arrays[TILES_DONE][job.block, job.tile_index] = 1


def open_result(path) -> dict:
    """The metadata of an output store (``complete``, ``sigma``, settings)."""
    import zarr

    return dict(zarr.open_group(str(path), mode="r").attrs.get(ATTR, {}))
