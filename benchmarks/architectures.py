"""Which network for zero-shot filling on a CPU: quality gained per second.

Usage::

    python benchmarks/architectures.py [--seconds 480] [--threads 1]

Candidates: U-Nets of our block (two 3x3 convolutions with LeakyReLU per level,
stride-2 down, nearest up, additive skips, no normalisation) at three sizes, the largest
with the reference hourglass's scale and width (5 levels of 64 channels, about 0.8 M
parameters; BatchNorm left out because it couples the pixels of a tile). Each trains with
the same masked pre-training code (30% masks, Train400 with every 20th image held out,
plus scikit-image's bundled images) for the same wall time, one at a time; the table gives
the held-out validation numbers of :mod:`napari_masked_denoise.training` and the cost of
one zero-shot iteration (forward, backward, Adam step) on a 256x256 image, which is what a
user pays 200 (``fast``) or 1000 (``quality``) times per image. Writes the section
"Architecture for zero-shot filling" of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import update_section  # noqa: E402

CANDIDATES = {
    "U-Net 16-32-64": (16, 32, 64),
    "U-Net 32-64-128": (32, 64, 128),
    "U-Net 5x64 (hourglass scale)": (64, 64, 64, 64, 64),
}


def iteration_seconds(widths, threads: int, n: int = 10) -> float:
    import torch

    from napari_masked_denoise.nets.unet import UNet

    torch.set_num_threads(threads)
    net = UNet(2, 1, widths).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    x = torch.rand(1, 1, 256, 256).contiguous(memory_format=torch.channels_last)
    keep = (torch.rand_like(x) > 0.3).float()
    ts = []
    for _ in range(n + 2):
        t = time.perf_counter()
        loss = ((net(torch.cat([x * keep, keep], 1)) - x) ** 2 * (1 - keep)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ts.append(time.perf_counter() - t)
    return sorted(ts[2:])[len(ts[2:]) // 2]


def main(argv=None) -> int:
    import torch

    from napari_masked_denoise.training.zero_shot import ZeroShotConfig, train_zero_shot

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=480)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", default=None, help="comma-separated candidate names")
    p.add_argument("--no-results", action="store_true")
    args = p.parse_args(argv)
    data = HERE.parent.parent / "shared" / "data" / "train" / "Train400"
    rows = []
    for name, widths in CANDIDATES.items():
        if args.only and name not in args.only.split(","):
            continue
        with tempfile.TemporaryDirectory() as d:
            cfg = ZeroShotConfig(
                data=(str(data),),
                output=str(Path(d) / "w.pt"),
                widths=widths,
                iterations=10**9,
                max_seconds=args.seconds,
                constant_lr=True,
                threads=args.threads,
                val_every=100,
                seed=0,
            )
            e = train_zero_shot(cfg, progress=lambda s, name=name: print(name, s, flush=True))
        it_s = iteration_seconds(widths, args.threads)
        v = e["final_validation"]
        rows.append(
            (
                name,
                e["architecture"]["parameters"],
                e["iterations"],
                v["val_masked_psnr"],
                v["val_fill_psnr_sigma25"],
                it_s,
            )
        )
        print(rows[-1], flush=True)
    lines = [
        "| network | parameters | training iterations in the budget | held-out masked PSNR dB | "
        "held-out fill PSNR (sigma 25, no adaptation) dB | s per zero-shot iteration, 256x256 | "
        "s per image, `fast` (200 it) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n, par, it, rec, fill, s in rows:
        lines.append(
            f"| {n} | {par / 1e6:.2f} M | {it} | {rec:.2f} | {fill:.2f} | {s:.3f} | {200 * s:.0f} |"
        )
    text = (
        "## Architecture for zero-shot filling\n\n"
        f"Measured with `python benchmarks/architectures.py {' '.join(argv or sys.argv[1:])}` "
        f"({time.strftime('%Y-%m-%d %H:%M')}); machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {args.threads} torch thread(s). Each network trains for "
        f"{args.seconds:.0f} s of wall time at a constant learning rate with the same data and seed.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    print(text)
    if not args.no_results:
        update_section("## Architecture for zero-shot filling", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
