"""Masked image training (Chen, Gu et al., CVPR 2023) of the small Swin denoiser.

Clean crops with Gaussian noise of one level only; with masking, a pixel-wise input mask
(80-90% of the pixels set to -0.1, as the reference, so that a masked pixel differs from
a black one) and the attention mask (a share of the tokens zeroed in every attention
layer); L1 to the clean crop, Adam (``../shared/METHODS.md`` section 4), cosine decay
on the planned iterations; a weight moving average is validated and saved. A run can be
stopped and resumed (``--stop-after``, ``--resume``: :mod:`.checkpoint`) and trains on
the GPU when there is one. Validation:
held-out crops with the training noise and with noises never seen in training
(:data:`MIT_VAL_NOISES`, recipes of :mod:`napari_masked_denoise.noise.simulate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import Option, Trainer
from .data import psnr, training_images, val_set
from .loop import Stopped, TrainConfig, fit, parameters, save, schedule, setup

__all__ = [
    "MaskedTransformerConfig",
    "train_masked_transformer",
    "MIT_VAL_NOISES",
    "val_noises",
    "TRAINER",
]

#: held-out validation noises of the masked transformer (names of noise recipes): its
#: training noise, and noises it never sees in training (levels chosen apart from the
#: benchmark's)
MIT_VAL_NOISES = ("g15", "g35", "poisson20", "speckle25", "sp3", "corr20")

#: the value of masked input pixels in training (the reference's ``img*mask - 0.1 + 0.1*mask``)
MASKED_VALUE = -0.1


@dataclass
class MaskedTransformerConfig(TrainConfig):
    """Settings of :func:`train_masked_transformer`: the input-mask ratio 80-90% and the
    crop 64 as the reference; the reference's network is ``widths=(60, 6, 6, 6, 6, 6)``."""

    mask_ratio: tuple[float, float] = (0.8, 0.9)
    lr: float = 1e-4
    clip: float = 0.0
    crop: int = 64
    batch: int = 16
    widths: tuple[int, ...] = (24, 1, 2, 2)
    """Token width, attention heads, blocks per residual group..."""
    device: str = "auto"
    init: str | None = None
    """Earlier weights (its saved average) to continue training from, with a new schedule."""
    masked: bool = True
    """Input mask and attention mask on (False: the unmasked baseline)."""
    attn_drop: float = 0.75
    """Share of tokens zeroed before every QKV projection in training."""
    sigma: float = 15.0
    """Gaussian training noise, in 0-255 units."""
    ema: float = 0.999
    """Decay of the weight moving average that is validated and shipped."""


def _mit_loss(net, x, rng, cfg: MaskedTransformerConfig):
    """Masked image training (Chen, Gu et al.): Gaussian noise of ``cfg.sigma``; with
    ``cfg.masked``, a pixel-wise input mask (ratio drawn per crop from ``cfg.mask_ratio``,
    masked pixels set to :data:`MASKED_VALUE`) and the attention mask (``cfg.attn_drop`` of
    the tokens zeroed in every attention layer); L1 to the clean crop."""
    import torch

    from ..noise.simulate import gaussian

    y = gaussian(x.cpu().numpy(), rng, cfg.sigma / 255, round_noise=True)
    if cfg.masked:
        lo, hi = cfg.mask_ratio
        ratio = rng.uniform(lo, hi, (x.shape[0], 1, 1, 1))
        y = np.where(rng.random(x.shape) >= ratio, y, np.float32(MASKED_VALUE))
    y = torch.from_numpy(y.astype(np.float32)).to(x.device)
    drop = cfg.attn_drop if cfg.masked else 0.0
    out = net(y.contiguous(memory_format=torch.channels_last), drop=drop)
    return (out - x).abs().mean()


def _validate_mit(net, clean, noisy: dict, attn_drop: float = 0.0) -> dict:
    """PSNR of ``net`` on each noise's held-out crops, ``val_psnr_<noise>``; with
    ``attn_drop`` > 0 also with the attention mask on (one pass, numbers from a fixed
    generator, the global random state untouched), ``val_psnr_<noise>_attn``."""
    import torch

    net.eval()
    row = {}
    device = next(net.parameters()).device
    with torch.inference_mode():
        for kind, y in noisy.items():
            x = torch.from_numpy(y).to(device)
            row[f"val_psnr_{kind}"] = round(psnr(net(x).cpu().numpy(), clean), 3)
            if attn_drop > 0:
                gen = torch.Generator(device).manual_seed(0)

                def u(layer, h, w, n=x.shape[0], gen=gen):
                    return torch.rand(n, h, w, 1, generator=gen, device=device)

                out = net(x, drop=attn_drop, uniform=u).cpu().numpy()
                row[f"val_psnr_{kind}_attn"] = round(psnr(out, clean), 3)
    net.train()
    return row


def val_noises(clean: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The held-out crops ``clean`` with each noise of :data:`MIT_VAL_NOISES` in turn.

    Parameters
    ----------
    clean : numpy.ndarray
        float32 crops, ``(N, 1, Y, X)``.
    rng : numpy.random.Generator
        Draws the noises, one after the other.

    Returns
    -------
    dict of str to numpy.ndarray
        Noise name -> the noisy crops (float32).
    """
    from ..noise.simulate import RECIPES

    return {k: RECIPES[k](clean, rng) for k in MIT_VAL_NOISES}


def _network(cfg: MaskedTransformerConfig, device):
    """The network on ``device``, from ``cfg.init`` when given: ``(net, init manifest or None)``."""
    import torch

    from ..nets.swin import SwinDenoiser

    net = SwinDenoiser(cfg.widths[0], cfg.widths[1], cfg.widths[2:])
    net = net.to(device, memory_format=torch.channels_last)
    if not cfg.init:
        return net, None
    from ..weights import load_state

    state, info = load_state(cfg.init)
    if info.get("masked", cfg.masked) != cfg.masked:
        raise ValueError(
            f"--init {cfg.init} was trained with masked={info.get('masked')}, "
            f"this run has masked={cfg.masked}"
        )
    net.load_state_dict({k: v.to(device) for k, v in state.items()})
    return net, info


def train_masked_transformer(cfg: MaskedTransformerConfig, *, progress=print) -> dict:
    """Masked image training of the small Swin denoiser, or its unmasked baseline.

    Parameters
    ----------
    cfg : MaskedTransformerConfig
        The run's settings: ``cfg.widths`` is ``(token width, attention heads, blocks
        per residual group...)``; ``cfg.masked`` off trains the baseline; ``cfg.init``
        continues earlier weights of the same kind.
    progress : callable
        Receives every validation row as a JSON string.

    Returns
    -------
    dict
        The manifest entry, written beside the weights file ``cfg.output`` (the weights
        saved are the moving average's).

    Raises
    ------
    ValueError
        Fewer than three widths, or ``cfg.init`` trained with the other ``masked``.
    """
    import copy

    import torch

    device = setup(cfg)
    if len(cfg.widths) < 3:
        raise ValueError(
            f"masked-transformer widths are (token width, heads, depth, ...), got {cfg.widths}"
        )
    train, val, sources = training_images(cfg.data, skimage=cfg.skimage)
    vclean, _, _ = val_set(val, cfg.crop, cfg.val_images, cfg.seed)
    vnoisy = val_noises(vclean, np.random.default_rng(cfg.seed + 5151))
    net, init_info = _network(cfg, device)
    avg = copy.deepcopy(net)
    for p in avg.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)

    def average(net, it):  # with the usual warm-up, so that the random start fades at once
        decay = min(cfg.ema, (1 + it) / (10 + it))
        with torch.no_grad():
            for pa, p in zip(avg.parameters(), net.parameters()):
                pa.lerp_(p, 1.0 - decay)

    def validate(net, recent):
        return {
            "train_loss": round(float(np.mean(recent)), 5),
            **_validate_mit(avg, vclean, vnoisy, cfg.attn_drop if cfg.masked else 0.0),
        }

    stopped = None
    try:
        history, seconds = fit(
            cfg,
            net,
            opt,
            train,
            _mit_loss,
            validate,
            progress,
            after_step=average,
            keep={"avg": avg},
        )
    except Stopped as stop:  # a slice of a longer run: its weights so far, marked unfinished
        stopped, history, seconds = stop, stop.history, stop.seconds
    entry = save(
        cfg,
        avg,
        history,
        seconds,
        sources,
        {
            "method": "masked-transformer",
            "finished": stopped is None,
            "device": str(device),
            "masked": cfg.masked,
            "init": None
            if not init_info
            else {
                "file": init_info.get("file"),
                "sha256": init_info.get("sha256"),
                "iterations": init_info.get("iterations"),
            },
            "architecture": {
                "class": "SwinDenoiser",
                "widths": list(avg.widths),
                "layout": "per-pixel tokens (1x1 embedding), window attention, no long skip",
                "window": avg.window,
                "parameters": parameters(avg),
            },
            "mask_ratio": list(cfg.mask_ratio) if cfg.masked else None,
            "masked_value": MASKED_VALUE if cfg.masked else None,
            "attn_drop": cfg.attn_drop if cfg.masked else 0.0,
            "noise": f"Gaussian, sigma {cfg.sigma}/255",
            "optimiser": f"Adam lr {cfg.lr}, {schedule(cfg)}, "
            f"grad-norm clip {cfg.clip}, L1; weight moving average {cfg.ema} with "
            "warm-up min(decay, (1 + t) / (10 + t)) (saved)",
        },
    )
    if stopped is not None:
        raise stopped
    return entry


TRAINER = Trainer(
    "masked-transformer",
    MaskedTransformerConfig,
    train_masked_transformer,
    widths="token width, attention heads, blocks per residual group",
    options=(
        Option(
            "--init",
            "init",
            "masked-transformer: earlier weights (.pt) to continue training",
            type=str,
        ),
        Option(
            "--no-mask",
            "masked",
            "masked-transformer: train the unmasked baseline (no input mask, no attention mask)",
            type=None,
        ),
        Option(
            "--attn-drop",
            "attn_drop",
            "masked-transformer: share of tokens zeroed in "
            "every attention layer (default %(default)g)",
            valid=lambda v: 0 <= v < 1,
            error="--attn-drop must lie in [0, 1), got {}",
        ),
        Option(
            "--sigma",
            "sigma",
            "masked-transformer: Gaussian training noise sigma in "
            "0-255 units (default %(default)g)",
            valid=lambda v: v > 0,
            error="--sigma must be positive, got {}",
        ),
        Option(
            "--device",
            "device",
            "masked-transformer: auto (cuda, then mps, then cpu), cpu, cuda or mps "
            "(default %(default)s)",
            type=str,
        ),
    ),
)
