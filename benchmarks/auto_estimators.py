"""Which error estimate should ``auto`` rank its candidates by? Measured on held-out
training images only (every 20th Train400 image, never a test image).

Usage::

    python benchmarks/auto_estimators.py run [--images 8] [--noises GLOB,...]
    python benchmarks/auto_estimators.py report

For every image and noise, every candidate of ``auto``'s ``fast`` preset runs on the plain
noisy image (its true error against the clean image), on copies with held-out pixels
(three draws of :mod:`napari_masked_denoise.noise.holdout`, the estimate ``auto`` used first)
and on the noisy image plus a tiny random perturbation ``eps * b`` (``b`` = +-1), which
gives a Monte-Carlo estimate of the divergence of the denoiser (Ramani, Blu and Unser,
IEEE TIP 2008) for Stein's unbiased risk estimate:

    SURE = |f(y) - y|^2 / n - mean(v) + 2 / n * sum_i v_i * b_i * (f(y + eps b) - f(y))_i / eps

with ``v_i`` the noise variance at pixel ``i``. It scores the output the user gets, so it
does not penalise methods that use a pixel's own value (the held-out loss does: it scores
the method applied with that pixel hidden). Variants of ``v``: one blind global variance
(wavelet MAD), and a noise-level function (variance against intensity, quadratic, fitted
on the finest diagonal Haar coefficients) that covers Poisson and multiplicative noise.
Rows: ``benchmarks/auto_estimators_raw.jsonl``; the report goes into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine, read_rows, update_section  # noqa: E402

from napari_masked_denoise.noise.sure import IMPULSE_SHARE  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data" / "train" / "Train400"
RAW = HERE / "auto_estimators_raw.jsonl"
SECTION = "## Auto: which error estimate ranks the candidates (held-out training images)"
EPS = 0.01  # the perturbation, in units of the blind noise sigma


def _noises():
    from ttt_calibrate import NOISES

    out = dict(NOISES)
    out["poisson-gaussian peak 10"] = lambda c, r: (
        r.poisson(np.clip(c, 0, None) * 10.0) / 10.0 + r.normal(0, 0.02, c.shape)
    )
    return out


def run(args) -> None:
    import torch
    from skimage import io

    from napari_masked_denoise import denoise
    from napari_masked_denoise.methods.auto import default_candidates
    from napari_masked_denoise.noise.holdout import hide, holdout_loss, holdout_mask
    from napari_masked_denoise.noise.levels import wavelet_sigma
    from napari_masked_denoise.noise.sure import impulse_share
    from napari_masked_denoise.training import VAL_EVERY_NTH, gray01

    torch.set_num_threads(args.threads)
    files = sorted(DATA.glob("*.png"))
    val = [f for i, f in enumerate(files) if i % VAL_EVERY_NTH == VAL_EVERY_NTH - 1][: args.images]
    done = {(r["noise"], r["image"]) for r in read_rows(RAW)}
    cands = default_candidates("fast")
    with RAW.open("a") as out:
        for k, (noise, add) in enumerate(_noises().items()):
            if args.noises and not any(fnmatch(noise, g) for g in args.noises.split(",")):
                continue
            for j, path in enumerate(val):
                if (noise, path.stem) in done:
                    continue
                clean = gray01(io.imread(path)).astype(np.float32)
                rng = np.random.default_rng(1000 * k + j)
                y = add(clean, rng).astype(np.float32)
                sigma = wavelet_sigma(y[None])
                b = rng.choice(np.array([-1.0, 1.0], np.float32), size=y.shape)
                mask = holdout_mask((1, *y.shape), seed=0)[0]
                hidden = hide(y[None], mask[None], seed=0)[0]
                idx, centres = _bins(y)
                row = {
                    "noise": noise,
                    "image": path.stem,
                    "sigma_blind": sigma,
                    "noise_var_true": float(np.mean((y - clean) ** 2)),
                    "impulse": impulse_share(y[None]),
                    "bin_centres": centres.tolist(),
                    "bin_counts": np.bincount(idx.ravel(), minlength=BINS).tolist(),
                    "nlf": _nlf_points(y),
                    "candidates": {},
                }

                def f(a, spec):
                    name, _, preset = spec.partition(":")
                    return denoise(
                        a.copy(),
                        method=name,
                        preset=preset or None,
                        axes="YX",
                        device="cpu",
                        mode="per-tile",
                        seed=0,
                    ).denoised.astype(np.float64)

                for spec in cands:
                    t = time.perf_counter()
                    fy = f(y, spec)
                    sec = time.perf_counter() - t
                    eps = EPS * sigma
                    d = (f(y + eps * b, spec) - fy) / eps * b
                    row["candidates"][spec] = {
                        "mse": float(np.mean((fy - clean) ** 2)),
                        "fit": float(np.mean((fy - y) ** 2)),
                        "seconds": round(sec, 3),
                        "holdout": holdout_loss(f(hidden, spec), y, mask),
                        # the divergence per intensity bin: any noise-level function can weight it later
                        "div_bins": (
                            np.bincount(idx.ravel(), d.ravel(), BINS)
                            / np.maximum(np.bincount(idx.ravel(), minlength=BINS), 1)
                        ).tolist(),
                    }
                    print(
                        noise, path.stem, spec, round(row["candidates"][spec]["mse"], 6), flush=True
                    )
                row.update(
                    machine=machine(), threads=args.threads, date=time.strftime("%Y-%m-%d %H:%M")
                )
                out.write(json.dumps(row) + "\n")
                out.flush()


BINS = 32


def _bins(y: np.ndarray):
    """Every pixel's bin of local intensity (3x3 mean; quantile bins) and the bins' centres."""
    from scipy.ndimage import uniform_filter

    local = uniform_filter(y.astype(np.float64), 3, mode="reflect")
    edges = np.quantile(local, np.linspace(0, 1, BINS + 1))
    idx = np.clip(np.searchsorted(edges, local, side="right") - 1, 0, BINS - 1)
    centres = np.array(
        [local[idx == i].mean() if (idx == i).any() else np.nan for i in range(BINS)]
    )
    return idx, centres


def _nlf_points(y: np.ndarray, bins: int = 16) -> dict:
    """Noise variance against intensity from the finest diagonal Haar coefficients, binned
    by their 2x2 block's mean: robust (MAD) and trimmed mean square per bin."""
    from napari_masked_denoise.noise.levels import haar_diagonal

    h, w = y.shape[0] // 2 * 2, y.shape[1] // 2 * 2
    a = y[:h, :w].astype(np.float64)
    d = haar_diagonal(a).ravel()
    u = ((a[0::2, 0::2] + a[0::2, 1::2] + a[1::2, 0::2] + a[1::2, 1::2]) / 4).ravel()
    edges = np.quantile(u, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, u, side="right") - 1, 0, bins - 1)
    pts = {"u": [], "mad": [], "ms": [], "n": []}
    for i in range(bins):
        sel = d[idx == i]
        if sel.size < 8:
            continue
        pts["u"].append(float(u[idx == i].mean()))
        pts["mad"].append(float((np.median(np.abs(sel)) / 0.6745) ** 2))
        pts["ms"].append(float(np.mean(np.sort(sel * sel)[: max(int(0.95 * sel.size), 1)]) / 0.75))
        pts["n"].append(int(sel.size))
    return pts


def _fit_nlf(pts: dict, key: str, degree: int = 2):
    """Weighted least-squares polynomial of the variance against intensity (>= a floor)."""
    u, v, n = (np.asarray(pts[k], float) for k in ("u", key, "n"))
    A = np.stack([u**p for p in range(degree + 1)], 1) * np.sqrt(n)[:, None]
    coef, *_ = np.linalg.lstsq(A, v * np.sqrt(n), rcond=None)
    floor = 0.05 * max(float(v.min()), 1e-12)
    return lambda x: np.maximum(sum(c * np.asarray(x) ** p for p, c in enumerate(coef)), floor)


def _scores(c: dict, row: dict) -> dict:
    """Every estimator's score of one candidate (lower is better)."""
    s2 = row["sigma_blind"] ** 2
    w = np.asarray(row["bin_counts"], float) / np.sum(row["bin_counts"])
    div = np.asarray(c["div_bins"])
    cen = np.nan_to_num(np.asarray(row["bin_centres"], float))
    out = {
        "held-out": c["holdout"] - s2,
        "SURE, blind sigma": c["fit"] - s2 + 2 * s2 * float(w @ div),
    }
    for key, name in (("mad", "robust"), ("ms", "mean square")):
        for deg in (1, 2):
            v = _fit_nlf(row["nlf"], key, deg)(cen)
            sure = c["fit"] - float(w @ v) + 2 * float(w @ (v * div))
            out[f"SURE, noise-level function ({name}, degree {deg})"] = sure
            if key == "ms" and deg == 1:
                out["SURE (mean square, degree 1); held-out if impulsive"] = (
                    c["holdout"] - s2 if row["impulse"] > IMPULSE_SHARE else sure
                )
    return out


def _ct_like(c, r, i0=2e3):
    """Low-dose CT noise on a training image: Poisson counts on its sinogram, filtered
    back-projection (as ``samples.lowdose_ct`` does for the phantom)."""
    from skimage.transform import iradon, radon

    theta = np.linspace(0, 180, c.shape[0], endpoint=False)
    p = radon(c, theta, circle=False)
    mu = 3.0 / p.max()
    pn = -np.log(np.maximum(r.poisson(i0 * np.exp(-mu * p)), 1) / i0) / mu

    def fbp(s):
        return iradon(s, theta, filter_name="ramp", circle=False, output_size=c.shape[0])

    return c + fbp(pn) - fbp(p)


def correlation(args) -> None:
    """``noise.correlation_ratio`` on every noise of the run plus two spatially correlated
    ones and CT-like noise: where ``auto``'s warning threshold comes from."""
    from scipy.ndimage import gaussian_filter
    from skimage import io

    from napari_masked_denoise.noise.levels import CORRELATED, correlation_ratio
    from napari_masked_denoise.training import VAL_EVERY_NTH, gray01

    files = sorted(DATA.glob("*.png"))
    val = [f for i, f in enumerate(files) if i % VAL_EVERY_NTH == VAL_EVERY_NTH - 1][: args.images]
    noises = dict(_noises())
    noises["Gaussian-smoothed (sigma 0.8)"] = lambda c, r: (
        c + 0.08 * (lambda n: n / n.std())(gaussian_filter(r.normal(0, 1, c.shape), 0.8))
    )
    noises["CT-like (i0 2000)"] = _ct_like
    lines = [
        CORRELATION,
        "",
        f"Command: `python benchmarks/auto_estimators.py correlation --images {args.images}` "
        f"(the held-out Train400 images, central 176x176). `noise.correlation_ratio`: robust spread of "
        f"second differences at lag 2 over lag 1; `auto` warns above {CORRELATED}.",
        "",
        "| noise | min | median | max |",
        "|---|---:|---:|---:|",
    ]
    for k, (name, add) in enumerate(noises.items()):
        rs = [
            correlation_ratio(
                add(
                    gray01(io.imread(p)).astype(np.float64)[:176, :176],
                    np.random.default_rng(1000 * k + j),
                )
            )
            for j, p in enumerate(val)
        ]
        lines.append(f"| {name} | {min(rs):.2f} | {np.median(rs):.2f} | {max(rs):.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    update_section(CORRELATION, text)


CORRELATION = "## Auto: does the noise look spatially correlated? (held-out training images)"


def report(args) -> None:
    rows = read_rows(RAW)
    if not rows:
        sys.exit(f"no rows in {RAW}")
    noises = list(dict.fromkeys(r["noise"] for r in rows))
    names = list(_scores(next(iter(rows[0]["candidates"].values())), rows[0]))
    regret = {n: {} for n in names}  # estimator -> noise -> [auto - best dB per image]
    for r in rows:
        psnr = {k: -10 * np.log10(c["mse"]) for k, c in r["candidates"].items()}
        best = max(psnr.values())
        sc = {k: _scores(c, r) for k, c in r["candidates"].items()}
        for n in names:
            pick = min(sc, key=lambda k: sc[k][n])
            regret[n].setdefault(r["noise"], []).append(psnr[pick] - best)
    lines = [
        SECTION,
        "",
        f"Command: `python benchmarks/auto_estimators.py run --images {args.images}` then `report` "
        f"({rows[0]['machine']}, {rows[0]['threads']} torch thread). "
        f"{len(rows)} image-noise pairs: the held-out Train400 images (every 20th), 180x180, never a test "
        "image, with the noises of `ttt_calibrate.py` plus Poisson-Gaussian. Candidates: auto's `fast` "
        f"preset ({', '.join(rows[0]['candidates'])}). Cell: mean over images of the chosen "
        "candidate's PSNR minus the best candidate's (dB); last columns over all pairs.",
        "",
        "| estimator | " + " | ".join(noises) + " | mean | worst | within 0.3 dB |",
        "|---|" + "---:|" * (len(noises) + 3),
    ]
    for n in names:
        allr = [x for v in regret[n].values() for x in v]
        lines.append(
            f"| {n} | "
            + " | ".join(f"{np.mean(regret[n][z]):+.2f}" for z in noises)
            + f" | {np.mean(allr):+.2f} | {min(allr):+.2f} | {sum(x >= -0.3 for x in allr)}/{len(allr)} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_results:
        update_section(SECTION, text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--images", type=int, default=8)
    r.add_argument("--noises", default=None)
    r.add_argument("--threads", type=int, default=1)
    c = sub.add_parser("correlation")
    c.add_argument("--images", type=int, default=8)
    q = sub.add_parser("report")
    q.add_argument("--images", type=int, default=8)
    q.add_argument("--no-results", action="store_true")
    args = p.parse_args(argv)
    {"run": run, "correlation": correlation, "report": report}[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
