"""A small picture of the run's noise model in the dock widget.

Left: the noise level against intensity (the model's curve over its intensity bins, in
the input's units). Right: the correlation kernel at lags -3..3 (white: 1, black: 0,
red: negative). Hidden until a run reports a model.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QWidget

from ..noise.model import NoiseModel

__all__ = ["NoisePlot"]


class NoisePlot(QWidget):
    """Paints a :class:`~napari_masked_denoise.noise.model.NoiseModel`.

    Attributes
    ----------
    model : NoiseModel or None
        What is shown (``None``: the widget is hidden).
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.model: NoiseModel | None = None
        self.setMinimumHeight(90)
        self.setToolTip("noise level against intensity; correlation of neighbouring pixels' noise")
        self.hide()

    def set_model(self, model: dict | NoiseModel | None) -> None:
        """Show ``model`` (a :class:`NoiseModel` or its ``to_dict()``), or hide."""
        self.model = NoiseModel.from_dict(model) if isinstance(model, dict) else model
        self.setVisible(self.model is not None)
        self.update()

    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The plotted ``(intensity, sigma)`` points."""
        m = self.model
        lo, hi = min(m.intensities), max(m.intensities)
        x = np.linspace(lo, hi if hi > lo else lo + 1.0, 32)
        return x, m.sigma(x)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        if self.model is None:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        w, h = self.width(), self.height()
        side = min(h - 20, w // 3)
        self._paint_curve(p, QRectF(4, 4, w - side - 16, h - 20))
        self._paint_kernel(p, QRectF(w - side - 4, 4, side, side))
        p.setPen(QColor(200, 200, 200))
        p.drawText(
            QRectF(4, h - 16, w - 8, 14), Qt.AlignLeft, "noise sigma against intensity; correlation"
        )
        p.end()

    def _paint_curve(self, p: QPainter, box: QRectF) -> None:
        x, s = self.curve()
        top = float(s.max()) * 1.1 or 1.0
        span = float(x[-1] - x[0]) or 1.0
        pts = [
            QPointF(
                box.left() + (xi - x[0]) / span * box.width(),
                box.bottom() - si / top * box.height(),
            )
            for xi, si in zip(x, s)
        ]
        p.setPen(QPen(QColor(120, 120, 120), 1))
        p.drawRect(box)
        p.setPen(QPen(QColor(255, 200, 80), 2))
        for a, b in zip(pts[:-1], pts[1:]):
            p.drawLine(a, b)
        p.setPen(QColor(200, 200, 200))
        p.drawText(box.adjusted(3, 2, -3, -2), Qt.AlignTop | Qt.AlignLeft, f"{top / 1.1:.3g}")

    def _paint_kernel(self, p: QPainter, box: QRectF) -> None:
        k = np.asarray(self.model.kernel, dtype=float)
        n = k.shape[0]
        cell = box.width() / n
        for i in range(n):
            for j in range(n):
                v = float(np.clip(k[i, j], -1.0, 1.0))
                c = (
                    QColor(int(255 * v), int(255 * v), int(255 * v))
                    if v >= 0
                    else QColor(int(-200 * v), 0, 0)
                )
                p.fillRect(QRectF(box.left() + j * cell, box.top() + i * cell, cell, cell), c)
        p.setPen(QPen(QColor(120, 120, 120), 1))
        p.drawRect(box)
