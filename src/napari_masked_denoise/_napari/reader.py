"""napari reader for masked-denoise output stores: dropping one on napari opens its
denoised image (on top, visible) and its noise map (below, hidden), lazily, as
multiscale layers at the input's scale, named with the method that made them.

Older stores (arrays by name at the group's root, no pyramid) open the same way.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["get_reader", "layer_name"]

ATTR = "napari_masked_denoise"


def _meta(path: Path) -> dict | None:
    import json

    zj = path / "zarr.json"
    if not zj.is_file():
        return None
    try:
        meta = json.loads(zj.read_text()).get("attributes", {}).get(ATTR)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def get_reader(path):
    """The reader for ``path`` if it is a masked-denoise output, else ``None``."""
    if isinstance(path, list):
        path = path[0] if len(path) == 1 else None
    if path is None:
        return None
    p = Path(str(path)).expanduser()
    return _read if _meta(p) is not None else None


def layer_name(stem: str, what: str, meta: dict) -> str:
    """``"<stem> <what> (<method>)"``, with ``auto``'s choice when it chose."""
    fp = meta.get("fingerprint", {})
    method = fp.get("method") or "?"
    choice = (meta.get("method_report") or {}).get("choice")
    from ..report import short_spec

    label = f"auto: {short_spec(choice)}" if method == "auto" and choice else method
    return f"{stem} {what} ({label})"


def _read(path) -> list[tuple]:
    import numpy as np
    import zarr

    from ..engine.store import DENOISED, NOISE_MAP, output_array

    p = Path(str(path[0] if isinstance(path, list) else path)).expanduser()
    meta = _meta(p) or {}
    group = zarr.open_group(str(p), mode="r")
    levels = int(meta.get("levels") or 1)
    stem = p.name.removesuffix(".zarr")

    def pyramid(name):
        arrays = [output_array(group, name, k) for k in range(levels)]
        return arrays if len(arrays) > 1 else arrays[0]

    scale, shift = meta.get("scale"), meta.get("translation")
    common = {"scale": scale} if scale else {}
    if shift:
        common["translate"] = shift
    note = {"store": str(p), **{k: meta.get(k) for k in ("complete", "sigma", "axes")}}
    layers = []
    nmap = pyramid(NOISE_MAP)
    top = nmap[-1] if isinstance(nmap, list) else nmap  # the smallest level: cheap to read
    vmax = float(np.percentile(np.asarray(top[...]), 99.5)) or 1.0
    layers.append(
        (
            nmap,
            {
                "name": layer_name(stem, "noise map", meta),
                "visible": False,
                "colormap": "magma",
                "contrast_limits": [0.0, vmax],
                "metadata": note,
                **common,
            },
            "image",
        )
    )
    den = {"name": layer_name(stem, "denoised", meta), "metadata": note, **common}
    image = pyramid(DENOISED)
    small = np.asarray((image[-1] if isinstance(image, list) else image)[...])
    lo, hi = (float(v) for v in np.percentile(small, (0.1, 99.9)))  # the data's own range
    if hi > lo:
        den["contrast_limits"] = [lo, hi]
    layers.append((image, den, "image"))
    return layers
