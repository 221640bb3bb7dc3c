"""The jobs of a run: a block of planes times a tile, denoised and written.

:class:`Plan` says where every job reads and writes; :func:`run_jobs` runs a list of
jobs with a reader thread that fetches the next input blocks and a writer thread that
writes finished ones while the calling thread denoises. The same function runs the
tasks of cluster mode (:mod:`.cluster`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.axes import DenoiseError, check_finite
from ..core.masks import Coords
from ..methods.base import Processed
from ..noise.levels import WINDOW, local_noise_std, robust_sigma
from .layout import Layout, PlaneReader, normalise
from .store import DENOISED, NOISE_MAP, write_job
from .tiling import Tile, tile_grid

__all__ = ["Plan", "Job", "run_jobs", "PREFETCH"]

PREFETCH = 2
"""Input blocks read ahead of the one being denoised."""
EDGE = 16
"""Pixels of mirrored context a tile gets beyond the image's edges, so that no method
sees an edge it would treat as an edge of the signal (a network's zero padding, BM3D's
border blocks): the same for every tile touching an edge, so exact tilings stay exact.
Reflected without repeating the edge pixel (``reflect``): on the fidelity battery the
outer 4 pixels' error fell from up to 1.6 to at most 1.4 times the interior's."""


def _mirrored(x: np.ndarray, tile: Tile, yx: tuple[int, int], align: int):
    """``x`` (read at ``tile``) with :data:`EDGE` mirrored pixels (rounded up to the
    method's alignment, which keeps its grid) beyond the image's edges, and the pads
    ``((top, bottom), (left, right))``."""
    edge = -(-EDGE // max(1, align)) * max(1, align)
    pads = tuple(
        (edge if span.read[0] == 0 else 0, edge if span.read[1] == n else 0)
        for span, n in zip((tile.y, tile.x), yx)
    )
    if not any(map(any, pads)):
        return x, pads
    return np.pad(x, ((0, 0), *pads), mode="reflect"), pads


@dataclass(frozen=True)
class Job:
    """Job ``index`` of a plan: block ``block`` of planes (``prefix`` along the outer
    axes, ``planes`` along the stacked one) times tile ``tile_index``."""

    index: int
    block: int
    tile_index: int
    prefix: tuple
    planes: slice
    tile: Tile


@dataclass
class Plan:
    """Where every job of a run reads and writes: job ``j`` is block ``j // n_tiles`` and
    tile ``j % n_tiles``. Picklable, so that cluster workers get the same plan.

    ``exact`` tilings (a fixed network whose receptive field the halo covers) cut each
    plane into a partition aligned to the output chunks: every job writes whole chunks
    that no other job touches, by assignment, so jobs run in any order or in parallel
    and a repeated job writes the same values. Blended tilings overlap and add their
    weighted cores into the output; their jobs run one block after another.
    """

    layout: Layout
    tiles: list
    blocks: list
    lo: float
    span: float
    exact: bool
    n_tx: int  # tiles along X: the ledger's chunk is one row of tiles of one block
    core_hw: tuple[int, int]

    @classmethod
    def make(cls, layout: Layout, tile: int, meth, blocks, lo: float, hi: float) -> Plan:
        exact = bool(meth.tile_exact)
        overlap = 0 if exact else max(16, tile // 8)
        tiles = tile_grid(layout.yx, tile, halo_of(meth), overlap, meth.align)
        n_tx = len({t.x.core for t in tiles})
        core_hw = (min(tile, layout.yx[0]), min(tile, layout.yx[1]))
        return cls(layout, tiles, blocks, lo, hi - lo, exact, n_tx, core_hw)

    @property
    def n_jobs(self) -> int:
        return len(self.blocks) * len(self.tiles)

    @property
    def chunks(self) -> tuple[int, ...]:
        """The output arrays' chunks: a tile's core in YX, a block along the stack axis."""
        lay = self.layout
        chunks = [1] * len(lay.axes)
        chunks[lay.axes.index("Y")], chunks[lay.axes.index("X")] = self.core_hw
        if lay.stack is not None:
            chunks[lay.stack] = self.blocks[0][1].stop - self.blocks[0][1].start
        return tuple(chunks)

    def job(self, j: int) -> Job:
        bi, ti = divmod(j, len(self.tiles))
        prefix, planes = self.blocks[bi]
        return Job(j, bi, ti, prefix, planes, self.tiles[ti])

    def groups(self, todo) -> list[list[int]]:
        """``todo`` split into groups whose writes (outputs and ledger chunks) are disjoint:
        one row of tiles of a block when exact, a whole block when blended."""
        per = self.n_tx if self.exact else len(self.tiles)
        out: dict[int, list[int]] = {}
        for j in todo:
            out.setdefault(j // per, []).append(j)
        return list(out.values())


def halo_of(meth) -> int:
    """The context a tile is read with: the method's halo and the noise map's window."""
    return int(meth.halo + WINDOW // 2)


# --------------------------------------------------------------------------- one job
def _halves(meth, x: np.ndarray, coords: Coords, exact: bool) -> list:
    """The pieces a block is retried in after running out of GPU memory: half the
    planes, else (exact tilings) quarter tiles with the method's halo."""
    n, h, w = x.shape
    if n > 1:
        k = n // 2
        return [
            (sl, slice(None), slice(None), Coords(coords.planes[sl], coords.y0, coords.x0))
            for sl in (slice(0, k), slice(k, n))
        ]
    if exact and max(h, w) > 32 + 2 * meth.halo:
        size = max(32, -(-max(h, w) // 2 // max(1, meth.align)) * max(1, meth.align))
        return [
            (t, *t.read, Coords(coords.planes, coords.y0 + t.y.read[0], coords.x0 + t.x.read[0]))
            for t in tile_grid((h, w), size, meth.halo, 0, meth.align)
        ]
    raise DenoiseError(
        f"out of GPU memory on a tile of {n}x{h}x{w}; pass a smaller tile (--tile) or device=cpu"
    )


def predict(meth, x: np.ndarray, coords: Coords, exact: bool) -> Processed:
    """``meth.process``; on running out of GPU memory, the same work in smaller pieces
    (:func:`_halves`), put back together."""
    import torch

    try:
        return meth.process(x, coords)
    except torch.OutOfMemoryError:
        if getattr(meth.device, "type", "cpu") == "cuda":
            torch.cuda.empty_cache()
    out = Processed(
        np.empty(x.shape, np.float32), {name: np.empty(x.shape, np.float32) for name in meth.extras}
    )
    for part, ys, xs, c in _halves(meth, x, coords, exact):
        if isinstance(part, slice):  # a half of the planes
            res = predict(meth, x[part], c, exact)
            dst, src = (part,), (slice(None),)
        else:  # a sub-tile: keep its core
            res = predict(meth, np.ascontiguousarray(x[:, ys, xs]), c, exact)
            dst, src = (slice(None), *part.core), (slice(None), *part.core_in_read)
        out.denoised[dst] = res.denoised[src]
        for name in out.extras:
            out.extras[name][dst] = res.extras[name][src]
        out.merge_report(res.report)
    return out


def compute(plan: Plan, meth, j: int, raw: np.ndarray, precision: str) -> tuple[dict, float, dict]:
    """Denoise job ``j`` from its input block: its core values per output array, the
    robust sigma of its residual, and what the method reported about the block."""
    import torch

    job = plan.job(j)
    t, lay = job.tile, plan.layout
    check_finite(
        raw,
        f"planes {job.planes.start}-{job.planes.stop - 1}, y {t.y.read}, x {t.x.read}",
        (job.planes.start, t.y.read[0], t.x.read[0]),
    )
    x = normalise(raw, plan.lo, plan.span)
    xp, ((top, _), (left, _)) = _mirrored(x, t, lay.yx, meth.align)
    coords = Coords(lay.plane_ids(job.prefix, job.planes), t.y.read[0] - top, t.x.read[0] - left)
    if precision == "mixed":
        dev = meth.device.type
        with torch.autocast(dev, dtype=torch.float16 if dev == "cuda" else torch.bfloat16):
            res = predict(meth, xp, coords, plan.exact)
    else:
        res = predict(meth, xp, coords, plan.exact)
    inside = (slice(None), slice(top, top + x.shape[1]), slice(left, left + x.shape[2]))
    res = Processed(res.denoised[inside], {k: v[inside] for k, v in res.extras.items()}, res.report)
    pred = np.asarray(res.denoised, dtype=np.float32)
    resid = x - pred  # in normalised units: squares of input units overflow float32
    std = local_noise_std(resid) * plan.span
    cy, cx = t.core_in_read
    out = {DENOISED: pred[:, cy, cx] * plan.span + plan.lo, NOISE_MAP: std[:, cy, cx]}
    for name in meth.extras:
        out[name] = res.extras[name][:, cy, cx]
    if not plan.exact:
        w = t.weight()
        out = {k: v * w for k, v in out.items()}
    return (
        out,
        robust_sigma(resid[:, cy, cx][:, ::2, ::2]) * plan.span,
        res.report,
    )  # a quarter of the pixels is plenty


# --------------------------------------------------------------------------- many jobs
def run_jobs(plan: Plan, meth, image, arrays: dict, todo: list[int], precision: str):
    """Run jobs ``todo`` in order into ``arrays`` (:meth:`Store.writers`); yields each
    job's report (a dict, often empty) once the job is handed to the writer.

    One thread reads the next blocks and another writes finished ones while this thread
    denoises. Closing the generator (or an error) waits for the writes already handed
    over, so the ledger then lists exactly the jobs yielded.
    """
    import threading
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor, wait

    import torch

    if not todo:
        return
    reader = PlaneReader(image, plan)
    failed = threading.Event()

    def write(j, out, sigma):  # after a failed write no other starts: a blended one
        if failed.is_set():  # would overwrite the undo slot the failed one needs
            raise DenoiseError("not written: an earlier write failed")
        try:
            write_job(plan, arrays, j, out, sigma)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(1) as rpool, ThreadPoolExecutor(1) as wpool:
        reads = deque(rpool.submit(reader.read, j) for j in todo[:PREFETCH])
        writes: deque = deque()
        try:
            for k, j in enumerate(todo):
                raw = reads.popleft().result()
                if k + PREFETCH < len(todo):
                    reads.append(rpool.submit(reader.read, todo[k + PREFETCH]))
                with torch.inference_mode(meth.mode == "once"):  # not held across the yield
                    out, sigma, report = compute(plan, meth, j, raw, precision)
                writes.append(wpool.submit(write, j, out, sigma))
                while len(writes) > 2 or (writes and writes[0].done()):
                    writes.popleft().result()
                yield report
            while writes:
                writes.popleft().result()
        finally:
            for f in reads:
                f.cancel()
            wait(writes)
