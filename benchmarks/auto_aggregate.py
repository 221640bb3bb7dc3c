"""Would ``auto`` gain by combining its candidates instead of choosing one? Measured on
held-out training images (every 20th Train400 image: the first and the third of
``auto_model.py``'s five, each with the quality benchmark's noises; salt and pepper is
skipped where the image's clipping leaves too few blocks for the noise model).

For each image: every candidate of ``auto`` ``fast`` on the whole image (per-tile) with
the image's noise model; its divergence from one probe drawn from the model (the same
probe for all); the convex weights (non-negative, summing to 1) that minimise Stein's
risk of the combination, ``||F a - y||^2 - trace(C) + 2 a . d`` (a small quadratic
programme, SLSQP); and the true PSNR of the combination against that of the candidate
the risk chooses alone and of the best candidate. One line per image.

Usage::

    python benchmarks/auto_aggregate.py > benchmarks/auto_aggregate_raw.txt
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from auto_model import _train_cases  # noqa: E402


def _psnr(mse: float) -> float:
    return float(10 * np.log10(1 / mse))


def _candidates(y: np.ndarray, model):
    """``(names, outputs (K, n), divergences (K,))`` of auto's fast candidates on ``y``."""
    import torch

    from napari_masked_denoise.core.masks import Coords
    from napari_masked_denoise.methods import default_preset, get_method
    from napari_masked_denoise.methods.auto import default_candidates
    from napari_masked_denoise.methods.fidelity import _divergence

    coords, names, outs, divs = Coords([0]), [], [], []
    for spec in default_candidates("fast"):
        name, _, preset = spec.partition(":")
        m = get_method(name)(
            preset=preset or default_preset(name),
            mode="per-tile",
            device=torch.device("cpu"),
            seed=0,
            noise=model,
        )
        f = m.denoise(y, coords)
        divs.append(_divergence(lambda b, m=m: m.denoise(b, coords), y, f, model, 0))
        outs.append(f.astype(np.float64).ravel())
        names.append(spec)
    return names, np.array(outs), np.array(divs)


def _weights(F: np.ndarray, y: np.ndarray, d: np.ndarray, trace: float, start: int):
    """Convex weights of least risk ``||F' a - y||^2 + 2 a . d`` (the constant dropped)."""
    from scipy.optimize import minimize

    G, h = F @ F.T, F @ y
    sol = minimize(
        lambda a: (a @ G @ a - 2 * a @ h + 2 * a @ d) / trace,
        np.eye(len(F))[start],
        jac=lambda a: (2 * G @ a - 2 * h + 2 * d) / trace,
        bounds=[(0, 1)] * len(F),
        constraints=({"type": "eq", "fun": lambda a: a.sum() - 1},),
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 500},
    )
    return sol.x


def main() -> int:
    from napari_masked_denoise.core.axes import DenoiseError
    from napari_masked_denoise.noise.estimate import estimate_noise

    warnings.simplefilter("ignore")
    for case, image, clean, noisy in _train_cases():
        if image not in ("test_001", "test_041"):
            continue
        lo, span = float(noisy.min()), float(noisy.max() - noisy.min())
        y = ((noisy - lo) / span).astype(np.float32)[None]
        c = ((clean - lo) / span).astype(np.float64).ravel()
        try:
            model = estimate_noise(noisy).scaled(lo, span)
        except DenoiseError:
            continue
        names, F, d = _candidates(y, model)
        yv = y.astype(np.float64).ravel()
        trace = float(np.sum(model.sigma(yv) ** 2))
        risks = [np.sum((f - yv) ** 2) - trace + 2 * dk for f, dk in zip(F, d)]
        k0 = int(np.argmin(risks))
        a = _weights(F, yv, d, trace, k0)
        true = [float(np.mean((f - c) ** 2)) * span**2 for f in F]
        best = int(np.argmin(true))
        agg = float(np.mean((a @ F - c) ** 2)) * span**2
        top = " ".join(f"{names[i]}={a[i]:.2f}" for i in np.argsort(-a)[:3])
        print(
            f"{case:14s} {image} chosen {names[k0]} {_psnr(true[k0]):.2f} best {names[best]} "
            f"{_psnr(true[best]):.2f} combined {_psnr(agg):.2f} "
            f"vs_best {_psnr(agg) - _psnr(true[best]):+.2f} "
            f"vs_chosen {_psnr(agg) - _psnr(true[k0]):+.2f} weights {top}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
