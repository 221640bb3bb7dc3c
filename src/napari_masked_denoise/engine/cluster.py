"""Cluster mode: the tiles of a run as dask.distributed tasks writing into the zarr store.

The engine adapts the method once, here, and keeps its state in the output store, as a
single-process run does. Each task rebuilds the method from the run's settings and that
state (once per worker process and run), then denoises a group of tiles whose writes no
other group touches (:meth:`.jobs.Plan.groups`: a row of tiles of a block for exact
tilings, a whole block for blended ones) with the same code as a single-process run, so
the output is the same. Consecutive groups are joined into a few tasks per worker, so
that a task runs many tiles through the reader and writer threads. The store's ledger
records every finished tile, so a stopped cluster run resumes like any other.

The workers must reach the input and the output: an input and output on a shared file
system (or object store), or a numpy input, which is scattered to the workers once.
"""

from __future__ import annotations

import os
import threading
import uuid

import numpy as np

from ..core.axes import DenoiseError
from .jobs import run_jobs

__all__ = ["connect", "run_on_cluster", "describe_scheduler"]

_STATE: dict = {}  # per worker process: the method of the current run
_LOCK = threading.Lock()  # one task at a time per process; torch uses the worker's threads


def connect(scheduler):
    """``(client, cluster)`` for a scheduler address, a ``Client`` or a number of local
    worker processes; ``cluster`` is the :class:`LocalCluster` started here, else None."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise DenoiseError("cluster mode needs dask.distributed: pip install distributed") from None
    if isinstance(scheduler, Client):
        return scheduler, None
    if isinstance(scheduler, int) or (isinstance(scheduler, str) and scheduler.isdigit()):
        n = int(scheduler)
        if n < 1:
            raise DenoiseError(f"workers must be at least 1, got {n}")
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=max(1, (os.cpu_count() or 1) // n),
            processes=True,
            dashboard_address=None,
        )
        return Client(cluster), cluster
    try:
        return Client(str(scheduler), timeout="20s"), None
    except OSError as exc:
        raise DenoiseError(f"cannot reach the dask scheduler at {scheduler}: {exc}") from None


def describe_scheduler(scheduler) -> str:
    """The scheduler in words, for the run's report."""
    if isinstance(scheduler, int) or (isinstance(scheduler, str) and scheduler.isdigit()):
        return f"local, {int(scheduler)} processes"
    return str(getattr(scheduler, "scheduler_info", lambda: {})().get("address", scheduler))


def run_on_cluster(scheduler, plan, image, path: str, todo: list[int], settings):
    """Run jobs ``todo`` of ``plan`` on the cluster with the run's ``settings``; yields
    the report of every job of each finished task. Closing the generator cancels the
    tasks not started yet."""
    from distributed import as_completed

    client, cluster = connect(scheduler)
    futures = []
    try:
        key = uuid.uuid4().hex
        data = client.scatter(image, broadcast=True) if isinstance(image, np.ndarray) else image
        plan_f = client.scatter(plan, broadcast=True)
        futures = [
            # no retries: a task re-run after its worker died would add its blended tiles
            # again; the run fails instead, and --resume repairs and finishes it
            client.submit(_task, key, settings, plan_f, data, path, jobs, pure=False, retries=0)
            for jobs in _tasks(plan.groups(todo), len(client.scheduler_info()["workers"]))
        ]
        for fut in as_completed(futures):
            yield from fut.result()
    finally:
        client.cancel(futures)
        if cluster is not None:
            client.close()
            cluster.close()


TASKS_PER_WORKER = 4
"""Tasks per worker process: enough to balance the load, few enough that each task runs
many consecutive tiles (its reader prefetches and reuses decoded input chunks, its
writer overlaps the compute)."""


def _tasks(groups: list[list[int]], workers: int) -> list[list[int]]:
    """Consecutive write-disjoint groups joined into about ``TASKS_PER_WORKER`` tasks
    per worker (a union of disjoint groups stays disjoint from the other tasks)."""
    per = max(1, len(groups) // (TASKS_PER_WORKER * max(1, workers)))
    return [[j for g in groups[i : i + per] for j in g] for i in range(0, len(groups), per)]


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return max(1, os.cpu_count() or 1)


def _method(key: str, settings, path: str):
    """The adapted method of run ``key`` in this process and the store's arrays it
    writes, built on first use."""
    import torch
    import zarr

    from ..core.device import select_device
    from .store import Store

    if _STATE.get("key") != key:
        _STATE.clear()
        torch.set_num_threads(_worker_threads())
        store = Store(zarr.open_group(path, mode="r+"), path)
        meth = settings.build_method(select_device(settings.device), store.noise_model())
        state = store.method_state()
        if state is not None:
            meth.load_state_bytes(state)
        if settings.compile:
            meth.compile()
        _STATE.update(key=key, meth=meth, arrays=store.writers(meth.extras))
    return _STATE["meth"], _STATE["arrays"]


def _task(key, settings, plan, image, path, jobs) -> list[dict]:
    """Run ``jobs`` on this worker; returns their reports."""
    import dask

    from .lock import OutputLock

    # the shared lock tells a later run that this task still writes (lock.check_no_writers)
    with OutputLock(path, shared=True), _LOCK, dask.config.set(scheduler="sync"):
        meth, arrays = _method(key, settings, path)
        return list(run_jobs(plan, meth, image, arrays, jobs, settings.precision))
