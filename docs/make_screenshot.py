"""The README's widget screenshot: the low-dose CT sample denoised by ``auto`` from the
dock widget, in a headless napari (run under Xvfb)::

    xvfb-run -s "-screen 0 1600x1000x24" python docs/make_screenshot.py
"""

from __future__ import annotations

import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_masked_denoise._napari.samples import ct_sample
from napari_masked_denoise._napari.widget import DenoiseWidget

OUT = Path(__file__).resolve().parent / "widget.png"


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 900)
    for data, kw, _ in ct_sample():
        viewer.add_image(data, **kw)
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Masked denoise", area="right")
    widget.device_combo.value = "cpu"
    widget.run()
    t0 = time.time()
    while widget.busy and time.time() - t0 < 600:
        QApplication.processEvents()
        time.sleep(0.05)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    print(widget.status.value)
    viewer.screenshot(str(OUT), canvas_only=False)
    print("wrote", OUT)
    viewer.close()


if __name__ == "__main__":
    main()
