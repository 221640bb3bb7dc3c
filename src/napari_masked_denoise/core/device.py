"""Compute-device selection: CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

__all__ = ["select_device"]


def select_device(name=None):
    """Return a ``torch.device``; ``None`` or ``"auto"`` picks cuda, then mps, then cpu."""
    import torch

    from .axes import DenoiseError

    if isinstance(name, torch.device):
        return name
    name = (name or "auto").lower()
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name.startswith("cuda") and not cuda:
        raise DenoiseError("device 'cuda' requested but torch sees no CUDA GPU")
    if name == "mps" and not mps:
        raise DenoiseError("device 'mps' requested but torch sees no Apple MPS device")
    if name.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise DenoiseError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    return torch.device(name)
