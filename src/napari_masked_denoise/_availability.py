"""Which methods this installation can run, decided without importing torch (the CLI's
``methods`` listing and the widget ask)."""

from __future__ import annotations

__all__ = ["unavailable"]


def unavailable(name: str) -> str | None:
    """Why method ``name`` cannot run in this installation (one line), or ``None``: an
    optional package missing, or no trained weights shipped."""
    import importlib.util

    if name == "bm3d" and importlib.util.find_spec("bm3d") is None:
        return "needs the optional bm3d package (pip install bm3d)"
    if name == "masked-transformer":
        from .weights import available

        if name not in available():
            return "no trained weights ship with this version"
    return None
