"""Masked pre-training of the zero-shot filling network (Ma et al., NeurIPS 2024).

Clean images, random crops with flips, 90-degree rotations and intensity scaling; a
pixel-wise Bernoulli mask drops a share of the pixels, the network sees ``[x * keep,
keep]`` and is trained to predict the dropped pixels only. Loss, optimiser and schedule
follow the reference code (``../shared/METHODS.md`` section 1): a PSNR loss
``10 * log10(MSE)`` on the dropped pixels, AdamW lr 2e-3 with betas (0.9, 0.9), cosine
decay to zero, gradient norm clipped at 0.01.

Two numbers are validated on the held-out crops: the PSNR of their masked
reconstruction, and the PSNR of a fill (:func:`~napari_masked_denoise.nets.filling.fill`:
masked forward passes that together drop every pixel, no adaptation) of the crops with
Gaussian noise of sigma 25/255, against the clean crops.

Command line: ``masked-denoise train zero-shot --mask-ratio 0.3 --iterations 8000
--output weights.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import Trainer
from .data import psnr, training_images, val_set
from .loop import TrainConfig, fit, parameters, save, schedule, setup

__all__ = ["ZeroShotConfig", "train_zero_shot", "TRAINER"]


@dataclass
class ZeroShotConfig(TrainConfig):
    """Settings of :func:`train_zero_shot` (the reference's defaults)."""

    mask_ratio: tuple[float, float] = (0.3, 0.3)
    lr: float = 2e-3
    clip: float = 0.01
    widths: tuple[int, ...] = (16, 32, 64)


def _validate(net, clean, noisy, u, ratio: float) -> tuple[float, float]:
    """PSNR of the masked reconstruction of ``clean`` at the dropped pixels (masks
    ``u < ratio``), and of the fill of ``noisy`` against ``clean``."""
    import torch

    from ..nets.filling import fill, fill_passes, rotating_drops

    net.eval()
    with torch.inference_mode():
        xc, xn, uu = (torch.from_numpy(a) for a in (clean, noisy, u))
        drop = (uu < ratio).float()
        keep = 1 - drop
        rec = net(torch.cat([xc * keep, keep], 1))
        m = drop.bool()
        rec_psnr = psnr(rec[m].numpy(), xc[m].numpy())
        filled = fill(net, xn, rotating_drops(uu, ratio, torch.float32), fill_passes(ratio, 8))
    net.train()
    return rec_psnr, psnr(filled.numpy(), clean)


def _zero_shot_loss(net, x, rng, cfg: ZeroShotConfig):
    """PSNR loss ``10 log10(MSE)`` on the dropped pixels; the drop ratio drawn per crop."""
    import torch

    lo, hi = cfg.mask_ratio
    ratio = torch.from_numpy(rng.uniform(lo, hi, (x.shape[0], 1, 1, 1)).astype(np.float32))
    drop = (torch.from_numpy(rng.random(x.shape, dtype=np.float32)) < ratio).float()
    keep = 1 - drop
    pred = net(torch.cat([x * keep, keep], 1))
    mse = ((pred - x) ** 2 * drop).sum() / drop.sum().clamp_min(1)
    return 10 * torch.log10(mse + 1e-10)


def train_zero_shot(cfg: ZeroShotConfig, *, progress=print) -> dict:
    """Masked pre-training for zero-shot filling.

    Parameters
    ----------
    cfg : ZeroShotConfig
        The run's settings; ``cfg.mask_ratio`` is the range the drop ratio is drawn from
        per crop (validated at its middle).
    progress : callable
        Receives every validation row as a JSON string.

    Returns
    -------
    dict
        The manifest entry, written beside the weights file ``cfg.output``.
    """
    import torch

    from ..nets.unet import UNet

    setup(cfg)
    train, val, sources = training_images(cfg.data, skimage=cfg.skimage)
    lo, hi = cfg.mask_ratio
    vclean, vnoisy, vu = val_set(val, cfg.crop, cfg.val_images, cfg.seed)
    vratio = 0.5 * (lo + hi)
    net = UNet(2, 1, cfg.widths).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=(0.9, 0.9))

    def validate(net, recent):
        rec, filled = _validate(net, vclean, vnoisy, vu, vratio)
        return {
            "train_loss_db": round(float(np.mean(recent)), 3),
            "val_masked_psnr": round(rec, 3),
            "val_fill_psnr_sigma25": round(filled, 3),
        }

    history, seconds = fit(cfg, net, opt, train, _zero_shot_loss, validate, progress)
    return save(
        cfg,
        net,
        history,
        seconds,
        sources,
        {
            "method": "zero-shot",
            "architecture": {
                "class": "UNet",
                "in_channels": 2,
                "out_channels": 1,
                "widths": list(cfg.widths),
                "parameters": parameters(net),
            },
            "mask_ratio": list(cfg.mask_ratio),
            "optimiser": f"AdamW lr {cfg.lr} betas (0.9, 0.9), {schedule(cfg)}, "
            f"grad-norm clip {cfg.clip}, PSNR loss on dropped pixels",
        },
    )


TRAINER = Trainer("zero-shot", ZeroShotConfig, train_zero_shot)
