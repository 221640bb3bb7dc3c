"""The scripting API, for notebooks and the napari console.

>>> from napari_masked_denoise import denoise
>>> r = denoise(viewer.layers[0].data)  # method "auto"  # doctest: +SKIP
>>> viewer.add_image(r.denoised)                                           # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .core.axes import AxesGuessedWarning, DenoiseError
from .engine import Progress, RunSettings, StoreResult, denoise_iter, run_to_completion

__all__ = [
    "denoise",
    "denoise_to_zarr",
    "DenoiseResult",
    "list_methods",
    "DenoiseError",
]


@dataclass
class DenoiseResult:
    """In-memory result of :func:`denoise`.

    Attributes
    ----------
    denoised, noise_map : numpy.ndarray
        float32, the input's shape. ``noise_map`` is the local robust standard
        deviation of the residual, in the input's intensity units.
    extras : dict of str to numpy.ndarray
        Extra per-pixel outputs some methods give on request, e.g. meta-TTA's
        ``loss_mask`` (option ``mask_layer=True``): where its adaptation loss looked.
    sigma : float
        Global noise sigma estimate (median over tiles of the residual's robust std).
    axes : str
        The axes used (guessed when ``axes_guessed``).
    """

    denoised: np.ndarray
    noise_map: np.ndarray
    sigma: float
    axes: str
    axes_guessed: bool
    method: str
    preset: str
    mode: str
    seconds: float
    info: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    @property
    def residual(self) -> np.ndarray:
        """``input - denoised`` is not stored; see :attr:`noise_map` for its local std."""
        raise AttributeError("the residual is input - denoised; compute it from your input")


def _warn_guess(res: StoreResult) -> None:
    if res.axes_guessed:
        warnings.warn(
            f"axes guessed as {res.axes!r} from the shape; pass axes= to set them",
            AxesGuessedWarning,
            stacklevel=3,
        )


def denoise(
    image,
    method: str = "auto",
    preset: str | None = None,
    axes: str | None = None,
    device=None,
    seed: int = 0,
    *,
    tile: int | None = None,
    mode: str | None = None,
    progress=None,
    **options,
) -> DenoiseResult:
    """Denoise an image or volume in memory.

    Parameters
    ----------
    image : array-like
        numpy, dask or zarr array; for inputs larger than memory use
        :func:`denoise_to_zarr`.
    method, preset : str
        See ``masked-denoise methods`` or :func:`list_methods`. The default, ``auto``,
        scores its candidate methods on held-out pixels of a sample and runs the best;
        ``info["method_report"]`` says which and why. The default preset is the
        method's first.
    axes : str, optional
        e.g. ``"YX"``, ``"ZYX"``, ``"YXC"``; guessed (with a warning) for 2-D and 3-D.
    device : str, optional
        ``"cpu"``, ``"cuda"`` or ``"mps"``; default the best available.
    seed : int
        Equal seeds give equal results.
    tile : int, optional
        Core tile size in Y and X; default: the engine's for the method as it decided
        (:func:`napari_masked_denoise.engine.settings.method_tile`: 1024 for a fixed
        network whose halo covers its receptive field, else the method's own).
    mode : {"per-tile", "once"}, optional
        Default: ``per-tile`` for one 2-D image when the method adapts per tile, else
        ``once`` (:func:`napari_masked_denoise.engine.settings.default_mode`).
    progress : callable, optional
        Called with a :class:`~napari_masked_denoise.engine.Progress` after every step.
    **options
        Method options overriding the preset, e.g. ``iterations=50``.

    Returns
    -------
    DenoiseResult
    """
    settings = RunSettings(
        method=method,
        preset=preset,
        axes=axes,
        device=device,
        seed=seed,
        tile=tile,
        mode=mode,
        options=options,
    )
    res = run_to_completion(denoise_iter(image, None, settings), progress)
    _warn_guess(res)
    return DenoiseResult(
        denoised=np.asarray(res.denoised[...]),
        noise_map=np.asarray(res.noise_map[...]),
        sigma=res.sigma,
        axes=res.axes,
        axes_guessed=res.axes_guessed,
        method=res.method,
        preset=res.preset,
        mode=res.mode,
        seconds=res.seconds,
        info=res.info,
        extras={k: np.asarray(v[...]) for k, v in res.extras.items()},
    )


def denoise_to_zarr(
    image,
    output,
    method: str = "auto",
    preset: str | None = None,
    axes: str | None = None,
    device=None,
    seed: int = 0,
    *,
    tile: int | None = None,
    mode: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    scale=None,
    input_path=None,
    progress=None,
    precision: str = "float32",
    compile: bool = False,
    scheduler=None,
    **options,
) -> StoreResult:
    """Denoise into a zarr store on disk, tile by tile, in bounded memory.

    The store is an OME-Zarr image: the denoised image (the input's shape, float32)
    with its pyramid, the noise map in ``noise_map/``, and, in its attributes, the
    settings, the axes, the scale, ``sigma`` and ``complete``; ``result.denoised`` and
    ``result.noise_map`` are the full-resolution arrays.

    Parameters
    ----------
    image : array-like
        numpy, dask or zarr array, read tile by tile.
    output : str or path
        The zarr store to write.
    method, preset, axes, device, seed, tile, mode
        As in :func:`denoise`.
    resume, overwrite : bool
        Finish an interrupted run of the same settings / replace an existing store
        (only a zarr store is ever replaced).
    scale : sequence of float, optional
        Pixel size per axis, kept in the store.
    input_path : str, optional
        The input's path, kept in the store and never written to.
    progress : callable, optional
        Called with a :class:`~napari_masked_denoise.engine.Progress` after every step.
    precision : {"float32", "mixed"}
        ``mixed``: the fixed network of ``once`` mode under autocast (faster on GPUs).
    compile : bool
        ``torch.compile`` the fixed network of ``once`` mode (for long runs).
    scheduler : str, int or distributed.Client, optional
        Run the tiles on a dask.distributed cluster: an address, a ``Client`` or a
        number of local worker processes; the result equals a single-process run.
    **options
        Method options overriding the preset.

    Returns
    -------
    StoreResult
        The open store (``denoised``, ``noise_map``, ``extras``), ``sigma``, ``info``.

    Raises
    ------
    DenoiseError
        For a bad input or setting, with a one-line message, before the output exists.
    """
    settings = RunSettings(
        method=method,
        preset=preset,
        axes=axes,
        device=device,
        seed=seed,
        tile=tile,
        mode=mode,
        resume=resume,
        overwrite=overwrite,
        scale=scale,
        input_path=input_path,
        options=options,
        precision=precision,
        compile=compile,
    )
    res = run_to_completion(denoise_iter(image, output, settings, scheduler=scheduler), progress)
    _warn_guess(res)
    return res


def list_methods() -> dict[str, dict[str, str]]:
    """The registered methods and their presets.

    Returns
    -------
    dict of str to dict of str to str
        ``{method: {preset: description}}``; each method's first preset is its default.
    """
    from .methods import describe_methods

    return {
        name: {p: pr.description for p, pr in presets.items()}
        for name, _, presets in describe_methods()
    }


__all__ += ["Progress"]
