"""The one interface every denoising method implements.

A method denoises blocks of 2-D planes ``(N, H, W)``, float32, already normalised to
roughly [0, 1]. The engine picks one of two modes:

``per-tile``
    :meth:`Method.process` adapts to each block on its own (slow, best quality for a
    single image).
``once``
    :meth:`Method.adapt` is run once on a sample of tiles of the whole image or volume,
    then :meth:`Method.process` runs every block with the adapted, fixed network (fast;
    for a fixed network the tiled result equals the untiled one).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..masks import Coords

__all__ = ["Method", "Preset", "MODES"]

MODES = ("per-tile", "once")


@dataclass(frozen=True)
class Preset:
    """Named option values for a method, with a one-line description."""

    description: str
    options: dict[str, Any] = field(default_factory=dict)


class Method:
    """Base class. Subclasses set :attr:`name`, :attr:`presets`, :attr:`defaults`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    presets: ClassVar[dict[str, Preset]]
    defaults: ClassVar[dict[str, Any]]
    preview_options: ClassVar[dict[str, Any]] = {}
    """Options that make a quick preview of one slice (merged under the user's options)."""

    def __init__(self, *, preset: str, mode: str, device, seed: int = 0, **options):
        if preset not in self.presets:
            from .._axes import DenoiseError

            raise DenoiseError(
                f"unknown preset {preset!r} for method {self.name!r}; "
                f"choose one of {', '.join(self.presets)}"
            )
        unknown = set(options) - set(self.defaults)
        if unknown:
            from .._axes import DenoiseError

            raise DenoiseError(
                f"unknown option(s) {', '.join(sorted(unknown))} for method {self.name!r}; "
                f"known: {', '.join(sorted(self.defaults))}"
            )
        self.preset = preset
        self.mode = mode
        self.device = device
        self.seed = int(seed)
        self.options = {**self.defaults, **self.presets[preset].options, **options}

    # -- geometry the engine needs -------------------------------------------------
    halo: int = 0
    """Context in pixels each tile needs on each side (receptive-field radius)."""
    align: int = 1
    """Tile read regions start at multiples of this."""

    # -- the work ---------------------------------------------------------------------
    def adapt(self, sample: np.ndarray, coords: Coords) -> Iterator[tuple[int, int]]:
        """Adapt on a sample (``once`` mode); yields ``(step, total)`` for progress."""
        return iter(())

    def process(self, block: np.ndarray, coords: Coords) -> np.ndarray:
        """Denoise a block ``(N, H, W)``; return the same shape, float32."""
        raise NotImplementedError

    # -- adapted state, saved in the output store so a resumed run continues exactly --
    def state_bytes(self) -> bytes:
        return b""

    def load_state_bytes(self, data: bytes) -> None:
        pass

    @staticmethod
    def _torch_bytes(state: dict) -> bytes:
        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()

    @staticmethod
    def _torch_state(data: bytes) -> dict:
        import torch

        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
