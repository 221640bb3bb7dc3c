"""The meta-TTA networks (Gunawan, Nugroho, Park): a multi-task denoiser and a mask network.

``x -> body -> primary head -> residual;  clean = x + residual``
``[clean, residual] -> auxiliary head -> reconstruction of x``
``x -> mask network -> per-pixel weights (sigmoid) of the auxiliary L1 loss``

Reference layout (``../shared/METHODS.md`` section 3): a 3-level encoder-decoder body with
residual blocks, bilinear resampling and additive skips, no normalisation and no biases.
Sized for a CPU here: the body runs at half resolution (a 2x2 pixel-unshuffle in front,
as FFDNet does), so its three levels are 1/2, 1/4 and 1/8 of the image; the heads run at
half resolution too and pixel-shuffle their output back. At widths ``(24, 32, 48)`` that
is about 0.1 M parameters and 11 kMAC per pixel (the reference: 0.6 M at full
resolution). No normalisation layers: the output at a pixel depends only on its receptive
field, so tiled runs equal untiled ones.

The heads are the only parameters test-time adaptation changes (``head_names``). For
the inner loop of meta-training and for adaptation, :meth:`MetaNet.heads` runs them with
any parameter dictionary (``torch.func.functional_call``), so adapted weights never
overwrite the module's own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MetaNet", "MaskNet"]


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2, inplace=True)


class _Res(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(_conv(c, c), _act(), _conv(c, c))

    def forward(self, x):
        return x + self.body(x)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _down(x: torch.Tensor) -> torch.Tensor:
    # bilinear down-sampling by exactly 2 (align_corners=False) is the 2x2 mean
    return F.avg_pool2d(x, 2)


class _Body(nn.Module):
    def __init__(self, widths):
        super().__init__()
        c0, c1, c2 = widths
        self.inc = nn.Sequential(_conv(4, c0), _act(), _Res(c0))
        self.d1 = nn.Sequential(_conv(c0, c1, 1), _Res(c1))
        self.d2 = nn.Sequential(_conv(c1, c2, 1), _Res(c2), _Res(c2))
        self.u1 = _conv(c2, c1, 1)
        self.dec1 = _Res(c1)
        self.u0 = _conv(c1, c0, 1)
        self.dec0 = _Res(c0)

    def forward(self, x):
        s0 = self.inc(F.pixel_unshuffle(x, 2))
        s1 = self.d1(_down(s0))
        h = self.d2(_down(s1))
        h = self.dec1(_up(self.u1(h)) + s1)  # the 1x1 convolution commutes with up-sampling
        return self.dec0(_up(self.u0(h)) + s0)


class _PrimaryHead(nn.Module):
    """Half-resolution features -> full-resolution residual."""

    def __init__(self, c: int):
        super().__init__()
        self.net = nn.Sequential(_conv(c, c), _act(), _conv(c, 4))

    def forward(self, f):
        return F.pixel_shuffle(self.net(f), 2)


class _AuxHead(nn.Module):
    """``[clean, residual]`` (full resolution) -> reconstruction of the noisy input."""

    def __init__(self, c: int):
        super().__init__()
        self.net = nn.Sequential(_conv(8, c), _act(), _conv(c, c), _act(), _conv(c, 4))

    def forward(self, clean, residual):
        z = F.pixel_unshuffle(torch.cat([clean, residual], 1), 2)
        return F.pixel_shuffle(self.net(z), 2)


class MaskNet(nn.Module):
    """Per-pixel weights in (0, 1) for the auxiliary loss, from the noisy input."""

    def __init__(self, c: int = 24):
        super().__init__()
        self.net = nn.Sequential(
            _conv(4, c), _act(), _conv(c, c), _act(), _conv(c, c), _act(), _conv(c, 4)
        )

    def forward(self, x):
        return torch.sigmoid(F.pixel_shuffle(self.net(F.pixel_unshuffle(x, 2)), 2))


class MetaNet(nn.Module):
    """Multi-task network (body, primary and auxiliary heads) plus the mask network.

    ``inner_log_lr`` holds one learned inner-loop step size per head tensor (Meta-SGD,
    Li et al. 2017), initialised at ``inner_lr``; meta-training learns how far the test-time
    steps should go.
    """

    def __init__(self, widths=(24, 32, 48), inner_lr: float = 5e-4):
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        if len(self.widths) != 3:
            raise ValueError(f"MetaNet has three levels; got widths {self.widths}")
        c0 = self.widths[0]
        self.body = _Body(self.widths)
        self.primary = _PrimaryHead(c0)
        self.aux = _AuxHead(c0)
        self.mask = MaskNet()
        nn.init.zeros_(self.primary.net[-1].weight)  # starts as the identity denoiser
        self.inner_log_lr = nn.Parameter(torch.full((len(self.head_names()),), math.log(inner_lr)))

    align = 8

    def head_names(self) -> list[str]:
        return [n for n, _ in self.named_parameters() if n.startswith(("primary.", "aux."))]

    def head_params(self) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.named_parameters() if n.startswith(("primary.", "aux."))}

    def inner_lrs(self) -> torch.Tensor:
        return self.inner_log_lr.exp().clamp(max=0.05)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def heads(
        self, feats: torch.Tensor, x: torch.Tensor, params: dict | None = None, aux: bool = True
    ):
        """``(clean, residual, reconstruction)``; ``params`` (head names -> tensors) replace
        the heads' own weights. With ``aux=False`` the reconstruction is ``None``."""
        if params is None:
            res = self.primary(feats)
        else:
            res = torch.func.functional_call(
                self.primary,
                {k[len("primary.") :]: v for k, v in params.items() if k.startswith("primary.")},
                (feats,),
            )
        clean = x + res
        if not aux:
            return clean, res, None
        if params is None:
            rec = self.aux(clean, res)
        else:
            rec = torch.func.functional_call(
                self.aux,
                {k[len("aux.") :]: v for k, v in params.items() if k.startswith("aux.")},
                (clean, res),
            )
        return clean, res, rec

    def denoise(self, x: torch.Tensor, params: dict | None = None) -> torch.Tensor:
        return self.heads(self.features(x), x, params, aux=False)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.denoise(x)


def aux_loss(rec: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The masked reconstruction loss: mean of ``|rec - x| * mask`` per pixel."""
    return ((rec - x).abs() * mask).mean()


def binarised(mask: torch.Tensor) -> torch.Tensor:
    """The mask binarised at 0.5 in the forward pass, with the sigmoid's gradient
    (straight-through), so meta-training sees exactly the test-time mask."""
    hard = (mask > 0.5).to(mask.dtype)
    return hard + mask - mask.detach()


def inner_steps(
    net: MetaNet, feats, x, mask, steps: int, *, weight: float = 10.0, create_graph: bool = False
):
    """``steps`` SGD steps of the heads on ``weight * aux_loss`` with the learned step
    sizes; returns the adapted head parameters (a dict). The body's features ``feats`` and
    the mask are inputs: only the heads change."""
    params = net.head_params()
    if not create_graph:
        params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    lrs = net.inner_lrs()
    if not create_graph:
        lrs = lrs.detach()
    for _ in range(steps):
        _, _, rec = net.heads(feats, x, params)
        loss = weight * aux_loss(rec, x, mask)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {
            k: (v - lr * g) if create_graph else (v - lr * g).detach().requires_grad_(True)
            for (k, v), g, lr in zip(params.items(), grads, lrs)
        }
    return params
