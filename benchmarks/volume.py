"""Volume throughput, peak memory and PSNR of ``masked-denoise run`` (the CLI).

For each size (a number of 512 x 512 slices) the script

1. writes a clean and a noisy synthetic fluorescence-like volume into zarr v3 arrays
   under a work folder, slab by slab (8 slices at a time, each slab with its own
   deterministic seed), never holding a whole volume in memory;
2. runs ``python -m napari_masked_denoise.cli run NOISY OUT --axes ZYX ...`` as a
   subprocess of a small wrapper process, which reports the peak resident memory of
   the CLI process (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` in the wrapper,
   so every size is measured in a fresh process tree); the wall time is measured
   around the CLI;
3. computes the PSNR of the noisy input and of the denoised output against the clean
   volume slab by slab (both clipped to [0, 1], data range 1), and the true noise std;
4. prints a markdown table and writes it, with the command and the machine, into the
   section ``## Volume throughput and memory (CLI)`` of ``benchmarks/RESULTS.md``.

The clean signal: smoothed random puncta and larger blobs (points drawn per slice from
``seed`` and the slice index, filtered by a 3-D Gaussian with a halo of slices, so every
slab is exactly the crop of the filtered whole volume), on a background of 0.05 that is
modulated by a slow 3-D sinusoid; values in [0, 1]. Noise: Poisson-Gaussian with a
peak of 30 photons and read noise 0.02 (as :mod:`napari_masked_denoise.samples`).

Usage::

    python benchmarks/volume.py --quick                 # 8 x 128 x 128 smoke run
    python benchmarks/volume.py                         # 64 and 512 slices of 512 x 512
    python benchmarks/volume.py --sizes 64 --no-results # one size, do not touch RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
sys.path.insert(0, str(HERE))
from _common import update_section  # noqa: E402

from napari_masked_denoise.engine.store import output_array  # noqa: E402

SECTION = "## Volume throughput and memory (CLI)"

SLAB = 8  # slices generated / evaluated at a time
PEAK = 30.0  # photons at intensity 1
SIGMA_READ = 0.02
BACKGROUND = 0.05
# (points per voxel, Gaussian sigma in Y and X (Z: 0.6 x), weight of the peak)
COMPONENTS = ((3e-4, 1.5, 0.9), (2e-5, 5.0, 0.7))
TRUNCATE = 4.0

# The wrapper: runs the CLI as its only child and reports that child's peak RSS.
WRAPPER = r"""
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
p = subprocess.run(sys.argv[2:], capture_output=True, text=True)
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    json.dump({"rc": p.returncode, "wall_s": wall, "maxrss_kib": ru.ru_maxrss,
               "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
               "stdout": p.stdout, "stderr": p.stderr[-4000:]}, f)
"""


# --------------------------------------------------------------------------- the data
def _points(z: int, ny: int, nx: int, density: float, comp: int, seed: int) -> np.ndarray:
    """The random points of slice ``z`` of one component: ``(y, x, amplitude)``."""
    rng = np.random.default_rng([seed, 7, comp, z])
    n = rng.poisson(density * ny * nx)
    return rng.integers(0, ny, n), rng.integers(0, nx, n), rng.uniform(0.4, 1.0, n)


def clean_slab(z0: int, z1: int, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Slices ``z0:z1`` of the clean volume, float32 in [0, 1].

    Exactly the crop of the whole-volume computation: the Gaussian filter sees the
    points of ``ceil(TRUNCATE * sigma_z)`` slices on either side (zeros beyond the
    volume, as the whole-volume filter with ``mode="constant"`` would).
    """
    from scipy.ndimage import gaussian_filter

    nz, ny, nx = shape
    out = np.zeros((z1 - z0, ny, nx), dtype=np.float32)
    for comp, (density, sig, weight) in enumerate(COMPONENTS):
        sz = 0.6 * sig
        halo = int(math.ceil(TRUNCATE * sz))
        lo, hi = max(0, z0 - halo), min(nz, z1 + halo)
        pts = np.zeros((hi - lo, ny, nx), dtype=np.float32)
        for z in range(lo, hi):
            y, x, a = _points(z, ny, nx, density, comp, seed)
            np.add.at(pts[z - lo], (y, x), a.astype(np.float32))
        f = gaussian_filter(pts, (sz, sig, sig), mode="constant", truncate=TRUNCATE)
        # a lone point of amplitude a peaks at a / ((2 pi)^1.5 sz sig sig)
        f *= weight * (2 * math.pi) ** 1.5 * sz * sig * sig
        out += f[z0 - lo : z1 - lo]
    zz = np.arange(z0, z1, dtype=np.float32)[:, None, None] / max(nz, 1)
    yy = np.arange(ny, dtype=np.float32)[None, :, None] / ny
    xx = np.arange(nx, dtype=np.float32)[None, None, :] / nx
    bg = BACKGROUND * (1.0 + 0.5 * np.sin(2 * np.pi * (zz + 0.7 * yy)) * np.cos(2 * np.pi * xx))
    return np.clip(out + bg, 0.0, 1.0).astype(np.float32)


def noisy_slab(clean: np.ndarray, z0: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 11, z0])
    noisy = rng.poisson(clean.astype(np.float64) * PEAK) / PEAK
    noisy += rng.normal(0.0, SIGMA_READ, clean.shape)
    return noisy.astype(np.float32)


def write_volume(folder: Path, shape, seed: int, chunks) -> tuple[Path, Path, float]:
    """Write ``clean.zarr`` and ``noisy.zarr``; return their paths and the seconds taken."""
    import zarr

    t0 = time.perf_counter()
    paths = folder / "clean.zarr", folder / "noisy.zarr"
    arrs = [
        zarr.create_array(
            store=str(p),
            shape=shape,
            chunks=chunks,
            dtype="float32",
            dimension_names=("z", "y", "x"),
            overwrite=True,
        )
        for p in paths
    ]
    for z0 in range(0, shape[0], SLAB):
        z1 = min(shape[0], z0 + SLAB)
        c = clean_slab(z0, z1, shape, seed)
        arrs[0][z0:z1] = c
        arrs[1][z0:z1] = noisy_slab(c, z0, seed)
    return paths[0], paths[1], time.perf_counter() - t0


def psnr_slabwise(clean_path: Path, noisy_path: Path, denoised) -> dict:
    """PSNR (data range 1, both clipped to [0, 1]) of the noisy and the denoised volume."""
    import zarr

    clean = zarr.open_array(str(clean_path), mode="r")
    noisy = zarr.open_array(str(noisy_path), mode="r")
    sse_n = sse_d = sum_r = sum_r2 = 0.0
    n = 0
    for z0 in range(0, clean.shape[0], SLAB):
        z1 = min(clean.shape[0], z0 + SLAB)
        c = np.asarray(clean[z0:z1], dtype=np.float64)
        x = np.asarray(noisy[z0:z1], dtype=np.float64)
        d = np.asarray(denoised[z0:z1], dtype=np.float64)
        sse_n += float(((np.clip(x, 0, 1) - c) ** 2).sum())
        sse_d += float(((np.clip(d, 0, 1) - c) ** 2).sum())
        r = x - c
        sum_r += float(r.sum())
        sum_r2 += float((r * r).sum())
        n += c.size

    def psnr(sse: float) -> float:
        return 10.0 * math.log10(1.0 / max(sse / n, 1e-20))

    return {
        "psnr_noisy": psnr(sse_n),
        "psnr_denoised": psnr(sse_d),
        "noise_std": math.sqrt(max(sum_r2 / n - (sum_r / n) ** 2, 0.0)),
    }


# --------------------------------------------------------------------------- the run
def cli_command(inp: Path, out: Path, args) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "napari_masked_denoise.cli",
        "run",
        str(inp),
        str(out),
        "--method",
        args.method,
        "--preset",
        args.preset,
        "--axes",
        "ZYX",
        "--device",
        "cpu",
        "--overwrite",
        "--quiet",
    ]
    if args.tile:
        cmd += ["--tile", str(args.tile)]
    if args.mode:
        cmd += ["--mode", args.mode]
    for opt in args.option:
        cmd += ["--option", opt]
    return cmd


def run_cli(cmd: list[str], folder: Path) -> dict:
    report = folder / "wrapper.json"
    subprocess.run([sys.executable, "-c", WRAPPER, str(report), *cmd], check=True)
    res = json.loads(report.read_text())
    if res["rc"] != 0:
        raise RuntimeError(f"the CLI failed (rc {res['rc']}):\n{res['stdout']}\n{res['stderr']}")
    m = re.search(r"^sigma\s+(\S+)", res["stdout"], re.M)
    res["sigma"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"^time\s+(\S+) s\s+\((\S+) Mvoxel/s\)", res["stdout"], re.M)
    res["cli_s"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"\((\w[\w-]*) mode, ([^,]+), (\d+) tiles", res["stdout"])
    res["mode"], res["tiles"] = (m.group(1), int(m.group(3))) if m else ("?", 0)
    return res


def bench_size(n_slices: int, yx: int, args, work: Path) -> dict:
    import zarr

    shape = (n_slices, yx, yx)
    folder = work / f"z{n_slices}_{yx}"
    folder.mkdir(parents=True, exist_ok=True)
    chunks = (SLAB, min(args.chunk, yx), min(args.chunk, yx))
    print(f"[{n_slices}x{yx}x{yx}] writing the volume ...", flush=True)
    clean_p, noisy_p, gen_s = write_volume(folder, shape, args.seed, chunks)
    out = folder / "denoised.zarr"
    cmd = cli_command(noisy_p, out, args)
    print(f"[{n_slices}x{yx}x{yx}] generated in {gen_s:.1f} s; running the CLI ...", flush=True)
    res = run_cli(cmd, folder)
    print(res["stdout"].rstrip(), flush=True)
    group = zarr.open_group(str(out), mode="r")
    q = psnr_slabwise(clean_p, noisy_p, output_array(group, "denoised"))
    vox = float(np.prod(shape))
    row = {
        "shape": shape,
        "mvox": vox / 1e6,
        "wall_s": res["wall_s"],
        "cli_s": res["cli_s"],
        "mvox_s": vox / 1e6 / res["wall_s"],
        "rss_mib": res["maxrss_kib"] / 1024.0,
        "cpu_s": res["user_s"] + res["sys_s"],
        "sigma": res["sigma"],
        "mode": res["mode"],
        "tiles": res["tiles"],
        "gen_s": gen_s,
        "cmd": cmd,
        **q,
    }
    print(
        f"[{n_slices}x{yx}x{yx}] {row['wall_s']:.1f} s, {row['mvox_s']:.3f} Mvoxel/s, "
        f"peak RSS {row['rss_mib']:.0f} MiB, PSNR {q['psnr_noisy']:.2f} -> {q['psnr_denoised']:.2f} dB",
        flush=True,
    )
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return row


# --------------------------------------------------------------------------- reporting
def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = float("nan")
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        ram = kib / 1024**2
    except (OSError, AttributeError):
        pass
    try:
        import torch

        tv = f"{torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        tv = "not installed"
    from napari_masked_denoise import __version__

    return {
        "nproc": os.cpu_count(),
        "ram_gib": ram,
        "cpu": cpu,
        "torch": tv,
        "python": platform.python_version(),
        "package": __version__,
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    }


def table(rows: list[dict]) -> str:
    head = (
        "| volume (ZYX) | Mvoxel | mode, tiles | wall s | Mvoxel/s | peak RSS MiB "
        "| PSNR noisy dB | PSNR denoised dB | gain dB | sigma (CLI) | true noise std |\n"
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = [
        f"| {'x'.join(map(str, r['shape']))} | {r['mvox']:.1f} | {r['mode']}, {r['tiles']} "
        f"| {r['wall_s']:.1f} | {r['mvox_s']:.3f} | {r['rss_mib']:.0f} "
        f"| {r['psnr_noisy']:.2f} | {r['psnr_denoised']:.2f} "
        f"| {r['psnr_denoised'] - r['psnr_noisy']:+.2f} | {r['sigma']:.4f} | {r['noise_std']:.4f} |"
        for r in rows
    ]
    return head + "\n".join(lines) + "\n"


def section(rows: list[dict], argv: list[str], m: dict, args) -> str:
    bench_cmd = "python benchmarks/volume.py " + " ".join(shlex.quote(a) for a in argv)
    cli = rows[0]["cmd"]
    cli_str = " ".join(
        ["masked-denoise", *[shlex.quote(a) for a in cli[3:]]]  # drop "python -m <module>"
    )
    cli_str = re.sub(r"\S*/noisy\.zarr", "NOISY.zarr", cli_str)
    cli_str = re.sub(r"\S*/denoised\.zarr", "OUT.zarr", cli_str)
    note = ""
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        note = (
            f"\nFrom {a['mvox']:.0f} to {b['mvox']:.0f} Mvoxel ({b['mvox'] / a['mvox']:.0f}x) the peak "
            f"RSS went from {a['rss_mib']:.0f} to {b['rss_mib']:.0f} MiB "
            f"({b['rss_mib'] / a['rss_mib']:.2f}x).\n"
        )
    title = f"{SECTION}: {args.label}" if args.label else SECTION
    return (
        f"{title}\n\n"
        f"Measured with `{bench_cmd}` ({m['date']}).\n\n"
        f"- CLI, per size: `{cli_str}`\n"
        f"- machine: {m['nproc']} CPU cores ({m['cpu']}), {m['ram_gib']:.1f} GiB RAM, "
        f"torch {m['torch']}, Python {m['python']}, napari-masked-denoise {m['package']}\n"
        f"- input: synthetic fluorescence-like volume (smoothed puncta and blobs on a modulated "
        f"background, in [0, 1]) with Poisson-Gaussian noise (peak {PEAK:g} photons, read noise "
        f"{SIGMA_READ:g}), float32 zarr v3, chunks {SLAB}x{args.chunk}x{args.chunk}, seed {args.seed}; "
        f"written and evaluated slab by slab\n"
        f"- wall s: the CLI process from start to exit (Python and torch start-up, adaptation, "
        f"all tiles); Mvoxel/s = voxels / wall s\n"
        f"- peak RSS: `ru_maxrss` of the CLI process (`getrusage(RUSAGE_CHILDREN)` in a fresh "
        f"wrapper process per size)\n"
        f"- PSNR: against the clean volume, both clipped to [0, 1], data range 1; sigma (CLI): the "
        f"noise sigma the CLI prints; true noise std: std of noisy - clean\n\n"
        f"{table(rows)}{note}"
    )


def update_results(text: str, path: Path = RESULTS) -> None:
    """Replace (or append) our section of RESULTS.md, leaving the others untouched."""
    update_section(text.splitlines()[0], text, path)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--sizes", default="64,512", help="numbers of slices, comma-separated (default 64,512)"
    )
    p.add_argument("--yx", type=int, default=512, help="slice size in Y and X (default 512)")
    p.add_argument("--method", default="zero-shot")
    p.add_argument("--preset", default="fast")
    p.add_argument("--mode", choices=("once", "per-tile"), default=None, help="default: the CLI's")
    p.add_argument(
        "--tile", type=int, default=None, help="default: the method's (256; meta-tta 512)"
    )
    p.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method option passed to the CLI (repeatable)",
    )
    p.add_argument(
        "--chunk", type=int, default=256, help="input chunk size in Y and X (default 256)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None, help="where the volumes go (default: a temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the volumes and outputs")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 8 x 128 x 128, RESULTS.md untouched"
    )
    p.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    p.add_argument(
        "--label",
        default="",
        help="suffix of the RESULTS.md section title, so runs with different settings keep separate sections",
    )
    args = p.parse_args(argv)
    if args.quick:
        sizes, args.yx = [8], 128
        args.chunk = min(args.chunk, 128)
    else:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    tmp = None
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="mdn-volume-bench-")
        work = Path(tmp)
    try:
        rows = [bench_size(n, args.yx, args, work) for n in sizes]
    finally:
        if tmp and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    m = machine()
    text = section(rows, argv, m, args)
    print()
    print(text)
    if not (args.quick or args.no_results):
        update_results(text)
        print(f"wrote the section {text.splitlines()[0]!r} of {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
