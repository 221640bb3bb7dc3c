"""The widget's work that is not Qt layout: Preview's generator (Run's choice, then the
crop) and the greying out of methods this installation cannot run."""

from __future__ import annotations

import numpy as np

from ..engine import RunSettings, denoise_iter
from ..engine.run import choose_iter
from ..methods import unavailable

__all__ = ["preview_iter", "grey_out_unavailable"]


def preview_iter(data, run: RunSettings | None, crop: np.ndarray, settings: RunSettings):
    """Preview's work: with ``run`` (``auto``), first the choice a Run would make on the
    whole layer, then the crop denoised by the chosen method; yields Progress."""
    from ..methods.auto import parse_candidate

    report = None
    if run is not None:
        report = yield from choose_iter(data, run)
        name, preset, opts = parse_candidate(report["choice"])
        settings = settings.replace(method=name, preset=preset, options=opts)
    res = yield from denoise_iter(crop, None, settings)
    if report is not None:
        res.info["method_report"] = report
    return res


def grey_out_unavailable(combo) -> dict[str, str]:
    """Disable the items of the method ``QComboBox`` this installation cannot run, with
    the reason as their tooltip; returns ``{method: reason}``."""
    from qtpy.QtCore import Qt

    out = {}
    for i in range(combo.count()):
        reason = unavailable(combo.itemText(i))
        if reason:
            out[combo.itemText(i)] = reason
            item = combo.model().item(i)
            item.setEnabled(False)
            combo.setItemData(i, f"{combo.itemText(i)}: {reason}", Qt.ItemDataRole.ToolTipRole)
    return out
