"""Meta-transfer test-time adaptation (Gunawan, Nugroho, Park): head-only steps on a learned mask.

A multi-task network (:class:`~..nets.meta.MetaNet`: body, primary head giving a residual,
auxiliary head rebuilding the noisy input from ``[clean, residual]``) and a mask network
were meta-trained (``masked-denoise train meta-tta``, stages 1 and 2) so that a few
gradient steps of the *heads* on the masked auxiliary loss improve the primary output.
At test time, per tile (``per-tile``) or once on a sample of the volume (``once``):

1. the body's features and the mask (binarised at 0.5) are computed once;
2. K steps of the heads on ``inner_weight * mean(|aux - y| * mask)``, body frozen;
3. the output is the primary head with the adapted weights: ``y + residual``.

Because the body is frozen, step 2 back-propagates through the two small heads only, and
the adapted state is just the heads.

Optimiser: by default the one meta-training used (``meta-sgd``: plain gradient steps
with the step sizes meta-learned per head tensor), so test time does exactly what the
network was trained to benefit from. ``adam`` with ``lr`` 1e-5 is the reference code's
test-time optimiser (preset ``reference``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.masks import Coords
from ..nets import receptive_radius
from ..nets.meta import MetaNet, aux_loss, inner_steps
from ._optim import Adam
from .base import Method, Preset, Processed
from .fidelity import KEEP_HALO, blend_weight, keep_means
from .options import integer, number, one_of

__all__ = ["MetaTTA"]


class MetaTTA(Method):
    exact_support = True  # the halo is the measured receptive field
    compiled_calls = ("features", "heads", "mask")

    @classmethod
    def adapts_per_tile(cls, options: dict) -> bool:
        return True  # without steps too: per-tile mode chooses the blend weight per tile

    name = "meta-tta"
    summary = "meta-learned head-only test-time adaptation on a learned loss mask"
    presets = {
        "fast": Preset(
            "5 head-only steps with the meta-learned step sizes (as meta-trained)", {"steps": 5}
        ),
        "reference": Preset(
            "5 head-only steps of Adam at lr 1e-5 (the reference code's test time)",
            {"steps": 5, "optimizer": "adam", "lr": 1e-5},
        ),
        "no-adapt": Preset("the meta-trained network as it is, no adaptation", {"steps": 0}),
    }
    defaults = {
        "steps": 5,
        "optimizer": "meta-sgd",
        "lr": 1e-5,
        "mask_layer": False,
        "weights": "meta-tta",
        "widths": (24, 32, 48),
    }

    default_tile = 512  # the receptive field is 75 px: a 256 tile would read 2.6x its area

    checks = {
        "steps": integer(0),
        "optimizer": one_of("meta-sgd", "adam"),
        "lr": number(0, open_lo=True),
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        o = self.options
        self._build_net(MetaNet, kwargs)
        self.net.eval()
        self.halo = receptive_radius("meta", self.widths) + KEEP_HALO
        self.align = self.net.align
        self.inner_weight = float(self.weights_info.get("inner_weight", 10.0))
        self.adapted = None  # adapted head parameters (``once`` mode)
        self.extras = ("loss_mask",) if o["mask_layer"] else ()

    # -- adaptation -----------------------------------------------------------------
    def _adapt(self, x: torch.Tensor, feats: torch.Tensor, mask: torch.Tensor) -> dict | None:
        """The adapted head parameters for ``x`` (``None`` without steps)."""
        steps = int(self.options["steps"])
        if steps == 0:
            return None
        with torch.inference_mode(False), torch.enable_grad():
            x, feats, mask = x.clone(), feats.clone(), mask.clone()  # out of inference mode
            if self.options["optimizer"] == "meta-sgd":
                params = inner_steps(self.net, feats, x, mask, steps, weight=self.inner_weight)
            else:
                params = {
                    k: v.detach().clone().requires_grad_(True)
                    for k, v in self.net.head_params().items()
                }
                opt = Adam(params.values(), lr=float(self.options["lr"]))
                for _ in range(steps):
                    _, _, rec = self.net.heads(feats, x, params)
                    loss = aux_loss(rec, x, mask)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        return {k: v.detach() for k, v in params.items()}

    def _prepare(self, block: np.ndarray, with_mask: bool):
        """The padded input, its size, the body's features and (when asked for) the
        binarised mask."""
        x, hw = self._padded(block)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            feats = self.net.features(x)
            mask = (self.net.mask(x) > 0.5).to(x.dtype) if with_mask else None
        return x, hw, feats, mask

    # -- the interface ---------------------------------------------------------------
    def adapt(self, sample: np.ndarray, coords: Coords):
        steps = int(self.options["steps"])
        if steps > 0:
            x, _, feats, mask = self._prepare(sample, True)
            self.adapted = self._adapt(x, feats, mask)
            yield steps, steps

        def forward(b):
            return self._forward(b, self.adapted)

        self.weight = blend_weight(forward, sample, forward(sample), self.noise, self.seed)

    def process(self, block: np.ndarray, coords: Coords) -> Processed:
        adapting = self.mode == "per-tile" and int(self.options["steps"]) > 0
        x, (h, w), feats, mask = self._prepare(block, adapting or bool(self.extras))
        params = self._adapt(x, feats, mask) if adapting else self.adapted
        with torch.no_grad():
            y = self.net.heads(feats, x, params, aux=False)[0]
        extras = {"loss_mask": mask[:, 0, :h, :w].float().cpu().numpy()} if self.extras else {}
        out = keep_means(block, y[:, 0, :h, :w].float().cpu().numpy())
        return Processed(self._blended(lambda b: self._forward(b, params), block, out), extras)

    def _forward(self, block: np.ndarray, params) -> np.ndarray:
        """The network with head parameters ``params`` on ``block``, local means kept."""
        x, (h, w), feats, _ = self._prepare(block, False)
        with torch.no_grad():
            y = self.net.heads(feats, x, params, aux=False)[0]
        return keep_means(block, y[:, 0, :h, :w].float().cpu().numpy())

    def state_bytes(self) -> bytes:
        return self._torch_bytes({"adapted": self.adapted or {}, "weight": self._weight_tensor()})

    def load_state_bytes(self, data: bytes) -> None:
        full = self._torch_state(data)
        state = full["adapted"]
        self.adapted = {k: v.to(self.device) for k, v in state.items()} or None
        self._load_weight(full)
