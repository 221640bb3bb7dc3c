"""Checkpoints that let a training run stop and continue any number of times.

A checkpoint (``OUTPUT.partial.pt``, beside the weights file) holds everything the loop
needs to go on as if it had never stopped: the network, the optimiser, the trainer's
other modules (a weight moving average), the random states of numpy and torch, the
iteration, the training time and the validation history. It is written at every
validation, atomically (a temporary file, then a rename), so a run killed at any instant
leaves the previous checkpoint whole. ``--resume`` continues from it; the settings that
shape the run (the schedule's budgets, data, network, noise...) must be the ones it was
started with, or the resume is refused in one line.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

__all__ = ["checkpoint_path", "save_checkpoint", "load_checkpoint", "fingerprint", "FREE"]

FREE = frozenset({"output", "resume", "threads", "log", "device", "val_every", "stop_after"})
"""Settings a resumed run may change: where and how it runs, not what it trains."""


def checkpoint_path(output) -> Path:
    """The checkpoint of the run that writes weights ``output``."""
    out = Path(output)
    return out.with_name(out.stem + ".partial.pt")


def fingerprint(cfg) -> dict:
    """The settings of ``cfg`` that a resumed run must share with its start (JSON-able)."""
    fields = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items() if k not in FREE}


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a kill at any instant leaves the old one."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, cfg) -> dict:
    """The checkpoint at ``path`` for a resumed run with settings ``cfg``.

    Raises
    ------
    DenoiseError
        No checkpoint, an unreadable one, or one started with other settings (the first
        differing setting is named).
    """
    import torch

    from ..core.axes import DenoiseError

    if not path.is_file():
        raise DenoiseError(
            f"--resume: no checkpoint {path} (a run writes it at its first validation)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        first = (str(exc).splitlines() or [""])[0]
        raise DenoiseError(
            f"--resume: cannot read checkpoint {path} ({type(exc).__name__}: {first})"
        ) from None
    then, now = state.get("settings", {}), fingerprint(cfg)
    for key in sorted(set(then) | set(now)):
        if then.get(key) != now.get(key):
            raise DenoiseError(
                f"--resume: checkpoint {path} was started with {key}={then.get(key)!r}, "
                f"this run has {key}={now.get(key)!r}"
            )
    return state
