"""TTT-MIM without adaptation, with and without noise-level normalisation, on held-out training images.

Same images and noises as ``ttt_calibrate.py`` (the first 4 held-out Train400 images,
central 256x256). Prints the mean PSNR per noise.

Usage::

    python benchmarks/ttt_normalise.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ttt_calibrate import DATA, NOISES  # noqa: E402


def main() -> int:
    import torch
    from skimage import io
    from skimage.metrics import peak_signal_noise_ratio as psnr

    from napari_masked_denoise.core.masks import Coords
    from napari_masked_denoise.methods import get_method
    from napari_masked_denoise.training import VAL_EVERY_NTH, gray01

    torch.set_num_threads(2)
    files = sorted(DATA.glob("*.png"))
    val = [f for i, f in enumerate(files) if i % VAL_EVERY_NTH == VAL_EVERY_NTH - 1][:4]
    nets = {
        flag: get_method("ttt-mim")(
            preset="no-adapt", mode="per-tile", device=torch.device("cpu"), normalise_noise=flag
        )
        for flag in (True, False)
    }
    for k, (noise, add) in enumerate(NOISES.items()):
        scores = {True: [], False: []}
        for j, path in enumerate(val):
            img = gray01(io.imread(path))
            h, w = img.shape
            clean = img[(h - 256) // 2 : (h + 256) // 2, (w - 256) // 2 : (w + 256) // 2]
            noisy = add(clean, np.random.default_rng(100 * k + j)).astype(np.float32)[None]
            for flag, m in nets.items():
                out = m.denoise(noisy, Coords([0]))[0]
                scores[flag].append(psnr(clean, np.clip(out, 0, 1), data_range=1))
        print(
            f"{noise:22s} normalised {np.mean(scores[True]):.2f}  plain {np.mean(scores[False]):.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
