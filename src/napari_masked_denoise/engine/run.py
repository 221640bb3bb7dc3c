"""One run of the tiled engine: any N-d array in, a zarr store out, progress after every tile.

The data path, one module each:

1. :mod:`.settings`: the run's :class:`~.settings.RunSettings`, validated once;
2. :mod:`.layout`: the input's axes as blocks of YX planes, its intensity range;
3. :mod:`.store`: the output group, created or reopened to resume;
4. the method adapts on a sample of crops (``once`` mode; ``auto`` chooses here);
5. :mod:`.jobs` and :mod:`.tiling`: blocks times tiles, denoised by the method and
   written (assigned where the tiling is exact, blended where tiles overlap), on this
   machine or as tasks of a dask cluster (:mod:`.cluster`);
6. the store is marked complete with the run's noise sigma and the method's report.

Memory stays bounded by a few tiles whatever the size of the input. A ledger (one row
per block) and the attribute ``complete`` say how far a run got; ``resume=True``
finishes only the missing tiles.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np

from .._version import __version__
from ..core.axes import DenoiseError, check_array, resolve_axes
from ..methods.base import merge_reports
from .cluster import describe_scheduler, run_on_cluster
from .jobs import Plan, halo_of, run_jobs
from .layout import Layout, default_batch, norm_stats, normalise, sample_crops
from .lock import OutputLock, check_no_writers
from .output import check_output, check_space
from .settings import RunSettings, default_mode, method_tile
from .store import DENOISED, NOISE_MAP, Store, jsonable, output_array

__all__ = ["Progress", "StoreResult", "denoise_iter", "choose_iter", "run_to_completion"]


@dataclass(frozen=True)
class Progress:
    """Reported after every tile (``stage="tiles"``) and adaptation step (``"adapt"``)."""

    stage: str
    done: int
    total: int
    elapsed: float
    label: str = ""
    """The stage in words: ``"scoring 8 candidates"``, ``"adapting"``, ``"denoising tile
    3 of 12"``."""


@dataclass
class StoreResult:
    """What a finished (or stopped) run wrote.

    Attributes
    ----------
    group : zarr.Group
        The output group (arrays ``denoised``, ``noise_map`` and any extras).
    sigma : float
        Median over tiles of the residual's robust noise sigma, in input units.
    complete : bool
        Whether every tile was written.
    info : dict
        How the run went: device, tiles, tiling, halo, intensity range and the
        method's report (``method_report``: ``auto``'s choice, zero-shot's stops).
    """

    group: object
    axes: str
    axes_guessed: bool
    method: str
    preset: str
    mode: str
    sigma: float
    seconds: float
    complete: bool
    path: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def denoised(self):
        """The denoised image (full resolution; the pyramid's level 0)."""
        return output_array(self.group, DENOISED)

    @property
    def noise_map(self):
        return output_array(self.group, NOISE_MAP)

    @property
    def extras(self) -> dict:
        """Extra per-pixel outputs of the method (e.g. meta-TTA's ``loss_mask``), by name."""
        return {name: output_array(self.group, name) for name in self.info.get("extras", ())}

    @property
    def voxels(self) -> int:
        return int(np.prod(self.denoised.shape))


def denoise_iter(
    image, output=None, settings: RunSettings | None = None, *, scheduler=None, **fields
) -> Generator[Progress, None, StoreResult]:
    """Denoise ``image`` tile by tile into a zarr group, yielding :class:`Progress`.

    Parameters
    ----------
    image : array-like
        numpy, dask or zarr array (anything with ``shape``, ``dtype`` and slicing).
    output : str, path, zarr store or None
        Where the group is written; ``None`` keeps it in memory.
    settings : RunSettings, optional
        What to do (:class:`~.settings.RunSettings`); ``fields`` (its field names, e.g.
        ``method="tv"``, ``tile=256``) build it, or override the given one.
    scheduler : str, int or distributed.Client, optional
        Run the tiles as tasks of a dask.distributed cluster writing straight into
        ``output`` (a path the workers can reach): a scheduler address, a ``Client``,
        or an int N for a local cluster of N worker processes. The adaptation runs
        here, once; the result equals the single-process one.

    Returns
    -------
    StoreResult
        As the generator's return value (``StopIteration.value``). Closing the
        generator stops between tiles and leaves ``complete = False``.
    """
    t0 = time.perf_counter()
    s = settings.replace(**fields) if settings is not None else RunSettings(**fields)
    if not all(hasattr(image, a) for a in ("shape", "dtype", "__getitem__")):
        image = np.asarray(image)
    s, layout, guessed = _resolve(image, s)
    _check(s, output, scheduler)
    check_output(output, s)  # a refusal at once, not after the noise estimate
    yield Progress("noise", 0, 1, time.perf_counter() - t0, "estimating the noise")
    lo, hi = norm_stats(image, layout)
    noise = _noise(image, s)
    meth, device = _build(s, None if noise is None else noise.scaled(lo, hi - lo))
    fingerprint = _fingerprint(s, meth, image.shape, lo, hi)
    lock = OutputLock(output).acquire() if isinstance(output, str | os.PathLike) else None
    try:
        if lock is not None:
            check_no_writers(output)
        _check_space(output, s, image.shape, len(meth.extras))  # under the lock: stable
        store = Store.open(output, s, fingerprint)
        try:
            return (
                yield from _run(
                    image, layout, s, meth, device, store, noise, (lo, hi), t0, scheduler, guessed
                )
            )
        except GeneratorExit:
            store.mark_incomplete("stopped before the end")
            raise
        except BaseException as exc:
            store.mark_incomplete(_reason(exc))
            raise
    finally:
        if lock is not None:
            if scheduler is not None:
                try:
                    check_no_writers(output)  # removes the tasks' lock file once none holds it
                except DenoiseError:
                    pass
            lock.release()


def choose_iter(image, settings: RunSettings) -> Generator[Progress, None, dict]:
    """What a run of ``settings`` on ``image`` decides on its sample (``auto``'s choice),
    the same way (the same sample, noise model and scores), without writing anything:
    yields :class:`Progress`, returns the method's report (``{"choice": ...}``). The
    widget's Preview uses it so that it shows what Run would choose."""
    t0 = time.perf_counter()
    s, layout, _ = _resolve(image, settings)
    lo, hi = norm_stats(image, layout)
    noise = _noise(image, s)
    meth, _ = _build(s, None if noise is None else noise.scaled(lo, hi - lo))
    return (yield from _adapt_on_sample(image, layout, s, meth, (lo, hi), t0))


def _resolve(image, s: RunSettings):
    """``(settings with the axes and mode for image, its layout, whether the axes were
    guessed)``, the image's shape and dtype checked."""
    axes, guessed = resolve_axes(s.axes, tuple(image.shape))
    check_array(image, axes)
    layout = Layout.of(image.shape, axes)
    return s.replace(axes=axes, mode=default_mode(s, layout.n_planes)), layout, guessed


def _reason(exc: BaseException) -> str:
    """Why a run stopped, in one line, for the store's metadata."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _run(image, layout, s, meth, device, store, noise, norm, t0, scheduler, guessed):
    """The run once the store is open: adapt, tile, finish."""
    lo, hi = norm
    axes = s.axes
    store.update_meta(noise_model=None if noise is None else noise.to_dict())
    report = yield from _adapt(image, layout, s, meth, store, (lo, hi), t0)

    tile = int(s.tile or method_tile(meth))  # the tiling follows what the method decided
    plan = Plan.make(layout, tile, meth, list(layout.blocks(_batch(s, layout, tile))), lo, hi)
    store.create_arrays(plan, image.shape, axes, meth.extras, s)
    store.repair(plan, meth.extras)  # a hard kill's half-added tile, taken out again
    result = StoreResult(
        group=store.group,
        axes=axes,
        axes_guessed=guessed,
        method=s.method,
        preset=s.preset,
        mode=s.mode,
        sigma=float("nan"),
        seconds=0.0,
        complete=False,
        path=store.path,
        info=_info(s, plan, meth, device, (lo, hi), scheduler, noise),
    )
    done = store.done()
    todo = [j for j in range(plan.n_jobs) if not done[j]]
    n_done = plan.n_jobs - len(todo)
    for tile_report in _tiles(plan, meth, image, store, s, todo, scheduler):
        n_done += 1
        merge_reports(report, tile_report)
        yield Progress(
            "tiles",
            n_done,
            plan.n_jobs,
            time.perf_counter() - t0,
            f"denoising tile {n_done} of {plan.n_jobs}",
        )

    result.sigma, result.seconds, result.complete = store.sigma(), time.perf_counter() - t0, True
    if report:
        result.info["method_report"] = report
    store.finish(result.sigma, report)
    return result


# --------------------------------------------------------------------------- the steps
def _info(s: RunSettings, plan: Plan, meth, device, norm, scheduler, noise) -> dict:
    """How the run goes, for :attr:`StoreResult.info`."""
    return {
        "device": str(device),
        "tiles": plan.n_jobs,
        "plane_batch": plan.blocks[0][1].stop - plan.blocks[0][1].start,
        "halo": halo_of(meth),
        "tiling": "exact" if plan.exact else "blended",
        "extras": tuple(meth.extras),
        "intensity_range": norm,
        "precision": s.precision,
        "compiled": bool(s.compile),
        "cluster": None if scheduler is None else describe_scheduler(scheduler),
        "noise_model": None if noise is None else noise.to_dict(),
    }


def _check_space(output, s: RunSettings, shape, n_extras: int) -> None:
    """A new output on disk must fit there (its arrays uncompressed)."""
    if isinstance(output, str | os.PathLike) and not s.resume:
        check_space(output, shape, 2 + n_extras)


def _check(s: RunSettings, output, scheduler) -> None:
    """What the settings can only be checked against with the image's axes known."""
    if scheduler is not None:
        import importlib.util

        digits = isinstance(scheduler, str) and scheduler.lstrip("-").isdigit()
        if (isinstance(scheduler, int) or digits) and int(scheduler) < 1:
            raise DenoiseError(f"workers must be 1 or more, not {scheduler}")
        if importlib.util.find_spec("distributed") is None:
            raise DenoiseError(
                "a cluster run needs dask.distributed: pip install 'napari-masked-denoise[cluster]'"
            )
    if s.scale is not None and len(s.scale) != len(s.axes):
        raise DenoiseError(f"scale has {len(s.scale)} values but the axes {s.axes!r} {len(s.axes)}")
    if scheduler is not None and not isinstance(output, str | os.PathLike):
        raise DenoiseError(
            "a cluster run writes into a zarr store on disk that its workers reach; give an output path"
        )


def _noise(image, s: RunSettings):
    """The image's noise model (input units), or None where the image is too small or
    too flat to measure it (methods then estimate what they need themselves)."""
    from ..noise.estimate import estimate_noise

    try:
        return estimate_noise(image, s.axes, seed=s.seed)
    except DenoiseError:
        return None


def _build(s: RunSettings, noise):
    """The run's method on its device, told the noise model: ``(method, device)``."""
    from ..core.device import select_device

    device = select_device(s.device)
    return s.build_method(device, noise), device


def _fingerprint(s: RunSettings, meth, shape, lo: float, hi: float) -> dict:
    """What a resumed run must share with the run that wrote the store."""
    return jsonable(
        {
            "version": __version__,
            "method": s.method,
            "preset": s.preset,
            "mode": s.mode,
            "options": meth.options,
            "seed": s.seed,
            "tile": s.tile,
            "plane_batch": s.plane_batch,
            "sample": [s.sample_tiles, s.sample_size],
            "shape": list(shape),
            "axes": s.axes,
            "norm": [lo, hi],
            "precision": s.precision,
        }
    )


def _adapt(
    image, layout: Layout, s: RunSettings, meth, store: Store, norm: tuple[float, float], t0: float
):
    """Adapt the method on a sample of crops (``once`` mode, or a method that decides on
    the sample), or reload the adaptation an earlier run of the store saved; yields
    :class:`Progress`, returns the adaptation's report."""
    if not (s.mode == "once" or meth.needs_sample):
        return {}
    state = store.method_state()
    if state is not None:
        try:
            meth.load_state_bytes(state)
        except (DenoiseError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a damaged or foreign state: never trusted further
            raise DenoiseError(
                f"the adapted state saved in {store.path or 'the output'} cannot be read "
                f"({type(exc).__name__}); replace the output (overwrite) instead of resuming"
            ) from None
        return dict(store.meta.get("adapt_report") or {})
    report = yield from _adapt_on_sample(image, layout, s, meth, norm, t0)
    store.update_meta(adapt_report=report)  # first: a saved state has its report
    store.save_method_state(meth.state_bytes())
    return report


def _adapt_on_sample(image, layout: Layout, s: RunSettings, meth, norm, t0: float):
    """``meth.adapt`` on the run's sample of crops; yields Progress, returns its report."""
    sample, coords = sample_crops(image, layout, meth.align, s.sample_tiles, s.sample_size, s.seed)
    report = yield from _progress(
        meth.adapt(normalise(sample, norm[0], norm[1] - norm[0]), coords), t0, meth.adapt_label
    )
    return dict(report or {})


def _progress(adapting, t0: float, label: str = "adapting"):
    """Forward an adaptation's ``(step, total)`` as :class:`Progress`; its return value."""
    report = None
    while True:
        try:
            step, total = next(adapting)
        except StopIteration as stop:
            report = stop.value
            break
        yield Progress("adapt", step, total, time.perf_counter() - t0, label)
    return report


def _batch(s: RunSettings, layout: Layout, tile: int) -> int:
    if s.plane_batch is not None:
        return int(s.plane_batch)
    core = (min(tile, layout.yx[0]), min(tile, layout.yx[1]))
    return default_batch(core, 1 if layout.stack is None else layout.shape[layout.stack])


def _tiles(plan: Plan, meth, image, store: Store, s: RunSettings, todo: list[int], scheduler):
    """Run jobs ``todo`` here or on the cluster; yields each job's report."""
    if not todo:
        return
    if scheduler is not None:
        yield from run_on_cluster(scheduler, plan, image, store.path, todo, s)
        return
    if s.compile:
        meth.compile()
    yield from run_jobs(plan, meth, image, store.writers(meth.extras), todo, s.precision)


def run_to_completion(gen: Generator[Progress, None, StoreResult], callback=None) -> StoreResult:
    """Drive :func:`denoise_iter` to the end, calling ``callback(progress)`` per step."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(p)
