"""Seconds of ``auto`` ``fast`` per 256 x 256 image, with the candidates scored on 2
of the sample's crops: the first image of four quality-benchmark cases, per-tile, one
process. Prints the total and every candidate's scoring seconds.

Usage::

    python benchmarks/auto_speed.py
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from quality import cases  # noqa: E402

CASES = ("set12-g25", "set12-corr", "set12-camera", "fmd-real")


def main() -> int:
    from napari_masked_denoise import denoise

    warnings.simplefilter("ignore")
    seen = set()
    for case, image, _, noisy in cases():
        if case not in CASES or case in seen:
            continue
        seen.add(case)
        for crops in (2,):
            t = time.perf_counter()
            r = denoise(noisy.copy(), method="auto", axes="YX", mode="per-tile", crops=crops)
            seconds = time.perf_counter() - t
            rep = r.info["method_report"]
            scored = ", ".join(f"{k} {v['seconds']:.2f}" for k, v in rep["scores"].items())
            print(f"{case} {image} crops {crops}: {seconds:.1f} s, {rep['choice']} ({scored})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
