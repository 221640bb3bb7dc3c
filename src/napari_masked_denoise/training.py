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

__all__ = ["TrainConfig", "train_zero_shot", "training_images", "SKIMAGE_IMAGES"]

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


def train_zero_shot(cfg: TrainConfig, *, progress=print) -> dict:
    """Train and save the weights; return the manifest entry (also written as JSON)."""
    import torch

    from .nets.unet import UNet

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train, val, sources = training_images(cfg.data, skimage=cfg.skimage)
    if not val:
        raise ValueError("no validation images held out; give a folder with at least 20 images")
    lo, hi = cfg.mask_ratio
    vclean, vnoisy, vu = _val_set(val, cfg.crop, cfg.val_images, cfg.seed)
    vratio = 0.5 * (lo + hi)

    net = UNet(2, 1, cfg.widths).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=(0.9, 0.9))

    def set_lr(it: int, train_time: float) -> float:
        progress = it / cfg.iterations
        if cfg.max_seconds:
            progress = max(progress, train_time / cfg.max_seconds)
        lr = cfg.lr if cfg.constant_lr else cfg.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        for g in opt.param_groups:
            g["lr"] = lr
        return lr

    log = open(cfg.log, "a") if cfg.log else None
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.stem + ".partial.pt")  # survives an interrupted run; not shipped
    t0 = time.perf_counter()
    history = []
    recent = []
    train_time = 0.0  # training steps only, without validation
    lr = cfg.lr
    for it in range(1, cfg.iterations + 1):
        ts = time.perf_counter()
        lr = set_lr(it - 1, train_time)
        x = torch.from_numpy(_batch(rng, train, cfg.batch, cfg.crop)).contiguous(memory_format=torch.channels_last)
        ratio = torch.from_numpy(rng.uniform(lo, hi, (cfg.batch, 1, 1, 1)).astype(np.float32))
        drop = (torch.from_numpy(rng.random(x.shape, dtype=np.float32)) < ratio).float()
        keep = 1 - drop
        pred = net(torch.cat([x * keep, keep], 1))
        mse = ((pred - x) ** 2 * drop).sum() / drop.sum().clamp_min(1)
        loss = 10 * torch.log10(mse + 1e-10)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
        opt.step()
        recent.append(float(loss.detach()))
        train_time += time.perf_counter() - ts
        out_of_time = bool(cfg.max_seconds) and train_time > cfg.max_seconds
        if it % cfg.val_every == 0 or it == cfg.iterations or out_of_time:
            rec, fill = _validate(net, vclean, vnoisy, vu, vratio)
            row = {
                "iteration": it, "seconds": round(time.perf_counter() - t0, 1),
                "train_seconds": round(train_time, 1),
                "train_loss_db": round(float(np.mean(recent)), 3),
                "val_masked_psnr": round(rec, 3), "val_fill_psnr_sigma25": round(fill, 3),
                "lr": lr,
            }
            recent = []
            history.append(row)
            progress(json.dumps(row))
            if log:
                log.write(json.dumps(row) + "\n")
                log.flush()
            torch.save(net.state_dict(), partial)
        if out_of_time:
            break
    seconds = time.perf_counter() - t0
    partial.unlink(missing_ok=True)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    torch.save(state, out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    entry = {
        "file": out.name,
        "sha256": digest,
        "method": "zero-shot",
        "architecture": {"class": "UNet", "in_channels": 2, "out_channels": 1,
                         "widths": list(cfg.widths),
                         "parameters": sum(p.numel() for p in net.parameters())},
        "mask_ratio": list(cfg.mask_ratio),
        "command": " ".join(["masked-denoise"] + sys.argv[1:]) if Path(sys.argv[0]).name.startswith("masked-denoise") else " ".join(sys.argv),
        "data": sources,
        "seed": cfg.seed,
        "iterations": history[-1]["iteration"] if history else 0,
        "batch": cfg.batch,
        "crop": cfg.crop,
        "max_seconds": cfg.max_seconds,
        "optimiser": f"AdamW lr {cfg.lr} betas (0.9, 0.9), {'constant' if cfg.constant_lr else 'cosine decay'}, grad-norm clip {cfg.clip}, PSNR loss on dropped pixels",
        "final_validation": history[-1] if history else None,
        "train_seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out.with_suffix(".json").write_text(json.dumps(entry, indent=2) + "\n")
    if log:
        log.close()
    return entry
