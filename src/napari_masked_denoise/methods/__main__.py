"""``python -m napari_masked_denoise.methods``: write the method catalogue."""

import json

from . import CATALOGUE, catalogue

CATALOGUE.write_text(json.dumps(catalogue(), indent=1) + "\n")
print(f"wrote {CATALOGUE}")
