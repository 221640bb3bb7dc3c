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

__all__ = [
    "checkpoint_path",
    "write_atomically",
    "save_checkpoint",
    "load_checkpoint",
    "restore",
    "fingerprint",
    "FREE",
]

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


def write_atomically(path: Path, write) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path``: a
    kill at any instant leaves the old file or the new one, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, cfg, it: int, train_time, seconds, history, net, opt, keep, rng):
    """The loop's whole state at iteration ``it``, written atomically to ``path``."""
    import torch

    device = next(net.parameters()).device
    state = {
        "settings": fingerprint(cfg),
        "iteration": it,
        "train_time": train_time,
        "seconds": seconds,
        "history": history,
        "net": net.state_dict(),
        "opt": opt.state_dict(),
        "keep": {k: m.state_dict() for k, m in keep.items()},
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    write_atomically(path, lambda tmp: torch.save(state, tmp))


def restore(state: dict, net, opt, keep: dict, rng) -> None:
    """Put a checkpoint's network, optimiser, kept modules and random states back."""
    import torch

    net.load_state_dict(state["net"])
    opt.load_state_dict(state["opt"])
    for name, module in keep.items():
        module.load_state_dict(state["keep"][name])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])


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
