"""Reading inputs from disk: zarr (v2 and v3), OME-Zarr (level 0), TIFF and PNG.

Nothing is loaded eagerly where it can be avoided: zarr arrays stay zarr arrays and
uncompressed TIFFs are memory-mapped, so the engine reads them tile by tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.axes import DenoiseError

__all__ = ["InputData", "read_input"]


@dataclass
class InputData:
    """An array opened from disk, with what its file says about axes and scale."""

    data: object
    axes: str | None
    scale: list[float] | None
    path: Path
    units: list[str | None] | None = None
    translation: list[float] | None = None


def _axes_from_names(names) -> str | None:
    if not names or any(n is None for n in names):
        return None
    ax = "".join(str(n)[0].upper() for n in names)
    return ax if set(ax) <= set("TCZYX") and len(set(ax)) == len(ax) else None


def _open_zarr(path: Path) -> InputData:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for "not a store"
        raise DenoiseError(f"cannot open {path} as zarr: {exc}") from None
    if isinstance(node, zarr.Group):
        attrs = dict(node.attrs)
        if "napari_masked_denoise" in attrs:
            raise DenoiseError(
                f"{path} is a masked-denoise output; to denoise its result again name its "
                f"full-resolution level, {path}/0"
            )
        ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        if ms:  # OME-Zarr: level 0, axes and scale from the metadata
            m = ms[0]
            ds = m["datasets"][0]
            arr = node[ds["path"]]
            axes = _axes_from_names(
                [a["name"] if isinstance(a, dict) else a for a in m.get("axes", [])]
            )
            scale = translation = None
            for tr in ds.get("coordinateTransformations", []):
                if tr.get("type") == "scale":
                    scale = [float(s) for s in tr["scale"]]
                if tr.get("type") == "translation":
                    translation = [float(t) for t in tr["translation"]]
            units = [a.get("unit") if isinstance(a, dict) else None for a in m.get("axes", [])]
            return InputData(arr, axes, scale, path, units if any(units) else None, translation)
        arrays = [k for k, _ in node.arrays()]
        if "denoised" in arrays:
            raise DenoiseError(
                f"{path} is a masked-denoise output; name an array inside it, e.g. {path}/denoised"
            )
        if len(arrays) == 1:
            node = node[arrays[0]]
        else:
            raise DenoiseError(
                f"{path} is a zarr group with arrays {arrays or 'none'}; name one, e.g. {path}/<array>"
            )
    names = getattr(node.metadata, "dimension_names", None)
    axes = (
        node.attrs.get("axes")
        or _axes_from_names(names)
        or _axes_from_names(node.attrs.get("_ARRAY_DIMENSIONS"))
    )
    scale = node.attrs.get("scale")
    return InputData(node, axes, scale, path)


def _open_tiff(path: Path) -> InputData:
    import tifffile

    with tifffile.TiffFile(str(path)) as tf:
        series = tf.series[0]
        axes = series.axes.replace("S", "C").replace("Q", "Z").replace("I", "Z")
    try:
        data = tifffile.memmap(str(path), mode="r")
    except Exception:  # compressed or non-contiguous: load it
        data = tifffile.imread(str(path))
    if data.ndim != len(axes) or len(set(axes)) != len(axes) or not set(axes) <= set("TCZYX"):
        axes = None
    return InputData(data, axes, None, path)


def _open_image(path: Path) -> InputData:
    from skimage import io as skio

    data = skio.imread(str(path))
    if data.ndim == 3 and data.shape[-1] in (2, 4):
        raise DenoiseError(
            f"{path} has an alpha channel ({'grey' if data.shape[-1] == 2 else 'RGB'} + alpha): "
            "denoising would change its transparency; save it without alpha"
        )
    return InputData(
        data, "YXC" if data.ndim == 3 else "YX" if data.ndim == 2 else None, None, path
    )


def read_input(path) -> InputData:
    """Open ``path`` (zarr/OME-Zarr directory or array path, ``.tif``, ``.png``...)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DenoiseError(f"input not found: {p}")
    suffix = p.suffix.lower()
    if p.is_dir() or suffix == ".zarr":
        return _open_zarr(p)
    if suffix in (".tif", ".tiff"):
        opener, kind = _open_tiff, "TIFF"
    elif suffix in (".png", ".jpg", ".jpeg", ".bmp"):
        opener, kind = _open_image, suffix[1:].upper()
    else:
        raise DenoiseError(f"unsupported input format {suffix or p.name!r}; use zarr, TIFF or PNG")
    if p.is_file() and p.stat().st_size == 0:
        raise DenoiseError(f"cannot read {p}: the file is empty")
    try:
        return opener(p)
    except (DenoiseError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:  # tifffile, imageio and PIL each raise their own types
        msg = (str(exc).strip().splitlines() or [""])[0]
        raise DenoiseError(f"cannot read {p} as {kind}: {type(exc).__name__}: {msg}") from None
