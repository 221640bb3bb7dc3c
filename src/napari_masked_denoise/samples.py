"""Sample data: noisy images and volumes with a known clean ground truth.

Everything here is plain numpy / scikit-image (no Qt, no torch) and deterministic for
a seed, so it serves the napari sample-data menu, the tests, the benchmarks and the
files in ``sample_data/`` alike.

* :func:`noisy_cell` - scikit-image's bundled fluorescence ``cell`` image with
  Poisson-Gaussian (shot + read) noise.
* :func:`lowdose_ct` - a low-dose CT stack simulated from the Shepp-Logan phantom:
  Beer-Lambert photon counts with Poisson noise, reconstructed by filtered
  back-projection.
* :func:`noisy_volume` - a synthetic 3-D fluorescence-like volume (blobs and
  filaments) with Poisson-Gaussian noise.
* :func:`write_samples` - writes all of them as TIFF files and zarr v3 arrays.

The noise comes from :mod:`napari_masked_denoise.noise.simulate`: the recipe ``"pg30"``
for the fluorescence samples, :func:`~napari_masked_denoise.noise.simulate.lowdose_sinogram`
for the CT stack.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .noise.simulate import RECIPES, lowdose_sinogram

__all__ = [
    "poisson_gaussian",
    "noisy_cell",
    "lowdose_ct",
    "noisy_volume",
    "write_samples",
]

_NOISE = RECIPES["pg30"]
#: Default photons at intensity 1 (the brightest structures) for the fluorescence samples.
PEAK = float(_NOISE.params["peak"])
#: Default standard deviation of the Gaussian read noise, in units of the [0, 1] signal.
SIGMA_READ = float(_NOISE.params["read"])


def poisson_gaussian(
    clean: np.ndarray,
    rng: np.random.Generator,
    peak: float = PEAK,
    sigma_read: float = SIGMA_READ,
) -> np.ndarray:
    """Add Poisson-Gaussian noise to an image in [0, 1].

    Parameters
    ----------
    clean : numpy.ndarray
        Noiseless signal, nominally in [0, 1] (negative values are treated as 0 for the
        shot noise).
    rng : numpy.random.Generator
        Source of randomness.
    peak : float
        Expected photon count at intensity 1; lower means noisier.
    sigma_read : float
        Standard deviation of the additive Gaussian read noise.

    Returns
    -------
    numpy.ndarray
        ``poisson(clean * peak) / peak + normal(0, sigma_read)`` as float32 (the noise
        recipe ``"pg30"``, rates computed in float64).
    """
    return _NOISE(clean, rng, peak=peak, read=sigma_read)


def _unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)


# --------------------------------------------------------------------------- 2-D cell
def noisy_cell(
    seed: int = 0, peak: float = PEAK, sigma_read: float = SIGMA_READ
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's fluorescence ``cell`` image with Poisson-Gaussian noise.

    Parameters
    ----------
    seed : int
        Seed of the noise; equal seeds give equal images.
    peak : float
        Expected photons at intensity 1 (default 30: a dim, shot-noise-limited image).
    sigma_read : float
        Standard deviation of the Gaussian read noise (default 0.02).

    Returns
    -------
    noisy, clean : numpy.ndarray
        float32 arrays of shape ``(660, 550)``, YX; ``clean`` is scaled to [0, 1].
    """
    from skimage.data import cell

    clean = _unit(cell())
    noisy = poisson_gaussian(clean, np.random.default_rng(seed), peak, sigma_read)
    return noisy, clean


# --------------------------------------------------------------------------- low-dose CT
def _ct_slice(phantom: np.ndarray, z: int, n: int) -> np.ndarray:
    """Slice ``z`` of ``n``: the phantom shrunk towards the ends of the stack and shifted.

    The shrinking follows an ellipsoid (full size in the middle, about 75% at the ends),
    so neighbouring slices are similar, as in a real scan.
    """
    from scipy.ndimage import affine_transform

    size = phantom.shape[0]
    t = 0.0 if n == 1 else (2.0 * z / (n - 1) - 1.0)  # -1 .. 1 along the stack
    s = np.sqrt(1.0 - 0.45 * t * t)  # 1 in the middle, ~0.74 at the ends
    shift = np.array([0.02 * size * t, -0.015 * size * t])  # a slight drift in Y and X
    c = (size - 1) / 2.0
    # output pixel o samples the phantom at c + (o - c - shift) / s
    offset = c - (c + shift) / s
    out = affine_transform(
        phantom, np.eye(2) / s, offset=offset, order=1, mode="constant", cval=0.0
    )
    # radon's circle=True requires zero outside the inscribed circle
    yy, xx = np.mgrid[:size, :size]
    out[(yy - c) ** 2 + (xx - c) ** 2 > (size / 2.0) ** 2] = 0.0
    return out


def lowdose_ct(
    n_slices: int = 8,
    size: int = 128,
    seed: int = 0,
    i0: float = 3e3,
    max_attenuation: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A low-dose CT stack simulated from the Shepp-Logan phantom.

    For every slice a slightly different clean slice is made (the phantom resized to
    ``size``, shrunk towards the ends of the stack and shifted a little), its parallel-
    beam sinogram ``p`` is computed with ``size`` angles over 180 degrees, and turned
    into photon counts by the Beer-Lambert law ``I0 * exp(-mu * p)``. The counts get
    Poisson noise, are converted back to line integrals ``-log(max(counts, 1) / I0) / mu``
    and reconstructed by filtered back-projection (ramp filter). The clean stack is the
    filtered back-projection of the noiseless sinograms, so the two differ only by the
    dose noise (streaks and speckle), not by reconstruction artefacts.

    Parameters
    ----------
    n_slices : int
        Number of slices (Z).
    size : int
        Slice size in Y and X (pixels).
    seed : int
        Seed of the photon noise.
    i0 : float
        Unattenuated photons per detector bin and angle (low dose: 1e3 to 1e4).
    max_attenuation : float
        ``mu`` is chosen so that the thickest ray of the stack is attenuated by
        ``exp(-max_attenuation)`` (3: 5% transmission, typical of a torso).

    Returns
    -------
    noisy, clean : numpy.ndarray
        float32 arrays of shape ``(n_slices, size, size)``, ZYX, in the phantom's
        attenuation units (roughly 0 to 1).
    """
    from skimage.data import shepp_logan_phantom
    from skimage.transform import iradon, radon, resize

    if n_slices < 1 or size < 16:
        raise ValueError(f"need n_slices >= 1 and size >= 16, got {n_slices}, {size}")
    rng = np.random.default_rng(seed)
    phantom = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True, order=1)
    theta = np.linspace(0.0, 180.0, size, endpoint=False)
    sinos = [radon(_ct_slice(phantom, z, n_slices), theta, circle=True) for z in range(n_slices)]
    mu = float(max_attenuation) / max(float(max(s.max() for s in sinos)), 1e-12)

    noisy = np.empty((n_slices, size, size), dtype=np.float32)
    clean = np.empty_like(noisy)
    for z, p in enumerate(sinos):
        noisy[z] = iradon(lowdose_sinogram(p, rng, i0, mu), theta, filter_name="ramp", circle=True)
        clean[z] = iradon(p, theta, filter_name="ramp", circle=True)
    return noisy, clean


# --------------------------------------------------------------------------- 3-D volume
def _synthetic_volume(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Puncta, larger blobs and a few polyline filaments, smoothed, scaled to [0, 1]."""
    from scipy.ndimage import gaussian_filter
    from skimage.draw import line_nd

    shape = tuple(int(s) for s in shape)
    vol = np.zeros(shape, dtype=np.float64)
    n_vox = float(np.prod(shape))

    def smooth_peak(a: np.ndarray, sig: float) -> np.ndarray:
        """Smooth ``a`` (sigma ``sig`` in Y, X; 0.6 * sig in Z) and scale its peak to 1."""
        a = gaussian_filter(a, (0.6 * sig, sig, sig))
        return a / max(float(a.max()), 1e-12)

    def points(density: float) -> np.ndarray:
        pts = np.zeros(shape)
        n = max(1, int(density * n_vox))
        idx = tuple(rng.integers(0, s, n) for s in shape)
        np.add.at(pts, idx, rng.uniform(0.4, 1.0, n))
        return pts

    # puncta and larger, dimmer blobs (cell bodies / vesicle clusters)
    vol += 0.9 * smooth_peak(points(4e-4), 1.2)
    vol += 0.7 * smooth_peak(points(4e-5), 5.0)

    # filaments: polylines through a few random control points
    fil = np.zeros(shape)
    n_fil = max(2, int(round(n_vox / 1.5e5)))
    for _ in range(n_fil):
        pts = [rng.uniform(0, np.array(shape) - 1)]
        for _ in range(4):
            step = rng.normal(0, 1, 3) * np.array(shape) * 0.2
            pts.append(np.clip(pts[-1] + step, 0, np.array(shape) - 1))
        for a, b in zip(pts[:-1], pts[1:]):
            fil[line_nd(a, b, endpoint=True)] = rng.uniform(0.5, 1.0)
    vol += 0.6 * smooth_peak(fil, 1.0)

    vol = np.clip(vol / max(float(vol.max()), 1e-12), 0.0, 1.0)
    return (0.05 + 0.95 * vol).astype(np.float32)  # a little background fluorescence


def noisy_volume(
    shape: tuple[int, int, int] = (32, 128, 128),
    seed: int = 0,
    peak: float = PEAK,
    sigma_read: float = SIGMA_READ,
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic 3-D fluorescence-like volume with Poisson-Gaussian noise.

    The clean volume is a sum of smoothed random puncta, larger blobs and polyline
    filaments (slightly anisotropic, smoother in Z), with a background of 0.05 and
    scaled to [0, 1].

    Parameters
    ----------
    shape : tuple of int
        ``(Z, Y, X)``.
    seed : int
        Seed of both the structure and the noise.
    peak, sigma_read : float
        Noise level, see :func:`poisson_gaussian`.

    Returns
    -------
    noisy, clean : numpy.ndarray
        float32 arrays of ``shape``, ZYX.
    """
    if len(shape) != 3:
        raise ValueError(f"shape must be (Z, Y, X), got {shape}")
    rng = np.random.default_rng(seed)
    clean = _synthetic_volume(shape, rng)
    noisy = poisson_gaussian(clean, rng, peak, sigma_read)
    return noisy, clean


# --------------------------------------------------------------------------- files
def _write_zarr(path: Path, data: np.ndarray) -> None:
    import zarr

    chunks = (min(8, data.shape[0]), min(128, data.shape[1]), min(128, data.shape[2]))
    arr = zarr.create_array(
        store=str(path),
        shape=data.shape,
        chunks=chunks,
        dtype="float32",
        dimension_names=("z", "y", "x"),
        overwrite=True,
    )
    arr[...] = data.astype(np.float32)


def write_samples(folder, seed: int = 0) -> dict[str, Path]:
    """Write every sample, noisy and clean, into ``folder``.

    Files written: ``cell_noisy.tif``, ``cell_clean.tif`` (YX), ``ct_lowdose.tif``,
    ``ct_clean.tif`` (ZYX) and the zarr v3 arrays ``volume.zarr`` (noisy) and
    ``volume_clean.zarr`` (ZYX, chunks ``(8, 128, 128)``, dimension names ``z, y, x``).

    Parameters
    ----------
    folder : str or path
        Output folder; created if missing. Existing files of the same names are replaced.
    seed : int
        Seed of every sample; equal seeds write equal data.

    Returns
    -------
    dict of str to pathlib.Path
        ``{"cell_noisy": ..., "cell_clean": ..., "ct_lowdose": ..., "ct_clean": ...,
        "volume": ..., "volume_clean": ...}``.
    """
    import tifffile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    def tif(name: str, data: np.ndarray, axes: str) -> None:
        path = folder / f"{name}.tif"
        tifffile.imwrite(path, data.astype(np.float32), metadata={"axes": axes})
        out[name] = path

    noisy, clean = noisy_cell(seed)
    tif("cell_noisy", noisy, "YX")
    tif("cell_clean", clean, "YX")
    noisy, clean = lowdose_ct(seed=seed)
    tif("ct_lowdose", noisy, "ZYX")
    tif("ct_clean", clean, "ZYX")
    noisy, clean = noisy_volume(seed=seed)
    for name, data in (("volume", noisy), ("volume_clean", clean)):
        path = folder / f"{name}.zarr"
        _write_zarr(path, data)
        out[name] = path
    return out
