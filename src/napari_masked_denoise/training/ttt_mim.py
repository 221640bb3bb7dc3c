"""Joint pre-training of the TTT-MIM network (Mansour et al., ECCV 2024) on Gaussian noise.

Reference settings (``../shared/METHODS.md`` section 2): patch masks of 7 pixels at ratio
0.6, loss ``0.5 * L1(recon, noisy)`` on masked pixels ``+ 0.5 * L1(predicted noise, true
noise)``, AdamW lr 1e-3, weight decay 1e-4 (cosine decay to zero here). Validated on the
held-out crops with the training noise and with Poisson noise (30 photons) it never sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import Option, Trainer
from .data import psnr, training_images, val_set
from .loop import TrainConfig, fit, parameters, save, schedule, setup

__all__ = ["TTTMIMConfig", "train_ttt_mim", "TRAINER"]


@dataclass
class TTTMIMConfig(TrainConfig):
    """Settings of :func:`train_ttt_mim` (the reference's defaults)."""

    mask_ratio: tuple[float, float] = (0.6, 0.6)
    """Share of patches masked (one number: ``lo == hi``)."""
    lr: float = 1e-3
    clip: float = 0.0
    widths: tuple[int, ...] = (16, 32, 64)
    weight_decay: float = 1e-4
    noise_var: float = 0.005
    """Variance of the Gaussian training noise (images in [0, 1])."""
    patch: int = 7
    """Patch size of the masks."""


def _patch_masks(rng, shape, patch: int, ratio: float) -> np.ndarray:
    """Random patch-wise masks (1 = masked) on a randomly shifted grid of ``patch`` pixels."""
    n, _, h, w = shape
    gh, gw = -(-h // patch) + 1, -(-w // patch) + 1
    m = (rng.random((n, 1, gh, gw)) < ratio).astype(np.float32)
    m = m.repeat(patch, axis=2).repeat(patch, axis=3)
    oy, ox = rng.integers(patch), rng.integers(patch)
    return np.ascontiguousarray(m[:, :, oy : oy + h, ox : ox + w])


def _ttt_mim_loss(net, x, rng, cfg: TTTMIMConfig):
    """The reference's joint loss: 0.5 L1(recon, noisy) on masked pixels + 0.5 L1(noise)."""
    import torch

    sigma = math.sqrt(cfg.noise_var)
    # the loss needs the noise itself, so it is drawn here rather than by a noise recipe
    n = torch.from_numpy(rng.normal(0.0, sigma, x.shape).astype(np.float32))
    y = (x + n).contiguous(memory_format=torch.channels_last)
    m = torch.from_numpy(_patch_masks(rng, x.shape, cfg.patch, cfg.mask_ratio[0]))
    rec = net.reconstruct(y, m)
    l_rec = ((rec - y).abs() * m).sum() / m.sum().clamp_min(1)
    l_main = (net.noise(y) - n).abs().mean()
    return 0.5 * l_rec + 0.5 * l_main


def _validate_ttt_mim(net, clean, noise_var: float, seed: int) -> dict:
    """PSNR of the denoised held-out crops with the training noise and with the noise
    recipe ``"poisson30"``."""
    import torch

    from ..noise.simulate import RECIPES, gaussian

    rng = np.random.default_rng(seed + 777)
    noisy = gaussian(clean, rng, math.sqrt(noise_var), round_noise=True)
    shifted = RECIPES["poisson30"](clean, rng)
    net.eval()
    with torch.inference_mode():
        g = net.denoise(torch.from_numpy(noisy)).numpy()
        p = net.denoise(torch.from_numpy(shifted)).numpy()
    net.train()
    return {
        "val_denoise_psnr": round(psnr(g, clean), 3),
        "val_denoise_psnr_poisson30_shifted": round(psnr(p, clean), 3),
    }


def train_ttt_mim(cfg: TTTMIMConfig, *, progress=print) -> dict:
    """Joint pre-training of the TTT-MIM network on Gaussian noise (``cfg.noise_var``).

    Parameters
    ----------
    cfg : TTTMIMConfig
        The run's settings: patch masks of ``cfg.patch`` pixels at ratio
        ``cfg.mask_ratio[0]``, AdamW with ``cfg.weight_decay``.
    progress : callable
        Receives every validation row as a JSON string.

    Returns
    -------
    dict
        The manifest entry, written beside the weights file ``cfg.output``.
    """
    import torch

    from ..nets.mim import MIMNet

    setup(cfg)
    train, val, sources = training_images(cfg.data, skimage=cfg.skimage)
    vclean, _, _ = val_set(val, cfg.crop, cfg.val_images, cfg.seed)
    net = MIMNet(cfg.widths).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def validate(net, recent):
        return {
            "train_loss": round(float(np.mean(recent)), 5),
            **_validate_ttt_mim(net, vclean, cfg.noise_var, cfg.seed),
        }

    history, seconds = fit(cfg, net, opt, train, _ttt_mim_loss, validate, progress)
    return save(
        cfg,
        net,
        history,
        seconds,
        sources,
        {
            "method": "ttt-mim",
            "architecture": {
                "class": "MIMNet",
                "widths": list(cfg.widths),
                "parameters": parameters(net),
            },
            "mask_ratio": list(cfg.mask_ratio),
            "patch": cfg.patch,
            "noise": f"Gaussian, variance {cfg.noise_var} (images in [0, 1])",
            "noise_var": cfg.noise_var,
            "optimiser": f"AdamW lr {cfg.lr} weight decay {cfg.weight_decay}, "
            f"{schedule(cfg)}, grad-norm clip {cfg.clip}, "
            "0.5 L1(recon, noisy) on masked pixels + 0.5 L1(predicted noise, noise)",
        },
    )


def _check(cfg: TTTMIMConfig) -> None:
    from ..core.axes import DenoiseError

    lo, hi = cfg.mask_ratio
    if lo != hi:
        raise DenoiseError("--mask-ratio must be one number for ttt-mim")


TRAINER = Trainer(
    "ttt-mim",
    TTTMIMConfig,
    train_ttt_mim,
    check=_check,
    options=(
        Option(
            "--patch",
            "patch",
            "ttt-mim: mask patch size (default %(default)g)",
            type=int,
            valid=lambda v: v >= 1,
            error="--patch must be at least 1, got {}",
        ),
        Option(
            "--noise-var",
            "noise_var",
            "ttt-mim: variance of the Gaussian training noise (default %(default)g)",
        ),
    ),
)
