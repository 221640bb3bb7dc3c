"""``identity``: every tile as it is.

A baseline for the benchmarks (what doing nothing scores) and the method the engine's own
tests run on, so that tiling, blending, layouts, stores and resume are tested apart from
any denoiser. Its output equals its input up to float32 rounding.
"""

from __future__ import annotations

import numpy as np

from ..core.masks import Coords
from .base import Method, Preset, Processed

__all__ = ["Identity"]


class Identity(Method):
    name = "identity"
    summary = "the input unchanged: a baseline"
    presets = {"default": Preset("every tile returned as it is", {})}
    defaults = {}
    exact_support = True  # reads nothing around a pixel: exact with no halo

    @classmethod
    def adapts_per_tile(cls, options: dict) -> bool:
        return False

    def process(self, block: np.ndarray, coords: Coords) -> Processed:
        return Processed(np.array(block, dtype=np.float32, copy=True))
