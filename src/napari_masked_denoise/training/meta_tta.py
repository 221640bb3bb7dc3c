"""Meta-TTA training, one stage per run (``../shared/METHODS.md`` section 3).

Stage 1 (meta-auxiliary pre-training, MAXL) trains the multi-task network and the mask
network on the classic noise mix (:func:`_meta_aux_loss`); stage 2 (meta-transfer, MAML
with a head-only inner loop) starts from the stage-1 weights and trains on realistic
microscope (and optionally CT) noise (:func:`_maml_loss`). The noises are the recipes
``"classic"`` and ``"realistic"`` of :mod:`napari_masked_denoise.noise.simulate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import Option, Trainer
from .data import psnr, training_images, val_set
from .loop import TrainConfig, fit, parameters, save, schedule, setup

__all__ = ["MetaTTAConfig", "train_meta_tta", "TRAINER"]


@dataclass
class MetaTTAConfig(TrainConfig):
    """Settings of :func:`train_meta_tta`."""

    mask_ratio: tuple[float, float] = (0.5, 0.5)
    """Not used: the mask is learnt."""
    lr: float = 1e-3
    """Stage 1 at the reference's 1e-3; stage 2 (reference 5e-5) got 2e-4 in our runs."""
    clip: float = 0.0
    widths: tuple[int, ...] = (24, 32, 48)
    stage: int = 1
    """1 (meta-auxiliary pre-training) or 2 (meta-transfer, MAML)."""
    init: str | None = None
    """Stage 2: the stage-1 weights to start from."""
    inner_steps: int = 5
    """K, the head-only inner steps (stage 2) and test-time steps."""
    inner_weight: float = 10.0
    """Weight of the auxiliary loss in the inner loop (lambda_in)."""
    grad_weight: float = 0.01
    """Stage 1: weight of the two-direction image-gradient term of the mask."""
    base_weight: float = 0.0
    """Stage 2: weight of the unadapted output's L1 in the outer loss (0: the paper)."""
    classic_share: float = 0.0
    """Stage 2: share of crops with stage 1's classic mix instead of realistic noise."""
    ct_share: float = 0.0
    """Stage 2: share of realistic-noise crops (and validation crops) with low-dose CT noise."""


def _noisy(x, rng, model):
    """Each crop of ``x`` (a tensor) with its own draw of the noise ``model(crop, rng)``."""
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


def _meta_aux_loss(net, cfg: MetaTTAConfig):
    """Stage 1 (MAXL): the multi-task network learns ``L1(clean) + masked aux L1``; the
    mask network learns, every iteration, through one virtual SGD step of the multi-task
    network (second-order gradient): ``L1(f_{theta - lr grad}(y), clean) + grad_weight *
    gradient-match(mask, y)``. Returns the batch-loss function for :func:`~.loop.fit`,
    whose optimiser holds the multi-task parameters only."""
    import torch

    from ..nets.meta import aux_loss
    from ..noise.simulate import RECIPES

    classic = RECIPES["classic"]
    mask_params = list(net.mask.parameters())
    mask_opt = torch.optim.Adam(mask_params, lr=cfg.lr)
    names = [n for n, _ in net.named_parameters() if not n.startswith(("mask.", "inner_log_lr"))]

    def batch_loss(net, x, rng, cfg):
        y = _noisy(x, rng, classic)
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


def _maml_loss(net, x, rng, cfg: MetaTTAConfig):
    """Stage 2 (MAML, head-only inner loop): per crop, K SGD steps of the heads on
    ``inner_weight * masked aux L1`` (binarised mask, straight-through gradient) from the
    current weights, body frozen in the inner loop; the outer loss is the adapted primary
    output's L1 to the clean crop, and trains body, heads, mask network and step sizes."""
    import torch

    from ..nets.meta import binarised, inner_steps
    from ..noise.simulate import RECIPES

    # the detector offset is part of the scene a microscope records (averaged ground
    # truths keep it): the target is the clean crop plus the offset, not the crop alone
    # with probability ``classic_share`` a crop gets stage 1's classic mix instead (offset 0)
    classic = rng.random(x.shape[0]) < cfg.classic_share
    offsets = np.where(classic, 0.0, rng.uniform(0, 0.1, x.shape[0])).astype(np.float32)
    it = iter(zip(offsets, classic))

    def model(a, r):
        o, c = next(it)
        return (
            RECIPES["classic"](a, r)
            if c
            else RECIPES["realistic"](a, r, offset=float(o), ct_share=cfg.ct_share)
        )

    y = _noisy(x, rng, model)
    x = x + torch.from_numpy(offsets)[:, None, None, None]
    feats = net.features(y)
    m = binarised(net.mask(y))
    total = 0.0
    if cfg.base_weight:  # keep the unadapted output good too
        total = cfg.base_weight * (net.heads(feats, y, aux=False)[0] - x).abs().mean() * x.shape[0]
    for j in range(x.shape[0]):
        sl = slice(j, j + 1)
        params = inner_steps(
            net,
            feats[sl],
            y[sl],
            m[sl],
            cfg.inner_steps,
            weight=cfg.inner_weight,
            create_graph=True,
        )
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
    out = {
        "psnr_noisy": round(psnr(noisy, clean), 3),
        "psnr": round(psnr(before, clean), 3),
        "mask_mean": round(float(m.mean()), 3),
    }
    if steps:
        out["psnr_adapted"] = round(psnr(after, clean), 3)
    return out


def _val_sets(cfg: MetaTTAConfig, vclean: np.ndarray) -> dict:
    """Validation ``(clean, noisy)`` crops by log-key prefix: the stage's own noise, and in
    stage 2 also stage 1's, which meta-transfer must not forget."""
    from ..noise.simulate import RECIPES

    def classic(seed):
        crng = np.random.default_rng(seed)
        return vclean, np.stack([RECIPES["classic"](c, crng) for c in vclean]).astype(np.float32)

    if cfg.stage == 1:
        return {"val_": classic(cfg.seed + 4242)}
    # the target keeps the detector offset (see _maml_loss)
    vrng = np.random.default_rng(cfg.seed + 4242)
    off = vrng.uniform(0, 0.1, len(vclean)).astype(np.float32)
    vnoisy = np.stack(
        [
            RECIPES["realistic"](c, vrng, offset=float(o), ct_share=cfg.ct_share)
            for c, o in zip(vclean, off)
        ]
    ).astype(np.float32)
    return {
        "val_": (vclean + off[:, None, None, None], vnoisy),
        "val_classic_": classic(cfg.seed + 4343),
    }


def _optimiser(net, cfg: MetaTTAConfig):
    """``(optimiser, batch loss, validation steps)`` of the stage."""
    import torch

    if cfg.stage == 1:
        body_heads = [
            p for n, p in net.named_parameters() if not n.startswith(("mask.", "inner_log_lr"))
        ]
        return torch.optim.Adam(body_heads, lr=cfg.lr), _meta_aux_loss(net, cfg), 0
    if cfg.stage == 2:
        rest = [p for n, p in net.named_parameters() if n != "inner_log_lr"]
        # the step sizes are log-scale: they need a larger step than the weights
        groups = [{"params": rest}, {"params": [net.inner_log_lr], "lr": 1e-2}]
        return torch.optim.Adam(groups, lr=cfg.lr), _maml_loss, cfg.inner_steps
    raise ValueError(f"stage must be 1 or 2, got {cfg.stage}")


def train_meta_tta(cfg: MetaTTAConfig, *, progress=print) -> dict:
    """Meta-TTA training, one stage per call (``cfg.stage``).

    Stage 2 starts from ``cfg.init`` (the stage-1 weights). Validation: held-out crops with
    the stage's own noise (classic mix, or realistic microscope/CT noise), PSNR before and
    (stage 2) after K head-only steps.

    Parameters
    ----------
    cfg : MetaTTAConfig
        The run's settings.
    progress : callable
        Receives every validation row as a JSON string.

    Returns
    -------
    dict
        The manifest entry, written beside the weights file ``cfg.output``.

    Raises
    ------
    ValueError
        ``cfg.stage`` is neither 1 nor 2.
    """
    import torch

    from ..nets.meta import MetaNet

    setup(cfg)
    train, val, sources = training_images(cfg.data, skimage=cfg.skimage)
    vclean, _, _ = val_set(val, cfg.crop, cfg.val_images, cfg.seed)
    val_sets = _val_sets(cfg, vclean)
    net = MetaNet(cfg.widths).to(memory_format=torch.channels_last)
    init_info = None
    if cfg.init:
        from ..weights import load_state

        state, init_info = load_state(cfg.init)
        net.load_state_dict(state)
    opt, batch_loss, steps = _optimiser(net, cfg)

    def validate(net, recent):
        row = {"train_loss": round(float(np.mean(recent)), 5)}
        for prefix, (clean, noisy) in val_sets.items():
            scores = _validate_meta(net, clean, noisy, steps, cfg.inner_weight)
            row.update({prefix + k: v for k, v in scores.items()})
        return {**row, "inner_lr_median": float(net.inner_lrs().detach().median())}

    history, seconds = fit(cfg, net, opt, train, batch_loss, validate, progress)
    return save(cfg, net, history, seconds, sources, _manifest(cfg, net, init_info))


def _manifest(cfg: MetaTTAConfig, net, init_info) -> dict:
    noise = (
        "classic mix (Gaussian, speckle, salt-and-pepper)"
        if cfg.stage == 1
        else "realistic (Poisson-Gaussian with gain, offset and read noise; correlated; "
        "row/column)"
        + (f"; low-dose CT noise in a share {cfg.ct_share} of crops" if cfg.ct_share else "")
    )
    optimiser = f"Adam lr {cfg.lr}, {schedule(cfg)}, grad-norm clip {cfg.clip}" + (
        f"; mask network Adam through one virtual SGD step, gradient-match weight {cfg.grad_weight}"
        if cfg.stage == 1
        else "; step sizes Adam lr 1e-2 (log scale)"
    )
    return {
        "method": "meta-tta",
        "stage": cfg.stage,
        "init": None
        if not init_info
        else {"file": init_info.get("file"), "sha256": init_info.get("sha256")},
        "architecture": {
            "class": "MetaNet",
            "widths": list(cfg.widths),
            "parameters": parameters(net),
        },
        "inner_steps": cfg.inner_steps,
        "inner_weight": cfg.inner_weight,
        "noise": noise,
        "optimiser": optimiser,
    }


def _check(cfg: MetaTTAConfig) -> None:
    from ..core.axes import DenoiseError

    if cfg.stage == 2 and not cfg.init:
        raise DenoiseError("meta-tta stage 2 needs --init (the stage-1 weights)")


TRAINER = Trainer(
    "meta-tta",
    MetaTTAConfig,
    train_meta_tta,
    check=_check,
    options=(
        Option(
            "--stage",
            "stage",
            "meta-tta: 1 = meta-auxiliary pre-training (classic noise "
            "mix), 2 = meta-transfer (MAML) on realistic noise, from --init",
            type=int,
            choices=(1, 2),
        ),
        Option(
            "--init", "init", "meta-tta stage 2: the stage-1 weights (.pt) to start from", type=str
        ),
        Option(
            "--inner-steps",
            "inner_steps",
            "meta-tta: head-only inner steps K (default %(default)g)",
            type=int,
            valid=lambda v: v >= 1,
            error="--inner-steps must be at least 1, got {}",
        ),
        Option(
            "--base-weight",
            "base_weight",
            "meta-tta stage 2: weight of the unadapted "
            "output's L1 in the outer loss (default %(default)g)",
        ),
        Option(
            "--classic-share",
            "classic_share",
            "meta-tta stage 2: share of crops with the "
            "stage-1 classic noise mix (default %(default)g)",
        ),
        Option(
            "--ct-share",
            "ct_share",
            "meta-tta stage 2: share of crops with low-dose CT noise (default %(default)g)",
            valid=lambda v: 0 <= v <= 1,
            error="--ct-share must lie in [0, 1], got {}",
        ),
    ),
)
