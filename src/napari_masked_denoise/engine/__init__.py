"""The tiled engine: any N-d array in, a zarr store out (see :mod:`.run`)."""

from .run import Progress, StoreResult, denoise_iter, open_result, run_to_completion

__all__ = ["Progress", "StoreResult", "denoise_iter", "run_to_completion", "open_result"]
