"""TTT-MIM: test-time training with a masked-image-modelling head (Mansour et al., ECCV 2024).

A network pre-trained on Gaussian noise (:class:`~..nets.mim.MIMNet`: one body, a main
head predicting the noise residual, a reconstruction head fed with patch-masked features)
adapts to the noise of the test image in a few gradient steps. Each step, on the masked
pixels of one patch mask drawn once and reused:

``L1(recon(masked y), y) + L1(y - main(y), recon.detach())``

i.e. the reconstruction head relearns the test image from its visible context, and the
main head's denoised output is pulled towards the reconstruction (the poster's test loss
``|O - O'| + |O' - I|``). AdamW (no weight decay) on all parameters. The output is the main
head on the unmasked input.

``per-tile`` mode resets to the pretrained weights and adapts on every tile; ``once`` mode
(the default for volumes) adapts once on a sample of tiles or slices and then runs one
forward pass per tile.

Options beyond the reference: ``consistency`` weights the second term (0: adapt through
the reconstruction loss only); ``normalise_noise`` scales the image about mid-grey so that
its estimated noise sigma matches the training noise, and the output back. The default
step size (1e-5) was chosen on held-out training images (``benchmarks/ttt_calibrate.py``),
never on test images.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ..core.masks import Coords, patch_mask
from ..nets import receptive_radius
from ..nets.mim import MIMNet
from ._optim import Adam
from .base import Method, Preset, Processed
from .fidelity import KEEP_HALO, blend_weight, keep_means
from .options import integer, number

__all__ = ["TTTMIM"]


class TTTMIM(Method):
    exact_support = True  # the halo is the measured receptive field
    compiled_calls = ("denoise",)

    @classmethod
    def adapts_per_tile(cls, options: dict) -> bool:
        return True  # without steps too: per-tile mode chooses the blend weight per tile

    name = "ttt-mim"
    summary = (
        "test-time training of a Gaussian-pretrained network with a masked-image-modelling head"
    )
    presets = {
        "fast": Preset(
            "8 steps, 40% masks of 4x4 patches, 0.15 M-parameter network",
            {"steps": 8, "weights": "ttt-mim"},
        ),
        "quality": Preset(
            "20 steps, 40% masks of 4x4 patches, 0.15 M-parameter network",
            {"steps": 20, "weights": "ttt-mim"},
        ),
        "safe": Preset(
            "8 steps through the reconstruction loss only: smaller gains, rarely loses "
            "where the noise is weaker than the training noise",
            {"steps": 8, "consistency": 0.0, "weights": "ttt-mim"},
        ),
        "volume": Preset(
            "8 steps with the 0.04 M-parameter network: about 1.4x the throughput of `fast` "
            "on large volumes on a CPU, about 1.5 dB lower",
            {"steps": 8, "weights": "ttt-mim-small"},
        ),
        "no-adapt": Preset(
            "the pretrained network as it is, no adaptation (Gaussian noise only)",
            {"steps": 0, "weights": "ttt-mim"},
        ),
    }
    defaults = {
        "steps": 8,
        "lr": 1e-5,
        "mask_ratio": 0.4,
        "patch": 4,
        "consistency": 1.0,
        "normalise_noise": False,
        "weights": "ttt-mim",
        "widths": (16, 32, 64),
    }

    checks = {
        "steps": integer(0),
        "lr": number(0, open_lo=True),
        "mask_ratio": number(0, 1, open_lo=True, open_hi=True),
        "patch": integer(1),
        "consistency": number(),
    }

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._build_net(MIMNet, kwargs)
        self.align = self.net.align
        self.halo = receptive_radius("mim", self.widths) + KEEP_HALO
        self.scale = 1.0
        self.train_sigma = float(np.sqrt(float(self.weights_info.get("noise_var", 0.005))))

    # -- helpers ------------------------------------------------------------------
    def _tensor(self, block: np.ndarray):
        x, hw = self._padded(block)
        return x.contiguous(memory_format=torch.channels_last), hw

    def _train(self, x: torch.Tensor, coords: Coords) -> Iterator[tuple[int, int]]:
        """The test-time training steps on ``x``; one mask, reused every step."""
        o = self.options
        total = int(o["steps"])
        if total == 0:
            return
        m = patch_mask(
            self.seed, 0, coords, x.shape[-2:], int(o["patch"]), float(o["mask_ratio"]), self.device
        )
        m = m.to(x.dtype).contiguous(memory_format=torch.channels_last)
        n_masked = m.sum().clamp_min(1.0)
        opt = Adam(self.net.parameters(), lr=float(o["lr"]))  # AdamW without weight decay
        self.net.train()
        w = float(o["consistency"])
        with torch.inference_mode(False), torch.enable_grad():
            for t in range(total):
                rec = self.net.reconstruct(x, m)
                err = (rec - x).abs()
                if w:
                    err = err + w * (self.net.denoise(x) - rec.detach()).abs()
                loss = (err * m).sum() / n_masked
                opt.zero_grad()
                loss.backward()
                opt.step()
                yield t + 1, total
        self.net.eval()

    # -- noise-level normalisation ------------------------------------------------
    def _estimate_scale(self, planes: np.ndarray) -> float:
        """Gain that brings the noise of ``planes`` to the training noise level."""
        from ..noise.levels import haar_sigma

        sig = float(np.median([haar_sigma(p) for p in planes]))
        if not np.isfinite(sig) or sig <= 1e-6:
            return 1.0
        return float(np.clip(self.train_sigma / sig, 1 / 8, 8))

    def _scaled(self, block: np.ndarray, scale: float) -> np.ndarray:
        return ((block - 0.5) * scale + 0.5).astype(np.float32)

    # -- the interface ---------------------------------------------------------------
    def adapt(self, sample: np.ndarray, coords: Coords):
        if self.options["normalise_noise"]:
            self.scale = self._estimate_scale(sample)
        x, _ = self._tensor(self._scaled(sample, self.scale))
        yield from self._train(x, coords)
        self.weight = blend_weight(
            self._forward, sample, self._forward(sample), self.noise, self.seed
        )

    def process(self, block: np.ndarray, coords: Coords) -> Processed:
        if self.mode == "per-tile" and self.options["normalise_noise"]:
            self.scale = self._estimate_scale(block)
        x, (h, w) = self._tensor(self._scaled(block, self.scale))
        if self.mode == "per-tile" and int(self.options["steps"]) > 0:
            self.net.load_state_dict(self._init_state)
            for _ in self._train(x, coords):
                pass
        return Processed(self._blended(self._forward, block, self._forward(block)))

    def _forward(self, block: np.ndarray) -> np.ndarray:
        """The network as it is now on ``block``, with the input's local means."""
        x, (h, w) = self._tensor(self._scaled(block, self.scale))
        self.net.eval()
        with torch.inference_mode():
            y = self.net.denoise(x)
        y = ((y[:, 0, :h, :w].float().cpu().numpy() - 0.5) / self.scale + 0.5).astype(np.float32)
        return keep_means(block, y)

    def state_bytes(self) -> bytes:
        return self._torch_bytes(
            {
                "net": self.net.state_dict(),
                "scale": torch.tensor(self.scale),
                "weight": self._weight_tensor(),
            }
        )

    def load_state_bytes(self, data: bytes) -> None:
        state = self._torch_state(data)
        self.net.load_state_dict(state["net"])
        self.scale = float(state["scale"])
        self._load_weight(state)
