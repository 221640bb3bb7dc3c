"""Does ``auto`` pick well? Its held-out estimate against the true error, per candidate.

Usage::

    python benchmarks/auto.py run --preset fast [--cases GLOB,...] [--first] [--threads N]
    python benchmarks/auto.py report          # tables into benchmarks/RESULTS.md

For every benchmark image (the cases of ``quality.py``; ``--first``: the first image of
each case only), in one process and one run:

- ``auto`` with the preset (per-tile mode, as a single image runs): its choice, the
  held-out loss of every candidate on the sample, its PSNR and seconds;
- every candidate alone on the plain image: its true PSNR and seconds.

The report gives, per case, ``auto`` against the best of its candidates (the target: within
0.3 dB), the Spearman rank correlation between the held-out losses and the candidates'
true errors (median over the case's images), the estimated against the true PSNR gain of
the chosen output, and the cost of ``auto`` minus the chosen method's run alone, in units
of the slowest candidate's run on the sample (the target: at most 2). Rows go to ``benchmarks/auto_raw.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine, read_rows, update_section  # noqa: E402
from quality import _matches, cases  # noqa: E402

RAW = HERE / "auto_raw.jsonl"
FILL_RAW = HERE / "auto_fill_raw.jsonl"
SECTION = "## Auto: choosing by held-out pixels"
VARIANCE = "haar-diff"  # the noise variance estimate behind the estimated gain (was "mad")


def _psnr(clean, den) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(np.clip(clean, 0, 1), np.clip(den, 0, 1), data_range=1))


def run(args) -> None:
    import torch

    from napari_masked_denoise import denoise

    torch.set_num_threads(args.threads)
    settings = {
        "preset": args.preset,
        "radius": args.radius,
        "fill": args.fill,
        "variance": VARIANCE,
        "score": args.score,
    }
    done = {(_settings(r), r["case"], r["image"]) for r in read_rows(RAW)}
    seen = set()
    with RAW.open("a") as out:
        for case, image, clean, noisy in cases():
            if not _matches(case, args.cases) or (args.first and case in seen):
                continue
            seen.add(case)
            if (_settings(settings), case, image) in done:
                continue
            t = time.perf_counter()
            res = denoise(
                noisy.copy(),
                method="auto",
                preset=args.preset,
                axes="YX",
                device="cpu",
                mode="per-tile",
                seed=0,
                radius=args.radius,
                fill=args.fill,
                score=args.score,
            )
            auto_s = time.perf_counter() - t
            rep = res.info["method_report"]
            lo, hi = res.info["intensity_range"]
            cands = {}
            for spec in rep["candidates"]:
                name, preset = spec.split(":")
                t = time.perf_counter()
                den = denoise(
                    noisy.copy(),
                    method=name,
                    preset=preset,
                    axes="YX",
                    device="cpu",
                    mode="per-tile",
                    seed=0,
                ).denoised
                cands[spec] = {
                    "psnr": round(_psnr(clean, den), 3),
                    "seconds": round(time.perf_counter() - t, 3),
                    "mse": float(np.mean((den - clean) ** 2)),
                    "loss": rep["scores"][spec]["loss"],
                    "sample_seconds": rep["scores"][spec]["seconds"],
                    # one plain run on the sample (SURE's scoring takes two)
                    "sample_run_seconds": rep["scores"][spec].get(
                        "run_seconds", rep["scores"][spec]["seconds"]
                    ),
                }
            row = {
                **settings,
                "case": case,
                "image": image,
                "choice": rep["choice"],
                "score_used": rep.get("score", "held-out"),
                "impulse_share": rep.get("impulse_share"),
                "psnr": round(_psnr(clean, res.denoised), 3),
                "seconds": round(auto_s, 3),
                "noisy_psnr": round(_psnr(clean, noisy), 3),
                "estimated_gain_db": rep["estimated_gain_db"],
                "span": hi - lo,
                "candidates": cands,
                "threads": args.threads,
                "machine": machine(),
                "date": time.strftime("%Y-%m-%d %H:%M"),
            }
            out.write(json.dumps(row) + "\n")
            out.flush()
            best = max(cands, key=lambda k: cands[k]["psnr"])
            print(
                f"{case:14s} {image:20s} auto {row['psnr']:6.2f} ({rep['choice']}) best {cands[best]['psnr']:6.2f} "
                f"({best}) {auto_s:6.1f} s",
                flush=True,
            )


def _settings(r: dict) -> tuple:
    """What a row was measured with (rows from before a setting existed have its old value)."""
    return (
        r["preset"],
        r.get("radius", 0),
        r.get("fill", "mean"),
        r.get("variance", "mad"),
        r.get("score", "held-out"),
    )


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def report(args) -> None:
    rows = read_rows(RAW)
    out = [
        SECTION,
        "",
        "Command: `python benchmarks/auto.py run --preset P [--first]`, then `report` "
        f"({rows[0]['machine']}, {rows[0]['threads']} torch thread(s)). Per-tile mode, one 256x256 "
        "image at a time; the candidates run alone on the plain image in the same process for the "
        "true PSNR. Held-out pixels: 3% of the engine's sample (4 crops of 128x128); radius r hides the "
        "(2r+1)^2 block around each scored pixel. Score `sure`: SURE on the same sample, two runs per "
        "candidate (rows of commit 1f215ca, whose ranking is today's); its cost column divides by the "
        "slowest candidate's single run on the sample.",
        "",
    ]
    for key in sorted({_settings(r) for r in rows}, key=lambda k: (k[4] != "sure", k)):
        preset, radius, fill, var, score = key
        rs = [r for r in rows if _settings(r) == key]
        specs = list(rs[0]["candidates"])
        how = (
            f"score `sure` (held-out pixels, fill `{fill}`, where the noise is impulsive)"
            if score == "sure"
            else f"score `held-out`, fill `{fill}`, radius {radius}, noise variance `{var}`"
        )
        out += [
            f"### Preset `{preset}`, {how} ({len(rs)} images; candidates: {', '.join(specs)})",
            "",
            "| case | images | auto dB | best candidate dB | auto - best | rank corr. (median) "
            "| est. gain - true gain (dB) | chosen | (auto s - chosen alone s) / slowest run on sample |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        by_case = {}
        for r in rs:
            by_case.setdefault(r["case"], []).append(r)
        means = {s: [] for s in specs}
        auto_means, worst, costs = [], [], []
        for case, cr in by_case.items():
            a = np.mean([r["psnr"] for r in cr])
            best_spec = max(specs, key=lambda s: np.mean([r["candidates"][s]["psnr"] for r in cr]))
            b = np.mean([r["candidates"][best_spec]["psnr"] for r in cr])
            rho = np.median(
                [
                    _spearman(
                        [r["candidates"][s]["loss"] for s in specs],
                        [r["candidates"][s]["mse"] for s in specs],
                    )
                    for r in cr
                ]
            )
            gain_err = np.median(
                [r["estimated_gain_db"] - (r["psnr"] - r["noisy_psnr"]) for r in cr]
            )
            chosen = {}
            for r in cr:
                chosen[r["choice"]] = chosen.get(r["choice"], 0) + 1
            cost = np.median(
                [
                    (r["seconds"] - r["candidates"][r["choice"]]["seconds"])
                    / max(
                        c.get("sample_run_seconds", c["sample_seconds"])
                        for c in r["candidates"].values()
                    )
                    for r in cr
                ]
            )
            costs.append(cost)
            for s in specs:
                means[s].append(np.mean([r["candidates"][s]["psnr"] for r in cr]))
            auto_means.append(a)
            worst.append(a - b)
            out.append(
                f"| {case} | {len(cr)} | {a:.2f} | {b:.2f} ({best_spec}) | {a - b:+.2f} | {rho:.2f} "
                f"| {gain_err:+.1f} | {', '.join(f'{k} x{v}' for k, v in chosen.items())} | {cost:.2f} |"
            )
        out += [
            "",
            f"Mean over cases: auto {np.mean(auto_means):.2f} dB; "
            + "; ".join(f"{s} {np.mean(v):.2f}" for s, v in means.items())
            + f". Worst case auto - best: {min(worst):+.2f} dB; cases within 0.3 dB: "
            f"{sum(w >= -0.3 for w in worst)} of {len(worst)}. Cost (target at most 2): median "
            f"{np.median(costs):.2f}, worst {max(costs):.2f}.",
            "",
        ]
        later = [r for case, cr in by_case.items() for r in cr[1:]]
        if later and score == "held-out":
            d = [r["psnr"] - max(c["psnr"] for c in r["candidates"].values()) for r in later]
            out += [
                f"The way held-out pixels are hidden (`residual`) was chosen on the first image of every "
                f"case (`benchmarks/auto_fill_raw.jsonl`); on the {len(d)} other images, per image: auto - "
                f"best candidate median {np.median(d):+.2f} dB, mean {np.mean(d):+.2f}, worst {min(d):+.2f}; "
                f"within 0.3 dB on {sum(x >= -0.3 for x in d)}.",
                "",
            ]
    fill_rows = read_rows(FILL_RAW)
    if fill_rows:
        out += [
            "### How held-out pixels are hidden (preset `fast`, first image of every case)",
            "",
            "`mean`: the mean of the 8 neighbours (`skimage.restoration.calibrate_denoiser`); "
            "`neighbour`: a neighbour's noisy value (Noise2Void); `residual`: the mean plus a "
            "neighbour's residual. Rows: `benchmarks/auto_fill_raw.jsonl` (same script, an earlier "
            "run; TV `calibrated` uses the same hiding, so its PSNR moves too).",
            "",
            "| fill | images | mean auto dB | mean auto - best | worst | within 0.3 dB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for fill in ("mean", "neighbour", "residual"):
            fr = [r for r in fill_rows if r.get("fill", "mean") == fill]
            if not fr:
                continue
            d = [r["psnr"] - max(c["psnr"] for c in r["candidates"].values()) for r in fr]
            out.append(
                f"| {fill} | {len(fr)} | {np.mean([r['psnr'] for r in fr]):.2f} | {np.mean(d):+.2f} "
                f"| {min(d):+.2f} | {sum(x >= -0.3 for x in d)} |"
            )
        out.append("")
    update_section(SECTION, "\n".join(out) + "\n")
    print("\n".join(out))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--preset", default="fast")
    r.add_argument("--cases", default=None)
    r.add_argument("--first", action="store_true", help="the first image of each case only")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--radius", type=int, default=0, help="auto's held-out block radius")
    r.add_argument(
        "--fill",
        default="residual",
        help="how held-out pixels are hidden: residual, neighbour or mean",
    )
    r.add_argument("--score", default="sure", help="auto's error estimate: sure or held-out")
    sub.add_parser("report")
    args = p.parse_args(argv)
    run(args) if args.cmd == "run" else report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
