"""``python -m napari_masked_denoise``: the ``masked-denoise`` command."""

from .cli import main

raise SystemExit(main())
