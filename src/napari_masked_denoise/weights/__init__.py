"""Weights shipped with the package, trained by :mod:`napari_masked_denoise.training`.

Each ``NAME.pt`` (a plain tensor state dict, loaded with ``weights_only=True`` so that
loading cannot execute code) has a manifest entry ``NAME.json`` beside it recording the
training command, data, seed, iterations, validation numbers and sha256. The sha256 is
checked on every load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = ["available", "manifest", "load_state", "load_tensors", "unavailable"]

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the shipped weight files."""
    return sorted(p.stem for p in HERE.glob("*.pt") if p.with_suffix(".json").exists())


def manifest(name: str) -> dict:
    path = HERE / f"{name}.json"
    if not path.exists():
        from ..core.axes import DenoiseError

        raise DenoiseError(
            f"no shipped weights named {name!r}; available: {', '.join(available()) or 'none'}"
        )
    return json.loads(path.read_text())


def load_state(name_or_path: str) -> tuple[dict, dict]:
    """``(state_dict, manifest entry)`` for a shipped name or a ``.pt`` file with a ``.json`` beside it."""
    from ..core.axes import DenoiseError

    p = Path(name_or_path)
    if p.suffix == ".pt":
        if not p.exists():
            raise FileNotFoundError(f"weights file {p} does not exist")
        side = p.with_suffix(".json")
        try:
            entry = json.loads(side.read_text()) if side.exists() else {}
        except ValueError:
            raise DenoiseError(f"the manifest {side} beside the weights is not JSON") from None
    else:
        entry = manifest(name_or_path)
        p = HERE / entry["file"]
    data = p.read_bytes()
    if entry.get("sha256") and hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise DenoiseError(f"weights file {p} does not match the sha256 in its manifest")
    return load_tensors(data, f"weights file {p}"), entry


def load_tensors(data: bytes, what: str) -> dict:
    """A state dict of tensors from ``data``, loaded without running any code from it;
    anything else is a one-line :class:`DenoiseError` saying what ``what`` is."""
    import io
    import pickle
    import warnings

    import torch

    from ..core.axes import DenoiseError

    try:
        with warnings.catch_warnings():  # the refusal below says it in one line
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise DenoiseError(
            f"{what} is not a plain state dict of tensors: loading it could run code, so it "
            "is refused"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        msg = (str(exc).strip().splitlines() or [""])[0]
        raise DenoiseError(f"{what} is not a readable PyTorch file ({msg})") from None


def unavailable(name: str) -> str | None:
    """Why method ``name`` cannot run in this installation (one line), or ``None``: an
    optional package missing, or no trained weights shipped. Imports no torch (the CLI's
    ``methods`` listing and the widget ask)."""
    import importlib.util

    if name == "bm3d" and importlib.util.find_spec("bm3d") is None:
        return "needs the optional bm3d package (pip install bm3d)"
    if name == "masked-transformer":
        if name not in available():
            return "no trained weights ship with this version"
    return None
