"""Where a run may write: the checks on the output path made before anything is written
(never the input, an existing output only with overwrite or resume, only stores this
tool wrote replaced, room on the disk), and the preparation of the store's location."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..core.axes import DenoiseError

__all__ = ["check_output", "check_space", "prepare_output", "zarr_root", "size_text"]

ATTR = "napari_masked_denoise"
"""The group attribute that holds the run's metadata."""


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in ("zarr.json", ".zgroup", ".zarray"))


def _our_meta(path: Path) -> dict | None:
    """The run metadata of a store this tool wrote at ``path``, else ``None``."""
    import zarr

    if not _is_zarr_store(path):
        return None
    try:
        meta = zarr.open_group(str(path), mode="r").attrs.get(ATTR)
    except Exception:  # not a group, or unreadable metadata: not ours
        return None
    return dict(meta) if isinstance(meta, dict) else None


def zarr_root(path: Path) -> Path | None:
    """The outermost zarr store or group ``path`` is inside of (or is), if any."""
    root = None
    for p in (path, *path.parents):
        if _is_zarr_store(p):
            root = p
    return root


def prepare_output(output, input_path, overwrite: bool, resume: bool):
    """Return a zarr store (path or memory) and its path, refusing unsafe overwrites."""
    import zarr

    if output is None:
        return zarr.storage.MemoryStore(), None
    if not isinstance(output, str | os.PathLike):
        return output, None
    out = Path(output).expanduser().resolve()
    _not_the_input(out, input_path)
    if out.exists() and not resume:
        meta = _our_meta(out)
        if not overwrite:
            state = ""
            if meta is not None and not meta.get("complete"):
                why = meta.get("incomplete_reason")
                state = f" and is incomplete{f' ({why})' if why else ''}"
            raise DenoiseError(
                f"output {out} exists{state}; pass overwrite (--overwrite) to replace it or "
                "resume (--resume) to finish it"
            )
        if meta is None:  # only a store this tool wrote is ever deleted
            raise DenoiseError(
                f"refusing to overwrite {out}: it is not a zarr store written by masked-denoise"
            )
        shutil.rmtree(out)
    if resume and not out.exists():
        raise DenoiseError(f"cannot resume: {out} does not exist")
    if not out.parent.exists():
        raise DenoiseError(f"the folder of the output {out.parent} does not exist")
    return str(out), str(out)


def _not_the_input(out: Path, input_path) -> None:
    """Refuse an output that is the input, holds it, or lies inside its zarr store."""
    if input_path is None:
        return
    inp = Path(input_path).expanduser().resolve()
    root = zarr_root(inp) or inp  # an output inside the input's zarr store changes it
    if out == inp or root == out or root in out.parents or out in inp.parents:
        raise DenoiseError(f"output {out} would overwrite the input {inp}; choose another path")


def check_output(output, settings) -> None:
    """The output checks that change nothing (the input is not written over, an existing
    output needs overwrite or resume, only our stores are replaced, the folder exists),
    made at once so that a refusal does not wait for the noise estimate; the run makes
    them again, under its lock, before it replaces anything."""
    if not isinstance(output, str | os.PathLike):
        return
    out = Path(output).expanduser().resolve()
    _not_the_input(out, settings.input_path)
    if out.exists() and not settings.resume and settings.overwrite and _our_meta(out) is None:
        raise DenoiseError(
            f"refusing to overwrite {out}: it is not a zarr store written by masked-denoise"
        )
    if out.exists() and not settings.resume and settings.overwrite:
        return  # replaced later, under the lock
    prepare_output(output, settings.input_path, False, settings.resume)


def size_text(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.3g} {unit}"
        nbytes /= 1000
    return ""


def check_space(output, shape, n_arrays: int) -> None:
    """Refuse (one line) an output whose arrays (float32, uncompressed) would not fit on
    its disk, before anything is written."""
    out = Path(output).expanduser().resolve()
    need = int(np.prod(shape)) * 4 * n_arrays
    parent = out if out.is_dir() else out.parent
    if not parent.exists():
        return  # reported by the output's own checks
    free = shutil.disk_usage(parent).free
    if out.is_dir():
        free += _treesize_text(out)  # replaced by the run
    if need > free:
        raise DenoiseError(
            f"not enough disk space for {out}: it needs about {size_text(need)} uncompressed, "
            f"{size_text(free)} are free"
        )


def _treesize_text(path: Path) -> int:
    """Bytes of the files under ``path`` (files that vanish meanwhile count 0)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total
