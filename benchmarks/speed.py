"""Speed and memory against volume size, peers on the real fluorescence pairs, cluster cost.

Four parts, each appending raw rows to ``benchmarks/speed_raw.jsonl``:

``volumes``
    For each size (a number of 1024 x 1024 slices) and method, write a noisy uint16
    zarr volume on disk (slab by slab, never whole in memory; chunks 8 x 256 x 256),
    run ``masked-denoise run`` on it in a fresh process under a small wrapper that
    reports the CLI's peak resident memory (``getrusage(RUSAGE_CHILDREN)``), and record
    the wall time, the engine's own time (the CLI's ``time`` line: adaptation and
    tiles, without Python start-up) and the peak RSS. Volumes are reused between runs;
    outputs are deleted after each run. The slices: 16 clean slices of the synthetic
    fluorescence-like volume of ``volume.py`` (puncta and blobs), slice ``z`` being
    clean slice ``z % 16`` shifted by ``7 z`` pixels along X, with Poisson-Gaussian
    noise drawn per slice (peak 30 photons, read noise 0.02), scaled to 100 + 1000 x.
``fmd``
    Each method on the four real noisy fluorescence acquisitions (full 512 x 512, from
    ``../shared/data/microscopy/fmd_real``) through the Python API, one image after
    a warm-up run: seconds per image (median), Mpixel/s and PSNR against the 50-frame
    averages (both scaled by the ground truth's range as ``quality.py`` does, clipped to
    [0, 1]).
``cluster``
    One volume size, the same CLI command single-process and with ``--workers 2`` (a
    local dask cluster of two worker processes of one thread each, the same two cores):
    wall times, and the largest difference between the two outputs.
``report``
    Writes the section ``## Speed and memory against volume size`` of ``RESULTS.md``
    and the plot ``speed.png`` (time and peak memory against voxels).

Usage::

    python benchmarks/speed.py volumes --sizes 16,64,256,1024,2048 --methods meta-tta:no-adapt
    python benchmarks/speed.py volumes --sizes 16 --methods ttt-mim:no-adapt,nlm:default,bm3d:default
    python benchmarks/speed.py fmd --methods meta-tta:no-adapt,bm3d:default
    python benchmarks/speed.py cluster --size 64 --method meta-tta:no-adapt
    python benchmarks/speed.py report
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RESULTS, read_rows, update_section  # noqa: E402
from volume import machine, noisy_slab, run_cli  # noqa: E402

from napari_masked_denoise.engine.store import output_array  # noqa: E402

RAW = HERE / "speed_raw.jsonl"
SECTION = "## Speed and memory against volume size"
YX = 1024
SLAB = 8
DATA = HERE.parent.parent / "shared" / "data"


# --------------------------------------------------------------------------- data
def volume_path(work: Path, n_slices: int) -> Path:
    """A noisy uint16 volume of ``n_slices`` x 1024 x 1024 under ``work``, written once."""
    import zarr
    from volume import clean_slab

    path = work / f"noisy_{n_slices}x{YX}x{YX}.zarr"
    if path.exists() and zarr.open_array(str(path), mode="r").attrs.get("complete"):
        return path
    base = clean_slab(0, 16, (16, YX, YX), seed=0)
    arr = zarr.create_array(
        store=str(path),
        shape=(n_slices, YX, YX),
        chunks=(SLAB, 256, 256),
        dtype="uint16",
        dimension_names=("z", "y", "x"),
        overwrite=True,
    )
    for z0 in range(0, n_slices, SLAB):
        zs = range(z0, min(n_slices, z0 + SLAB))
        clean = np.stack([np.roll(base[z % 16], 7 * z, axis=1) for z in zs])
        noisy = noisy_slab(clean, z0, seed=0)
        arr[zs.start : zs.stop] = np.clip(100 + 1000 * noisy, 0, 65535).astype(np.uint16)
    arr.attrs["complete"] = True
    return path


def _spec(text: str) -> tuple[str, str]:
    name, _, preset = text.partition(":")
    from napari_masked_denoise.methods import default_preset

    return name, preset or default_preset(name)


def _append(row: dict) -> None:
    row = {
        **row,
        "machine": machine(),
        "when": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    with RAW.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _cli(
    inp: Path, out: Path, method: str, preset: str, extra=(), device: str = "cpu"
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "napari_masked_denoise.cli",
        "run",
        str(inp),
        str(out),
        "--method",
        method,
        "--preset",
        preset,
        "--axes",
        "ZYX",
        "--mode",
        "once",
        "--device",
        device,
        "--overwrite",
        "--quiet",
        *extra,
    ]


# --------------------------------------------------------------------------- parts
def run_volumes(args) -> None:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    for n in (int(s) for s in args.sizes.split(",")):
        t = time.perf_counter()
        inp = volume_path(work, n)
        print(f"[{n} slices] volume ready in {time.perf_counter() - t:.0f} s", flush=True)
        for spec in args.methods.split(","):
            name, preset = _spec(spec)
            out = work / "out.zarr"
            res = run_cli(_cli(inp, out, name, preset, args.extra, args.device), work)
            shutil.rmtree(out, ignore_errors=True)
            row = {
                "part": "volumes",
                "method": name,
                "preset": preset,
                "slices": n,
                "device": args.device,
                "mvox": n * YX * YX / 1e6,
                "wall_s": res["wall_s"],
                "engine_s": res["cli_s"],
                "rss_mib": res["maxrss_kib"] / 1024,
                "tiles": res["tiles"],
                "extra": list(args.extra),
                "tiling": "exact" if ", exact)" in res["stdout"] else "blended",
                "label": args.label,
            }
            _append(row)
            print(
                f"[{n} slices] {name}:{preset} {row['wall_s']:.1f} s wall, {row['engine_s']:.1f} s engine, "
                f"{row['mvox'] / row['engine_s']:.3f} Mvoxel/s, {row['rss_mib']:.0f} MiB",
                flush=True,
            )


def fmd_images():
    from skimage import io

    from napari_masked_denoise.training import gray01

    real = DATA / "microscopy" / "fmd_real"
    for p in sorted((real / "raw").glob("*.png")):
        yield p.stem, gray01(io.imread(real / "gt" / p.name)), gray01(io.imread(p))


def run_fmd(args) -> None:
    import torch
    from skimage.metrics import peak_signal_noise_ratio

    from napari_masked_denoise.api import denoise

    torch.set_num_threads(args.threads)
    images = list(fmd_images())
    if not images:
        sys.exit(f"needs the shared data in {DATA}")
    for spec in args.methods.split(","):
        name, preset = _spec(spec)
        kw = dict(method=name, preset=preset, axes="YX", device="cpu")
        denoise(images[0][2], **kw)  # warm-up: imports, weights, first-call allocations
        for stem, clean, noisy in images:
            t = time.perf_counter()
            res = denoise(noisy, **kw)
            s = time.perf_counter() - t
            psnr = peak_signal_noise_ratio(clean, np.clip(res.denoised, 0, 1), data_range=1)
            row = {
                "part": "fmd",
                "method": name,
                "preset": preset,
                "image": stem,
                "pixels": int(noisy.size),
                "seconds": s,
                "psnr": float(psnr),
                "psnr_noisy": float(
                    peak_signal_noise_ratio(clean, np.clip(noisy, 0, 1), data_range=1)
                ),
                "threads": args.threads,
            }
            _append(row)
            print(
                f"{name}:{preset} {stem}: {s:.2f} s, {noisy.size / s / 1e6:.3f} Mpixel/s, {psnr:.2f} dB",
                flush=True,
            )


def run_cluster(args) -> None:
    import zarr

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    inp = volume_path(work, args.size)
    name, preset = _spec(args.method)
    walls = {}
    for label, extra in (("single", []), ("workers 2", ["--workers", "2"])):
        out = work / f"out_{label.replace(' ', '')}.zarr"
        res = run_cli(_cli(inp, out, name, preset, extra), work)
        walls[label] = (res["wall_s"], res["cli_s"], res["maxrss_kib"] / 1024)
        print(f"{label}: {res['wall_s']:.1f} s wall, {res['cli_s']:.1f} s engine", flush=True)
    a = output_array(zarr.open_group(str(work / "out_single.zarr"), mode="r"), "denoised")
    b = output_array(zarr.open_group(str(work / "out_workers2.zarr"), mode="r"), "denoised")
    diff = max(
        float(np.abs(a[z : z + SLAB] - b[z : z + SLAB]).max()) for z in range(0, a.shape[0], SLAB)
    )
    for label in walls:
        shutil.rmtree(work / f"out_{label.replace(' ', '')}.zarr", ignore_errors=True)
    _append(
        {
            "part": "cluster",
            "method": name,
            "preset": preset,
            "slices": args.size,
            "mvox": args.size * YX * YX / 1e6,
            "single_wall_s": walls["single"][0],
            "single_engine_s": walls["single"][1],
            "cluster_wall_s": walls["workers 2"][0],
            "cluster_engine_s": walls["workers 2"][1],
            "max_abs_diff": diff,
            "single_rss_mib": walls["single"][2],
            "cluster_rss_mib": walls["workers 2"][2],
        }
    )
    print(
        f"cluster / single: {walls['workers 2'][0] / walls['single'][0]:.3f} (wall); max |diff| {diff:.2e}"
    )


# --------------------------------------------------------------------------- report
def _latest(rows, key):
    """The last row of every ``key(row)``."""
    out = {}
    for r in rows:
        out[key(r)] = r
    return list(out.values())


def report(args) -> None:
    rows = read_rows(RAW)
    vol = _latest(
        [
            r
            for r in rows
            if r["part"] == "volumes"
            and not r.get("extra")
            and not r.get("label")
            and r.get("device", "cpu") == "cpu"
        ],
        lambda r: (r["method"], r["preset"], r["slices"]),
    )
    before = _latest(
        [r for r in rows if r["part"] == "volumes" and r.get("label") == "before"],
        lambda r: (r["method"], r["preset"], r["slices"]),
    )
    fmd = _latest(
        [r for r in rows if r["part"] == "fmd"], lambda r: (r["method"], r["preset"], r["image"])
    )
    clu = [r for r in rows if r["part"] == "cluster"]
    m = (rows[-1] if rows else {}).get("machine", {})
    lines = [
        SECTION,
        "",
        f"Measured with `python benchmarks/speed.py volumes|fmd|cluster ...` then `python benchmarks/speed.py "
        f"report` ({min((r['when'] for r in rows), default='-')} to {max((r['when'] for r in rows), default='-')}); "
        f"raw rows `benchmarks/speed_raw.jsonl`; the commands are in the script's docstring.",
        "",
        f"- machine: {m.get('nproc')} CPU cores ({m.get('cpu')}), {m.get('ram_gib', float('nan')):.1f} GiB RAM, "
        f"torch {m.get('torch')}, Python {m.get('python')}; "
        "no GPU was lent to these sessions, so there are no GPU rows.",
        "- volumes: noisy uint16 zarr on disk, Z x 1024 x 1024, chunks 8 x 256 x 256; CLI `--mode once --device cpu`, "
        "default tile and plane batch; engine s: the CLI's own `time` (adaptation and tiles); wall s: the whole "
        "process (Python and torch start-up included); peak RSS of the CLI process.",
        "",
    ]
    if vol:
        lines += [
            "| method | Z slices | Mvoxel | tiles, tiling | wall s | engine s | Mvoxel/s (engine) "
            "| s per Gvoxel | peak RSS MiB |",
            "|---|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r in sorted(vol, key=lambda r: (r["method"], r["preset"], r["slices"])):
            lines.append(
                f"| {r['method']}:{r['preset']} | {r['slices']} | {r['mvox']:.0f} | {r['tiles']}, {r['tiling']} | "
                f"{r['wall_s']:.1f} | {r['engine_s']:.1f} | {r['mvox'] / r['engine_s']:.3f} | "
                f"{1000 * r['engine_s'] / r['mvox']:.0f} | {r['rss_mib']:.0f} |"
            )
        lines.append("")
        lines += _scaling(vol)
        _plot(vol)
        lines += ["", "![time and memory against size](speed.png)", ""]
    extra = _latest(
        [r for r in rows if r["part"] == "volumes" and r.get("extra") and not r.get("label")],
        lambda r: (r["method"], r["preset"], r["slices"], tuple(r["extra"])),
    )
    now = {(r["method"], r["preset"], r["slices"]): r for r in vol}

    def paired(tagged):
        """Each tagged row with the default run of the same method, preset and size."""
        for r in sorted(tagged, key=lambda r: (r["method"], r["preset"], r["slices"])):
            if (r["method"], r["preset"], r["slices"]) in now:
                yield r, now[(r["method"], r["preset"], r["slices"])]

    if extra:
        lines += [
            "### CLI options against the defaults, same volume",
            "",
            "| method | Z slices | option | default: engine s | with the option: engine s | speed-up |",
            "|---|---:|---|---:|---:|---:|",
        ]
        lines += [
            f"| {r['method']}:{r['preset']} | {r['slices']} | `{' '.join(r['extra'])}` | "
            f"{n['engine_s']:.1f} | {r['engine_s']:.1f} | {n['engine_s'] / r['engine_s']:.2f}x |"
            for r, n in paired(extra)
        ] + [""]
    if before:
        lines += [
            "### This engine against the engine before it (commit 93ef39e: overlapping blended tiles "
            "everywhere, no reader or writer thread, default tile 256 / 512)",
            "",
            "| method | Z slices | before: tiles, engine s | now: tiles, engine s | speed-up |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {b['method']}:{b['preset']} | {b['slices']} | {b['tiles']}, {b['engine_s']:.1f} | "
            f"{n['tiles']}, {n['engine_s']:.1f} | {b['engine_s'] / n['engine_s']:.2f}x |"
            for b, n in paired(before)
        ] + [""]
    if fmd:
        lines += [
            "### On the real fluorescence pairs (4 images of 512 x 512, after a warm-up image)",
            "",
            f"Python API, `denoise(noisy, method, preset, axes='YX', device='cpu')`, "
            f"{fmd[0].get('threads')} torch threads; PSNR against the 50-frame average, clipped to [0, 1].",
            "",
            "| method | median s / image | Mpixel/s | x BM3D throughput | mean PSNR dB | noisy dB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        by = {}
        for r in fmd:
            by.setdefault((r["method"], r["preset"]), []).append(r)
        bm = by.get(("bm3d", "default"))
        bm_rate = np.median([r["pixels"] / r["seconds"] for r in bm]) if bm else None
        for (name, preset), rs in sorted(
            by.items(), key=lambda kv: -np.median([r["pixels"] / r["seconds"] for r in kv[1]])
        ):
            rate = np.median([r["pixels"] / r["seconds"] for r in rs])
            ratio = f"{rate / bm_rate:.1f}" if bm_rate else "-"
            lines.append(
                f"| {name}:{preset} | {np.median([r['seconds'] for r in rs]):.3f} | {rate / 1e6:.3f} | {ratio} | "
                f"{np.mean([r['psnr'] for r in rs]):.2f} | {np.mean([r['psnr_noisy'] for r in rs]):.2f} |"
            )
        lines.append("")
    if clu:
        lines += [
            "### Cluster mode: one process against a local dask cluster of 2 worker processes",
            "",
            "The same CLI command without and with `--workers 2` (one thread per worker: the same two "
            "cores), on Z x 1024 x 1024; every row is one pair of runs, in the order measured.",
            "",
            "| when | method | Z slices | Mvoxel | single wall s | cluster wall s | cluster / single (wall) | "
            "(engine) | max abs difference | peak RSS MiB single / largest worker-side process |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in clu:
            lines.append(
                f"| {r['when']} | {r['method']}:{r['preset']} | {r['slices']} | {r['mvox']:.0f} | "
                f"{r['single_wall_s']:.1f} | {r['cluster_wall_s']:.1f} | "
                f"{r['cluster_wall_s'] / r['single_wall_s']:.3f} | "
                f"{r['cluster_engine_s'] / r['single_engine_s']:.3f} | {r['max_abs_diff']:.1e} | "
                f"{r['single_rss_mib']:.0f} / {r['cluster_rss_mib']:.0f} |"
            )
        lines.append("")
    update_section(SECTION, "\n".join(lines) + "\n", RESULTS)
    print("\n".join(lines))


def _scaling(vol) -> list[str]:
    """The targets: memory flat and time linear from 64 to 2048 Mvoxel, per method."""
    out = []
    by = {}
    for r in vol:
        by.setdefault((r["method"], r["preset"]), []).append(r)
    for (name, preset), rs in sorted(by.items()):
        rs = [r for r in rs if 60 <= r["mvox"] <= 2200]
        if len(rs) < 2:
            continue
        rs.sort(key=lambda r: r["mvox"])
        rss = [r["rss_mib"] for r in rs]
        per = [r["engine_s"] / r["mvox"] for r in rs]
        ref = per[-1]
        worst = max(abs(p / ref - 1) for p in per)
        out.append(
            f"- `{name}:{preset}`, {rs[0]['mvox']:.0f} to {rs[-1]['mvox']:.0f} Mvoxel ({len(rs)} sizes): peak RSS "
            f"{min(rss):.0f} to {max(rss):.0f} MiB, the largest {max(rss) / min(rss):.2f}x the smallest (target: "
            f"within 1.20x); engine seconds per voxel within {100 * worst:.1f}% of the largest size's (target: 15%); "
            f"wall time per voxel {rs[0]['wall_s'] / rs[0]['mvox'] * 1000:.0f} to "
            f"{rs[-1]['wall_s'] / rs[-1]['mvox'] * 1000:.0f} s per Gvoxel."
        )
    return out


def _plot(vol) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    by = {}
    for r in vol:
        by.setdefault(f"{r['method']}:{r['preset']}", []).append(r)
    for label, rs in sorted(by.items()):
        rs.sort(key=lambda r: r["mvox"])
        x = [r["mvox"] for r in rs]
        a.plot(x, [r["engine_s"] for r in rs], "o-", label=label)
        b.plot(x, [r["rss_mib"] for r in rs], "o-", label=label)
    a.set(xscale="log", yscale="log", xlabel="Mvoxel", ylabel="engine seconds", title="time")
    b.set(xscale="log", xlabel="Mvoxel", ylabel="peak RSS MiB", title="memory", ylim=(0, None))
    a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "speed.png", dpi=90)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="part", required=True)
    v = sub.add_parser("volumes")
    v.add_argument("--sizes", default="16,64,256,1024,2048", help="numbers of 1024 x 1024 slices")
    v.add_argument("--methods", default="meta-tta:no-adapt")
    v.add_argument("--workdir", default="/tmp/speed")
    v.add_argument("--extra", action="append", default=[], help="extra CLI argument (repeatable)")
    v.add_argument("--device", default="cpu", help="cpu, or cuda on a lent GPU")
    v.add_argument(
        "--label",
        default="",
        help="tag the rows (e.g. 'before': the engine of another "
        "commit, run with PYTHONPATH=WORKTREE/src); tagged rows are compared, not tabled",
    )
    f = sub.add_parser("fmd")
    f.add_argument(
        "--methods", default="meta-tta:no-adapt,ttt-mim:no-adapt,tv:fixed,nlm:default,bm3d:default"
    )
    f.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("cluster")
    c.add_argument("--size", type=int, default=64)
    c.add_argument("--method", default="meta-tta:no-adapt")
    c.add_argument("--workdir", default="/tmp/speed")
    sub.add_parser("report")
    args = p.parse_args(argv)
    {"volumes": run_volumes, "fmd": run_fmd, "cluster": run_cluster, "report": report}[args.part](
        args
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
