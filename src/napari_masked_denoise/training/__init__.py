"""Masked pre-training of the zero-shot filling network (Ma et al., NeurIPS 2024).

Clean images, random crops with flips, 90-degree rotations and intensity scaling; a
pixel-wise Bernoulli mask drops a share of the pixels, the network sees ``[x * keep,
keep]`` and is trained to predict the dropped pixels only. Loss, optimiser and schedule
follow the reference code (``../shared/METHODS.md`` section 1): a PSNR loss
``10 * log10(MSE)`` on the dropped pixels, AdamW lr 2e-3 with betas (0.9, 0.9), cosine
decay to zero, gradient norm clipped at 0.01.

Validation never touches a test set: a fixed share of the training folder (every 20th
file, sorted by name) is held out. Two numbers are logged: the PSNR of the masked
reconstruction of the held-out clean crops, and the PSNR of a fill (masked forward passes
that together drop every pixel, no adaptation) of the held-out crops with Gaussian noise
of sigma 25/255, against the clean crops.

Command line: ``masked-denoise train zero-shot --mask-ratio 0.3 --iterations 8000
--output weights.pt``.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TrainConfig", "train_zero_shot", "train_ttt_mim", "train_meta_tta", "train_masked_transformer",
           "training_images", "SKIMAGE_IMAGES"]

# scikit-image's bundled images used as extra clean training data. ``camera`` (the
# cameraman, also in Set12) and ``cell`` (the source of our sample data) are left out.
SKIMAGE_IMAGES = (
    "astronaut", "coffee", "chelsea", "rocket", "coins", "moon", "page", "text", "brick",
    "grass", "gravel", "immunohistochemistry", "hubble_deep_field", "retina", "clock",
)

VAL_EVERY_NTH = 20


@dataclass
class TrainConfig:
    data: tuple[str, ...]
    output: str
    mask_ratio: tuple[float, float] = (0.3, 0.3)
    iterations: int = 8000
    batch: int = 8
    crop: int = 128
    lr: float = 2e-3
    clip: float = 0.01
    widths: tuple[int, ...] = (16, 32, 64)
    seed: int = 0
    threads: int | None = None
    skimage: bool = True
    val_every: int = 500
    val_images: int = 20
    log: str | None = None
    max_seconds: float | None = None
    """Training-time budget: the run ends at ``iterations`` or here, whichever comes first,
    and the cosine decay follows whichever budget is nearer its end."""
    constant_lr: bool = False
    """Hold the learning rate constant (architecture pilots that stop on a time budget)."""
    weight_decay: float = 0.01
    noise_var: float = 0.005
    """TTT-MIM: variance of the Gaussian training noise (images in [0, 1])."""
    patch: int = 7
    """TTT-MIM: patch size of the masks."""
    stage: int = 1
    """meta-TTA: 1 (meta-auxiliary pre-training) or 2 (meta-transfer, MAML)."""
    init: str | None = None
    """meta-TTA stage 2: the stage-1 weights to start from."""
    inner_steps: int = 5
    """meta-TTA: K, the head-only inner steps (stage 2) and test-time steps."""
    inner_weight: float = 10.0
    """meta-TTA: weight of the auxiliary loss in the inner loop (lambda_in)."""
    grad_weight: float = 0.01
    """meta-TTA stage 1: weight of the two-direction image-gradient term of the mask."""
    base_weight: float = 0.0
    """meta-TTA stage 2: weight of the unadapted output's L1 in the outer loss (0: the paper)."""
    classic_share: float = 0.0
    """meta-TTA stage 2: share of crops with stage 1's classic mix instead of realistic noise."""
    ct_share: float = 0.0
    """meta-TTA stage 2: share of realistic-noise crops (and validation crops) with low-dose CT noise."""
    masked: bool = True
    """masked-transformer: input mask and attention mask on (False: the unmasked baseline)."""
    attn_drop: float = 0.75
    """masked-transformer: share of tokens zeroed before every QKV projection in training."""
    sigma: float = 15.0
    """masked-transformer: Gaussian training noise, in 0-255 units."""
    ema: float = 0.999
    """masked-transformer: decay of the weight moving average that is validated and shipped."""


def gray01(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3:
        from skimage.color import rgb2gray

        a = rgb2gray(a[..., :3])
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    return a.astype(np.float32)


def training_images(data_dirs, *, skimage: bool = True) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Load clean grayscale images in [0, 1]: ``(train, val, sources)``.

    Every ``VAL_EVERY_NTH``-th file of each folder (sorted) is held out for validation.
    """
    from skimage import io

    train, val, sources = [], [], []
    for d in data_dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"training data folder {d} does not exist")
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in {".png", ".tif", ".tiff", ".jpg", ".bmp"})
        if not files:
            raise FileNotFoundError(f"no images in training data folder {d}")
        for i, f in enumerate(files):
            img = gray01(io.imread(f))
            (val if i % VAL_EVERY_NTH == VAL_EVERY_NTH - 1 else train).append(img)
        sources.append(f"{d} ({len(files)} images, every {VAL_EVERY_NTH}th held out)")
    if skimage:
        import skimage.data as skd

        for name in SKIMAGE_IMAGES:
            train.append(gray01(getattr(skd, name)()))
        sources.append("scikit-image bundled: " + ", ".join(SKIMAGE_IMAGES))
    return train, val, sources


def _batch(rng: np.random.Generator, images, n: int, crop: int) -> np.ndarray:
    out = np.empty((n, 1, crop, crop), np.float32)
    for k in range(n):
        img = images[rng.integers(len(images))]
        h, w = img.shape
        if h < crop or w < crop:
            img = np.pad(img, ((0, max(0, crop - h)), (0, max(0, crop - w))), mode="reflect")
            h, w = img.shape
        y, x = rng.integers(h - crop + 1), rng.integers(w - crop + 1)
        c = img[y:y + crop, x:x + crop]
        c = np.rot90(c, rng.integers(4))
        if rng.random() < 0.5:
            c = c[:, ::-1]
        gain = rng.uniform(0.5, 1.0)
        offset = rng.uniform(0.0, 1.0 - gain)
        out[k, 0] = c * gain + offset
    return out


def _val_set(val, crop: int, n: int, seed: int):
    rng = np.random.default_rng(seed + 12345)
    imgs = val[:n] if len(val) >= n else val
    clean = _batch(rng, imgs, len(imgs), crop)
    noisy = clean + rng.normal(0.0, 25.0 / 255.0, clean.shape).astype(np.float32)
    masks = rng.random(clean.shape).astype(np.float32)
    return clean, noisy, masks


def _psnr(a, b) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def _validate(net, clean, noisy, u, ratio: float):
    import torch

    net.eval()
    with torch.inference_mode():
        xc, xn, uu = (torch.from_numpy(a) for a in (clean, noisy, u))
        drop = (uu < ratio).float()
        keep = 1 - drop
        rec = net(torch.cat([xc * keep, keep], 1))
        m = drop.bool()
        rec_psnr = _psnr(rec[m].numpy(), xc[m].numpy())
        passes = max(8, math.ceil(1.0 / ratio))
        acc = torch.zeros_like(xn)
        cnt = torch.zeros_like(xn)
        for k in range(passes):
            d = (torch.frac(uu + k * ratio) < ratio).float()
            acc += net(torch.cat([xn * (1 - d), 1 - d], 1)) * d
            cnt += d
        fill = (acc / cnt.clamp_min(1)).numpy()
    net.train()
    return rec_psnr, _psnr(fill, clean)


def _zero_shot_loss(net, x, rng, cfg):
    import torch

    lo, hi = cfg.mask_ratio
    ratio = torch.from_numpy(rng.uniform(lo, hi, (x.shape[0], 1, 1, 1)).astype(np.float32))
    drop = (torch.from_numpy(rng.random(x.shape, dtype=np.float32)) < ratio).float()
    keep = 1 - drop
    pred = net(torch.cat([x * keep, keep], 1))
    mse = ((pred - x) ** 2 * drop).sum() / drop.sum().clamp_min(1)
    return 10 * torch.log10(mse + 1e-10)


def _patch_masks(rng, shape, patch: int, ratio: float) -> np.ndarray:
    """Random patch-wise masks (1 = masked) on a randomly shifted grid of ``patch`` pixels."""
    n, _, h, w = shape
    gh, gw = -(-h // patch) + 1, -(-w // patch) + 1
    m = (rng.random((n, 1, gh, gw)) < ratio).astype(np.float32)
    m = m.repeat(patch, axis=2).repeat(patch, axis=3)
    oy, ox = rng.integers(patch), rng.integers(patch)
    return np.ascontiguousarray(m[:, :, oy:oy + h, ox:ox + w])


def _ttt_mim_loss(net, x, rng, cfg):
    """The reference's joint loss: 0.5 L1(recon, noisy) on masked pixels + 0.5 L1(noise)."""
    import torch

    sigma = math.sqrt(cfg.noise_var)
    n = torch.from_numpy(rng.normal(0.0, sigma, x.shape).astype(np.float32))
    y = (x + n).contiguous(memory_format=torch.channels_last)
    m = torch.from_numpy(_patch_masks(rng, x.shape, cfg.patch, cfg.mask_ratio[0]))
    rec = net.reconstruct(y, m)
    l_rec = ((rec - y).abs() * m).sum() / m.sum().clamp_min(1)
    l_main = (net.noise(y) - n).abs().mean()
    return 0.5 * l_rec + 0.5 * l_main


def _validate_ttt_mim(net, clean, noise_var: float, seed: int) -> dict:
    import torch

    rng = np.random.default_rng(seed + 777)
    noisy = clean + rng.normal(0, math.sqrt(noise_var), clean.shape).astype(np.float32)
    poisson = (rng.poisson(np.clip(clean, 0, None) * 30.0) / 30.0).astype(np.float32)
    net.eval()
    with torch.inference_mode():
        g = net.denoise(torch.from_numpy(noisy)).numpy()
        p = net.denoise(torch.from_numpy(poisson)).numpy()
    net.train()
    return {"val_denoise_psnr": round(_psnr(g, clean), 3),
            "val_denoise_psnr_poisson30_shifted": round(_psnr(p, clean), 3)}


def train_zero_shot(cfg: TrainConfig, *, progress=print) -> dict:
    """Masked pre-training for zero-shot filling; save the weights, return the manifest entry."""
    import torch

    from ..nets.unet import UNet

    _setup(cfg)
    train, val, sources = training_images(cfg.data, skimage=cfg.skimage)
    lo, hi = cfg.mask_ratio
    vclean, vnoisy, vu = _val_set(val, cfg.crop, cfg.val_images, cfg.seed)
    vratio = 0.5 * (lo + hi)
    net = UNet(2, 1, cfg.widths).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=(0.9, 0.9))

    def validate(net, recent):
        rec, fill = _validate(net, vclean, vnoisy, vu, vratio)
        return {"train_loss_db": round(float(np.mean(recent)), 3),
                "val_masked_psnr": round(rec, 3), "val_fill_psnr_sigma25": round(fill, 3)}

    history, seconds = _fit(cfg, net, opt, train, _zero_shot_loss, validate, progress)
    return _save(cfg, net, history, seconds, sources, {
        "method": "zero-shot",
        "architecture": {"class": "UNet", "in_channels": 2, "out_channels": 1, "widths": list(cfg.widths),
                         "parameters": sum(p.numel() for p in net.parameters())},
        "mask_ratio": list(cfg.mask_ratio),
        "optimiser": f"AdamW lr {cfg.lr} betas (0.9, 0.9), {'constant' if cfg.constant_lr else 'cosine decay'}, "
                     f"grad-norm clip {cfg.clip}, PSNR loss on dropped pixels",
    })


def train_ttt_mim(cfg: TrainConfig, *, progress=print) -> dict:
    """Joint pre-training of the TTT-MIM network on Gaussian noise (``cfg.noise_var``).

    Reference settings (``../shared/METHODS.md`` section 2): patch masks of ``cfg.patch``
    pixels at ratio ``cfg.mask_ratio[0]`` (0.6, 7), loss ``0.5 * L1(recon, noisy)`` on
    masked pixels ``+ 0.5 * L1(predicted noise, true noise)``, AdamW lr 1e-3, weight
    decay 1e-4 (cosine decay to zero here).
    """
    import torch

    from ..nets.mim import MIMNet

    _setup(cfg)
    train, val, sources = training_images(cfg.data, skimage=cfg.skimage)
    vclean, _, _ = _val_set(val, cfg.crop, cfg.val_images, cfg.seed)
    net = MIMNet(cfg.widths).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def validate(net, recent):
        return {"train_loss": round(float(np.mean(recent)), 5), **_validate_ttt_mim(net, vclean, cfg.noise_var, cfg.seed)}

    history, seconds = _fit(cfg, net, opt, train, _ttt_mim_loss, validate, progress)
    return _save(cfg, net, history, seconds, sources, {
        "method": "ttt-mim",
        "architecture": {"class": "MIMNet", "widths": list(cfg.widths),
                         "parameters": sum(p.numel() for p in net.parameters())},
        "mask_ratio": list(cfg.mask_ratio),
        "patch": cfg.patch,
        "noise": f"Gaussian, variance {cfg.noise_var} (images in [0, 1])",
        "noise_var": cfg.noise_var,
        "optimiser": f"AdamW lr {cfg.lr} weight decay {cfg.weight_decay}, "
                     f"{'constant' if cfg.constant_lr else 'cosine decay'}, grad-norm clip {cfg.clip}, "
                     "0.5 L1(recon, noisy) on masked pixels + 0.5 L1(predicted noise, noise)",
    })


def _noisy(x, rng, model):
    """Each crop of ``x`` (a tensor) with its own draw of a :mod:`noise_models` model."""
    import torch

    a = x.numpy()
    y = np.stack([model(a[k], rng) for k in range(a.shape[0])])
    return torch.from_numpy(y).contiguous(memory_format=torch.channels_last)


def _gradient_match(m, y):
    """The two-direction image-gradient loss: the mask's horizontal and vertical
    differences against the noisy image's (mean absolute difference)."""
    dx = (m.diff(dim=-1) - y.diff(dim=-1)).abs().mean()
    dy = (m.diff(dim=-2) - y.diff(dim=-2)).abs().mean()
    return dx + dy


def _meta_aux_loss(net, cfg):
    """Stage 1 (MAXL): the multi-task network learns ``L1(clean) + masked aux L1``; the
    mask network learns, every iteration, through one virtual SGD step of the multi-task
    network (second-order gradient): ``L1(f_{theta - lr grad}(y), clean) + grad_weight *
    gradient-match(mask, y)``. Returns the batch-loss function for :func:`_fit`, whose
    optimiser holds the multi-task parameters only."""
    import torch

    from ..noise import simulate as noise_models
    from ..nets.meta import aux_loss

    mask_params = list(net.mask.parameters())
    mask_opt = torch.optim.Adam(mask_params, lr=cfg.lr)
    names = [n for n, _ in net.named_parameters() if not n.startswith(("mask.", "inner_log_lr"))]

    def batch_loss(net, x, rng, cfg):
        y = _noisy(x, rng, noise_models.classic_mix)
        params = dict(net.named_parameters())
        theta = [params[n] for n in names]
        clean, _, rec = net.heads(net.features(y), y)
        m = net.mask(y)
        l_pri = (clean - x).abs().mean()
        grads = torch.autograd.grad(l_pri + aux_loss(rec, y, m), theta, create_graph=True)
        # the mask network's meta step, through the virtual step of the multi-task network
        fast = {n: p - cfg.lr * g for n, p, g in zip(names, theta, grads)}
        virtual = torch.func.functional_call(net, fast, (y,))
        meta = (virtual - x).abs().mean() + cfg.grad_weight * _gradient_match(m, y)
        mask_opt.zero_grad(set_to_none=True)
        meta.backward(inputs=mask_params)
        mask_opt.step()
        # the multi-task step: a surrogate whose value is the loss and whose gradient is
        # the gradient already computed (no second backward pass)
        value = (l_pri + aux_loss(rec, y, m)).detach()
        g = [gi.detach() for gi in grads]
        return value + sum((p * gi).sum() - (p.detach() * gi).sum() for p, gi in zip(theta, g))

    return batch_loss


def _maml_loss(net, x, rng, cfg):
    """Stage 2 (MAML, head-only inner loop): per crop, K SGD steps of the heads on
    ``inner_weight * masked aux L1`` (binarised mask, straight-through gradient) from the
    current weights, body frozen in the inner loop; the outer loss is the adapted primary
    output's L1 to the clean crop, and trains body, heads, mask network and step sizes."""
    import torch

    from ..noise import simulate as noise_models
    from ..nets.meta import binarised, inner_steps

    # the detector offset is part of the scene a microscope records (averaged ground
    # truths keep it): the target is the clean crop plus the offset, not the crop alone
    # with probability ``classic_share`` a crop gets stage 1's classic mix instead (offset 0)
    classic = rng.random(x.shape[0]) < cfg.classic_share
    offsets = np.where(classic, 0.0, rng.uniform(0, 0.1, x.shape[0])).astype(np.float32)
    it = iter(zip(offsets, classic))

    def model(a, r):
        o, c = next(it)
        return (noise_models.classic_mix(a, r) if c
                else noise_models.realistic(a, r, offset=float(o), ct_share=cfg.ct_share))

    y = _noisy(x, rng, model)
    x = x + torch.from_numpy(offsets)[:, None, None, None]
    feats = net.features(y)
    m = binarised(net.mask(y))
    total = 0.0
    if cfg.base_weight:  # keep the unadapted output good too
        total = cfg.base_weight * (net.heads(feats, y, aux=False)[0] - x).abs().mean() * x.shape[0]
    for j in range(x.shape[0]):
        sl = slice(j, j + 1)
        params = inner_steps(net, feats[sl], y[sl], m[sl], cfg.inner_steps, weight=cfg.inner_weight,
                             create_graph=True)
        clean, _, _ = net.heads(feats[sl], y[sl], params, aux=False)
        total = total + (clean - x[sl]).abs().mean()
    return cfg.inner_weight * total / x.shape[0]  # lambda_out = lambda_in, as the reference


def _validate_meta(net, clean, noisy, steps: int, weight: float) -> dict:
    """PSNR of the primary output on held-out noisy crops, before and after ``steps``
    head-only adaptation steps (each crop adapted on its own)."""
    import torch

    from ..nets.meta import inner_steps

    net.eval()
    x = torch.from_numpy(noisy)
    with torch.no_grad():
        feats = net.features(x)
        m = (net.mask(x) > 0.5).float()
        before = net.heads(feats, x, aux=False)[0].numpy()
    after = np.empty_like(before)
    if steps:
        for j in range(x.shape[0]):
            sl = slice(j, j + 1)
            with torch.enable_grad():
                params = inner_steps(net, feats[sl], x[sl], m[sl], steps, weight=weight)
            with torch.no_grad():
                after[sl] = net.heads(feats[sl], x[sl], params, aux=False)[0].numpy()
    net.train()
    out = {"psnr_noisy": round(_psnr(noisy, clean), 3), "psnr": round(_psnr(before, clean), 3),
           "mask_mean": round(float(m.mean()), 3)}
    if steps:
        out["psnr_adapted"] = round(_psnr(after, clean), 3)
    return out


def train_meta_tta(cfg: TrainConfig, *, progress=print) -> dict:
    """Meta-TTA training, one stage per call (``cfg.stage``); stage 2 starts from
    ``cfg.init`` (the stage-1 weights). See :func:`_meta_aux_loss` and :func:`_maml_loss`.

    Validation: held-out crops with the stage's own noise model (classic mix, or
    realistic microscope/CT noise), PSNR before and (stage 2) after K head-only steps.
    """
    import torch

    from ..noise import simulate as noise_models
    from ..nets.meta import MetaNet

    _setup(cfg)
    train, val, sources = training_images(cfg.data, skimage=cfg.skimage)
    vclean, _, _ = _val_set(val, cfg.crop, cfg.val_images, cfg.seed)

    def classic(seed):
        crng = np.random.default_rng(seed)
        return vclean, np.stack([noise_models.classic_mix(c, crng) for c in vclean]).astype(np.float32)

    # validation sets by log-key prefix; stage 2 is also checked on stage 1's noise, which
    # meta-transfer must not forget
    if cfg.stage == 1:
        val_sets = {"val_": classic(cfg.seed + 4242)}
    else:  # the target keeps the detector offset (see _maml_loss)
        vrng = np.random.default_rng(cfg.seed + 4242)
        off = vrng.uniform(0, 0.1, len(vclean)).astype(np.float32)
        vnoisy = np.stack([noise_models.realistic(c, vrng, offset=float(o), ct_share=cfg.ct_share)
                           for c, o in zip(vclean, off)]).astype(np.float32)
        val_sets = {"val_": (vclean + off[:, None, None, None], vnoisy), "val_classic_": classic(cfg.seed + 4343)}
    net = MetaNet(cfg.widths).to(memory_format=torch.channels_last)
    init_info = None
    if cfg.init:
        from ..weights import load_state

        state, init_info = load_state(cfg.init)
        net.load_state_dict(state)
    if cfg.stage == 1:
        body_heads = [p for n, p in net.named_parameters() if not n.startswith(("mask.", "inner_log_lr"))]
        opt = torch.optim.Adam(body_heads, lr=cfg.lr)
        batch_loss, steps = _meta_aux_loss(net, cfg), 0
    elif cfg.stage == 2:
        rest = [p for n, p in net.named_parameters() if n != "inner_log_lr"]
        # the step sizes are log-scale: they need a larger step than the weights
        opt = torch.optim.Adam([{"params": rest}, {"params": [net.inner_log_lr], "lr": 1e-2}], lr=cfg.lr)
        batch_loss, steps = _maml_loss, cfg.inner_steps
    else:
        raise ValueError(f"stage must be 1 or 2, got {cfg.stage}")

    def validate(net, recent):
        row = {"train_loss": round(float(np.mean(recent)), 5)}
        for prefix, (clean, noisy) in val_sets.items():
            row.update({prefix + k: v for k, v in _validate_meta(net, clean, noisy, steps, cfg.inner_weight).items()})
        return {**row, "inner_lr_median": float(net.inner_lrs().detach().median())}

    history, seconds = _fit(cfg, net, opt, train, batch_loss, validate, progress)
    return _save(cfg, net, history, seconds, sources, {
        "method": "meta-tta",
        "stage": cfg.stage,
        "init": None if not init_info else {"file": init_info.get("file"), "sha256": init_info.get("sha256")},
        "architecture": {"class": "MetaNet", "widths": list(cfg.widths),
                         "parameters": sum(p.numel() for p in net.parameters())},
        "inner_steps": cfg.inner_steps,
        "inner_weight": cfg.inner_weight,
        "noise": "classic mix (Gaussian, speckle, salt-and-pepper)" if cfg.stage == 1
                 else "realistic (Poisson-Gaussian with gain, offset and read noise; correlated; row/column)"
                 + (f"; low-dose CT noise in a share {cfg.ct_share} of crops" if cfg.ct_share else ""),
        "optimiser": f"Adam lr {cfg.lr}, {'constant' if cfg.constant_lr else 'cosine decay'}, grad-norm clip {cfg.clip}"
                     + ("; mask network Adam through one virtual SGD step, gradient-match weight "
                        f"{cfg.grad_weight}" if cfg.stage == 1 else "; step sizes Adam lr 1e-2 (log scale)"),
    })


# ------------------------------------------------------------ masked image training
#: held-out validation noises of the masked transformer: its training noise, and noises it
#: never sees in training (levels chosen apart from the benchmark's)
MIT_VAL_NOISES = ("g15", "g35", "poisson20", "speckle25", "sp3", "corr20")


def _mit_noise(clean: np.ndarray, kind: str, rng) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    if kind.startswith("g"):
        return clean + rng.normal(0, float(kind[1:]) / 255, clean.shape)
    if kind == "poisson20":
        return rng.poisson(np.clip(clean, 0, None) * 20.0) / 20.0
    if kind == "speckle25":
        return clean + clean * rng.normal(0, 0.25, clean.shape)
    if kind == "sp3":
        out = clean.copy()
        u = rng.random(clean.shape)
        out[u < 0.015] = 0.0
        out[u > 0.985] = 1.0
        return out
    if kind == "corr20":
        n = gaussian_filter(rng.normal(0, 1, clean.shape), (0, 0, 1.0, 1.0), mode="wrap")
        return clean + n / n.std() * 20 / 255
    raise ValueError(kind)


def _mit_loss(net, x, rng, cfg):
    """Masked image training (Chen, Gu et al.): Gaussian noise of ``cfg.sigma``; with
    ``cfg.masked``, a pixel-wise input mask (ratio drawn per crop from ``cfg.mask_ratio``,
    masked pixels set to 0) and the attention mask (``cfg.attn_drop`` of the tokens zeroed
    in every attention layer); L1 to the clean crop."""
    import torch

    y = x + torch.from_numpy(rng.normal(0, cfg.sigma / 255, x.shape).astype(np.float32))
    if cfg.masked:
        lo, hi = cfg.mask_ratio
        ratio = rng.uniform(lo, hi, (x.shape[0], 1, 1, 1))
        keep = torch.from_numpy((rng.random(x.shape) >= ratio).astype(np.float32))
        y = y * keep
    out = net(y.contiguous(memory_format=torch.channels_last), drop=cfg.attn_drop if cfg.masked else 0.0)
    return (out - x).abs().mean()


def _validate_mit(net, clean, noisy: dict) -> dict:
    import torch

    net.eval()
    row = {}
    with torch.inference_mode():
        for kind, y in noisy.items():
            out = net(torch.from_numpy(y)).numpy()
            row[f"val_psnr_{kind}"] = round(_psnr(out, clean), 3)
    net.train()
    return row


def train_masked_transformer(cfg: TrainConfig, *, progress=print) -> dict:
    """Masked image training of the small Swin denoiser (``cfg.masked``) or its unmasked
    baseline, on clean images with Gaussian noise of ``cfg.sigma`` only; L1 loss, Adam,
    cosine decay; the weight moving average (``cfg.ema``) is validated and saved.

    ``cfg.widths`` is ``(convolution channels, token width, blocks per attention group...)``. Validation:
    held-out crops with the training noise and with noises never seen in training
    (:data:`MIT_VAL_NOISES`); PSNR of the average network's output, no attention mask.
    """
    import copy

    import torch

    from ..nets.swin import SwinDenoiser

    _setup(cfg)
    if len(cfg.widths) < 3:
        raise ValueError(f"masked-transformer widths are (conv, dim, depth, ...), got {cfg.widths}")
    train, val, sources = training_images(cfg.data, skimage=cfg.skimage)
    vclean, _, _ = _val_set(val, cfg.crop, cfg.val_images, cfg.seed)
    vrng = np.random.default_rng(cfg.seed + 5151)
    vnoisy = {k: _mit_noise(vclean, k, vrng).astype(np.float32) for k in MIT_VAL_NOISES}
    net = SwinDenoiser(cfg.widths[0], cfg.widths[1], cfg.widths[2:]).to(memory_format=torch.channels_last)
    init_info = None
    if cfg.init:  # continue an earlier run (its saved average) with a new schedule
        from ..weights import load_state

        state, init_info = load_state(cfg.init)
        if init_info.get("masked", cfg.masked) != cfg.masked:
            raise ValueError(f"--init {cfg.init} was trained with masked={init_info.get('masked')}, "
                             f"this run has masked={cfg.masked}")
        net.load_state_dict(state)
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
        return {"train_loss": round(float(np.mean(recent)), 5), **_validate_mit(avg, vclean, vnoisy)}

    history, seconds = _fit(cfg, net, opt, train, _mit_loss, validate, progress, after_step=average)
    return _save(cfg, avg, history, seconds, sources, {
        "method": "masked-transformer",
        "masked": cfg.masked,
        "init": None if not init_info else {"file": init_info.get("file"), "sha256": init_info.get("sha256"),
                                            "iterations": init_info.get("iterations")},
        "architecture": {"class": "SwinDenoiser", "widths": list(cfg.widths), "heads": avg.heads,
                         "window": avg.window, "parameters": sum(p.numel() for p in avg.parameters())},
        "mask_ratio": list(cfg.mask_ratio) if cfg.masked else None,
        "attn_drop": cfg.attn_drop if cfg.masked else 0.0,
        "noise": f"Gaussian, sigma {cfg.sigma}/255",
        "optimiser": f"Adam lr {cfg.lr}, {'constant' if cfg.constant_lr else 'cosine decay'}, "
                     f"grad-norm clip {cfg.clip}, L1; weight moving average {cfg.ema} with warm-up "
                     "min(decay, (1 + t) / (10 + t)) (saved)",
    })


def _setup(cfg: TrainConfig) -> None:
    import torch

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)


def _fit(cfg: TrainConfig, net, opt, train, batch_loss, validate, progress, after_step=None):
    """The training loop shared by every trainer: cosine schedule on the nearer of the
    iteration and time budgets, gradient clipping, ``after_step(net, iteration)`` after every
    optimiser step (a weight average), validation rows to ``progress`` and the log, a
    partial checkpoint at every validation. Returns ``(history, seconds)``."""
    import torch

    rng = np.random.default_rng(cfg.seed)
    if not train:
        raise ValueError("no training images")
    base_lrs = [g["lr"] for g in opt.param_groups]  # the schedule scales each group's own rate

    def set_lr(it: int, train_time: float) -> float:
        progress_ = it / cfg.iterations
        if cfg.max_seconds:
            progress_ = max(progress_, train_time / cfg.max_seconds)
        factor = 1.0 if cfg.constant_lr else 0.5 * (1 + math.cos(math.pi * min(progress_, 1.0)))
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * factor
        return cfg.lr * factor

    log = open(cfg.log, "a") if cfg.log else None
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.stem + ".partial.pt")  # survives an interrupted run; not shipped
    t0 = time.perf_counter()
    history, recent = [], []
    train_time = 0.0  # training steps only, without validation
    net.train()
    for it in range(1, cfg.iterations + 1):
        ts = time.perf_counter()
        lr = set_lr(it - 1, train_time)
        x = torch.from_numpy(_batch(rng, train, cfg.batch, cfg.crop)).contiguous(memory_format=torch.channels_last)
        loss = batch_loss(net, x, rng, cfg)
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
        if it % cfg.val_every == 0 or it == cfg.iterations or out_of_time:
            row = {"iteration": it, "seconds": round(time.perf_counter() - t0, 1),
                   "train_seconds": round(train_time, 1), **validate(net, recent), "lr": lr}
            recent = []
            history.append(row)
            progress(json.dumps(row))
            if log:
                log.write(json.dumps(row) + "\n")
                log.flush()
            torch.save(net.state_dict(), partial)
        if out_of_time:
            break
    if log:
        log.close()
    partial.unlink(missing_ok=True)
    return history, time.perf_counter() - t0


def _save(cfg: TrainConfig, net, history, seconds, sources, fields: dict) -> dict:
    """Write the weights (plain tensor state dict) and the manifest entry beside them."""
    import torch

    out = Path(cfg.output)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    torch.save(state, out)
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
        "batch": cfg.batch,
        "crop": cfg.crop,
        "max_seconds": cfg.max_seconds,
        "final_validation": history[-1] if history else None,
        "train_seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out.with_suffix(".json").write_text(json.dumps(entry, indent=2) + "\n")
    return entry
