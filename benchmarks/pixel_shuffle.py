"""Does pixel-shuffle down-sampling help TTT-MIM on spatially correlated noise, and can
the noise model's correlation tell when?

Held-out training images (every 20th of Train400, 180 x 180) with 3x3 box-correlated
Gaussian noise (25/255), the camera pipeline, white Gaussian (25/255) and
Poisson-Gaussian (30 photons) noise, as in ``benchmarks/noise_model.py``. TTT-MIM
``no-adapt`` on the image, against the same on its four 2x2 pixel-shuffled sub-images
(each denoised as a plane of a stack, then put back). Printed per image: the case, the
image, the model's largest lag-1 correlation, PSNR without and with the shuffle, and the
difference; the last lines: the mean gain per case when the shuffle is used above each
lag-1 threshold.

Usage::

    python benchmarks/pixel_shuffle.py > benchmarks/pixel_shuffle_raw.txt
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import noise_model as nm  # noqa: E402

CASES = ("box3-25", "camera", "g25", "pg30")


def _psnr(c, a) -> float:
    return float(10 * np.log10(1 / np.mean((np.clip(a, 0, 1) - c) ** 2)))


def main() -> int:
    from napari_masked_denoise import denoise
    from napari_masked_denoise.noise.estimate import estimate_noise

    warnings.simplefilter("ignore")
    rows = []
    for case in CASES:
        for k, (name, x) in enumerate(nm._images("train")):
            clean, noisy = nm._noisy(case, x, np.random.default_rng(500 + k))
            noisy = noisy.astype(np.float32)
            m = estimate_noise(noisy)
            r1 = max(m.correlation(0, 1), m.correlation(1, 0))
            kw = dict(method="ttt-mim", preset="no-adapt")
            a = denoise(noisy, axes="YX", mode="per-tile", **kw).denoised
            offsets = [(0, 0), (0, 1), (1, 0), (1, 1)]
            sub = np.stack([noisy[i::2, j::2] for i, j in offsets])
            d = denoise(sub, axes="ZYX", mode="once", **kw).denoised
            b = np.empty_like(noisy)
            for kk, (i, j) in enumerate(offsets):
                b[i::2, j::2] = d[kk]
            rows.append((case, r1, _psnr(clean, b) - _psnr(clean, a)))
            print(case, name, f"{r1:.2f}", f"{_psnr(clean, a):.2f}", f"{_psnr(clean, b):.2f}",
                  f"{rows[-1][2]:+.2f}", flush=True)  # fmt: skip
    for t in (0.3, 0.5, 0.6, 0.7):
        gains = {c: np.mean([g if r >= t else 0 for cc, r, g in rows if cc == c]) for c in CASES}
        print(f"threshold {t}: " + ", ".join(f"{c} {v:+.2f}" for c, v in gains.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
