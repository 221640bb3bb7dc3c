"""Seconds of the widget's Preview per method (its default preset and preview options, a
256 x 256 crop as Preview takes it, one process after a warm-up call), and the CLI's
start-up: ``--help``, ``methods`` and an argument error, each a fresh process.

Usage::

    python benchmarks/preview_speed.py
"""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import machine, update_section  # noqa: E402

SECTION = "## Widget Preview and CLI start-up (issue 21)"


def _preview_seconds() -> list[tuple[str, str, float, str]]:
    from napari_masked_denoise.engine import RunSettings, denoise_iter, run_to_completion
    from napari_masked_denoise.engine.run import choose_iter
    from napari_masked_denoise.methods import default_preset, get_method, method_names, unavailable
    from napari_masked_denoise.methods.auto import parse_candidate
    from napari_masked_denoise.samples import noisy_cell

    noisy, _ = noisy_cell(seed=0)
    image = np.asarray(noisy, np.float32)
    crop = image[:256, :256]
    rows = []
    for name in method_names():
        why = unavailable(name)
        if why:
            rows.append((name, "-", float("nan"), why))
            continue
        opts = dict(get_method(name).preview_options)
        s = RunSettings(method=name, axes="YX", device="cpu", options=opts)

        def preview(s=s, name=name):
            choice = ""
            if name == "auto":  # as the widget: the choice Run makes, on the whole image
                full = RunSettings(method="auto", axes="YX", device="cpu")
                choice = run_to_completion(choose_iter(image, full))["choice"]
                m, p, o = parse_candidate(choice)
                s = s.replace(method=m, preset=p, options=o)
            run_to_completion(denoise_iter(crop, None, s))
            return choice

        preview()  # warm-up: imports, weights
        t = time.perf_counter()
        choice = preview()
        rows.append((name, default_preset(name), time.perf_counter() - t, choice))
    return rows


def _startup() -> list[tuple[str, float]]:
    cmds = {
        "masked-denoise --help": ["--help"],
        "masked-denoise methods": ["methods"],
        "masked-denoise run missing.tif out.zarr (an error)": ["run", "missing.tif", "out.zarr"],
    }
    out = []
    for label, args in cmds.items():
        best = min(
            _timed([sys.executable, "-m", "napari_masked_denoise.cli", *args]) for _ in range(3)
        )
        out.append((label, best))
    return out


def _timed(cmd) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, capture_output=True)
    return time.perf_counter() - t


def main() -> int:
    warnings.simplefilter("ignore")
    lines = [
        SECTION,
        "",
        f"Written by `python benchmarks/preview_speed.py` ({machine()}, one process, quiet). "
        "Preview: the method's default preset with its preview options on a 256 x 256 crop of "
        "the noisy-cell sample (660 x 550), as the widget's Preview takes it, `auto` first "
        "choosing on the whole image as Run does (after one warm-up call). "
        "Start-up: the best of 3 fresh processes.",
        "",
        "| method | preset | preview seconds | note |",
        "|---|---|---:|---|",
    ]
    for name, preset, sec, note in _preview_seconds():
        lines.append(f"| {name} | {preset} | {'' if sec != sec else f'{sec:.2f}'} | {note} |")
    lines += ["", "| command | seconds |", "|---|---:|"]
    for label, sec in _startup():
        lines.append(f"| `{label}` | {sec:.2f} |")
    update_section(SECTION, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
