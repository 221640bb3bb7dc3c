"""Fidelity of every method's default preset: intensities kept, clean and weakly noisy
images not made worse, no frame at the border.

Images: a 128 x 128 crop of scikit-image's ``camera`` (rows 96-224, columns 160-288, a
textured region: the hard case for a blind noise estimate) and the whole 512 x 512
``camera``; each clean, with Gaussian noise of sigma 2/255, 5/255 and 25/255 and with
Poisson noise at 1000 photons; and a flat two-level background (128 x 128, 0.3 and 0.6)
with noise of 10/255. Every method runs through ``denoise(y, method=..., axes="YX")``
with its defaults. Reported per row: PSNR against the clean image (clipped to [0, 1]),
the mean shift and the RMS change of 32 x 32 block means (% of the clean range), the
RMS error in the outer 4 pixels over that inside (border ratio), and seconds.

Targets (issue 18): clean at 40 dB or more; weak noise (2/255, 5/255, Poisson 1000) not
worse than the input; mean within 0.5%, block means within 1%; border ratio at most 1.5.

Usage::

    python benchmarks/fidelity.py run [--methods tv,nlm,...] [--images crop,full]
    python benchmarks/fidelity.py report
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine, read_rows, update_section  # noqa: E402

RAW = HERE / "fidelity_raw.jsonl"
SECTION = "## Fidelity: every method's default on clean, weakly noisy and flat images"
METHODS = (
    "identity",
    "tv:calibrated",
    "tv:fixed",
    "nlm",
    "wavelet",
    "bm3d",
    "meta-tta",
    "ttt-mim",
    "zero-shot",
    "auto",
)
CASES = ("clean", "g2", "g5", "poisson1000", "g25", "flat")
WEAK = ("g2", "g5", "poisson1000")


def _cases(image: str):
    from skimage import data

    cam = data.camera().astype(np.float64) / 255
    if image == "crop":
        cam = cam[96:224, 160:288]
    rng = np.random.default_rng(0)
    flat = np.full((128, 128), 0.3)
    flat[:, 64:] = 0.6
    yield "clean", cam, cam
    yield "g2", cam, cam + rng.normal(0, 2 / 255, cam.shape)
    yield "g5", cam, cam + rng.normal(0, 5 / 255, cam.shape)
    yield "poisson1000", cam, rng.poisson(cam * 1000) / 1000
    yield "g25", cam, cam + rng.normal(0, 25 / 255, cam.shape)
    if image == "crop":
        yield "flat", flat, flat + rng.normal(0, 10 / 255, flat.shape)


def _psnr(clean, img) -> float:
    mse = float(np.mean((np.clip(img, 0, 1) - clean) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def _blocks(a):
    h, w = (a.shape[0] // 32) * 32, (a.shape[1] // 32) * 32
    return a[:h, :w].reshape(h // 32, 32, w // 32, 32).mean(axis=(1, 3))


def _row(method: str, image: str, case: str, clean, noisy) -> dict:
    from napari_masked_denoise import denoise

    name, _, preset = method.partition(":")
    t = time.perf_counter()
    r = denoise(noisy.astype(np.float32), method=name, preset=preset or None, axes="YX")
    seconds = time.perf_counter() - t
    d = np.asarray(r.denoised, np.float64)
    span = float(clean.max() - clean.min())
    err = (d - clean) ** 2
    border = np.ones(err.shape, bool)
    border[4:-4, 4:-4] = False
    return {
        "method": method,
        "image": image,
        "case": case,
        "input": _psnr(clean, noisy),
        "output": _psnr(clean, d),
        "mean_shift_pct": 100 * abs(d.mean() - clean.mean()) / span,
        "block_pct": 100 * float(np.sqrt(np.mean((_blocks(d) - _blocks(clean)) ** 2))) / span,
        "border_ratio": float(np.sqrt(err[border].mean() / max(err[~border].mean(), 1e-20))),
        "choice": (r.info.get("method_report") or {}).get("choice"),
        "seconds": seconds,
        "machine": machine(),
        "when": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def run(args) -> None:
    warnings.simplefilter("ignore")
    done = {(r["method"], r["image"], r["case"]) for r in read_rows(RAW)}
    for image in args.images.split(","):
        for case, clean, noisy in _cases(image):
            for method in args.methods.split(","):
                if (method, image, case) in done:
                    continue
                row = _row(method, image, case, clean, noisy)
                print(
                    f"{method} {image} {case}: {row['input']:.2f} -> {row['output']:.2f} dB",
                    flush=True,
                )
                with RAW.open("a") as f:
                    f.write(json.dumps(row) + "\n")


def _misses(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        tag = f"{r['case']}" + (" (full)" if r["image"] == "full" else "")
        if r["case"] == "clean" and r["output"] < 40:
            out.append(f"clean{'' if r['image'] == 'crop' else ' (full)'}")
        if r["case"] in WEAK and r["output"] < r["input"] - 0.05:
            out.append(f"{tag} worse")
    if max(r["mean_shift_pct"] for r in rows) > 0.5:
        out.append("mean")
    if max(r["block_pct"] for r in rows) > 1.0:
        out.append("block means")
    if max(r["border_ratio"] for r in rows) > 1.5:
        out.append("border")
    return out


def report(args) -> None:
    rows = read_rows(RAW)
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    cell = {(r["method"], r["image"], r["case"]): r for r in rows}
    cols = [("crop", c) for c in CASES] + [("full", c) for c in CASES if c != "flat"]
    cols = [c for c in cols if any((m, *c) in cell for m in methods)]

    def head(image, case):
        ref = next((cell[(m, image, case)] for m in methods if (m, image, case) in cell), None)
        where = "crop" if image == "crop" else "full"
        inp = "" if ref is None or case == "clean" else f" (in {ref['input']:.2f})"
        return f"{where} {case}{inp}"

    lines = [
        SECTION,
        "",
        f"Written by `python benchmarks/fidelity.py report` from `fidelity_raw.jsonl` "
        f"(`run`, {rows[0]['machine'] if rows else ''}, {rows[-1]['when'][:10] if rows else ''}); "
        "the images, measures and targets are in the script's docstring. PSNR in dB; "
        "`auto` shows its choice. Mean shift, block-mean change (% of the range) and the "
        "border ratio are the largest over the method's rows.",
        "",
        "| method | "
        + " | ".join(head(*c) for c in cols)
        + " | mean % | blocks % | border | s (median) | targets missed |",
        "|---|" + "---:|" * (len(cols) + 4) + "---|",
    ]
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        cells = []
        for c in cols:
            r = cell.get((m, *c))
            if r is None:
                cells.append("")
                continue
            txt = f"{r['output']:.2f}"
            if m == "auto" and r["choice"]:
                txt += f" ({r['choice']})"
            cells.append(txt)
        lines.append(
            f"| {m} | "
            + " | ".join(cells)
            + f" | {max(r['mean_shift_pct'] for r in mine):.3f}"
            + f" | {max(r['block_pct'] for r in mine):.3f}"
            + f" | {max(r['border_ratio'] for r in mine):.2f}"
            + f" | {np.median([r['seconds'] for r in mine]):.1f}"
            + f" | {', '.join(_misses(mine)) or 'none'} |"
        )
    update_section(SECTION, "\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--methods", default=",".join(METHODS))
    r.add_argument("--images", default="crop,full")
    sub.add_parser("report")
    args = p.parse_args(argv)
    (run if args.cmd == "run" else report)(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
