"""A plain Adam for the few test-time steps of the adaptation methods.

``torch.optim`` optimisers import ``torch._dynamo`` and sympy on their first ``step()``:
about 3 s on this machine, more than eight adaptation steps of TTT-MIM on a volume
sample. This is the same update (Kingma and Ba; no weight decay, no amsgrad), written
operation for operation as ``torch.optim.Adam``'s single-tensor path so that results are
bit-identical to it on a CPU (checked in the tests).
"""

from __future__ import annotations

import torch

__all__ = ["Adam"]


class Adam:
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, (self.b1, self.b2), self.eps = float(lr), betas, float(eps)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        c1 = 1 - self.b1 ** float(self.t)
        c2_sqrt = (1 - self.b2 ** float(self.t)) ** 0.5
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            m.lerp_(g, 1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            denom = (v.sqrt() / c2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-(self.lr / c1))
