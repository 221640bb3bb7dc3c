"""A run's report as text for users: the CLI's summary and the widget's status line.

The engine and the methods return numbers and dicts
(:class:`~napari_masked_denoise.engine.StoreResult`, its ``info["method_report"]``);
this module is the one place that turns them into words, for both front ends.
"""

from __future__ import annotations

import math

import numpy as np

from .noise.levels import CORRELATED
from .noise.sure import IMPULSE_SHARE

__all__ = [
    "describe_report",
    "run_summary",
    "choice_text",
    "status_text",
    "time_left",
    "gain_text",
    "short_spec",
]


def describe_report(report: dict, intensity_range=(0.0, 1.0)) -> list[str]:
    """Lines for a user about what a method reported.

    Parameters
    ----------
    report : dict
        A run's ``info["method_report"]``: ``auto``'s choice, estimates and candidates,
        zero-shot filling's held-out stopping points (``stopped_at``).
    intensity_range : tuple of float
        The input's intensity range the engine normalised by (``info["intensity_range"]``);
        the report's errors, in normalised units, are given in input units.

    Returns
    -------
    list of str
        ``auto``'s choice, estimates and candidates ranked by their estimated error, and
        zero-shot filling's held-out stopping point; empty when there is nothing to say.
    """
    lines = []
    if report.get("stopped_at"):
        it = report["stopped_at"]
        lines.append(
            f"stopped  at iteration {min(it)}-{max(it)} (median {int(np.median(it))}) "
            f"of {len(it)} tile(s), where the held-out loss was lowest"
        )
    if not report.get("choice"):
        return lines
    span = float(intensity_range[1] - intensity_range[0])
    score = report.get("score")
    sure = score in ("sure", "model")  # the loss is an estimated error, not a held-out loss
    how = {"sure": "SURE", "model": "Stein's risk under the noise model"}.get(
        score, "held-out pixels"
    )
    why = f", {report['score_reason']}" if report.get("score_reason") else ""
    lines.append(
        f"chose    {report['choice']} (lowest estimated error of "
        f"{len(report['scores'])} candidates, by {how}{why})"
    )
    if str(report["choice"]).startswith("identity"):
        why = f" ({report['kept_reason']})" if report.get("kept_reason") else ""
        lines.append(
            f"kept     the input unchanged: no candidate is estimated better than it{why} "
            "(choose a method to apply one anyway)"
        )
    corr = report.get("noise_correlation")
    impulsive = (report.get("impulse_share") or 0.0) > IMPULSE_SHARE  # impulses raise the ratio too
    if (
        score != "model"
        and corr is not None
        and np.isfinite(corr)
        and corr > CORRELATED
        and not impulsive
    ):
        lines.append(
            "warning  the noise looks spatially correlated "
            f"(lag-2/lag-1 ratio {corr:.2f}): the error estimates, and so the choice, "
            "are unreliable (benchmarks/RESULTS.md)"
        )
    mse, gain = report.get("estimated_mse"), report.get("estimated_gain_db")
    if mse is not None and gain is not None and np.isfinite(gain):
        lines.append(
            f"estimate rms error {math.sqrt(mse) * span:.4g} (input units), "
            f"PSNR gain {gain_text(gain)} over the input ({how})"
        )
    return lines + _ranked(report["scores"], sure, span)


def _ranked(scores: dict, sure: bool, span: float) -> list[str]:
    """One line per candidate, the lowest estimated error first."""
    lines = []
    ranked = sorted(
        scores.items(), key=lambda kv: (kv[1].get("loss") is None, kv[1].get("loss") or 0.0)
    )
    best = ranked[0][1]["loss"]
    for spec, sc in ranked:
        if sc.get("loss") is None:
            lines.append(f"    {spec:24s} skipped ({sc.get('skipped', 'failed')})")
        elif sure:
            rms = math.sqrt(max(sc["loss"], 0.0)) * span
            lines.append(f"    {spec:24s} est. rms error {rms:9.4g}  {sc['seconds']:7.2f} s")
        else:
            lines.append(
                f"    {spec:24s} held-out loss {sc['loss'] / best:6.3f} x best  "
                f"{sc['seconds']:7.2f} s"
            )
    return lines


def run_summary(res, input_path, seconds: float, axes_note: str = "") -> list[str]:
    """The CLI's summary of a finished run, one string per printed line.

    Parameters
    ----------
    res : StoreResult
        What the run wrote.
    input_path : str or path
        The input, as the summary names it.
    seconds : float
        Wall time of the run as the user saw it (throughput is computed from it).
    axes_note : str
        Appended to the axes, e.g. ``" (guessed; pass --axes to set)"``.

    Returns
    -------
    list of str
        The ``input``, ``method``, ``time``, ``noise`` and ``output`` lines, then
        :func:`describe_report`'s.
    """
    mvox = res.voxels / 1e6
    cluster = res.info.get("cluster")
    where = res.info["device"] if cluster is None else f"cluster {cluster}"
    return [
        f"input    {input_path}  shape {tuple(res.denoised.shape)}  axes {res.axes}{axes_note}",
        f"method   {res.method} / {res.preset} ({res.mode} mode, {where}, "
        f"{res.info['tiles']} tiles, {res.info['tiling']})",
        f"time     {seconds:.1f} s  ({mvox / seconds:.3f} Mvoxel/s)",
        *noise_lines(res.info.get("noise_model")),
        f"output   {res.path}  ({_layout(res)})",
        *describe_report(res.info.get("method_report", {}), res.info["intensity_range"]),
    ]


def _layout(res) -> str:
    """Where the output's images are, in words."""
    from .engine.store import ATTR

    meta = dict(res.group.attrs.get(ATTR, {}))
    levels = int(meta.get("levels") or 1)
    extras = "".join(f", {name} in {name}/" for name in res.extras)
    kind = "OME-Zarr image" if "ome" in res.group.attrs else "zarr group"
    return (
        f"{kind}: denoised at 0 ({levels} pyramid level{'s' if levels > 1 else ''}), "
        f"noise map in noise_map/{extras}"
    )


def noise_line(model: dict | None) -> str | None:
    """The noise model's one line (``None`` when it was not estimated)."""
    if not model:
        return None
    from .noise.model import NoiseModel

    return NoiseModel.from_dict(model).describe()


def noise_lines(model: dict | None) -> list[str]:
    """The noise model's line for the CLI summary (none when it was not estimated)."""
    line = noise_line(model)
    return [] if line is None else [f"noise    {line} (input units)"]


def choice_text(res) -> str:
    """``auto``'s choice and estimated gain, to lead a status line.

    Parameters
    ----------
    res : StoreResult
        What the run wrote.

    Returns
    -------
    str
        e.g. ``"auto chose total variation (tv:fixed), est. +6.2 dB; "``; ``"auto kept the input (no
        method estimated better); "``; ``""`` for other methods.
    """
    rep = res.info.get("method_report") or {}
    if not rep.get("choice"):
        return ""
    if str(rep["choice"]).startswith("identity"):
        return "auto kept the input (no method estimated better); "
    gain = rep.get("estimated_gain_db")
    est = f", est. {gain_text(gain)}" if gain is not None and np.isfinite(gain) else ""
    spec = str(rep["choice"])
    return f"auto chose {FRIENDLY.get(spec.split(':')[0], spec)} ({spec}){est}; "


FRIENDLY = {
    "tv": "total variation",
    "nlm": "non-local means",
    "wavelet": "wavelet shrinkage",
    "bm3d": "BM3D",
    "zero-shot": "zero-shot filling",
    "ttt-mim": "TTT-MIM",
    "meta-tta": "meta-TTA",
    "masked-transformer": "the masked transformer",
}
"""Method names in words, for the widget's status line."""


GAIN_TRUSTED_DB = 12.0
"""Estimated gains above this are reported as "over +12 dB": on held-out training images
the true gain behind such estimates was 5.3-12.1 dB (median 9), whatever the estimate
(``benchmarks/RESULTS.md``, "Auto: Stein's risk under the noise model")."""


def gain_text(gain: float) -> str:
    """An estimated PSNR gain in words: ``"+6.2 dB"``, or ``"over +12 dB"`` where the
    estimate says no more than that."""
    return f"over +{GAIN_TRUSTED_DB:.0f} dB" if gain > GAIN_TRUSTED_DB else f"{gain:+.1f} dB"


def status_text(res, preview: bool = False) -> str:
    """The widget's one-line status after a run (or a preview) finished.

    Parameters
    ----------
    res : StoreResult
        What the run wrote.
    preview : bool
        Whether it was a preview of a crop of one slice.

    Returns
    -------
    str
        ``"done: <choice>T s; <noise model>"``, or ``"preview: ..."`` the same way.
    """
    line = noise_line(res.info.get("noise_model"))
    noise = "" if line is None else f"; {line}"
    what = "preview" if preview else "done"
    return f"{what}: {choice_text(res)}{res.seconds:.1f} s{noise}"


def time_left(seconds: float, done: int, total: int) -> str:
    """``"about 12 s"`` from the rate so far (``""`` before there is one)."""
    if done <= 0 or done >= total or seconds <= 0:
        return ""
    left = seconds / done * (total - done)
    if left < 1:
        return ""
    return f"about {left:.0f} s" if left < 120 else f"about {left / 60:.0f} min"


def short_spec(spec: str, sep: str = ":") -> str:
    """``"nlm"`` for ``"nlm:default"`` (a method's default preset goes unsaid, so that
    layer names stay short), else ``"tv<sep>fixed"``."""
    from .methods import default_preset

    name, _, preset = str(spec).partition(":")
    try:
        default = default_preset(name)
    except Exception:  # not a registered method: said as it is
        return str(spec)
    return name if not preset or preset == default else f"{name}{sep}{preset}"
