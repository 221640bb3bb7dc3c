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

import functools

import numpy as np
import torch

from ..core.masks import Coords
from ..nets.meta import MetaNet, aux_loss, inner_steps
from ._optim import Adam
from .base import Method, Preset

__all__ = ["MetaTTA"]


# measured receptive-field radii (measuring takes about 10 s on a CPU); a test checks
# that this table agrees with the measurement
KNOWN_RADIUS = {(24, 32, 48): 75}


def _radius(widths: tuple[int, ...]) -> int:
    return KNOWN_RADIUS.get(tuple(widths)) or _measure_radius(tuple(widths))


@functools.lru_cache(maxsize=8)
def _measure_radius(widths: tuple[int, ...]) -> int:
    """Receptive field of the primary output and of the mask (the larger)."""
    from ..nets import measure_radius

    torch.manual_seed(0)
    net = MetaNet(widths)
    with torch.no_grad():  # the primary head's last layer starts at zero: make it count
        net.primary.net[-1].weight.fill_(1.0)
    return max(measure_radius(net, 1, net.align), measure_radius(net.mask, 1, net.align))


class MetaTTA(Method):
    exact_support = True  # the halo is the measured receptive field
    compiled_calls = ("features", "heads", "mask")

    @classmethod
    def adapts_per_tile(cls, options: dict) -> bool:
        return int(options["steps"]) > 0
    name = "meta-tta"
    summary = "meta-learned head-only test-time adaptation on a learned loss mask"
    presets = {
        "fast": Preset("5 head-only steps with the meta-learned step sizes (as meta-trained)", {"steps": 5}),
        "reference": Preset("5 head-only steps of Adam at lr 1e-5 (the reference code's test time)",
                            {"steps": 5, "optimizer": "adam", "lr": 1e-5}),
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

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        from ..core.axes import DenoiseError

        o = self.options
        if int(o["steps"]) < 0:
            raise DenoiseError(f"steps must be 0 or more, got {o['steps']}")
        if o["optimizer"] not in ("meta-sgd", "adam"):
            raise DenoiseError(f"optimizer must be meta-sgd or adam, got {o['optimizer']!r}")
        if not float(o["lr"]) > 0:
            raise DenoiseError(f"lr must be positive, got {o['lr']}")
        self._build_net(MetaNet, kwargs)
        self.net.eval()
        self.halo = _radius(self.widths)
        self.align = self.net.align
        self.inner_weight = float(self.weights_info.get("inner_weight", 10.0))
        self.adapted = None  # adapted head parameters (``once`` mode)
        self.extras = ("loss_mask",) if o["mask_layer"] else ()
        self.last_extras: dict[str, np.ndarray] = {}

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
                params = {k: v.detach().clone().requires_grad_(True) for k, v in self.net.head_params().items()}
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
        if steps == 0:
            return
        x, _, feats, mask = self._prepare(sample, True)
        self.adapted = self._adapt(x, feats, mask)
        yield steps, steps

    def process(self, block: np.ndarray, coords: Coords) -> np.ndarray:
        adapting = self.mode == "per-tile" and int(self.options["steps"]) > 0
        x, (h, w), feats, mask = self._prepare(block, adapting or bool(self.extras))
        params = self._adapt(x, feats, mask) if adapting else self.adapted
        with torch.no_grad():
            y = self.net.heads(feats, x, params, aux=False)[0]
        if self.extras:
            self.last_extras = {"loss_mask": mask[:, 0, :h, :w].float().cpu().numpy()}
        return y[:, 0, :h, :w].float().cpu().numpy()

    def state_bytes(self) -> bytes:
        return self._torch_bytes({"adapted": self.adapted or {}})

    def load_state_bytes(self, data: bytes) -> None:
        state = self._torch_state(data)["adapted"]
        self.adapted = {k: v.to(self.device) for k, v in state.items()} or None
