"""What the two adaptation modes cost: per-tile against once, beside classical peers.

Usage::

    python benchmarks/modes.py [--images 01,02,03] [--sigma 25] [--no-results]

Set12 images (from ../shared/data/test/Set12) with Gaussian noise; zero-shot filling
from random initialisation in both modes and presets, and in the same run BM3D (blind
sigma estimate), non-local means and TV (calibrated by J-invariance, and a fixed weight).
PSNR on [0, 1]-clipped images, data range 1; seconds per image; medians over images.
Writes the section "Adaptation modes" of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import classical_peers, update_section  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data" / "test" / "Set12"
RESULTS = HERE / "RESULTS.md"
SECTION = "## Adaptation modes"


def ours(weights: list[str]):
    from napari_masked_denoise import denoise

    out = {}
    for w in weights:
        label = "random init" if w == "none" else f"weights {w}"
        for mode in ("per-tile", "once"):
            out[f"zero-shot fast, {mode} ({label})"] = lambda y, m=mode, w=w: (
                denoise(y, preset="fast", mode=m, axes="YX", device="cpu", weights=w).denoised
            )
    return out


def main(argv=None) -> int:
    from skimage import io
    from skimage.metrics import peak_signal_noise_ratio as psnr

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default="01,02,03,04,05")
    p.add_argument("--sigma", type=float, default=25.0)
    p.add_argument(
        "--weights",
        default="none",
        help="comma-separated zero-shot weights to run: none (random init) and/or shipped names",
    )
    p.add_argument("--no-results", action="store_true")
    args = p.parse_args(argv)
    if not DATA.exists():
        print(f"needs the Set12 images in {DATA}", file=sys.stderr)
        return 2
    methods = {"noisy input": lambda y: y, **classical_peers(), **ours(args.weights.split(","))}
    rows = {k: ([], []) for k in methods}
    for name in args.images.split(","):
        clean = io.imread(DATA / f"{name}.png").astype(np.float32) / 255.0
        rng = np.random.default_rng(int(name))
        noisy = (clean + rng.normal(0, args.sigma / 255.0, clean.shape)).astype(np.float32)
        for k, f in methods.items():
            t = time.perf_counter()
            out = f(noisy)
            dt = time.perf_counter() - t
            rows[k][0].append(psnr(clean, np.clip(out, 0, 1), data_range=1))
            rows[k][1].append(dt)
            print(f"{name} {k:40s} {rows[k][0][-1]:6.2f} dB {dt:7.2f} s", flush=True)
    ref = np.median(next(v for k, v in rows.items() if "per-tile" in k)[1])
    lines = [
        "| method | median PSNR dB | median s / image | time vs per-tile |",
        "|---|---:|---:|---:|",
    ]
    for k, (ps, ts) in rows.items():
        lines.append(
            f"| {k} | {np.median(ps):.2f} | {np.median(ts):.2f} | {np.median(ts) / ref:.2f}x |"
        )
    table = "\n".join(lines)
    print(table)
    if not args.no_results:
        import torch

        text = (
            "## Adaptation modes (per-tile against once) and peers, Set12\n\n"
            f"Measured with `python benchmarks/modes.py {' '.join(argv or sys.argv[1:])}` "
            f"({time.strftime('%Y-%m-%d %H:%M')}); machine: {platform.machine()}, "
            f"{__import__('os').cpu_count()} CPU cores, torch {torch.__version__} on the CPU.\n\n"
            f"Set12 images {args.images} (256x256), Gaussian sigma {args.sigma:g}/255, one noise "
            "seed per image; zero-shot filling with the 0.12 M-parameter U-Net, randomly initialised "
            "or from the named shipped weights, preset `fast` (200 iterations, beta 0.9, 30% "
            "masks). `per-tile` adapts on the image itself (one 256 tile); `once` adapts on 4 "
            "random 128x128 crops and then fills with 8 masked forward passes.\n\n" + table + "\n"
        )
        update_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
