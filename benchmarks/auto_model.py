"""``auto`` by its error estimate: Stein's risk under the noise model against held-out
pixels, on held-out training images (where the rule is chosen) and the test cases.

Usage::

    python benchmarks/auto_model.py run --set train [--scores model,held-out] [--cases GLOB]
    python benchmarks/auto_model.py run --set test
    python benchmarks/auto_model.py report
    python benchmarks/auto_model.py run --set train --scores model --tag sweep \\
        --candidates identity,wavelet,wavelet@1.4,tv:fixed,tv:calibrated,nlm,nlm@0.7,\\
nlm@1.4,bm3d:default,bm3d:fast,bm3d:fast@0.7,bm3d:fast@1.4,ttt-mim:no-adapt,meta-tta:no-adapt
    (and the same with ``--tag sweep+eps0.1 --eps 0.1``), then
    python benchmarks/auto_model.py subsets   # candidate sets, from the rows' risks

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

    if args.eps is not None:
        from napari_masked_denoise.methods import fidelity

        fidelity.PROBE_EPS = args.eps
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
    rows = [r for r in read_rows(RAW) if "+" not in r["score"]]  # "+sweep": for subsets
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
    out += [
        "",
        "<details><summary>Every image: estimated against true gain (score model, the "
        "default)</summary>",
        "",
        "| set | case | image | choice | est. gain | true gain | est. - true |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        if r["score"] != "model":
            continue
        true = r["psnr"] - r["noisy_psnr"]
        out.append(
            f"| {r['set']} | {r['case']} | {r['image']} | {r['choice']} "
            f"| {r['estimated_gain_db']:+.2f} | {true:+.2f} | {r['estimated_gain_db'] - true:+.2f} |"
        )
    out += ["", "</details>"]
    update_section(SECTION, "\n".join(out) + "\n")
    print("\n".join(out))


SUBSETS_SECTION = "## Auto: which candidates, and the probe's size"
_BASE = (
    "identity:default",
    "wavelet:default",
    "tv:fixed",
    "tv:calibrated",
    "nlm:default",
    "ttt-mim:no-adapt",
    "meta-tta:no-adapt",
)
SUBSETS = {
    "fast with bm3d:default": (*_BASE, "bm3d:default"),
    "fast with bm3d:fast (the default)": (*_BASE, "bm3d:fast"),
    "+ bm3d:fast at 0.7x and 1.4x": (*_BASE, "bm3d:fast", "bm3d:fast@0.7", "bm3d:fast@1.4"),
    "+ nlm at 0.7x and 1.4x": (*_BASE, "bm3d:fast", "nlm:default@0.7", "nlm:default@1.4"),
    "every candidate (sweeps of wavelet, NLM, BM3D)": None,
}


def subsets(args) -> None:
    """Every candidate set, scored from the risks of the ``sweep`` rows: one auto run
    with all candidates gives each subset's choice (a candidate's risk does not depend
    on the others: one probe for all)."""
    rows = [r for r in read_rows(RAW) if r["score"].startswith("model+sweep")]
    out = [
        SUBSETS_SECTION,
        "",
        "Written by `python benchmarks/auto_model.py subsets` from the `model+sweep` rows of "
        "`auto_model_raw.jsonl` (`run --set train --tag sweep`: 40 held-out Train400 "
        "image-noise pairs, 2 sample crops; probe 0.1: the same with `--eps 0.1`). Each "
        "set's choice is its candidate of least estimated risk, its PSNR that candidate's "
        "run alone. Columns: mean PSNR minus the set's best candidate, share within 0.3 dB "
        "of it, the worst image, and mean minus always-`bm3d:default`.",
        "",
        "| candidates | probe | auto - best of the set | within 0.3 dB | worst "
        "| auto - bm3d:default |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for tag in sorted({r["score"] for r in rows}):
        rs = [r for r in rows if r["score"] == tag]
        for name, cands in SUBSETS.items():
            gap, vs = [], []
            for r in rs:
                s = cands or tuple(r["candidates"])
                losses = {c: r["losses"][c] for c in s if r["losses"].get(c) is not None}
                pick = min(losses, key=losses.get)
                gap.append(r["candidates"][pick] - max(r["candidates"][c] for c in s))
                vs.append(r["candidates"][pick] - r["candidates"]["bm3d:default"])
            gap = np.array(gap)
            probe = "0.1" if "eps0.1" in tag else "0.01"
            out.append(
                f"| {name} | {probe} | {gap.mean():+.2f} | {np.mean(gap >= -0.3):.0%} "
                f"| {gap.min():+.2f} | {np.mean(vs):+.2f} |"
            )
    update_section(SUBSETS_SECTION, "\n".join(out) + "\n")
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
    r.add_argument("--eps", type=float, default=None, help="the probe's size (PROBE_EPS)")
    sub.add_parser("report")
    sub.add_parser("subsets")
    args = p.parse_args(argv)
    {"run": run, "report": report, "subsets": subsets}[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
