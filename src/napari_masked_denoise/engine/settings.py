"""The settings of one run: built by every front end, validated once, read by the engine
and by cluster workers.

:class:`RunSettings` holds what the user asked for (``None`` where the engine decides);
it checks everything that can be checked without the image when it is made, so a bad
value is a one-line :class:`~napari_masked_denoise.core.axes.DenoiseError` before any
array is read or any output is created. The choices that need the image (axes, mode,
tile) are made here: :func:`default_mode`, and :func:`method_tile` for the built method
(which the engine applies, after ``auto`` has chosen) with :func:`default_tile` giving
front ends the same number beforehand (``None`` where it depends on auto's choice).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.axes import DenoiseError

__all__ = ["RunSettings", "EXACT_TILE", "PRECISIONS", "default_mode", "default_tile", "method_tile"]

EXACT_TILE = 1024
"""Default tile of a fixed network whose halo covers its receptive field (tiles cut
exactly, without overlap: the halo is their only overhead, so large tiles pay off)."""

PRECISIONS = ("float32", "mixed")
MIN_TILE = 32


@dataclass(frozen=True)
class RunSettings:
    """Everything a run is asked to do, validated when made.

    Parameters
    ----------
    method, preset : str
        A registered method and one of its presets; ``preset=None`` is the method's first.
    axes : str, optional
        e.g. ``"ZYX"``, ``"TCZYX"``; guessed for 2-D and 3-D inputs when omitted.
    mode : {"per-tile", "once"}, optional
        Default: :func:`default_mode`.
    device : str, optional
        ``"cpu"``, ``"cuda"``, ``"mps"``; default the best available.
    seed : int
        Seed of the network initialisation and of every mask (0 or more).
    tile : int, optional
        Core tile size in Y and X (32 or more); default: :func:`default_tile`.
    plane_batch : int, optional
        Planes processed together; default keeps about 4 * 256^2 pixels per block.
    sample_tiles, sample_size : int
        ``once`` mode: how many crops, of what size, the method adapts on.
    resume, overwrite : bool
        Continue an incomplete store / replace an existing one.
    scale : tuple of float, optional
        Pixel size per axis, kept as metadata.
    units, translation : tuple, optional
        Per axis, the input's physical units and offset (from its OME-Zarr metadata),
        written into the output's.
    input_path : str, optional
        The input's path, kept as metadata and checked against the output.
    options : dict
        Method options that override the preset.
    precision : {"float32", "mixed"}
        ``mixed``: the fixed network of ``once`` mode under autocast.
    compile : bool
        ``torch.compile`` the fixed network of ``once`` mode.
    """

    method: str = "auto"
    preset: str | None = None
    axes: str | None = None
    mode: str | None = None
    device: str | None = None
    seed: int = 0
    tile: int | None = None
    plane_batch: int | None = None
    sample_tiles: int = 4
    sample_size: int = 128
    resume: bool = False
    overwrite: bool = False
    scale: tuple[float, ...] | None = None
    input_path: str | None = None
    units: tuple[str | None, ...] | None = None
    translation: tuple[float, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    precision: str = "float32"
    compile: bool = False

    def __post_init__(self) -> None:
        from ..methods import MODES, default_preset, get_method

        cls = get_method(self.method)  # unknown method: a one-line error
        preset = self.preset or default_preset(self.method)
        if preset not in cls.presets:
            raise DenoiseError(
                f"unknown preset {preset!r} for method {self.method!r}; "
                f"choose one of {', '.join(cls.presets)}"
            )
        opts = dict(self.options or {})
        cls.check_options(opts, preset)
        if self.mode is not None and self.mode not in MODES:
            raise DenoiseError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.tile is not None and _int(self.tile, "tile") < MIN_TILE:
            raise DenoiseError(f"tile must be at least {MIN_TILE} pixels, got {self.tile}")
        if self.plane_batch is not None and _int(self.plane_batch, "plane_batch") < 1:
            raise DenoiseError(f"plane_batch must be at least 1, got {self.plane_batch}")
        if _int(self.seed, "seed") < 0:
            raise DenoiseError(f"seed must be 0 or more, got {self.seed}")
        if _int(self.sample_tiles, "sample_tiles") < 0:  # 0: one crop, as before
            raise DenoiseError(f"sample_tiles must be 0 or more, got {self.sample_tiles}")
        if _int(self.sample_size, "sample_size") < 1:
            raise DenoiseError(f"sample_size must be at least 1, got {self.sample_size}")
        if self.precision not in PRECISIONS:
            raise DenoiseError(f"precision must be 'float32' or 'mixed', got {self.precision!r}")
        if (self.precision == "mixed" or self.compile) and self.mode not in (None, "once"):
            raise DenoiseError(
                "mixed precision and compile apply to the fixed network of once mode (--mode once)"
            )
        if self.device is not None and not isinstance(self.device, str):
            object.__setattr__(self, "device", str(self.device))
        set_ = {
            "preset": preset,
            "options": opts,
            "seed": int(self.seed),
            "tile": None if self.tile is None else int(self.tile),
            "scale": None if self.scale is None else tuple(float(s) for s in self.scale),
            "units": None if self.units is None else tuple(self.units),
            "translation": (
                None if self.translation is None else tuple(float(t) for t in self.translation)
            ),
            "input_path": None if self.input_path is None else os.fspath(self.input_path),
        }
        for key, value in set_.items():
            object.__setattr__(self, key, value)

    def replace(self, **changes) -> RunSettings:
        """A copy with ``changes`` (validated again); another method gets its own default
        preset unless ``changes`` names one."""
        if "method" in changes and changes["method"] != self.method:
            changes.setdefault("preset", None)
        return replace(self, **changes)

    def build_method(self, device, noise=None):
        """This run's method (resolved ``mode``) on ``device``, not adapted yet, told the
        image's noise model ``noise`` (in the normalised units it works in) if known."""
        from ..methods import get_method

        return get_method(self.method)(
            preset=self.preset,
            mode=self.mode or "once",
            device=device,
            seed=self.seed,
            noise=noise,
            **self.options,
        )


def _int(value, name: str) -> int:
    import numbers

    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or int(value) != value:
        raise DenoiseError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def default_mode(settings: RunSettings, n_planes: int) -> str:
    """``per-tile`` for a single 2-D plane when the method adapts anything per tile,
    else ``once`` (a volume, or a method that would adapt nothing per tile)."""
    if settings.mode is not None:
        return settings.mode
    from ..methods import get_method

    cls = get_method(settings.method)
    adapts = cls.adapts_per_tile(cls.merged_options(settings.preset, settings.options))
    return "per-tile" if n_planes == 1 and adapts else "once"


def method_tile(meth) -> int:
    """The default tile of a built (and, for ``auto``, decided) method: :data:`EXACT_TILE`
    or more for an exact tiling (a fixed network whose halo covers its receptive field),
    else the method's ``default_tile`` (overlapping, blended tiles)."""
    return max(meth.default_tile, EXACT_TILE) if meth.tile_exact else meth.default_tile


def default_tile(
    method: str, preset: str | None = None, options: dict | None = None, mode: str = "once"
) -> int | None:
    """The tile a run of ``method`` gets when none is given, without building it; ``None``
    when it depends on what the method decides on the image (``auto``'s choice).

    Front ends show this value; the engine applies :func:`method_tile` to the built
    method, which gives the same number whenever this one is not ``None``.
    """
    from ..methods import default_preset, get_method

    cls = get_method(method)
    opts = cls.merged_options(preset or default_preset(method), options)
    if cls.needs_sample:  # auto: the tiling follows its choice
        return None
    return max(cls.default_tile, EXACT_TILE) if cls.exact_tiling(opts, mode) else cls.default_tile
