"""How well the blind noise model (``noise.estimate.estimate_noise``) knows the noise.

For every image of a case the noise is known: synthetic noise is drawn, and for the
shared real fluorescence pairs it is the single acquisition minus the 50-frame average.
The model sees only the noisy image. Reported per image:

- level error: the model's sigma against the true noise's standard deviation, at the
  clean intensities of 16 bins of pixels of equal count (the model evaluated there,
  wherever its own blocks were); the median and the largest relative error over bins;
- correlation error: the largest difference, over lags (0, 1), (1, 0), (0, 2) and
  (2, 0), between the model's normalised autocovariance and the true noise's.

Cases: Gaussian (sigma 25/255 and the weak 5/255), Poisson-Gaussian (30 photons, read
noise 0.02), 3x3 box-correlated Gaussian (25/255), the camera pipeline (Poisson-Gaussian
on an RGGB mosaic, demosaicked, gamma 2.2, JPEG 90, grey), and the real FMD pairs.
Images: ``--set train`` is every 20th image of Train400 (held-out training images, where
the estimator's rules were chosen); ``--set test`` is Set12 and the first 10 of BSD68,
reported only.

Usage::

    python benchmarks/noise_model.py run --set train
    python benchmarks/noise_model.py run --set test
    python benchmarks/noise_model.py report
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine, read_rows, update_section  # noqa: E402

RAW = HERE / "noise_model_raw.jsonl"
SECTION = "## Noise model: how well the blind estimate knows the noise"
DATA = HERE.parent.parent / "shared" / "data"
SYNTHETIC = ("g25", "g5", "pg30", "box3-25", "camera")
LAGS = ((0, 1), (1, 0), (0, 2), (2, 0))


def _images(which: str):
    from skimage import io

    from napari_masked_denoise.training import gray01

    if which == "train":
        paths = sorted((DATA / "train" / "Train400").glob("*.png"))[::20]
    else:
        paths = sorted((DATA / "test" / "Set12").glob("*.png"))
        paths += sorted((DATA / "test" / "BSD68").glob("*.png"))[:10]
    for p in paths:
        yield p.stem, gray01(io.imread(p)).astype(np.float64)


def _noisy(case: str, x: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """``(clean, noisy)`` for a synthetic case."""
    from napari_masked_denoise.noise.simulate import (
        RECIPES,
        camera_pipeline,
        filtered_gaussian,
        gaussian,
    )

    if case == "g25":
        return x, gaussian(x, rng, 25 / 255).astype(np.float64)
    if case == "g5":
        return x, gaussian(x, rng, 5 / 255).astype(np.float64)
    if case == "pg30":
        return x, rng.poisson(x * 30) / 30 + rng.normal(0, 0.02, x.shape)
    if case == "box3-25":
        return x, filtered_gaussian(x, rng, 25, "box", 3).astype(np.float64)
    if case == "camera":
        lin = x**2.2
        return camera_pipeline(lin, None).astype(np.float64), RECIPES["camera"](lin, rng).astype(
            np.float64
        )
    raise ValueError(case)


def _fmd():
    from skimage import io

    from napari_masked_denoise.training import gray01

    real = DATA / "microscopy" / "fmd_real"
    for p in sorted((real / "raw").glob("*.png")):
        yield (
            p.stem,
            gray01(io.imread(real / "gt" / p.name)).astype(np.float64),
            gray01(io.imread(p)).astype(np.float64),
        )


def _true_sigma(clean: np.ndarray, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The noise's standard deviation against clean intensity: pixels in 16 bins of equal
    count (those of at least 200 pixels); ``(bin centres, sigmas)``."""
    edges = np.quantile(clean, np.linspace(0, 1, 17))
    centres, sig = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (clean >= lo) & (clean <= hi)
        if sel.sum() > 200:
            centres.append(float(clean[sel].mean()))
            sig.append(float(noise[sel].std()))
    return np.asarray(centres), np.asarray(sig)


def _true_corr(noise: np.ndarray, dy: int, dx: int) -> float:
    n = noise - noise.mean()
    a, b = n[: n.shape[0] - dy, : n.shape[1] - dx], n[dy:, dx:]
    return float(np.mean(a * b) / np.mean(n * n))


def _row(case: str, image: str, clean: np.ndarray, noisy: np.ndarray, which: str) -> dict:
    from napari_masked_denoise.noise.estimate import estimate_noise

    t = time.perf_counter()
    m = estimate_noise(noisy.astype(np.float32))
    seconds = time.perf_counter() - t
    noise = noisy - clean
    at, true = _true_sigma(clean, noise)
    rel = m.sigma(at) / true - 1
    corr = {f"{dy},{dx}": (m.correlation(dy, dx), _true_corr(noise, dy, dx)) for dy, dx in LAGS}
    return {
        "case": case,
        "set": which,
        "image": image,
        "level_err_median": float(np.median(np.abs(rel))),
        "level_err_max": float(np.max(np.abs(rel))),
        "corr_err": max(abs(a - b) for a, b in corr.values()),
        "corr": corr,
        "model": m.describe(),
        "seconds": seconds,
        "machine": machine(),
        "when": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def run(args) -> None:
    rows = []
    for case in SYNTHETIC:
        for k, (name, x) in enumerate(_images(args.set)):
            clean, noisy = _noisy(case, x, np.random.default_rng(1000 * SYNTHETIC.index(case) + k))
            rows.append(_row(case, name, clean, noisy, args.set))
            print(
                case,
                name,
                f"{rows[-1]['level_err_median']:.3f} {rows[-1]['corr_err']:.3f}",
                flush=True,
            )
    if args.set == "test":
        for name, clean, noisy in _fmd():
            rows.append(_row("fmd-real", name, clean, noisy, args.set))
    with RAW.open("a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def report(args) -> None:
    rows = read_rows(RAW)
    latest: dict = {}
    for r in rows:
        latest[(r["set"], r["case"], r["image"])] = r
    lines = [
        SECTION,
        "",
        "Written by `python benchmarks/noise_model.py report` from `noise_model_raw.jsonl` "
        "(`run --set train`, `run --set test`); the images and the measures are described in "
        "the script's docstring. Level error: relative error of the model's sigma at the clean "
        "intensities of 16 equal-count pixel bins (wherever its own blocks were) against the "
        "true noise's standard deviation there (median over "
        "bins, then the median and the 90th percentile over images; `max`: the largest over "
        "bins, median over images). Correlation error: the largest absolute error at lags "
        "(0,1), (1,0), (0,2), (2,0). Targets: level within 15%, correlation within 0.05.",
        "",
        "| images | case | images | level err (median / p90) | level err max (median) "
        "| corr err (median / p90) | within targets | s per image |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for which in ("train", "test"):
        for case in (*SYNTHETIC, "fmd-real"):
            rs = [r for (s, c, _), r in latest.items() if s == which and c == case]
            if not rs:
                continue
            lev = np.array([r["level_err_median"] for r in rs])
            cor = np.array([r["corr_err"] for r in rs])
            ok = np.mean((lev <= 0.15) & (cor <= 0.05))
            lines.append(
                f"| {which} | {case} | {len(rs)} | {np.median(lev):.3f} / {np.quantile(lev, 0.9):.3f} "
                f"| {np.median([r['level_err_max'] for r in rs]):.3f} | {np.median(cor):.3f} / "
                f"{np.quantile(cor, 0.9):.3f} | {100 * ok:.0f}% | {np.median([r['seconds'] for r in rs]):.2f} |"
            )
    update_section(SECTION, "\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--set", choices=("train", "test"), default="train")
    sub.add_parser("report")
    args = p.parse_args(argv)
    (run if args.cmd == "run" else report)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
