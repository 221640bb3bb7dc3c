"""The training loop every trainer shares: its settings, the loop, the saved weights.

:class:`TrainConfig` holds the settings all trainers have (each trainer's config adds its
own fields and defaults); :func:`fit` runs the optimiser on random crops with a cosine
learning-rate schedule on the nearer of the iteration and time budgets, validating now
and then; :func:`save` writes the weights and their manifest entry (sha256, command,
data, validation, machine). torch is imported only when a function runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import random_crops

__all__ = ["TrainConfig", "Stopped", "setup", "fit", "save", "schedule", "parameters"]


@dataclass
class TrainConfig:
    """Settings every trainer shares; each trainer's config sets its own defaults.

    Parameters
    ----------
    data : tuple of str
        Folders of clean training images (every 20th file held out for validation).
    output : str
        Weights file to write (``.pt``); the manifest entry goes beside it (``.json``).
    """

    data: tuple[str, ...]
    output: str
    mask_ratio: tuple[float, float] = (0.3, 0.3)
    """Share of pixels (or patches) masked, drawn per crop from ``[lo, hi]``."""
    iterations: int = 8000
    batch: int = 8
    crop: int = 128
    lr: float = 2e-3
    clip: float = 0.01
    """Gradient-norm clip (0: none)."""
    widths: tuple[int, ...] = (16, 32, 64)
    """The network's widths, as its class reads them."""
    seed: int = 0
    threads: int | None = None
    """torch CPU threads (None: torch's default)."""
    skimage: bool = True
    """Add scikit-image's bundled images to the training images."""
    val_every: int = 500
    val_images: int = 20
    log: str | None = None
    """Append the validation rows (JSON lines) here."""
    max_seconds: float | None = None
    """Training-time budget: the run ends at ``iterations`` or here, whichever comes first,
    and the cosine decay follows whichever budget is nearer its end."""
    constant_lr: bool = False
    """Hold the learning rate constant (architecture pilots that stop on a time budget)."""
    resume: bool = False
    """Continue from the checkpoint beside ``output`` (:mod:`.checkpoint`)."""
    stop_after: int | None = None
    """End this session at that iteration, keeping the checkpoint (the schedule still
    follows ``iterations``): a long run in slices."""
    device: str = "cpu"
    """Where the network trains (``auto``: cuda, then mps, then cpu)."""


def setup(cfg: TrainConfig):
    """Prepare torch for a run: before the network is built, so that its start is seeded.

    Parameters
    ----------
    cfg : TrainConfig
        ``cfg.threads`` (torch CPU threads, when set), ``cfg.seed`` (torch's seed) and
        ``cfg.device``.

    Returns
    -------
    torch.device
        The device to train on (on CUDA, TF32 matrix products are allowed).
    """
    import torch

    from ..core.device import select_device

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    device = select_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def schedule(cfg: TrainConfig) -> str:
    """The learning-rate schedule, as the manifest names it.

    Parameters
    ----------
    cfg : TrainConfig
        The run's settings.

    Returns
    -------
    str
        ``"constant"`` with ``cfg.constant_lr``, else ``"cosine decay"``.
    """
    return "constant" if cfg.constant_lr else "cosine decay"


def parameters(net) -> int:
    """The number of parameters of a network.

    Parameters
    ----------
    net : torch.nn.Module
        The network.

    Returns
    -------
    int
        The sum of the element counts of its parameters.
    """
    return sum(p.numel() for p in net.parameters())


def _lr_setter(cfg: TrainConfig, opt) -> Callable[[int, float], float]:
    """``set_lr(iteration, train_time)``: the cosine factor on the nearer budget applied to
    every parameter group's own base rate; returns ``cfg.lr`` times the factor."""
    base_lrs = [g["lr"] for g in opt.param_groups]

    def set_lr(it: int, train_time: float) -> float:
        done = it / cfg.iterations
        if cfg.max_seconds:
            done = max(done, train_time / cfg.max_seconds)
        factor = 1.0 if cfg.constant_lr else 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * factor
        return cfg.lr * factor

    return set_lr


class Stopped(Exception):
    """The run ended before its last iteration (``stop_after``) and left its checkpoint;
    ``history`` and ``seconds`` are the run's so far, as :func:`fit` returns them."""

    def __init__(self, message: str, history: list[dict], seconds: float):
        super().__init__(message)
        self.history, self.seconds = history, seconds


def fit(
    cfg: TrainConfig,
    net,
    opt,
    train,
    batch_loss,
    validate,
    progress,
    after_step=None,
    keep: dict | None = None,
) -> tuple[list[dict], float]:
    """Train ``net`` on random crops of ``train``.

    Parameters
    ----------
    cfg : TrainConfig
        Iterations, time budget, batch, crop, learning rate and schedule, clip, seed,
        validation interval, log, output (a checkpoint beside it at every validation,
        removed at the end), ``resume`` and ``stop_after``.
    net : torch.nn.Module
        The network, trained in place on its own device (crops are moved there).
    opt : torch.optim.Optimizer
        Its optimiser; the schedule scales each parameter group's own rate.
    train : list of numpy.ndarray
        Training images.
    batch_loss : callable
        ``batch_loss(net, x, rng, cfg)``: the loss tensor of crops ``x`` (channels last).
    validate : callable
        ``validate(net, recent_losses)``: the validation row (a dict).
    progress : callable
        Receives every validation row as a JSON string.
    after_step : callable, optional
        ``after_step(net, iteration)`` after every optimiser step (a weight average).
    keep : dict of str to torch.nn.Module, optional
        Other modules whose state the checkpoint holds (the weight average).

    Returns
    -------
    history : list of dict
        The validation rows (iteration, seconds, validation, learning rate).
    seconds : float
        Wall time of the loop, summed over the sessions of a resumed run.

    Raises
    ------
    Stopped
        At ``cfg.stop_after``, after the checkpoint was written.
    DenoiseError
        ``cfg.resume`` without a checkpoint made with the same settings.
    """
    import torch

    from ..core.axes import DenoiseError
    from .checkpoint import checkpoint_path, load_checkpoint, restore, save_checkpoint

    rng = np.random.default_rng(cfg.seed)
    if not train:
        raise ValueError("no training images")
    keep = keep or {}
    set_lr = _lr_setter(cfg, opt)
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = checkpoint_path(out)  # survives an interrupted run; not shipped
    if cfg.stop_after is not None and (cfg.stop_after < 1 or cfg.stop_after % cfg.val_every):
        raise DenoiseError(
            f"--stop-after must be a positive multiple of --val-every ({cfg.val_every}), "
            f"got {cfg.stop_after}: a slice ends at a validation"
        )
    if not cfg.resume and partial.exists():
        raise DenoiseError(
            f"checkpoint {partial} of an unfinished run exists: continue it with --resume, "
            "or delete it to start over"
        )
    history, recent, train_time, before, done = [], [], 0.0, 0.0, 0
    if cfg.resume:
        ck = load_checkpoint(partial, cfg)
        restore(ck, net, opt, keep, rng)
        history, train_time, before, done = (
            ck["history"],
            ck["train_time"],
            ck["seconds"],
            ck["iteration"],
        )
        if cfg.stop_after is not None and cfg.stop_after <= done:
            raise DenoiseError(
                f"--stop-after {cfg.stop_after}: the checkpoint is already at iteration {done}"
            )
        progress(f"resumed from {partial} at iteration {done} of {cfg.iterations}")
    device = next(net.parameters()).device
    t0 = time.perf_counter()
    net.train()
    log = open(cfg.log, "a") if cfg.log else None
    try:
        for it in range(done + 1, cfg.iterations + 1):
            ts = time.perf_counter()
            lr = set_lr(it - 1, train_time)
            x = torch.from_numpy(random_crops(rng, train, cfg.batch, cfg.crop)).to(device)
            loss = batch_loss(net, x.contiguous(memory_format=torch.channels_last), rng, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
            opt.step()
            if after_step is not None:
                after_step(net, it)
            recent.append(float(loss.detach()))
            train_time += time.perf_counter() - ts
            out_of_time = bool(cfg.max_seconds) and train_time > cfg.max_seconds
            stop = cfg.stop_after is not None and it >= cfg.stop_after
            if it % cfg.val_every == 0 or it == cfg.iterations or out_of_time or stop:
                row = {
                    "iteration": it,
                    "seconds": round(before + time.perf_counter() - t0, 1),
                    "train_seconds": round(train_time, 1),
                    **validate(net, recent),
                    "lr": lr,
                }
                recent = []
                history.append(row)
                seconds = before + time.perf_counter() - t0
                # before the log: a kill between them repeats no row
                save_checkpoint(partial, cfg, it, train_time, seconds, history, net, opt, keep, rng)
                _record(row, progress, log)
            if out_of_time:
                break
            if stop and it < cfg.iterations:
                raise Stopped(
                    f"stopped at iteration {it} of {cfg.iterations}; checkpoint {partial}; "
                    "continue with the same command and --resume",
                    history,
                    before + time.perf_counter() - t0,
                )
    finally:
        if log:
            log.close()
    return history, before + time.perf_counter() - t0  # save() removes the checkpoint


def _record(row: dict, progress, log) -> None:
    """A validation row to ``progress`` and, as a JSON line, to the open ``log``."""
    progress(json.dumps(row))
    if log:
        log.write(json.dumps(row) + "\n")
        log.flush()


def save(
    cfg: TrainConfig, net, history: list[dict], seconds: float, sources: list[str], fields: dict
) -> dict:
    """Write the weights (a plain tensor state dict) and the manifest entry beside them.

    Parameters
    ----------
    cfg : TrainConfig
        The run's settings (output, seed, batch, crop, time budget).
    net : torch.nn.Module
        The network whose state is saved.
    history : list of dict
        The validation rows of :func:`fit`.
    seconds : float
        Training wall time.
    sources : list of str
        The training data, as :func:`~.data.training_images` describes it.
    fields : dict
        The trainer's own entries (method, architecture, noise, optimiser...), placed after
        ``file`` and ``sha256``.

    Returns
    -------
    dict
        The manifest entry, also written to ``cfg.output`` with suffix ``.json``.
    """
    import torch

    from .checkpoint import checkpoint_path, write_atomically

    out = Path(cfg.output)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    write_atomically(out, lambda tmp: torch.save(state, tmp))  # old weights or new, never torn
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    cli = Path(sys.argv[0]).name.startswith("masked-denoise")
    entry = {
        "file": out.name,
        "sha256": digest,
        **fields,
        "command": " ".join(["masked-denoise"] + sys.argv[1:]) if cli else " ".join(sys.argv),
        "data": sources,
        "seed": cfg.seed,
        "iterations": history[-1]["iteration"] if history else 0,
        "planned_iterations": cfg.iterations,
        "batch": cfg.batch,
        "crop": cfg.crop,
        "max_seconds": cfg.max_seconds,
        "final_validation": history[-1] if history else None,
        "train_seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    text = json.dumps(entry, indent=2) + "\n"
    write_atomically(out.with_suffix(".json"), lambda tmp: tmp.write_text(text))
    if fields.get("finished", True):  # the run is over: its checkpoint goes only now
        checkpoint_path(out).unlink(missing_ok=True)
    return entry
