"""BM3D's Stein risk from one probe, against its true error, for two probe sizes and
with the block matches of the unperturbed run reused: 6 held-out Train400 crops
(128 x 128, every 50th image from the 4th), Gaussian noise 25/255, 4 probes each.
Prints risk / true error per crop and probe, and the seconds of each variant.

Usage::

    python benchmarks/probe_size.py
"""

import glob
import time
from pathlib import Path

import bm3d
import numpy as np
from skimage import img_as_float, io

np.trapz = np.trapezoid  # bm4d 4.2.5 still calls it
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
files = sorted(glob.glob(str(DATA / "train" / "Train400" / "*")))[3::50][:6]
rng = np.random.default_rng(5)


def prof(step=3, sw=39):
    p = bm3d.BM3DProfile()
    p.step_ht = p.step_wiener = step
    p.search_window_ht = p.search_window_wiener = sw
    return p


P = prof()
out = {"fresh": [], "reuse": [], "fresh_e1": []}
tt = {"run": 0, "fresh": 0, "reuse": 0}
for f in files:
    x = img_as_float(io.imread(f))[:128, :128]
    s = 25 / 255
    y = x + s * rng.standard_normal(x.shape)
    t = time.perf_counter()
    d, m = bm3d.bm3d(y, s, profile=P, blockmatches=(True, True))
    tt["run"] += time.perf_counter() - t
    true = np.sum((d - x) ** 2)
    N = y.size
    fit = np.sum((d - y) ** 2) - N * s * s
    for k in range(4):
        b = s * np.random.default_rng(k).standard_normal(y.shape)
        for name, eps in [("fresh", 1e-2), ("fresh_e1", 1e-1)]:
            t = time.perf_counter()
            d2 = bm3d.bm3d(y + eps * b, s, profile=P)
            tt["fresh"] += time.perf_counter() - t
            out[name].append((fit + 2 * np.sum(b * (d2 - d)) / eps) / true)
        t = time.perf_counter()
        d3 = bm3d.bm3d(y + 1e-2 * b, s, profile=P, blockmatches=m)
        tt["reuse"] += time.perf_counter() - t
        out["reuse"].append((fit + 2 * np.sum(b * (d3 - d)) / 1e-2) / true)
for k, v in out.items():
    v = np.array(v).reshape(len(files), 4)
    print(k, np.round(v, 2).tolist())
print(tt)
