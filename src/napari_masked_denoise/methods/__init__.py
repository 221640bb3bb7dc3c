"""The method registry: every denoiser behind one interface (:class:`Method`)."""

from __future__ import annotations

from pathlib import Path

from ..weights import unavailable
from .base import MODES, Method, Preset

__all__ = [
    "MODES",
    "Method",
    "Preset",
    "get_method",
    "method_names",
    "describe_methods",
    "default_preset",
    "unavailable",
]

# name -> "module:Class" (or the class itself); modules are imported only when a method is
# used. A new method is one line here.
_REGISTRY = {
    "auto": "napari_masked_denoise.methods.auto:Auto",
    "zero-shot": "napari_masked_denoise.methods.zero_shot:ZeroShotFilling",
    "ttt-mim": "napari_masked_denoise.methods.ttt_mim:TTTMIM",
    "meta-tta": "napari_masked_denoise.methods.meta_tta:MetaTTA",
    "masked-transformer": "napari_masked_denoise.methods.masked_transformer:MaskedTransformer",
    "tv": "napari_masked_denoise.methods.classical:TV",
    "nlm": "napari_masked_denoise.methods.classical:NonLocalMeans",
    "wavelet": "napari_masked_denoise.methods.classical:Wavelet",
    "bm3d": "napari_masked_denoise.methods.classical:BM3D",
    "identity": "napari_masked_denoise.methods.identity:Identity",
}


def method_names() -> list[str]:
    """The registered method names, in the order front ends list them."""
    return list(_REGISTRY)


def get_method(name: str) -> type[Method]:
    """The :class:`Method` subclass registered as ``name``."""
    if name not in _REGISTRY:
        from ..core.axes import DenoiseError

        raise DenoiseError(f"unknown method {name!r}; choose one of {', '.join(_REGISTRY)}")
    import importlib

    target = _REGISTRY[name]
    if not isinstance(target, str):
        return target
    mod, cls = target.split(":")
    return getattr(importlib.import_module(mod), cls)


def default_preset(name: str) -> str:
    """The preset used when none is given: the method's first."""
    return next(iter(get_method(name).presets))


def describe_methods() -> list[tuple[str, str, dict[str, Preset]]]:
    """``(name, summary, presets)`` for every registered method."""
    out = []
    for name in _REGISTRY:
        m = get_method(name)
        out.append((name, m.summary, m.presets))
    return out


CATALOGUE = Path(__file__).with_name("catalogue.json")
""":func:`describe_methods` written out, so that ``masked-denoise methods`` lists them
without importing torch (a test keeps it equal to the registry; rewrite it with
``python -m napari_masked_denoise.methods``)."""


def catalogue() -> dict:
    """``{name: {"summary": ..., "presets": {preset: description}}}`` from the registry."""
    return {
        name: {"summary": summary, "presets": {k: v.description for k, v in presets.items()}}
        for name, summary, presets in describe_methods()
    }


def read_catalogue() -> dict:
    """The written catalogue (:data:`CATALOGUE`)."""
    import json

    return json.loads(CATALOGUE.read_text())
