"""Denoising quality and time of our methods against the peers a user would otherwise pick.

Usage::

    python benchmarks/quality.py run [--cases GLOB,...] [--methods GLOB,...] [--threads N]
    python benchmarks/quality.py report          # table + plot into benchmarks/RESULTS.md

``run`` appends one JSON line per (case, image, method) to ``benchmarks/quality_raw.jsonl``
and skips rows already there, so the work can be split over processes (``--cases``,
``--methods``) and resumed. ``report`` reads that file only.

Cases (clean images are never training images; noise seeded per image and case):

- ``set12-*`` and ``bsd68-*``: Set12 images 01-03 (256x256) and the central 256x256 of
  BSD68 images test001, test002 (``../shared/data/test``), with Gaussian noise sigma
  15/25/50 (``g15``, ``g25``, ``g50``), Poisson at a peak of 30 photons (``poisson``),
  speckle ``x + x*n`` with n of std 0.2 (``speckle``), salt-and-pepper on 5% of the
  pixels (``sp``), spatially correlated Gaussian noise (white noise of std 25/255
  filtered by a 3x3 box and rescaled to std 25/255, ``corr``), and a camera
  (``camera``: the image taken as a linear scene, ``x ** 2.2``, through
  ``noise.simulate.camera_pipeline``: Poisson-Gaussian noise on an RGGB mosaic, 60
  photons at 1, read noise 0.01, bilinear demosaicking, gamma 2.2, JPEG 90, grey; the
  reference is the same pipeline without noise);
- ``fmd-real``: the four real noisy confocal/two-photon acquisitions with their 50-frame
  averages (``../shared/data/microscopy/fmd_real``), central 256x256;
- ``fmd-gp``: the five FMD confocal images with their synthetic Gaussian-Poisson noise
  (``fmd_confocal_gp``), central 256x256;
- ``ct``: three 256x256 slices of the simulated low-dose CT stack
  (:func:`napari_masked_denoise.samples.lowdose_ct`, 1e3 photons).

Methods: the noisy input; BM3D with a blind sigma (``bm3d`` package, scikit-image's
``estimate_sigma``); ours, BM3D with the noise model (level and power spectrum, the noise
stabilised where its level follows the intensity: ``bm3d`` preset ``default``); ours, TV
with the weight of least risk under the noise model (``tv`` preset ``calibrated``) and
non-local means at the model's level (``nlm``), both keeping the share of their change
the risk estimate picks;
non-local means (``h = 0.8 sigma``, patch 5, distance 6); TV calibrated by J-invariance
(``calibrate_denoiser`` over 12 weights) and at weight 0.1;
wavelet (BayesShrink); ours: zero-shot filling ``fast`` and ``quality`` with the shipped
synthetic-noise weights, ``real-fast`` with the real-noise weights, and the ablation
``fast`` from random initialisation (same iterations; on the first image of every case
only). ``quality`` runs on Set12 g25 and the real fluorescence pairs only, and
``real-fast`` on the spatially correlated and real-noise cases only (the CPU time of this
run is the limit). ``stop`` and ``real-stop`` (held-out early stopping, up to 1000
iterations) against ``fast`` on Set12 g25, fmd-gp and ct, and ``real-stop`` against
``real-fast`` on fmd-real. TTT-MIM: ``no-adapt``, ``fast``, ``quality``, ``safe`` on every case,
the large and small networks on the first image of each. Meta-TTA on every case: the
meta-trained network without adaptation, after 5 head-only steps (``fast``: the
meta-learned step sizes; ``reference``: Adam at 1e-5), and the stage-1 network alone,
without and with the same 5 steps. Masked transformer on every case: the masked-trained
network (``fast``: the attention mask on, one pass; and with it off) and the same network
trained without masking (the baseline). Noise2Void from ``careamics`` (``benchmarks/_n2v.py``:
trained on the one noisy image for 200 batches, about 2 minutes of CPU; on the first image
of every case; skipped with a one-line message where careamics is not installed).

PSNR and SSIM on images clipped to [0, 1], data range 1. Seconds per image: wall time of
the call, in one process with ``--threads`` torch threads (default 1).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import classical_peers, machine, read_rows, update_section  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data"
RAW = HERE / "quality_raw.jsonl"
RESULTS = HERE / "RESULTS.md"
PLOT = HERE / "quality.png"
SECTION = "## Quality against peers"

NOISES = ("g15", "g25", "g50", "poisson", "speckle", "sp", "corr", "camera")
REAL_CASES = ("corr", "fmd-real", "fmd-gp", "ct")
STOP_CASES = ("set12-g25", "fmd-gp", "ct")


# ------------------------------------------------------------------------- the data
def _center(a: np.ndarray, n: int = 256) -> np.ndarray:
    h, w = a.shape
    y, x = max(0, (h - n) // 2), max(0, (w - n) // 2)
    return a[y : y + n, x : x + n]


#: the cases' noise names -> the noise recipes (``napari_masked_denoise.noise.simulate.RECIPES``)
NOISE_RECIPES = {
    "g15": "g15",
    "g25": "g25",
    "g50": "g50",
    "poisson": "poisson30",
    "speckle": "speckle20",
    "sp": "sp5",
    "corr": "corr25-box3",
    "camera": "camera",
}


def add_noise(clean: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """``clean`` with the noise of case ``kind`` (a name of :data:`NOISES`), seeded by ``seed``."""
    from napari_masked_denoise.noise.simulate import RECIPES

    if kind not in NOISE_RECIPES:
        raise ValueError(kind)
    if kind == "camera":  # the scene in linear light; the camera's own gamma undoes it
        return RECIPES["camera"](np.asarray(clean, np.float64) ** 2.2, np.random.default_rng(seed))
    return RECIPES[NOISE_RECIPES[kind]](clean, np.random.default_rng(seed))


def reference(clean: np.ndarray, kind: str) -> np.ndarray:
    """What a perfect denoiser of case ``kind`` returns: the clean image, or for the camera
    the same pipeline without noise (demosaicked, gamma, JPEG)."""
    if kind != "camera":
        return clean
    from napari_masked_denoise.noise.simulate import camera_pipeline

    return camera_pipeline(np.asarray(clean, np.float64) ** 2.2, None)


def cases():
    """Yield ``(case, image, clean, noisy)``, all float32."""
    from skimage import io

    from napari_masked_denoise.training import gray01

    if not DATA.exists():
        sys.exit(f"needs the shared data in {DATA}")
    sources = [("set12", f"{i:02d}", DATA / "test" / "Set12" / f"{i:02d}.png") for i in (1, 2, 3)]
    sources += [("bsd68", n, DATA / "test" / "BSD68" / f"{n}.png") for n in ("test001", "test002")]
    for k, noise in enumerate(NOISES):
        for j, (ds, name, path) in enumerate(sources):
            clean = _center(gray01(io.imread(path)))
            noisy = add_noise(clean, noise, seed=1000 * k + j)
            yield (
                f"{ds}-{noise}",
                name,
                reference(clean, noise).astype(np.float32),
                noisy.astype(np.float32),
            )
    real = DATA / "microscopy" / "fmd_real"
    for p in sorted((real / "raw").glob("*.png")):
        yield (
            "fmd-real",
            p.stem,
            _center(gray01(io.imread(real / "gt" / p.name))),
            _center(gray01(io.imread(p))),
        )
    gp = DATA / "microscopy" / "fmd_confocal_gp"
    for p in sorted((gp / "noisy").glob("*.tif")):
        yield (
            "fmd-gp",
            p.stem,
            _center(gray01(io.imread(gp / "clean" / p.name))),
            _center(gray01(io.imread(p))),
        )
    from napari_masked_denoise.samples import lowdose_ct

    noisy, clean = lowdose_ct(n_slices=3, size=256, seed=7, i0=1e3)
    for z in range(3):
        yield "ct", f"slice{z}", clean[z], noisy[z]


# ---------------------------------------------------------------------- the methods
_LAST: dict = {}  # the method report of the latest of our runs (zero-shot's stopping point)


def methods() -> dict:
    from _n2v import available, noise2void
    from skimage.restoration import denoise_wavelet

    n2v_missing = available()
    if n2v_missing:
        print(n2v_missing, flush=True)

    def ours(method, preset, **options):
        def run(y):
            from napari_masked_denoise import denoise

            r = denoise(
                y,
                method=method,
                preset=preset,
                axes="YX",
                device="cpu",
                mode="per-tile",
                seed=0,
                **options,
            )
            _LAST["report"] = r.info.get("method_report") or {}
            return r.denoised

        return run

    return {
        "noisy input": (lambda y: y, None),
        **{name: (f, None) for name, f in classical_peers().items()},
        "wavelet (BayesShrink)": (lambda y: denoise_wavelet(y, rescale_sigma=True), None),
        "BM3D with the noise model": (ours("bm3d", "default"), None),
        "TV with the noise model": (ours("tv", "calibrated"), None),
        "non-local means with the noise model": (ours("nlm", "default"), None),
        "zero-shot fast": (ours("zero-shot", "fast"), None),
        "zero-shot fast, random init": (ours("zero-shot", "fast", weights="none"), "first"),
        "zero-shot real-fast": (ours("zero-shot", "real-fast"), REAL_CASES),
        "zero-shot quality": (ours("zero-shot", "quality"), ("set12-g25", "fmd-real")),
        "zero-shot stop": (ours("zero-shot", "stop"), STOP_CASES),
        "zero-shot real-stop": (ours("zero-shot", "real-stop"), ("fmd-real",)),
        "TTT-MIM no adaptation": (ours("ttt-mim", "no-adapt"), None),
        **{f"TTT-MIM {p}": (ours("ttt-mim", p), None) for p in ("fast", "quality", "safe")},
        **{
            f"TTT-MIM {p}, {v}": (ours("ttt-mim", p, weights=v), "first")
            for v in TTT_VARIANTS
            for p in ("no-adapt", "fast")
        },
        "meta-TTA no adaptation": (ours("meta-tta", "no-adapt"), None),
        "meta-TTA fast": (ours("meta-tta", "fast"), None),
        "meta-TTA reference": (ours("meta-tta", "reference"), None),
        "meta-TTA stage 1 only": (ours("meta-tta", "no-adapt", weights="meta-tta-stage1"), None),
        "meta-TTA stage 1, 5 steps": (ours("meta-tta", "fast", weights="meta-tta-stage1"), None),
        **(
            {
                N2V: (lambda y: noise2void(y, step_schedule=False), "first"),
                N2V_STEP: (noise2void, "first"),
            }
            if n2v_missing is None
            else {}
        ),
        **(
            {
                "masked transformer": (ours("masked-transformer", "fast"), None),
                "masked transformer, attention mask off": (
                    ours("masked-transformer", "no-attention-mask"),
                    None,
                ),
                "unmasked transformer": (ours("masked-transformer", "unmasked"), None),
            }
            if _shipped("masked-transformer")
            else {}
        ),
    }


def _shipped(name: str) -> bool:
    from napari_masked_denoise.weights import available

    return name in available()


META_PAIRS = (
    ("meta-TTA no adaptation", "meta-TTA fast"),
    ("meta-TTA no adaptation", "meta-TTA reference"),
)


TTT_VARIANTS = ("ttt-mim-large", "ttt-mim-small")
TTT_PAIRS = (
    ("TTT-MIM no adaptation", "TTT-MIM fast"),
    ("TTT-MIM no adaptation", "TTT-MIM quality"),
    ("TTT-MIM no adaptation", "TTT-MIM safe"),
    *((f"TTT-MIM no-adapt, {v}", f"TTT-MIM fast, {v}") for v in TTT_VARIANTS),
)


def _matches(name: str, patterns: str | None) -> bool:
    return not patterns or any(fnmatch.fnmatch(name, p.strip()) for p in patterns.split(","))


def run(args) -> None:
    import torch
    from skimage.metrics import peak_signal_noise_ratio as psnr
    from skimage.metrics import structural_similarity as ssim

    torch.set_num_threads(args.threads)
    done = {(r["case"], r["image"], r["method"]) for r in read_rows(RAW)}
    ms = methods()
    seen_cases = set()
    with RAW.open("a") as out:
        for case, image, clean, noisy in cases():
            if not _matches(case, args.cases):
                continue
            first = case not in seen_cases
            seen_cases.add(case)
            for name, (f, only) in ms.items():
                if not _matches(name, args.methods) or (case, image, name) in done:
                    continue
                if only == "first":
                    if not first:
                        continue
                elif only is not None and not any(
                    case == o or case.endswith("-" + o) for o in only
                ):
                    continue
                t = time.perf_counter()
                den = np.asarray(f(noisy.copy()), dtype=np.float32)
                dt = time.perf_counter() - t
                a, b = np.clip(clean, 0, 1), np.clip(den, 0, 1)
                row = {
                    "case": case,
                    "image": image,
                    "method": name,
                    "psnr": round(float(psnr(a, b, data_range=1)), 3),
                    "ssim": round(float(ssim(a, b, data_range=1)), 4),
                    "seconds": round(dt, 3),
                    "threads": args.threads,
                    "machine": machine(),
                    "date": time.strftime("%Y-%m-%d %H:%M"),
                }
                rep = _LAST.pop("report", {})
                if rep.get("stopped_at"):
                    row["stopped_at"] = int(np.median(rep["stopped_at"]))
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(
                    f"{case:16s} {image:22s} {name:30s} {row['psnr']:6.2f} dB {row['ssim']:.3f} {dt:7.2f} s",
                    flush=True,
                )


# ----------------------------------------------------------------------- the report
def report(args) -> None:
    rows = read_rows(RAW)
    order = list(methods())
    canonical = [f"{d}-{n}" for d in ("set12", "bsd68") for n in NOISES] + [
        "fmd-real",
        "fmd-gp",
        "ct",
    ]
    case_order = sorted(
        {r["case"] for r in rows},
        key=lambda c: canonical.index(c) if c in canonical else len(canonical),
    )
    by = {}
    for r in rows:
        by.setdefault((r["case"], r["method"]), []).append(r)
    # ablations have their own tables below
    present = [
        m
        for m in order
        if any(k[1] == m for k in by)
        and m
        not in (
            "zero-shot fast, random init",
            "meta-TTA stage 1, 5 steps",
            "masked transformer, attention mask off",
            "zero-shot stop",
            "zero-shot real-stop",
            N2V,
            N2V_STEP,
        )
        and not any(v in m for v in TTT_VARIANTS)
    ]

    def cell(case, m, key="psnr"):
        rs = by.get((case, m))
        return None if not rs else float(np.mean([r[key] for r in rs]))

    head = "| case | " + " | ".join(present) + " |"
    lines = [head, "|---|" + "---:|" * len(present)]
    for c in case_order:
        vals = [cell(c, m) for m in present]
        best = max(v for v, m in zip(vals, present) if v is not None and m != "noisy input")
        fmt = [
            ("" if v is None else (f"**{v:.2f}**" if abs(v - best) < 5e-3 else f"{v:.2f}"))
            for v in vals
        ]
        lines.append(f"| {c} | " + " | ".join(fmt) + " |")
    full = [m for m in present if all(cell(c, m) is not None for c in case_order)]
    lines.append(
        "| **mean over all cases** | "
        + " | ".join(
            f"{np.mean([cell(c, m) for c in case_order]):.2f}" if m in full else "" for m in present
        )
        + " |"
    )
    lines.append(
        "| mean SSIM | "
        + " | ".join(
            f"{np.mean([cell(c, m, 'ssim') for c in case_order]):.3f}" if m in full else ""
            for m in present
        )
        + " |"
    )
    med_t = {m: float(np.median([r["seconds"] for r in rows if r["method"] == m])) for m in present}
    lines.append("| median s / image | " + " | ".join(f"{med_t[m]:.2f}" for m in present) + " |")
    table = "\n".join(lines)

    # the ablation: pretrained against random initialisation, same iterations, per case
    abl = [
        "| case (first image) | fast (pretrained) | fast (random init) | difference dB |",
        "|---|---:|---:|---:|",
    ]
    wins = 0
    for c in case_order:
        rnd = by.get((c, "zero-shot fast, random init"))
        if not rnd:
            continue
        img = rnd[0]["image"]
        pre = [r for r in by.get((c, "zero-shot fast"), []) if r["image"] == img]
        if not pre:
            continue
        a, b = pre[0]["psnr"], rnd[0]["psnr"]
        wins += a > b
        abl.append(f"| {c} | {a:.2f} | {b:.2f} | {a - b:+.2f} |")
    n_abl = len(abl) - 2

    # the targets
    t = []
    q, bm = cell("set12-g25", "zero-shot quality"), cell("set12-g25", "BM3D (blind sigma)")
    if q is not None and bm is not None:
        t.append(
            f"- `quality` on Set12 sigma 25 (images 01-03): {q:.2f} dB against BM3D {bm:.2f} dB "
            f"({q - bm:+.2f} dB; target: at least BM3D)."
        )
    for m in ("zero-shot quality", "zero-shot real-fast", "zero-shot fast"):
        v, bm = cell("fmd-real", m), cell("fmd-real", "BM3D (blind sigma)")
        if v is not None and bm is not None:
            t.append(
                f"- {m} on the real fluorescence pairs: {v:.2f} dB against BM3D {bm:.2f} dB ({v - bm:+.2f} dB)."
            )
    fast_t = [
        r["seconds"]
        for r in rows
        if r["method"] == "zero-shot fast" and r["case"] in ("set12-g25", "fmd-real")
    ]
    qual_t = [r["seconds"] for r in rows if r["method"] == "zero-shot quality"]
    if fast_t and qual_t:
        f, qq = cell("set12-g25", "zero-shot fast"), cell("set12-g25", "zero-shot quality")
        t.append(
            f"- `fast` against `quality` (Set12 g25 and fmd-real): {np.median(qual_t) / np.median(fast_t):.1f}x "
            f"faster (median s / image {np.median(fast_t):.1f} against {np.median(qual_t):.1f}); on Set12 g25 "
            f"{f:.2f} against {qq:.2f} dB ({f - qq:+.2f} dB). Target: at least 10x faster, within 1 dB."
        )
    if n_abl:
        t.append(
            f"- pretrained beats random initialisation at equal iterations in {wins} of {n_abl} cases."
        )

    ttt_text = (
        _ttt_report(by, case_order, present, cell, rows)
        + "\n"
        + _meta_report(by, case_order, rows)
        + "\n"
        + _mit_report(case_order, cell, rows)
        + "\n"
        + _stop_report(by, case_order)
        + "\n"
        + _n2v_report(by, case_order)
    )
    _plot(rows, present, case_order, cell, med_t)
    threads = sorted({r["threads"] for r in rows})
    machine = rows[0]["machine"]
    import torch

    text = (
        f"{SECTION}\n\n"
        f"Measured with `python benchmarks/quality.py run` (split over processes with `--cases`/`--methods`, "
        f"{'/'.join(map(str, threads))} torch thread(s) each), then `python benchmarks/quality.py report`; "
        f"{rows[0]['date']} to {rows[-1]['date']}; machine: {machine}, torch {torch.__version__}. Raw rows: "
        f"`benchmarks/quality_raw.jsonl`. Cases and methods are described in the script's docstring. "
        f"Mean PSNR (dB) per case over its images; bold: the best denoiser of the row.\n\n"
        f"{table}\n\n![PSNR against time]({PLOT.name})\n\n"
        "### Targets\n\n" + "\n".join(t) + "\n\n"
        "### Ablation: masked pre-training against random initialisation (`fast`, 200 iterations)\n\n"
        + "\n".join(abl)
        + "\n\n"
        + ttt_text
    )
    _update(text)
    print(text)


def _ttt_report(by, case_order, present, cell, rows) -> str:
    """TTT-MIM against its own network without adaptation, and the share of the gap closed."""
    out = [
        "### TTT-MIM: adaptation against no adaptation (trained on Gaussian noise of variance 0.005)",
        "",
        "Gap closed = (TTT - no adaptation) / (best other method of the row - no adaptation), as the "
        "paper reports it, where the best other method is the best of the main table's methods other "
        "than TTT-MIM (only when that best is above no adaptation). Every case is a shift from the "
        "training noise (Gaussian sigma 18/255).",
        "",
    ]
    others = [m for m in present if not m.startswith("TTT-MIM") and m != "noisy input"]
    for base, ttt in TTT_PAIRS:
        if not any(cell(c, ttt) is not None for c in case_order):
            continue
        out += [
            f"**{ttt}** against **{base}**:",
            "",
            "| case | no adaptation | TTT | difference dB | best other (method) | gap closed |",
            "|---|---:|---:|---:|---|---:|",
        ]
        diffs, gaps = [], []
        for c in case_order:
            # every value of a row over the same images: those the TTT method ran on
            imgs = {r["image"] for r in by.get((c, ttt), [])}

            def on(m, c=c, imgs=imgs):
                rs = [r["psnr"] for r in by.get((c, m), []) if r["image"] in imgs]
                return float(np.mean(rs)) if rs and len(rs) == len(imgs) else None

            a, b = on(base), on(ttt)
            if a is None or b is None:
                continue
            vals = {m: v for m in others if (v := on(m)) is not None}
            best_m = max(vals, key=vals.get)
            gap = ""
            if vals[best_m] > a + 1e-6:
                g = (b - a) / (vals[best_m] - a)
                gaps.append(g)
                gap = f"{100 * g:.0f}%"
            diffs.append(b - a)
            out.append(
                f"| {c} | {a:.2f} | {b:.2f} | {b - a:+.2f} | {vals[best_m]:.2f} ({best_m}) | {gap} |"
            )
        med = lambda m: float(np.median([r["seconds"] for r in rows if r["method"] == m]))  # noqa: E731
        out += [
            "",
            f"Improves in {sum(d > 0 for d in diffs)} of {len(diffs)} cases; worst difference "
            f"{min(diffs):+.2f} dB; mean {np.mean(diffs):+.2f} dB; median gap closed "
            f"{100 * np.median(gaps):.0f}% (mean {100 * np.mean(gaps):.0f}%) over the {len(gaps)} cases "
            "with a gap. "
            f"Median seconds per image: {med(base):.2f} without, {med(ttt):.2f} with adaptation.",
            "",
        ]
    # the size trade-off: the two shipped networks, same training time
    from napari_masked_denoise.weights import manifest

    size = [
        "| network | parameters | training (one CPU thread) | mean PSNR no adaptation | "
        "mean PSNR 8 steps | median s / image, 8 steps |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    pairs = {(r["case"], r["image"]) for r in rows if r["method"] == TTT_PAIRS[3][1]}
    cs = sorted({c for c, _ in pairs})
    for name, (base, ttt) in (("ttt-mim", TTT_PAIRS[0]), *zip(TTT_VARIANTS, TTT_PAIRS[3:])):
        sel = {
            m: [r for r in rows if r["method"] == m and (r["case"], r["image"]) in pairs]
            for m in (base, ttt)
        }
        if not sel[base] or not sel[ttt]:
            continue
        e = manifest(name)
        size.append(
            f"| `{name}` {tuple(e['architecture']['widths'])} | {e['architecture']['parameters']:,} | "
            f"{e['iterations']} in {e['max_seconds']:.0f} s | {np.mean([r['psnr'] for r in sel[base]]):.2f} | "
            f"{np.mean([r['psnr'] for r in sel[ttt]]):.2f} | "
            f"{np.median([r['seconds'] for r in sel[ttt]]):.2f} |"
        )
    if len(size) > 3:
        out += [
            "**Network size** (trained by the same command on one CPU thread each, the budget in the "
            f"table; means over the same {len(pairs)} images, the first of each of the {len(cs)} "
            "cases):",
            "",
            *size,
            "",
        ]
    return "\n".join(out)


def _meta_report(by, case_order, rows) -> str:
    """Meta-TTA after against before adaptation on every case, and the issue's targets."""
    out = [
        "### Meta-TTA: after against before adaptation",
        "",
        "Head-only adaptation (5 steps) of the meta-trained network, against the same network without "
        "adaptation; and stage 2 (meta-transfer on realistic noise) against the stage-1 network alone.",
        "",
        "| case | stage 1 only | stage 1, 5 steps | no adaptation | fast | difference dB | reference "
        "| difference dB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    diffs = {p[1]: {} for p in META_PAIRS}
    for c in case_order:

        def mean(m, c=c):
            rs = by.get((c, m))
            return None if not rs else float(np.mean([r["psnr"] for r in rs]))

        s1, s1a = mean("meta-TTA stage 1 only"), mean("meta-TTA stage 1, 5 steps")
        base = mean("meta-TTA no adaptation")
        if base is None:
            continue
        cells = [f"{v:.2f}" if v is not None else "" for v in (s1, s1a)] + [f"{base:.2f}"]
        for _, m in META_PAIRS:
            v = mean(m)
            if v is None:
                cells += ["", ""]
                continue
            diffs[m][c] = v - base
            cells += [f"{v:.2f}", f"{v - base:+.3f}"]
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    if len(out) == 6:
        return ""
    med = lambda m: float(np.median([r["seconds"] for r in rows if r["method"] == m]))  # noqa: E731
    out.append("")
    for _, m in META_PAIRS:
        d = diffs[m]
        if not d:
            continue
        real = {c: d[c] for c in ("fmd-real", "fmd-gp", "ct") if c in d}
        out.append(
            f"- **{m}**: improves in {sum(v > 0 for v in d.values())} of {len(d)} cases; worst "
            f"{min(d.values()):+.3f} dB ({min(d, key=d.get)}); mean {np.mean(list(d.values())):+.3f} dB; "
            "real fluorescence and CT: "
            + ", ".join(f"{c} {v:+.3f}" for c, v in real.items())
            + f". Median s / image {med(m):.2f} (no adaptation {med('meta-TTA no adaptation'):.2f})."
        )
    for _, m in META_PAIRS:
        d = diffs[m]
        if d and all(c in d for c in ("fmd-real", "ct")):
            improves = d["fmd-real"] > 0 and d["ct"] > 0
            safe = min(d.values()) >= -0.1
            out.append(
                f"- Targets for **{m}** (improves `fmd-real` and `ct`; never more than 0.1 dB worse): "
                f"improves real/CT {'met' if improves else 'NOT met'}; never worse than -0.1 dB "
                f"{'met' if safe else 'NOT met'}."
            )
    return "\n".join(out) + "\n"


MIT_ROWS = ("masked transformer", "masked transformer, attention mask off", "unmasked transformer")


def _mit_report(case_order, cell, rows) -> str:
    """Masked against unmasked training of the same transformer, same budget; the target."""
    base = "unmasked transformer"
    if not any(cell(c, base) is not None for c in case_order):
        return ""
    out = [
        "### Masked image training: masked against unmasked training",
        "",
        "The same Swin network trained on Gaussian noise of sigma 15 only, with the input and attention "
        "masks and without (same iterations, batch and seed). Out-of-distribution: every case whose noise "
        "is not Gaussian sigma 15.",
        "",
        "| case | " + " | ".join(MIT_ROWS) + " | masked - unmasked dB |",
        "|---|" + "---:|" * (len(MIT_ROWS) + 1),
    ]
    diffs = {}
    for c in case_order:
        vals = [cell(c, m) for m in MIT_ROWS]
        if vals[0] is None or vals[2] is None:
            continue
        diffs[c] = vals[0] - vals[2]
        out.append(
            f"| {c} | "
            + " | ".join("" if v is None else f"{v:.2f}" for v in vals)
            + f" | {diffs[c]:+.2f} |"
        )
    ood = {c: d for c, d in diffs.items() if not c.endswith("-g15")}
    med = lambda m: float(np.median([r["seconds"] for r in rows if r["method"] == m] or [np.nan]))  # noqa: E731
    out += [
        "",
        f"- Out-of-distribution mean, masked minus unmasked: {np.mean(list(ood.values())):+.2f} dB over "
        f"{len(ood)} cases (target: at least +1 dB; "
        f"{'met' if np.mean(list(ood.values())) >= 1 else 'NOT met'}); "
        "in distribution (g15): "
        + ", ".join(f"{c} {d:+.2f}" for c, d in diffs.items() if c.endswith("-g15"))
        + ".",
        "- Median s / image: " + ", ".join(f"{m} {med(m):.2f}" for m in MIT_ROWS) + ".",
    ]
    return "\n".join(out) + "\n"


N2V = "Noise2Void (careamics)"
N2V_STEP = "Noise2Void (careamics, step schedule)"
N2V_PEERS = ("noisy input", "BM3D with the noise model", "TV (weight 0.1)", "NLM", "TTT-MIM fast")


def _n2v_report(by, case_order) -> str:
    """Noise2Void against peers on the images it ran on (the first of each case)."""
    cases = [c for c in case_order if (c, N2V) in by]
    if not cases:
        return ""
    head = "| case | image | " + " | ".join((N2V, N2V_STEP, *N2V_PEERS)) + " | N2V seconds |"
    lines = [
        "### Noise2Void (careamics), the peer trained on the image itself",
        "",
        "The first image of each case (Noise2Void's rows are on those only); PSNR dB. "
        "Noise2Void with careamics' defaults, and with a step schedule and 2 validation "
        "patches (`benchmarks/_n2v.py`; its rows may cover fewer cases).",
        "",
        head,
        "|---|---|" + "---:|" * (len(N2V_PEERS) + 3),
    ]
    for c in cases:
        r = by[(c, N2V)][0]
        vals = []
        for m in (N2V, N2V_STEP, *N2V_PEERS):
            same = [x for x in by.get((c, m), []) if x["image"] == r["image"]]
            vals.append(f"{same[0]['psnr']:.2f}" if same else "")
        lines.append(f"| {c} | {r['image']} | " + " | ".join(vals) + f" | {r['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def _stop_report(by, case_order) -> str:
    """Zero-shot filling with a fixed iteration count against held-out early stopping."""
    lines = [
        "### Zero-shot filling: held-out early stopping against a fixed iteration count",
        "",
        "`stop`/`real-stop`: up to 1000 iterations, the output of the iteration with the lowest "
        "held-out loss (3% of the pixels, never shown to the network, never a target), stopping "
        "50 iterations after the last improvement. Same images, paired. The seconds come from "
        "different runs (the fixed rows from the full run, the stopped rows from a later one that "
        "shared the 2 cores with other benchmarks): they are not a speed comparison.",
        "",
        "| case | images | fixed (200) dB | stopped dB | difference | stopped at (median it.) "
        "| s / image fixed | s / image stopped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    diffs = []
    for fixed, stop in (
        ("zero-shot fast", "zero-shot stop"),
        ("zero-shot real-fast", "zero-shot real-stop"),
    ):
        for c in case_order:
            st = {r["image"]: r for r in by.get((c, stop), [])}
            fx = {r["image"]: r for r in by.get((c, fixed), []) if r["image"] in st}
            if not fx:
                continue
            a = np.mean([fx[i]["psnr"] for i in fx])
            b = np.mean([st[i]["psnr"] for i in fx])
            diffs += [st[i]["psnr"] - fx[i]["psnr"] for i in fx]
            its = [st[i].get("stopped_at") for i in fx if st[i].get("stopped_at") is not None]
            it = f"{int(np.median(its))}" if its else ""
            lines.append(
                f"| {c} ({stop.split()[-1]}) | {len(fx)} | {a:.2f} | {b:.2f} | {b - a:+.2f} | {it} "
                f"| {np.median([fx[i]['seconds'] for i in fx]):.1f} "
                f"| {np.median([st[i]['seconds'] for i in fx]):.1f} |"
            )
    if diffs:
        lines += [
            "",
            f"Per image: stopping better in {sum(d > 0 for d in diffs)} of {len(diffs)}, "
            f"median difference {np.median(diffs):+.2f} dB, worst {min(diffs):+.2f} dB.",
        ]
    return "\n".join(lines) + "\n"


def _plot(rows, present, case_order, cell, med_t) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in present:
        vals = [cell(c, m) for c in case_order if cell(c, m) is not None]
        if m == "noisy input":
            continue
        ax.scatter(max(med_t[m], 1e-3), np.mean(vals), s=40)
        ax.annotate(
            f"{m} ({len(vals)} cases)",
            (max(med_t[m], 1e-3), np.mean(vals)),
            fontsize=7,
            xytext=(4, 2),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_xlabel("median seconds per 256x256 image (CPU)")
    ax.set_ylabel("mean PSNR over the cases it ran on (dB)")
    ax.set_title("quality against time (methods marked with fewer cases ran on a subset)")
    fig.tight_layout()
    fig.savefig(HERE / PLOT.name, dpi=110)


def _update(text: str) -> None:
    update_section(SECTION, text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--cases", default=None, help="comma-separated globs, e.g. 'set12-*,fmd-real'")
    r.add_argument(
        "--methods", default=None, help="comma-separated globs, e.g. 'BM3D*,zero-shot fast'"
    )
    r.add_argument("--threads", type=int, default=1)
    sub.add_parser("report")
    args = p.parse_args(argv)
    run(args) if args.cmd == "run" else report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
