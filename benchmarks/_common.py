"""What the benchmark scripts share: raw rows, the machine, the classical peers and
RESULTS.md section updates."""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def read_rows(path: Path) -> list[dict]:
    """The JSON rows of a raw results file (``[]`` when it does not exist yet)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def machine() -> str:
    """The machine, as the raw rows record it."""
    return f"{platform.machine()} {os.cpu_count()} cores"


def update_section(title: str, text: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section starting with the line ``title``, leaving the others."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    start = old.find(title + "\n")
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    m = re.compile(r"^## ", re.M).search(old, start + len(title))
    end = m.start() if m else len(old)
    path.write_text(old[:start] + text + ("\n" + old[end:] if m else ""))


def classical_peers() -> dict:
    """BM3D (blind sigma), non-local means, TV calibrated by J-invariance and at weight 0.1."""
    from skimage.restoration import (
        calibrate_denoiser,
        denoise_nl_means,
        denoise_tv_chambolle,
        estimate_sigma,
    )

    def bm3d_blind(y):
        import bm3d

        return bm3d.bm3d(y, sigma_psd=estimate_sigma(y))

    def nlm(y):
        s = estimate_sigma(y)
        return denoise_nl_means(
            y, h=0.8 * s, sigma=s, patch_size=5, patch_distance=6, fast_mode=True
        )

    def tv_calibrated(y):
        f = calibrate_denoiser(
            y,
            denoise_tv_chambolle,
            denoise_parameters={"weight": list(np.geomspace(0.01, 1.0, 12))},
        )
        return f(y)

    return {
        "BM3D (blind sigma)": bm3d_blind,
        "NLM": nlm,
        "TV (J-invariance)": tv_calibrated,
        "TV (weight 0.1)": lambda y: denoise_tv_chambolle(y, weight=0.1),
    }
