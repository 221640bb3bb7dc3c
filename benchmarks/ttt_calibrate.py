"""Choose TTT-MIM's test-time step size and step count on held-out *training* images.

The test sets (Set12, BSD68, microscopy, CT) are never used to choose settings. This script
takes the central 256x256 of the first ``--images`` validation images of Train400 (every
20th file, never trained on), adds noises unlike the Gaussian training noise, and for every
step size runs test-time training with the shipped network, recording the PSNR after
every step up to ``--steps``. It prints the mean gain over no adaptation per step size and
step count, and writes it into ``benchmarks/RESULTS.md``.

Usage::

    python benchmarks/ttt_calibrate.py [--images 4] [--steps 20] [--lrs 1e-5,1e-4,3e-4,1e-3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import update_section  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data" / "train" / "Train400"
SECTION = "## TTT-MIM: step size and step count, chosen on held-out training images"
NOISES = {
    "poisson peak 30": lambda c, r: r.poisson(np.clip(c, 0, None) * 30.0) / 30.0,
    "Gaussian sigma 50": lambda c, r: c + r.normal(0, 50 / 255, c.shape),
    "Gaussian sigma 10": lambda c, r: c + r.normal(0, 10 / 255, c.shape),
    "speckle 0.3": lambda c, r: c + c * r.normal(0, 0.3, c.shape),
    "salt and pepper 5%": lambda c, r: np.where(
        r.random(c.shape) < 0.05, r.integers(0, 2, c.shape), c
    ),
    "correlated 2x2": lambda c, r: (
        c + np.kron(r.normal(0, 25 / 255, (c.shape[0] // 2, c.shape[1] // 2)), np.ones((2, 2)))
    ),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--lrs", default="1e-5,1e-4,3e-4,1e-3")
    p.add_argument("--weights", default="ttt-mim")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-results", action="store_true")
    p.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra method option, e.g. -o consistency=0",
    )
    args = p.parse_args(argv)

    import torch
    from skimage import io
    from skimage.metrics import peak_signal_noise_ratio as psnr

    from napari_masked_denoise.core.masks import Coords
    from napari_masked_denoise.methods import get_method
    from napari_masked_denoise.training import VAL_EVERY_NTH, gray01

    torch.set_num_threads(args.threads)
    files = sorted(DATA.glob("*.png"))
    val = [f for i, f in enumerate(files) if i % VAL_EVERY_NTH == VAL_EVERY_NTH - 1][: args.images]
    lrs = [float(v) for v in args.lrs.split(",")]
    extra = {
        k: (v.lower() == "true" if v.lower() in ("true", "false") else float(v))
        for k, v in (o.split("=", 1) for o in args.option)
    }
    t0 = time.perf_counter()
    gains = {lr: np.zeros((len(NOISES), args.steps)) for lr in lrs}
    for k, (noise, f) in enumerate(NOISES.items()):
        for j, path in enumerate(val):
            img = gray01(io.imread(path))
            h, w = img.shape
            clean = (
                img[(h - 256) // 2 : (h + 256) // 2, (w - 256) // 2 : (w + 256) // 2]
                if min(h, w) >= 256
                else img
            )
            rng = np.random.default_rng(100 * k + j)
            noisy = f(clean, rng).astype(np.float32)[None]
            score = lambda out, clean=clean: psnr(clean, np.clip(out, 0, 1), data_range=1)  # noqa: E731
            for lr in lrs:
                m = get_method("ttt-mim")(
                    preset="fast",
                    mode="per-tile",
                    device=torch.device("cpu"),
                    weights=args.weights,
                    steps=args.steps,
                    lr=lr,
                    **extra,
                )
                # the method's own noise-level normalisation, then its test-time training steps
                s = m._estimate_scale(noisy) if m.options["normalise_noise"] else 1.0
                xs = m._scaled(noisy, s)
                base = score(_forward(m, xs, s))
                x, _ = m._tensor(xs)
                for t, _ in m._train(x, Coords([0])):
                    gains[lr][k, t - 1] += (score(_forward(m, xs, s)) - base) / len(val)
        print(
            f"{noise}: "
            + ", ".join(
                f"lr {lr:g}: {gains[lr][k, 7]:+.2f} dB at 8 steps, "
                f"{gains[lr][k, -1]:+.2f} at {args.steps}"
                for lr in lrs
            ),
            flush=True,
        )
    seconds = time.perf_counter() - t0
    marks = sorted({1, 2, 4, 8, 12, args.steps} & set(range(1, args.steps + 1)))
    lines = [
        "| step size | " + " | ".join(f"{s} steps" for s in marks) + " | worst noise at 8 steps |",
        "|---|" + "---:|" * (len(marks) + 1),
    ]
    for lr in lrs:
        g = gains[lr]
        worst = int(np.argmin(g[:, 7])) if args.steps >= 8 else 0
        lines.append(
            f"| {lr:g} | "
            + " | ".join(f"{g[:, s - 1].mean():+.2f}" for s in marks)
            + f" | {list(NOISES)[worst]} {g[worst, 7]:+.2f} |"
        )
    per_noise = [
        "| noise | " + " | ".join(f"lr {lr:g}, 8 steps" for lr in lrs) + " |",
        "|---|" + "---:|" * len(lrs),
    ]
    for k, noise in enumerate(NOISES):
        per_noise.append(
            f"| {noise} | " + " | ".join(f"{gains[lr][k, 7]:+.2f}" for lr in lrs) + " |"
        )
    text = (
        f"{SECTION}\n\n"
        f"`python benchmarks/ttt_calibrate.py --images {args.images} --steps {args.steps} --lrs {args.lrs}` "
        f"({time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()} {os.cpu_count()} cores, {args.threads} torch "
        f"threads, {seconds:.0f} s). Weights `{args.weights}`. Images: the central 256x256 of the first "
        f"{len(val)} held-out Train400 images ({', '.join(p.stem for p in val)}); never test images. "
        f"Mean PSNR gain (dB) of test-time training over the same network without adaptation, over "
        f"{len(NOISES)} noises unlike the training noise ({', '.join(NOISES)}):\n\n"
        + "\n".join(lines)
        + "\n\nPer noise:\n\n"
        + "\n".join(per_noise)
        + "\n"
    )
    print(text)
    if not args.no_results:
        update_section(SECTION, text)
    return 0


def _forward(m, scaled, s):
    import torch

    x, (h, w) = m._tensor(scaled)
    m.net.eval()
    with torch.inference_mode():
        return (m.net.denoise(x)[0, 0, :h, :w].numpy() - 0.5) / s + 0.5


if __name__ == "__main__":
    raise SystemExit(main())
