"""The output's multiscale pyramid: each level half the previous one in Y and X.

Levels are built once every tile is written, level from level, block by block (rows of
chunks), so memory stays at a few chunks whatever the volume's size. A level is the
mean of 2 x 2 pixels of the one above (an odd last row or column is averaged with its
copy). Assignments only: a rerun (a resume after a kill while building) writes the same
values. Axes other than Y and X keep their size, as is usual for anisotropic volumes.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["level_shapes", "build_level", "MIN_SIDE", "MAX_LEVELS"]

MIN_SIDE = 64
"""A level is added while its smaller YX side is at least this many pixels."""
MAX_LEVELS = 8


def level_shapes(shape: tuple[int, ...], yx: tuple[int, int]) -> list[tuple[int, ...]]:
    """The shapes of levels 0, 1, ... of an array of ``shape`` with Y and X at ``yx``."""
    shapes = [tuple(shape)]
    while len(shapes) < MAX_LEVELS:
        s = list(shapes[-1])
        nxt = [(s[a] + 1) // 2 for a in yx]
        if min(nxt) < MIN_SIDE:
            break
        for a, n in zip(yx, nxt):
            s[a] = n
        shapes.append(tuple(s))
    return shapes


def _halve(block: np.ndarray, yx: tuple[int, int]) -> np.ndarray:
    """The 2 x 2 mean of ``block`` along the axes ``yx`` (an odd end padded by edge)."""
    pad = [(0, 0)] * block.ndim
    for a in yx:
        pad[a] = (0, block.shape[a] % 2)
    b = np.pad(block.astype(np.float64), pad, mode="edge")
    ya, xa = yx
    shape = list(b.shape)
    new = shape[:ya] + [shape[ya] // 2, 2] + shape[ya + 1 :]
    b = b.reshape(new).mean(axis=ya + 1)
    shape = list(b.shape)
    new = shape[:xa] + [shape[xa] // 2, 2] + shape[xa + 1 :]
    return b.reshape(new).mean(axis=xa + 1).astype(np.float32)


def build_level(src, dst, yx: tuple[int, int], pixels: int = 2**22) -> None:
    """Write ``dst`` (one level down) from ``src`` over every plane (the index of every
    axis but Y and X), reading about ``pixels`` pixels of ``src`` at a time."""
    ya, xa = yx
    rows = max(1, pixels // (4 * src.shape[xa]))
    others = [a for a in range(len(src.shape)) if a not in yx]
    for idx in itertools.product(*(range(src.shape[a]) for a in others)):
        for r0 in range(0, dst.shape[ya], rows):
            r1 = min(dst.shape[ya], r0 + rows)
            sl_src, sl_dst = [slice(None)] * len(src.shape), [slice(None)] * len(src.shape)
            for a, i in zip(others, idx):
                sl_src[a] = slice(i, i + 1)
                sl_dst[a] = slice(i, i + 1)
            sl_src[ya] = slice(2 * r0, min(src.shape[ya], 2 * r1))
            sl_dst[ya] = slice(r0, r1)
            block = np.asarray(src[tuple(sl_src)])
            dst[tuple(sl_dst)] = _halve(block, yx)
