"""Sample-data providers for napari (``File > Open Sample > Masked Denoise``).

Each returns a list of napari LayerData tuples ``[(data, metadata, "image")]`` holding
only the noisy image; the clean references are available from
:mod:`napari_masked_denoise.samples`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cell_sample", "ct_sample", "volume_sample"]

LayerDataTuple = tuple[Any, dict[str, Any], str]


def cell_sample() -> list[LayerDataTuple]:
    """A noisy 2-D cell image (Poisson-Gaussian noise).

    Returns
    -------
    list of tuple
        ``[(noisy, {"name": "noisy cell"}, "image")]``, ``noisy`` 2-D float32.
    """
    from ..samples import noisy_cell

    noisy, _clean = noisy_cell(seed=0)
    return [(noisy, {"name": "noisy cell"}, "image")]


def ct_sample() -> list[LayerDataTuple]:
    """A low-dose CT stack (ZYX).

    Returns
    -------
    list of tuple
        ``[(noisy, {"name": "low-dose CT", "colormap": "gray"}, "image")]``, ZYX float32.
    """
    from ..samples import lowdose_ct

    noisy, _clean = lowdose_ct(n_slices=8, size=128, seed=0)
    return [(noisy, {"name": "low-dose CT", "colormap": "gray"}, "image")]


def volume_sample() -> list[LayerDataTuple]:
    """A noisy synthetic 3-D fluorescence volume (ZYX).

    Returns
    -------
    list of tuple
        ``[(noisy, {"name": "noisy volume"}, "image")]``, ZYX float32.
    """
    from ..samples import noisy_volume

    noisy, _clean = noisy_volume(shape=(32, 128, 128), seed=0)
    return [(noisy, {"name": "noisy volume"}, "image")]
