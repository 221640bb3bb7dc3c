"""The temporary zarr stores behind the results of large layers.

A layer too large to denoise in memory is denoised into a store in a temporary folder,
and its result layers read from it lazily. The folder is deleted when the last layer
that reads it is removed, when its run ends without results, or at exit.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile

__all__ = ["TEMP_FOLDERS", "new_temp_store", "remove_temp", "watch_temp"]

TEMP_FOLDERS: set[str] = set()
"""Folders of the temporary stores that exist now."""


def new_temp_store(layer_name: str) -> tuple[str, str]:
    """Make a temporary folder for the results of one run.

    Parameters
    ----------
    layer_name : str
        The input layer's name; the store is named after it.

    Returns
    -------
    folder, store : str
        The new folder (registered for deletion) and the store's path inside it.
    """
    folder = tempfile.mkdtemp(prefix="masked-denoise-")
    TEMP_FOLDERS.add(folder)
    return folder, os.path.join(folder, f"{_safe_name(layer_name)}.zarr")


def remove_temp(folder: str | None) -> None:
    """Delete a temporary folder (nothing for ``None``)."""
    if folder:
        TEMP_FOLDERS.discard(folder)
        shutil.rmtree(folder, ignore_errors=True)


@atexit.register
def _remove_all_temp() -> None:
    for folder in list(TEMP_FOLDERS):
        remove_temp(folder)


def watch_temp(viewer, folder: str) -> None:
    """Delete ``folder`` once no layer of ``viewer`` reads from it.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer whose layers read the store (their metadata's ``"store"``).
    folder : str
        A folder made by :func:`new_temp_store`.
    """

    def reads(lay) -> bool:
        store = lay.metadata.get("store")
        return bool(store) and os.path.dirname(str(store)) == folder

    def on_removed(event=None) -> None:
        if folder not in TEMP_FOLDERS:
            viewer.layers.events.removed.disconnect(on_removed)
        elif not any(reads(lay) for lay in viewer.layers):
            viewer.layers.events.removed.disconnect(on_removed)
            remove_temp(folder)

    viewer.layers.events.removed.connect(on_removed)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "layer"
