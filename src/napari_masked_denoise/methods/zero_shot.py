"""Zero-shot iterative filling (Ma et al., NeurIPS 2024).

Each iteration draws a pixel-wise Bernoulli mask, shows the network ``[x * keep, keep]``,
takes one Adam step on the squared error at the dropped pixels, and updates an
exponential moving average at the dropped pixels only, started from the noisy input:
``ema = where(drop, beta * ema + (1 - beta) * pred, ema)``. The EMA is the output.
Optional pixel-shuffle down-sampling (factor 2) breaks spatially correlated noise.

In ``once`` mode the iterations run on a sample of tiles, and every tile is then filled
by the fixed network: a few masked forward passes whose masks together drop every pixel
at least once, averaged at the dropped pixels.

The output keeps the share of its change that Stein's risk estimate under the image's
noise model picks (:func:`~.fidelity.blend_weight`), so that a clean or weakly noisy image
is not made worse; the estimate's divergence is that of the fill by the network as it is
after the iterations (the output itself in ``once`` mode; in ``per-tile`` mode it stands
for the moving average, whose weight it matched within 0.05 on the camera crop). The
weight is fixed on the sample in ``once`` mode.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..core.masks import Coords, uniform
from ..nets import receptive_radius as _radius
from ..nets.filling import fill, fill_passes, rotating_drops
from ..nets.unet import UNet
from ._optim import Adam
from .base import Method, Preset, Processed
from .fidelity import blend, blend_weight
from .options import integer, number, one_of

__all__ = ["ZeroShotFilling", "receptive_radius"]

_FILL_DRAW = 1 << 20  # mask draws for once-mode filling never collide with training draws


def receptive_radius(widths: tuple[int, ...]) -> int:
    """Receptive-field radius of :class:`UNet` with ``widths`` (measured)."""
    return _radius("unet", tuple(widths))


class ZeroShotFilling(Method):
    exact_support = True  # the halo is the measured receptive field
    compiled_calls = ("forward",)
    name = "zero-shot"
    summary = "zero-shot iterative filling with masked re-training of a small U-Net"
    presets = {
        "fast": Preset(
            "200 iterations, beta 0.9, 30% pixel masks, synthetic-noise weights: "
            "pixel-independent noise",
            {"iterations": 200, "beta": 0.9, "mask_ratio": 0.3, "weights": "zero-shot-synthetic"},
        ),
        "quality": Preset(
            "1000 iterations, beta 0.99, 30% pixel masks, synthetic-noise weights: "
            "pixel-independent noise",
            {"iterations": 1000, "beta": 0.99, "mask_ratio": 0.3, "weights": "zero-shot-synthetic"},
        ),
        "real-fast": Preset(
            "200 iterations, beta 0.9, 85% masks, real-noise weights: real, spatially correlated noise",
            {"iterations": 200, "beta": 0.9, "mask_ratio": 0.85, "weights": "zero-shot-real"},
        ),
        "stop": Preset(
            "up to 1000 iterations, beta 0.9, stopped where the held-out loss (3% of pixels) is "
            "lowest, synthetic-noise weights: pixel-independent noise",
            {
                "iterations": 1000,
                "beta": 0.9,
                "mask_ratio": 0.3,
                "weights": "zero-shot-synthetic",
                "stop": "holdout",
            },
        ),
        "real-stop": Preset(
            "up to 1000 iterations, beta 0.9, 85% masks, stopped by the held-out loss, real-noise "
            "weights: real, spatially correlated noise",
            {
                "iterations": 1000,
                "beta": 0.9,
                "mask_ratio": 0.85,
                "weights": "zero-shot-real",
                "stop": "holdout",
            },
        ),
        "real-quality": Preset(
            "1000 iterations, beta 0.99, 85% masks, real-noise weights: real, spatially correlated noise",
            {"iterations": 1000, "beta": 0.99, "mask_ratio": 0.85, "weights": "zero-shot-real"},
        ),
    }
    preview_options = {"iterations": 50}
    defaults = {
        "iterations": 200,
        "beta": 0.9,
        "mask_ratio": 0.3,
        "lr": 2e-3,
        "pixel_shuffle": 1,
        "widths": (16, 32, 64),
        "fill_passes": 8,
        "weights": "none",
        "stop": "fixed",
        "patience": 50,
    }

    checks = {
        "iterations": integer(1),
        "beta": number(0, 1),
        "mask_ratio": number(0, 1, open_lo=True, open_hi=True),
        "lr": number(0, open_lo=True),
        "pixel_shuffle": one_of(1, 2),
        "fill_passes": integer(0),  # at least enough passes to drop every pixel run anyway
        "stop": one_of("fixed", "holdout"),
        "patience": integer(0),
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        o = self.options
        self.pd = int(o["pixel_shuffle"])
        self._build_net(lambda widths: UNet(2, 1, widths), kwargs)
        self.align = self.net.align * self.pd
        self.halo = receptive_radius(self.widths) * self.pd

    # -- helpers ------------------------------------------------------------------
    def _to_net_space(self, block: np.ndarray, coords: Coords):
        """Pad to the alignment, apply pixel-shuffle; return tensor, coords, unpad info."""
        x, (h, w) = self._padded(block)
        n = x.shape[0]
        if self.pd > 1:
            s = self.pd
            x = F.pixel_unshuffle(x, s)  # (N, s*s, H/s, W/s)
            x = x.reshape(n * s * s, 1, x.shape[-2], x.shape[-1])
            planes = (coords.planes[:, None] * (s * s) + torch.arange(s * s)).reshape(-1)
            coords = Coords(planes, coords.y0 // s, coords.x0 // s)
        return x.contiguous(memory_format=torch.channels_last), coords, (n, h, w)

    def _from_net_space(self, y: torch.Tensor, info) -> np.ndarray:
        n, h, w = info
        if self.pd > 1:
            s = self.pd
            y = y.reshape(n, s * s, y.shape[-2], y.shape[-1])
            y = F.pixel_shuffle(y, s)
        return y[:, 0, :h, :w].float().cpu().numpy()

    def _keep(self, draw: int, coords: Coords, x: torch.Tensor) -> torch.Tensor:
        u = uniform(self.seed, draw, coords, x.shape[-2:], self.device)
        return (u >= float(self.options["mask_ratio"])).to(x.dtype)

    def _iterate(
        self, x: torch.Tensor, coords: Coords, *, keep_ema: bool, held: torch.Tensor | None = None
    ) -> Iterator:
        """Iterative filling on ``x``; yields ``(step, total, ema)``. Pixels where ``held``
        is 1 are never shown to the network and never a training target."""
        o = self.options
        total, beta = int(o["iterations"]), float(o["beta"])
        opt = Adam(self.net.parameters(), lr=float(o["lr"]))
        ema = x.clone() if keep_ema else None
        self.net.train()
        for t in range(total):
            keep = self._keep(t, coords, x)
            if held is not None:
                keep = keep * (1.0 - held)
            drop = 1.0 - keep
            target = drop if held is None else drop * (1.0 - held)
            pred = self.net(torch.cat([x * keep, keep], 1))
            loss = ((pred - x) ** 2 * target).sum() / target.sum().clamp_min(1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                with torch.no_grad():
                    if t == 0 and held is not None:  # the output there starts unseen too
                        ema = torch.where(held > 0, pred.detach(), ema)
                    ema = torch.where(drop > 0, beta * ema + (1 - beta) * pred.detach(), ema)
            yield t + 1, total, ema

    # -- the interface ---------------------------------------------------------------
    def adapt(self, sample: np.ndarray, coords: Coords):
        x, c, _ = self._to_net_space(sample, coords)
        for step, total, _ in self._iterate(x, c, keep_ema=False):
            yield step, total
        self.weight = self._weight(sample, coords, self._filled(sample, coords))

    def process(self, block: np.ndarray, coords: Coords) -> Processed:
        x, c, info = self._to_net_space(block, coords)
        if self.mode != "per-tile":
            out = self._from_net_space(self._fill(x, c), info)
            w = self.weight if self.weight is not None else self._weight(block, coords, out)
            return Processed(blend(block, out, w))
        self.net.load_state_dict(self._init_state)
        report = {}
        if self.options["stop"] == "holdout":
            ema, stopped = self._stopped(x, c)
            report = {"stopped_at": [stopped]}
        else:
            ema = x
            for _, _, ema in self._iterate(x, c, keep_ema=True):  # noqa: B007 (the last one is the output)
                pass
        out = self._from_net_space(ema, info)
        w = self._weight(block, coords, self._filled(block, coords))
        return Processed(blend(block, out, w), report=report)

    def _filled(self, block: np.ndarray, coords: Coords) -> np.ndarray:
        """``block`` filled by the network as it is now (:meth:`_fill`)."""
        x, c, info = self._to_net_space(block, coords)
        return self._from_net_space(self._fill(x, c), info)

    def _weight(self, block: np.ndarray, coords: Coords, filled: np.ndarray) -> float:
        """The share of the change to keep (:func:`~.fidelity.blend_weight`) for the fill
        by the network as it is now; ``filled`` is that fill of ``block``."""
        return blend_weight(lambda b: self._filled(b, coords), block, filled, self.noise, self.seed)

    def _stopped(self, x: torch.Tensor, coords: Coords) -> tuple[torch.Tensor, int]:
        """Iterate up to ``iterations``; return the output at the iteration whose held-out
        loss (3% of the pixels, never seen, never a target) was lowest, stopping once it
        has not improved for ``patience`` iterations, and that iteration."""
        from ..noise.holdout import HOLDOUT_DRAW, HOLDOUT_FRAC

        u = uniform(self.seed, HOLDOUT_DRAW, coords, x.shape[-2:], self.device)
        held = (u < HOLDOUT_FRAC).to(x.dtype)
        n_held = held.sum().clamp_min(1.0)
        every, patience = 5, int(self.options["patience"])
        best, best_t, best_ema = float("inf"), 0, x
        for t, _, ema in self._iterate(x, coords, keep_ema=True, held=held):
            if t % every:
                continue
            score = float((((ema - x) ** 2) * held).sum() / n_held)
            if score < best:
                best, best_t, best_ema = score, t, ema.clone()
            elif t - best_t >= patience:
                break
        return best_ema, best_t

    @torch.inference_mode()
    def _fill(self, x: torch.Tensor, coords: Coords) -> torch.Tensor:
        p = float(self.options["mask_ratio"])
        u = uniform(self.seed, _FILL_DRAW, coords, x.shape[-2:], self.device)
        self.net.eval()
        # rotating the uniforms by p per pass drops every pixel at least once
        return fill(
            self.net,
            x,
            rotating_drops(u, p, x.dtype),
            fill_passes(p, int(self.options["fill_passes"])),
        )

    def state_bytes(self) -> bytes:
        return self._torch_bytes({"net": self.net.state_dict(), "weight": self._weight_tensor()})

    def load_state_bytes(self, data: bytes) -> None:
        state = self._torch_state(data)
        if "net" not in state:  # a state saved before the weight was kept
            state = {"net": state}
        self.net.load_state_dict(state["net"])
        self._load_weight(state)
