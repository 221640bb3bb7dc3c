"""Random masks as pure functions of global pixel coordinates.

A mask drawn from a stateful generator depends on how the image was cut into tiles.
These masks hash ``(seed, draw, plane, y, x)`` instead, so a pixel is masked in draw
``k`` whatever tile it is processed in: tiled and untiled runs see the same masks, and
a resumed run the same as an uninterrupted one.
"""

from __future__ import annotations

import torch

__all__ = ["uniform", "patch_mask", "Coords"]

_M32 = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    # "lowbias32" integer hash (C. Wellons); int64 arithmetic, low 32 bits kept.
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    x = x ^ (x >> 16)
    return x


class Coords:
    """Global position of a block of planes: plane indices and the YX origin.

    ``origins``, for a sample of crops taken from different places (``once`` mode's
    adaptation sample), is ``(plane, y0, x0)`` of every crop in the image; the crops may
    overlap, while their ``planes`` are distinct ids that keep their masks apart.
    """

    __slots__ = ("planes", "y0", "x0", "origins")

    def __init__(self, planes, y0: int = 0, x0: int = 0, origins=None):
        self.planes = torch.as_tensor(planes, dtype=torch.int64).reshape(-1)
        self.y0 = int(y0)
        self.x0 = int(x0)
        self.origins = None if origins is None else tuple(tuple(int(v) for v in o) for o in origins)


def uniform(seed: int, draw: int, coords: Coords, shape_yx, device=None) -> torch.Tensor:
    """Uniform numbers in [0, 1) of shape ``(N, 1, H, W)`` for draw ``draw``."""
    h, w = shape_yx
    ys = torch.arange(coords.y0, coords.y0 + h, dtype=torch.int64, device=device)
    xs = torch.arange(coords.x0, coords.x0 + w, dtype=torch.int64, device=device)
    key = _hash32(torch.tensor((int(seed) * 0x9E3779B1 + int(draw)) & _M32, device=device))
    p = _hash32(coords.planes.to(device) ^ key)
    k = _hash32(p[:, None] ^ ys[None, :])  # (N, H)
    k = _hash32(k[:, :, None] ^ (xs[None, None, :] * 0x27D4EB2F))  # (N, H, W)
    return (k.to(torch.float32) * (1.0 / 4294967296.0)).unsqueeze(1)


def patch_mask(
    seed: int, draw: int, coords: Coords, shape_yx, patch: int, ratio: float, device=None
) -> torch.Tensor:
    """Patch-wise mask ``(N, 1, H, W)``, 1 = masked, on the global grid of ``patch`` pixels.

    A patch is masked with probability ``ratio``; the grid is anchored at the image
    origin, so a tile sees the same patches as the whole image.
    """
    h, w = shape_yx
    p = int(patch)
    gy0, gx0 = coords.y0 // p, coords.x0 // p
    gh = (coords.y0 + h - 1) // p - gy0 + 1
    gw = (coords.x0 + w - 1) // p - gx0 + 1
    u = uniform(seed, draw, Coords(coords.planes, gy0, gx0), (gh, gw), device)
    m = (u < float(ratio)).to(torch.float32)
    m = m.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)
    oy, ox = coords.y0 - gy0 * p, coords.x0 - gx0 * p
    return m[:, :, oy : oy + h, ox : ox + w]
