"""Axes strings and input validation, shared by every front end."""

from __future__ import annotations

import numpy as np

__all__ = ["DenoiseError", "AxesGuessedWarning", "resolve_axes", "check_array", "MIN_SIZE"]

VALID_AXES = "TCZYXS"
MIN_SIZE = 16  # smallest Y or X extent a network can denoise meaningfully


class DenoiseError(ValueError):
    """A problem with the user's input or options; its message is one line."""


class AxesGuessedWarning(UserWarning):
    """Emitted when the axes of an input were guessed from its shape."""


def guess_axes(shape: tuple[int, ...]) -> str:
    """Guess axes for 2-D and 3-D arrays: ``YX``, ``YXC`` (last axis 3 or 4) or ``ZYX``."""
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3:
        return "YXC" if shape[-1] in (3, 4) and min(shape[:2]) > 4 else "ZYX"
    raise DenoiseError(
        f"cannot guess the axes of a {len(shape)}-D array of shape {tuple(shape)}; "
        "pass axes, e.g. 'TZYX' or 'CZYX'"
    )


def resolve_axes(axes: str | None, shape: tuple[int, ...]) -> tuple[str, bool]:
    """Validate ``axes`` against ``shape`` (or guess it); return ``(axes, guessed)``.

    ``S`` (tifffile's samples) is read as ``C``.
    """
    if axes is None or axes == "":
        return guess_axes(shape), True
    if not isinstance(axes, str):
        raise DenoiseError(f"axes must be a string such as 'ZYX', got {axes!r}")
    ax = axes.upper().replace("S", "C")
    bad = sorted(set(ax) - set(VALID_AXES))
    if bad:
        raise DenoiseError(
            f"axes {axes!r} contain unknown letters {''.join(bad)!r}; use T, C, Z, Y, X"
        )
    if len(set(ax)) != len(ax):
        raise DenoiseError(f"axes {axes!r} repeat a letter")
    if "Y" not in ax or "X" not in ax:
        raise DenoiseError(f"axes {axes!r} must contain both Y and X")
    if len(ax) != len(shape):
        raise DenoiseError(
            f"axes {axes!r} have {len(ax)} letters but the array has {len(shape)} "
            f"dimensions {tuple(shape)}"
        )
    return ax, False


def check_array(data, axes: str) -> None:
    """Raise :class:`DenoiseError` for dtypes, sizes and (for in-memory arrays) values
    the engine cannot denoise. Lazy arrays are checked for NaN/Inf tile by tile."""
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "uif":
        raise DenoiseError(
            f"unsupported dtype {dtype}; expected an integer or floating-point image"
        )
    shape = tuple(data.shape)
    if any(s == 0 for s in shape):
        raise DenoiseError(f"the array is empty (shape {shape})")
    ny, nx = shape[axes.index("Y")], shape[axes.index("X")]
    if min(ny, nx) < MIN_SIZE:
        raise DenoiseError(
            f"the image is {ny}x{nx} pixels in YX; at least {MIN_SIZE}x{MIN_SIZE} is needed"
        )
    if isinstance(data, np.ndarray) and dtype.kind == "f" and not np.isfinite(data).all():
        raise DenoiseError("the image contains NaN or Inf values; replace them first")


def check_finite(block: np.ndarray, where: str, origin=None) -> None:
    """Raise if a block read from a lazy input holds NaN/Inf, naming the first such
    pixel (plane, y, x: the block's index plus ``origin``) or else ``where``."""
    if block.dtype.kind == "f" and not np.isfinite(block).all():
        if origin is not None:
            first = np.argwhere(~np.isfinite(block))[0]
            at = ", ".join(
                f"{n} {int(o) + int(i)}" for n, o, i in zip(("plane", "y", "x"), origin, first)
            )
            where = f"first at {at}"
        raise DenoiseError(f"the image contains NaN or Inf values ({where}); replace them first")
