"""The tiled engine: any N-d array in, a zarr store out.

- :mod:`.settings`: :class:`RunSettings`, what a run is asked to do, and the defaults
  that need the image (mode, tile);
- :mod:`.layout`: axes as blocks of YX planes, reading, the intensity range;
- :mod:`.tiling`: tiles with halos (exact partitions or blended overlaps);
- :mod:`.jobs`: a block times a tile, denoised and written; the threaded runner;
- :mod:`.store`: the output group, its ledger, fingerprint and completion flag;
- :mod:`.cluster`: the same jobs as dask.distributed tasks;
- :mod:`.run`: one run, top to bottom (:func:`denoise_iter`);
- :mod:`.io`: reading zarr, TIFF and PNG inputs from paths.
"""

_WHERE = {
    "Progress": "run",
    "StoreResult": "run",
    "denoise_iter": "run",
    "run_to_completion": "run",
    "RunSettings": "settings",
    "default_tile": "settings",
    "open_result": "store",
}


def __getattr__(name):  # lazy: ``engine.io`` and ``engine.lock`` load without torch
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Progress",
    "StoreResult",
    "RunSettings",
    "denoise_iter",
    "run_to_completion",
    "open_result",
    "default_tile",
]
