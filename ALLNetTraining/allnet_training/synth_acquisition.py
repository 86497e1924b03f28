"""Acquisition effects for domain-randomised synthesis: bias field, thick slices, noise,
8-bit quantisation, and the pipeline's intensity normalisation from a whole-brain sample.

Arrays are numpy KJI on a 1 mm grid (a crop region of the working grid); positions are
working-grid voxel coordinates (k, j, i) in mm. Randomness comes only from the
``numpy.random.Generator`` passed in.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from allnet.plan import SUPPORTED_NORMALISATIONS, TISSUE_REFERENCE_TARGETS
from allnet.preprocessing.intensity import normalise, tissue_reference
from allnet.tissue import CSF, WM


class BiasField:
    """Smooth multiplicative field over the whole working grid: ``exp(sum of a few random
    low-frequency cosines)`` with wavelengths 120-400 mm, scaled so that the log field
    stays within +-``strength``. Evaluated at any voxel positions, so a crop and the
    whole-brain intensity sample see the same field."""

    def __init__(self, rng: np.random.Generator, strength: float, n_terms: int = 4) -> None:
        directions = rng.standard_normal((n_terms, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelength = rng.uniform(120.0, 400.0, n_terms)
        self.k = directions * (2 * np.pi / wavelength)[:, None]
        self.phase = rng.uniform(0, 2 * np.pi, n_terms)
        weights = rng.uniform(-1.0, 1.0, n_terms)
        self.weights = strength * weights / max(float(np.abs(weights).sum()), 1e-6)

    def at(self, positions: np.ndarray) -> np.ndarray:
        """Field at positions (..., 3) in voxels (float32, same leading shape)."""
        log = np.zeros(positions.shape[:-1], np.float64)
        for k, phase, w in zip(self.k, self.phase, self.weights):
            log += w * np.cos(positions @ k + phase)
        return np.exp(log).astype(np.float32)

    def on_box(self, start: np.ndarray, shape: tuple[int, int, int], step: int = 4) -> np.ndarray:
        """Field on the box of ``shape`` voxels whose first voxel is ``start`` (k, j, i),
        computed every ``step`` voxels and interpolated (trilinear): with wavelengths of
        120 mm and more, the error is below 0.1 %."""
        import torch
        import torch.nn.functional as F

        # cos(k.x + phase) = Re(e^{i phase} e^{i k0 x0} e^{i k1 x1} e^{i k2 x2}): per-axis
        # complex exponentials and one outer-product sum instead of a 3D cosine per term
        coarse = [int(np.ceil((n - 1) / step)) + 1 for n in shape]
        axes = [np.arange(c, dtype=np.float64) * step + s for c, s in zip(coarse, start)]
        factors = [np.exp(1j * np.outer(self.k[:, a], axes[a])).astype(np.complex64) for a in range(3)]
        first = (self.weights * np.exp(1j * self.phase)).astype(np.complex64)[:, None] * factors[0]
        log = np.einsum("tk,tj,ti->kji", first, factors[1], factors[2]).real.astype(np.float32)
        full = [(c - 1) * step + 1 for c in coarse]
        log = F.interpolate(torch.from_numpy(log)[None, None], size=tuple(full), mode="trilinear",
                            align_corners=True)[0, 0, :shape[0], :shape[1], :shape[2]].numpy()
        return np.exp(log).astype(np.float32)


def thick_slice_matrix(n: int, thickness: float, phase: float) -> np.ndarray:
    """(n, n) operator along one axis: a Gaussian slice profile (FWHM = ``thickness`` mm)
    sampled at slice centres ``phase + m * thickness`` and linearly interpolated back to
    every 1 mm voxel, as a 2D acquisition resampled onto the working grid looks."""
    x = np.arange(n, dtype=np.float64)
    centres = np.arange(phase - thickness, n + thickness, thickness)
    sigma = thickness / 2.355
    profile = np.exp(-0.5 * ((centres[:, None] - x[None, :]) / sigma) ** 2)
    acquire = profile / profile.sum(axis=1, keepdims=True)  # (slices, n)
    # linear interpolation from slice centres back to voxel centres
    j = np.clip(np.searchsorted(centres, x, side="right") - 1, 0, len(centres) - 2)
    w = (x - centres[j]) / thickness
    back = np.zeros((n, len(centres)))
    back[np.arange(n), j] = 1 - w
    back[np.arange(n), j + 1] = w
    return (back @ acquire).astype(np.float32)


def thick_slices(image: np.ndarray, axis: int, thickness: float, phase: float) -> np.ndarray:
    """``image`` as seen through 2D slices of ``thickness`` mm along ``axis`` (module doc)."""
    matrix = thick_slice_matrix(image.shape[axis], thickness, phase)
    moved = np.moveaxis(image, axis, -1)
    return np.moveaxis(moved @ matrix.T, -1, axis).astype(np.float32)


def noisy(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``|image + sigma * N(0, 1)|`` (float32): magnitude-image noise. Inside the brain the
    signal is many times ``sigma``, where Rician noise is Gaussian; the absolute value keeps
    dark CSF non-negative, as a magnitude image is."""
    if sigma <= 0:
        return image.astype(np.float32)
    return np.abs(image + sigma * rng.standard_normal(image.shape, dtype=np.float32))


def quantise(image: np.ndarray, top: float, levels: int = 256) -> np.ndarray:
    """Round to ``levels`` grey levels over [0, ``top``] (values above saturate): an image
    stored as 8 bits."""
    step = top / (levels - 1)
    return (np.clip(np.round(image / step), 0, levels - 1) * step).astype(np.float32)


def robust_zscore(image: np.ndarray, mask: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``allnet.preprocessing.intensity.normalise`` with the brain statistics (median, IQR)
    taken from ``reference`` (intensities of a random sample of the whole brain) instead of
    ``image[mask]``: a crop does not hold the whole brain. Float32, zero outside ``mask``."""
    return normalise(image, mask, reference)


def pipeline_normalised(image: np.ndarray, mask: np.ndarray, reference: np.ndarray,
                        reference_tissue: np.ndarray, normalisation: str, modality: str) -> np.ndarray:
    """The model's normalisation (``allnet.plan`` names) of a crop of ``modality``
    ('flair'/'t1'/'t2'): :func:`robust_zscore`, then, where the normalisation re-references
    that modality (``allnet.plan.TISSUE_REFERENCE_TARGETS``, with its targets),
    ``allnet.preprocessing.intensity.tissue_reference`` with the WM and CSF medians of
    ``reference`` (``reference_tissue``: its T1W tissue class per value, ``allnet.tissue``
    codes 1 CSF, 3 WM)."""
    if normalisation not in SUPPORTED_NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalisation!r}")
    zscored = robust_zscore(image, mask, reference)
    targets = TISSUE_REFERENCE_TARGETS[normalisation]
    if modality not in targets:
        return zscored
    ref = normalise(reference, np.ones(reference.shape, dtype=bool), reference)
    return tissue_reference(zscored, mask, ref[reference_tissue == WM], ref[reference_tissue == CSF],
                            *targets[modality])


def smooth_noise(shape: tuple[int, ...], rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian-smoothed white noise (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, truncate=3.0)
    std = float(field.std())
    return field / (std if std > 0 else 1.0)
