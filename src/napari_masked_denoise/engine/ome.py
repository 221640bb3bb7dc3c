"""The output's OME-Zarr (0.5) metadata, built and validated by ``ome-zarr-models``."""

from __future__ import annotations

__all__ = ["ngff_axes_ok", "write_ome"]


_NGFF_ORDER = "TCZYX"
_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


def ngff_axes_ok(axes: str) -> bool:
    """Whether ``axes`` are in the order OME-Zarr requires (time, channel, then space,
    ending in Y X)."""
    pos = [_NGFF_ORDER.find(a) for a in axes]
    return -1 not in pos and pos == sorted(pos) and axes.endswith("YX")


_UNITS = {
    "µm": "micrometer",
    "μm": "micrometer",
    "um": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "nm": "nanometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "å": "angstrom",
    "s": "second",
    "sec": "second",
    "ms": "millisecond",
    "min": "minute",
    "h": "hour",
}
_NGFF_UNITS = {
    *(f"{p}meter" for p in ("", "kilo", "centi", "milli", "micro", "nano", "pico", "femto")),
    "angstrom",
    "inch",
    "foot",
    "mile",
    "parsec",
    "second",
    "millisecond",
    "microsecond",
    "nanosecond",
    "minute",
    "hour",
    "day",
}


def _unit(u):
    """An OME-Zarr unit for the input's ``u`` (common spellings mapped, e.g. "µm"), or
    ``None`` for one OME-Zarr does not name (left out rather than written wrong)."""
    if not isinstance(u, str):
        return None
    u = _UNITS.get(u.strip().lower(), u.strip().lower())
    return u if u in _NGFF_UNITS else None


def write_ome(group, name: str, axes: str, levels, settings) -> None:
    """The OME-Zarr (0.5) multiscales metadata of the image ``name`` in ``group`` (levels
    at ``0``, ``1``...), built and validated by ``ome-zarr-models``: axes with types and
    the input's units, each level's scale (the input's, times 2 per level in Y and X)
    and translation (the input's, plus the half pixel the level's centres move). Axes in
    an order OME-Zarr does not allow (e.g. ``YXC``) get none (the arrays are still
    there)."""
    if not ngff_axes_ok(axes):
        return
    from ome_zarr_models.v05.axes import Axis
    from ome_zarr_models.v05.image import Image
    from pydantic_zarr.v3 import ArraySpec

    base = list(settings.scale) if settings.scale is not None else [1.0] * len(axes)
    shift = list(settings.translation) if settings.translation is not None else [0.0] * len(axes)
    units = [_unit(u) for u in settings.units] if settings.units else [None] * len(axes)
    yx = (axes.index("Y"), axes.index("X"))
    scales, translations = [], []
    for k in range(len(levels)):
        f = [2.0**k if a in yx else 1.0 for a in range(len(axes))]
        scales.append([b * fa for b, fa in zip(base, f)])
        translations.append([t + (fa - 1) / 2 * b for t, fa, b in zip(shift, f, base)])
    image = Image.new(
        array_specs=[ArraySpec.from_zarr(group[str(k)]) for k in range(len(levels))],
        paths=[str(k) for k in range(len(levels))],
        axes=[
            Axis(name=a.lower(), type=_TYPES[a], unit=u if _TYPES[a] != "channel" else None)
            for a, u in zip(axes, units)
        ],
        scales=scales,
        translations=translations,
        name=name,
    )
    ome = image.model_dump(mode="json", exclude_none=True)["attributes"]["ome"]
    group.attrs["ome"] = ome
