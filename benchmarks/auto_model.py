"""``auto`` by its error estimate: Stein's risk under the noise model against held-out
pixels, on held-out training images (where the rule is chosen) and the test cases.

Usage::

    python benchmarks/auto_model.py run --set train [--scores model,held-out] [--cases GLOB]
    python benchmarks/auto_model.py run --set test
    python benchmarks/auto_model.py report

Images: ``--set train`` is every 20th Train400 image (the first five, 180 x 180, never a
test image) with each noise of the quality benchmark (``quality.NOISES``: Gaussian 15, 25
and 50, Poisson, speckle, salt and pepper, 3x3-correlated, the camera pipeline); ``--set
test`` is the quality benchmark's cases (``quality.cases``). For every image: ``auto``
``fast`` (per-tile, as a single image runs) with each score, its choice, PSNR, estimated
gain and seconds, and every candidate alone (its true PSNR). Rows go to
``auto_model_raw.jsonl``; the report (per case: auto minus the best candidate, the
estimated minus the true gain, images below their input, seconds) into RESULTS.md.
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
from auto import _psnr  # noqa: E402
from quality import DATA, NOISES, _matches, add_noise, cases, reference  # noqa: E402

RAW = HERE / "auto_model_raw.jsonl"
SECTION = "## Auto: Stein's risk under the noise model against held-out pixels"


def _train_cases():
    from skimage import io

    from napari_masked_denoise.training import gray01

    paths = sorted((DATA / "train" / "Train400").glob("*.png"))[::20][:5]
    for k, noise in enumerate(NOISES):
        for j, p in enumerate(paths):
            clean = gray01(io.imread(p)).astype(np.float64)
            noisy = add_noise(clean, noise, seed=70_000 + 1000 * k + j)
            yield (
                f"train-{noise}",
                p.stem,
                reference(clean, noise).astype(np.float32),
                noisy.astype(np.float32),
            )


def run(args) -> None:
    import torch

    from napari_masked_denoise import denoise

    torch.set_num_threads(args.threads)
    from napari_masked_denoise.methods.auto import parse_candidate

    done = {(r["score"], r["case"], r["image"]) for r in read_rows(RAW)}
    kw = dict(axes="YX", device="cpu", mode="per-tile", seed=0)
    for case, image, clean, noisy in _train_cases() if args.set == "train" else cases():
        if not _matches(case, args.cases):
            continue
        tag = f"+{args.tag}" if args.tag else ""
        todo = [s for s in args.scores.split(",") if (s + tag, case, image) not in done]
        if not todo:
            continue
        truth = None
        for score in todo:
            extra = {"candidates": args.candidates} if args.candidates else {}
            t = time.perf_counter()
            res = denoise(noisy.copy(), method="auto", preset="fast", score=score, **extra, **kw)
            seconds = time.perf_counter() - t
            rep = res.info["method_report"]
            if truth is None:
                truth = {}
                for spec in rep["candidates"]:
                    name, preset, opts = parse_candidate(spec)
                    den = denoise(noisy.copy(), method=name, preset=preset, **opts, **kw).denoised
                    truth[spec] = round(_psnr(clean, den), 3)
            row = {
                "set": args.set,
                "score": score + (f"+{args.tag}" if args.tag else ""),
                "losses": {k: v.get("loss") for k, v in rep["scores"].items()},
                "score_used": rep.get("score"),
                "case": case,
                "image": image,
                "choice": rep["choice"],
                "psnr": round(_psnr(clean, res.denoised), 3),
                "noisy_psnr": round(_psnr(clean, noisy), 3),
                "estimated_gain_db": rep.get("estimated_gain_db"),
                "candidates": truth,
                "seconds": round(seconds, 2),
                "machine": machine(),
                "date": time.strftime("%Y-%m-%d %H:%M"),
            }
            with RAW.open("a") as f:
                f.write(json.dumps(row) + "\n")
            best = max(truth.values())
            print(
                f"{case:16s} {image:20s} {score:9s} {row['psnr']:6.2f} ({rep['choice']}) "
                f"best {best:6.2f} est {row['estimated_gain_db']:+.2f} "
                f"true {row['psnr'] - row['noisy_psnr']:+.2f} {seconds:5.1f} s",
                flush=True,
            )


def report(args) -> None:
    rows = read_rows(RAW)
    out = [
        SECTION,
        "",
        "Written by `python benchmarks/auto_model.py report` from `auto_model_raw.jsonl` "
        f"({rows[0]['machine'] if rows else ''}; `run --set train`, then `--set test`); the "
        "images and measures are in the script's docstring. `auto` `fast`, per image: its PSNR "
        "minus the best of its candidates run alone (target: within 0.3 dB), its estimated "
        "minus its true PSNR gain (target: within 1 dB on 90% of images), images below their "
        "input (target: none), and seconds per image (target: about 3 for 256 x 256).",
        "",
        "| set | case | images | score | auto - best (mean / worst) | within 0.3 dB "
        "| est. - true gain (median abs / worst) | within 1 dB | below input | s (median) |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    keys = sorted(
        {(r["set"], r["case"], r["score"]) for r in rows},
        key=lambda k: (k[0] != "train", k[1], k[2]),
    )
    groups = {k: [r for r in rows if (r["set"], r["case"], r["score"]) == k] for k in keys}
    by_score: dict = {}
    for (st, case, score), rs in groups.items():
        by_score.setdefault((st, score), []).extend(rs)
        out.append(_line(st, case, score, rs))
    for (st, score), rs in sorted(by_score.items(), key=lambda kv: (kv[0][0] != "train", kv[0][1])):
        out.append(_line(st, "**all**", score, rs))
    update_section(SECTION, "\n".join(out) + "\n")
    print("\n".join(out))


def _line(st: str, case: str, score: str, rs: list[dict]) -> str:
    gap = np.array([r["psnr"] - max(r["candidates"].values()) for r in rs])
    err = np.array(
        [r["estimated_gain_db"] - (r["psnr"] - r["noisy_psnr"]) for r in rs], dtype=float
    )
    below = sum(r["psnr"] < r["noisy_psnr"] - 0.05 for r in rs)
    worst = err[np.argmax(np.abs(err))]
    return (
        f"| {st} | {case} | {len(rs)} | {score} | {gap.mean():+.2f} / {gap.min():+.2f} "
        f"| {np.mean(gap >= -0.3):.0%} | {np.median(np.abs(err)):.2f} / {worst:+.2f} "
        f"| {np.mean(np.abs(err) <= 1):.0%} | {below} | {np.median([r['seconds'] for r in rs]):.1f} |"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--set", choices=("train", "test"), default="train")
    r.add_argument("--scores", default="model,held-out")
    r.add_argument("--cases", default=None)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--candidates", default=None, help="auto's candidates (default: fast)")
    r.add_argument("--tag", default=None, help="appended to the score's name in the rows")
    sub.add_parser("report")
    args = p.parse_args(argv)
    run(args) if args.cmd == "run" else report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
