"""Synthetic MR contrasts from tissue maps, and MS-lesion insertion (demo case and training).

All arrays are numpy volumes indexed [k, j, i] (KJI); ``spacing`` is the voxel size in mm
in the same KJI order. Randomness comes only from the ``numpy.random.Generator`` passed in,
so every function is deterministic for a given generator state.

Intensities are relative (white matter of T1W about 0.8); relative tissue intensities follow
typical 1.5/3 T clinical contrasts: T1W WM > GM > CSF, T2W CSF > GM > WM, FLAIR GM > WM with
dark CSF. MS lesions are hyperintense on T2W and FLAIR and iso- to hypointense on T1W.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .lesion_shapes import (CONN26, LesionShapeBank, ellipsoid_lesions, sample_lesion_shapes,
                            wm_fraction)

# The lesion-shape generators are part of this module's API (defined in lesion_shapes.py).
__all__ = ["MODALITIES", "TISSUE_INTENSITY", "LESION_CONTRAST", "synthesize_contrasts",
           "insert_lesions", "bias_field", "add_rician_noise", "smooth_random_field",
           "ellipsoid_lesions", "sample_lesion_shapes", "LesionShapeBank"]

MODALITIES: tuple[str, ...] = ("t1", "t2", "flair")

# Relative intensity of each tissue per modality (CSF, GM, WM).
TISSUE_INTENSITY: dict[str, tuple[float, float, float]] = {
    "t1": (0.22, 0.55, 0.80),
    "t2": (1.00, 0.62, 0.46),
    "flair": (0.12, 0.70, 0.52),
}
# Head layers outside the brain mask: (name, inner distance mm, outer distance mm) and the
# layer's intensity per modality. Marrow and fat are bright on T1W; bone is dark everywhere.
# CSF also fills every non-brain voxel inside the brain's smooth envelope (negative distance).
SHELL_LAYERS: tuple[tuple[str, float, float], ...] = (
    ("csf", -100.0, 2.0), ("bone", 2.0, 3.5), ("marrow", 3.5, 5.5), ("bone", 5.5, 7.0),
    ("fat", 7.5, 11.5), ("skin", 11.5, 13.5),
)
SHELL_INTENSITY: dict[str, dict[str, float]] = {
    "t1": {"csf": 0.22, "bone": 0.04, "marrow": 0.70, "fat": 0.95, "skin": 0.45},
    "t2": {"csf": 1.00, "bone": 0.03, "marrow": 0.45, "fat": 0.70, "skin": 0.35},
    "flair": {"csf": 0.12, "bone": 0.03, "marrow": 0.40, "fat": 0.62, "skin": 0.40},
}
# Lesion minus WM intensity, as a fraction of the image's brain intensity span (5th to 95th
# percentile inside the brain), drawn per lesion in these ranges. Works at any intensity scale.
# The ranges match the lesions of the Lesjak et al. 2018 MNI cases (FLAIR median ~0.35,
# T2W ~0.35, T1W ~-0.15 of the span).
LESION_CONTRAST: dict[str, tuple[float, float]] = {
    "t1": (-0.45, 0.0),
    "t2": (0.15, 0.65),
    "flair": (0.20, 0.60),
}


def _resample_to(coarse: sitk.Image, shape: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """Linear resampling of ``coarse`` onto the grid of ``shape`` (KJI) and ``spacing`` mm,
    origin 0, identity direction."""
    reference = sitk.Image([int(n) for n in shape[::-1]], sitk.sitkFloat32)
    reference.SetSpacing([float(s) for s in spacing[::-1]])
    return sitk.GetArrayFromImage(sitk.Resample(coarse, reference, sitk.Transform(),
                                                sitk.sitkLinear, 0.0, sitk.sitkFloat32))


def _image(array: np.ndarray, step: float) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    image.SetSpacing([float(step)] * 3)
    return image


def smooth_random_field(shape: Sequence[int], rng: np.random.Generator, scale_mm: float,
                        spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Zero-mean, unit-variance random field (float32, KJI) that varies over ~``scale_mm``.

    Gaussian-smoothed white noise (sigma = scale/2) on a lattice of ~scale/3 spacing, linearly
    interpolated to the grid: the cost is set by the output grid, not by the scale.
    """
    step = max(min(spacing), scale_mm / 3.0)
    extent = [(n - 1) * s for n, s in zip(shape, spacing)]
    coarse_shape = tuple(int(np.ceil(e / step)) + 1 for e in extent)
    coarse = sitk.GetImageFromArray(rng.standard_normal(coarse_shape).astype(np.float32))
    coarse.SetSpacing([step] * 3)
    coarse = sitk.SmoothingRecursiveGaussian(coarse, scale_mm / 2.0)
    field = _resample_to(coarse, shape, spacing)
    std = float(field.std())
    return ((field - field.mean()) / (std if std > 0 else 1.0)).astype(np.float32)


def bias_field(shape: Sequence[int], rng: np.random.Generator, strength: float = 0.2,
               spacing: Sequence[float] = (1.0, 1.0, 1.0), scale_mm: float = 60.0) -> np.ndarray:
    """Smooth multiplicative bias field (float32 KJI, between exp(-strength) and exp(strength)).

    The log field is a sum of three separable products of smooth random 1D profiles (varying
    over ~``scale_mm``): as smooth as a coil's receive profile, and cheap on large grids.
    """
    log_field = np.zeros(tuple(shape), np.float32)
    for _ in range(3):
        term = np.ones((1, 1, 1), np.float32)
        for axis, (n, s) in enumerate(zip(shape, spacing)):
            steps = int(np.ceil(n * s / scale_mm)) + 2
            coarse = rng.standard_normal(steps)
            profile = np.interp(np.arange(n) * s / scale_mm, np.arange(steps) - 0.5, coarse)
            profile = ndimage.gaussian_filter1d(profile, 0.5 * scale_mm / s, mode="nearest")
            term = term * profile.astype(np.float32).reshape([-1 if a == axis else 1 for a in range(3)])
        log_field += term
    log_field -= float(log_field.mean())
    peak = float(np.abs(log_field).max())
    return np.exp(strength / (peak if peak > 0 else 1.0) * log_field).astype(np.float32)


def add_rician_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of std ``sigma`` (Rician; float32)."""
    real = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(image.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag).astype(np.float32)


def _head_layers(brain_mask: np.ndarray, rng: np.random.Generator,
                 spacing: Sequence[float]) -> dict[str, np.ndarray]:
    """Soft fractions of the extracerebral layers (CSF, bone, marrow, fat, skin) around the brain."""
    # The skull follows a smooth envelope of the brain, so the distance is computed on a
    # 2 mm lattice (8x fewer voxels) and interpolated.
    mask = sitk.GetImageFromArray((brain_mask > 0).astype(np.float32))
    mask.SetSpacing([float(s) for s in spacing[::-1]])
    step = max(2.0, max(spacing))
    size = [int(np.ceil((n - 1) * s / step)) + 1 for n, s in zip(mask.GetSize(), mask.GetSpacing())]
    coarse_ref = sitk.Image(size, sitk.sitkFloat32)
    coarse_ref.SetSpacing([step] * 3)
    coarse = sitk.Resample(mask, coarse_ref, sitk.Transform(), sitk.sitkLinear)
    distance_coarse = sitk.SignedMaurerDistanceMap(
        sitk.Cast(coarse > 0.5, sitk.sitkUInt8), insideIsPositive=False, squaredDistance=False,
        useImageSpacing=True)
    # Skull and scalp thickness vary smoothly around the head (up to +-1.5 mm).
    thickness = smooth_random_field(sitk.GetArrayViewFromImage(distance_coarse).shape, rng,
                                    30.0, (step,) * 3)
    thickness = 1.5 * np.tanh(thickness / 2.0)  # bounded: never more than 1.5 mm
    distance_coarse = sitk.Cast(distance_coarse, sitk.sitkFloat32) - _image(thickness, step)
    distance = _resample_to(distance_coarse, brain_mask.shape, spacing)
    outer = SHELL_LAYERS[-1][2]
    near = (brain_mask <= 0) & (distance < outer + 3.0)
    d = distance[near]
    width = 0.4  # mm: soft layer boundaries give partial-volume edges
    layers: dict[str, np.ndarray] = {}
    for name, inner, outer in SHELL_LAYERS:
        frac = np.zeros(brain_mask.shape, np.float32)
        frac[near] = _sigmoid((d - inner) / width) - _sigmoid((d - outer) / width)
        layers[name] = layers[name] + frac if name in layers else frac
    return layers


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def synthesize_contrasts(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, brain_mask: np.ndarray,
                         rng: np.random.Generator, *, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                         head: bool = True, bias: float = 0.2, noise: float = 0.02,
                         texture: float = 0.03,
                         modalities: Sequence[str] = MODALITIES) -> dict[str, np.ndarray]:
    """T1W/T2W/FLAIR images (keys 't1', 't2', 'flair'; float32 KJI) from tissue maps.

    ``gm``, ``wm``, ``csf`` are tissue fractions in [0, 1] (KJI, ``spacing`` mm); voxel
    intensities mix the tissue intensities by these fractions (partial volume). With
    ``head`` a skull/scalp-like shell surrounds ``brain_mask``. ``texture`` is a shared smooth
    tissue variation, ``bias`` the strength of a per-modality multiplicative bias field and
    ``noise`` the Rician noise std (WM of T1W is ~0.8); 0 switches each off.
    """
    shapes = {np.shape(a) for a in (gm, wm, csf, brain_mask)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"tissue maps must be 3D arrays of one shape, got {sorted(shapes)}")
    unknown = set(modalities) - set(TISSUE_INTENSITY)
    if unknown:
        raise ValueError(f"unknown modalities {sorted(unknown)}; known: {MODALITIES}")
    fractions = [np.clip(np.asarray(a, dtype=np.float32), 0.0, 1.0) for a in (csf, gm, wm)]
    total = fractions[0] + fractions[1] + fractions[2]
    inside = (brain_mask > 0).astype(np.float32)
    norm = np.where(total > 1e-3, inside / np.maximum(total, 1e-3), 0.0).astype(np.float32)
    layers = _head_layers(brain_mask, rng, spacing) if head else {}
    tissue_texture = (1.0 + texture * smooth_random_field(gm.shape, rng, 2.5, spacing)
                      if texture > 0 else 1.0)
    images: dict[str, np.ndarray] = {}
    for modality in modalities:
        image = sum(f * v for f, v in zip(fractions, TISSUE_INTENSITY[modality])) * norm
        for name, frac in layers.items():
            image = image + frac * SHELL_INTENSITY[modality][name]
        image = image * tissue_texture
        if bias > 0:
            image = image * bias_field(gm.shape, rng, bias, spacing)
        if noise > 0:
            image = add_rician_noise(image, noise, rng)
        images[modality] = np.asarray(image, dtype=np.float32)
    return images


def _support(image: np.ndarray, brain_mask: np.ndarray | None) -> np.ndarray:
    if brain_mask is not None:
        return np.asarray(brain_mask) > 0
    support = image != 0
    if support.mean() > 0.95:
        raise ValueError("the image has no zero background; pass brain_mask to insert_lesions")
    return support


def _lesion_targets(image: np.ndarray, labels: np.ndarray, reference: np.ndarray,
                    offsets: np.ndarray, pad: int) -> np.ndarray:
    """Per-lesion target intensity: median of the WM around the lesion (box grown by ``pad``
    voxels; whole-image WM if too few voxels there), plus the lesion's offset."""
    global_wm = float(np.median(image[reference]))
    targets = np.empty(len(offsets), np.float64)
    for index, box in enumerate(ndimage.find_objects(labels)):
        grown = tuple(slice(max(0, b.start - pad), b.stop + pad) for b in box)
        local = image[grown][reference[grown]]
        targets[index] = (float(np.median(local)) if local.size >= 50 else global_wm) + offsets[index]
    return targets


def insert_lesions(images: dict[str, np.ndarray], lesion_mask: np.ndarray, wm: np.ndarray,
                   rng: np.random.Generator, *, contrast: dict[str, tuple[float, float]] | None = None,
                   brain_mask: np.ndarray | None = None, base_mask: np.ndarray | None = None,
                   spacing: Sequence[float] = (1.0, 1.0, 1.0),
                   border_mm: float = 0.7) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Paint the lesions of ``lesion_mask`` into ``images`` (keys 't1', 't2', 'flair'; KJI).

    Per 26-connected lesion a severity is drawn; per modality the lesion intensity is the
    median of the surrounding WM (wm >= 0.9 within ~10 mm, so local bias is followed) plus
    c * span, with c in ``contrast[modality]`` (default ``LESION_CONTRAST``) and span the 5th
    to 95th percentile of brain intensities: it fits any intensity scale (raw or normalised).
    Voxels are mixed towards that intensity, keeping their fine texture and noise, with the
    weight of a "lesion load" map (the mask with a Gaussian border of ``border_mm``) times
    the WM fraction ``wm`` (in [0, 1] or boolean): nothing changes where there is no WM or
    outside the brain. ``brain_mask`` defaults to the voxels that are non-zero in every image
    (preprocessed images are zero outside the brain). Pass the case's own WM map where
    there is one: a template prior puts lesions into the cortex of brains unlike it.

    Returns new images (inputs untouched) and the lesion mask (uint8): lesion voxels with WM
    fraction >= 0.5, united with ``base_mask`` (e.g. the image's existing lesions).
    """
    contrast = {**LESION_CONTRAST, **(contrast or {})}
    unknown = set(images) - set(contrast)
    if unknown:
        raise ValueError(f"no lesion contrast for modalities {sorted(unknown)}")
    lesion = np.asarray(lesion_mask) > 0
    support = np.logical_and.reduce([_support(image, brain_mask) for image in images.values()])
    # Lesions only where there is white matter inside the brain of every image.
    wm_frac = wm_fraction(wm) * support
    labels, n_lesions = ndimage.label(lesion, structure=CONN26)
    out = {name: np.array(image, dtype=np.float32, copy=True) for name, image in images.items()}
    mask = lesion & (wm_frac >= 0.5)
    if base_mask is not None:
        mask |= np.asarray(base_mask) > 0
    if n_lesions == 0:
        return out, mask.astype(np.uint8)
    severity = rng.uniform(0.0, 1.0, n_lesions)
    # Per-modality jitter: lesions are not equally conspicuous on every contrast.
    jitter = {name: np.clip(severity + 0.15 * rng.standard_normal(n_lesions), 0.0, 1.0)
              for name in sorted(images)}
    pad = int(np.ceil(4 * border_mm / min(spacing))) + 1
    box = tuple(slice(max(0, s.start - pad), s.stop + pad)
                for s in ndimage.find_objects(lesion.astype(np.uint8))[0])
    sigma = [border_mm / s for s in spacing]
    crop_labels = labels[box]
    inside = crop_labels > 0
    crop_lesion = inside.astype(np.float32)
    blurred = ndimage.gaussian_filter(crop_lesion, sigma)
    load = np.maximum(crop_lesion, blurred) * wm_frac[box]
    blurred = np.maximum(blurred, 1e-6)
    reference = (wm_frac >= 0.9) & ~lesion
    if base_mask is not None:
        reference &= np.asarray(base_mask) == 0
    if not reference.any():
        raise ValueError("no white matter (wm >= 0.9) inside the brain: cannot derive lesion contrast")
    context = int(np.ceil(10.0 / min(spacing)))
    for name, image in out.items():
        low, high = np.percentile(images[name][support], [5.0, 95.0])
        c_low, c_high = contrast[name]
        offsets = (c_low + (c_high - c_low) * jitter[name]) * float(high - low)
        targets = _lesion_targets(images[name], labels, reference, offsets, context)
        per_voxel = np.zeros_like(crop_lesion)
        per_voxel[inside] = targets[crop_labels[inside] - 1]
        # Spread each lesion's target into its soft border (normalised convolution).
        target = ndimage.gaussian_filter(per_voxel, sigma) / blurred
        target[inside] = per_voxel[inside]
        # Mix the local mean towards the target; the residual keeps texture and noise.
        local_mean = ndimage.gaussian_filter(image[box], [1.0 / s for s in spacing])
        image[box] += (load * (target - local_mean)).astype(np.float32)
    return out, mask.astype(np.uint8)
