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
LESION_CONTRAST: dict[str, tuple[float, float]] = {
    "t1": (-0.45, 0.0),
    "t2": (0.35, 0.80),
    "flair": (0.45, 1.00),
}
_CONN26 = np.ones((3, 3, 3), dtype=bool)


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


def _wm_fraction(wm: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(wm, dtype=np.float32), 0.0, 1.0)


def _brain_span(image: np.ndarray, wm_core: np.ndarray,
                brain_mask: np.ndarray | None) -> tuple[float, float]:
    """(median WM intensity, 5th-95th percentile span of brain intensities) of one image."""
    if brain_mask is not None:
        support = brain_mask > 0
    else:
        support = image != 0
        if support.mean() > 0.95:
            raise ValueError("the image has no zero background; pass brain_mask to insert_lesions")
    values = image[support]
    low, high = np.percentile(values, [5.0, 95.0])
    wm_values = image[wm_core & support]
    if wm_values.size == 0:
        raise ValueError("no white matter (wm >= 0.9) inside the brain: cannot derive lesion contrast")
    return float(np.median(wm_values)), float(high - low)


def insert_lesions(images: dict[str, np.ndarray], lesion_mask: np.ndarray, wm: np.ndarray,
                   rng: np.random.Generator, *, contrast: dict[str, tuple[float, float]] | None = None,
                   brain_mask: np.ndarray | None = None, base_mask: np.ndarray | None = None,
                   spacing: Sequence[float] = (1.0, 1.0, 1.0),
                   border_mm: float = 0.7) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Paint the lesions of ``lesion_mask`` into ``images`` (keys 't1', 't2', 'flair'; KJI).

    Per 26-connected lesion a severity is drawn, and per modality the lesion intensity is WM
    median + c * span (``contrast[modality]`` = range of c, default ``LESION_CONTRAST``; span =
    5th-95th percentile of brain intensities), so it fits any intensity scale (raw or
    normalised). The change is weighted by a "lesion load" map (the mask with a Gaussian
    border of ``border_mm``) times the WM fraction ``wm`` (in [0, 1] or boolean): nothing
    changes where there is no white matter. ``brain_mask`` defaults to the image's non-zero
    voxels (preprocessed images are zero outside the brain).

    Returns new images (inputs untouched) and the lesion mask (uint8): lesion voxels with WM
    fraction >= 0.5, united with ``base_mask`` (e.g. the image's existing lesions).
    """
    contrast = {**LESION_CONTRAST, **(contrast or {})}
    unknown = set(images) - set(contrast)
    if unknown:
        raise ValueError(f"no lesion contrast for modalities {sorted(unknown)}")
    lesion = np.asarray(lesion_mask) > 0
    wm_frac = _wm_fraction(wm)
    labels, n_lesions = ndimage.label(lesion, structure=_CONN26)
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
    crop_lesion = lesion[box].astype(np.float32)
    load = np.maximum(crop_lesion, ndimage.gaussian_filter(crop_lesion, sigma)) * wm_frac[box]
    blurred = np.maximum(ndimage.gaussian_filter(crop_lesion, sigma), 1e-6)
    wm_core = wm_frac >= 0.9
    for name, image in out.items():
        wm_median, span = _brain_span(images[name], wm_core, brain_mask)
        low, high = contrast[name]
        delta = (low + (high - low) * jitter[name]) * span
        per_voxel = np.zeros_like(crop_lesion)
        inside = labels[box] > 0
        per_voxel[inside] = delta[labels[box][inside] - 1]
        # Spread each lesion's value into its soft border (normalised convolution).
        spread = ndimage.gaussian_filter(per_voxel, sigma) / blurred
        spread[inside] = per_voxel[inside]
        image[box] += (load * spread).astype(np.float32)
    return out, mask.astype(np.uint8)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random 3x3 rotation matrix (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _free(occupied: np.ndarray, shape_mask: np.ndarray, corner: Sequence[int]) -> bool:
    """True when ``shape_mask`` at ``corner`` neither overlaps nor touches ``occupied``."""
    lo = [max(0, c - 1) for c in corner]
    hi = [min(n, c + s + 1) for c, s, n in zip(corner, shape_mask.shape, occupied.shape)]
    region = occupied[tuple(slice(a, b) for a, b in zip(lo, hi))]
    if not region.any():
        return True
    grown = ndimage.binary_dilation(np.pad(shape_mask, 1), structure=_CONN26)
    offset = [a - (c - 1) for a, c in zip(lo, corner)]
    grown = grown[tuple(slice(o, o + r) for o, r in zip(offset, region.shape))]
    return not (grown & region).any()


def _candidates(wm: np.ndarray, where: np.ndarray | None) -> np.ndarray:
    ok = _wm_fraction(wm) >= 0.5
    if where is not None:
        ok &= np.asarray(where) > 0
    flat = np.flatnonzero(ok)
    if flat.size == 0:
        raise ValueError("no white-matter voxel (wm >= 0.5) is available for lesion centres")
    return flat


def ellipsoid_lesions(shape: Sequence[int], wm: np.ndarray, n: int, rng: np.random.Generator,
                      radius_mm: tuple[float, float] = (1.5, 6.0), *,
                      spacing: Sequence[float] = (1.0, 1.0, 1.0), where: np.ndarray | None = None,
                      existing: np.ndarray | None = None, min_kept: float = 0.5,
                      max_tries: int = 200) -> np.ndarray:
    """Mask (uint8, KJI) of ``n`` randomly oriented ellipsoidal lesions in white matter.

    Semi-axes are drawn uniformly from ``radius_mm``; centres from WM voxels (wm >= 0.5, and
    ``where`` if given); each ellipsoid is clipped to WM (keeping the part connected to its
    centre; an ellipsoid that keeps less than ``min_kept`` of its volume is redrawn).
    Lesions neither overlap nor touch each other or ``existing``, so the mask has
    ``n`` 26-connected components unless the space ran out (then fewer).
    """
    shape = tuple(int(s) for s in shape)
    if tuple(np.shape(wm)) != shape:
        raise ValueError(f"wm shape {np.shape(wm)} differs from {shape}")
    spacing_arr = np.asarray(spacing, dtype=float)
    wm_ok = _wm_fraction(wm) >= 0.5
    occupied = np.zeros(shape, bool) if existing is None else np.asarray(existing) > 0
    occupied = occupied.copy()
    result = np.zeros(shape, np.uint8)
    flat = _candidates(wm, where)
    placed = 0
    for _ in range(max_tries * max(n, 1)):
        if placed >= n:
            break
        centre = np.array(np.unravel_index(flat[rng.integers(flat.size)], shape))
        axes = rng.uniform(radius_mm[0], radius_mm[1], 3)
        half = np.ceil(axes.max() / spacing_arr).astype(int) + 1
        lo, hi = centre - half, centre + half + 1
        if (lo < 0).any() or (hi > np.array(shape)).any():
            continue
        grid = np.stack(np.meshgrid(*(np.arange(-h, h + 1) * s for h, s in zip(half, spacing_arr)),
                                    indexing="ij"), axis=-1)
        local = grid @ _rotation(rng)  # voxel offsets (mm) in the ellipsoid's own axes
        body = ((local / axes) ** 2).sum(-1) <= 1.0
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        body &= wm_ok[box]
        comp, _ = ndimage.label(body, structure=_CONN26)
        centre_label = comp[tuple(half)]
        if centre_label == 0:
            continue
        body = comp == centre_label
        if body.sum() * spacing_arr.prod() < min_kept * 4.0 / 3.0 * np.pi * axes.prod():
            continue
        if not _free(occupied, body, lo):
            continue
        result[box][body] = 1
        occupied[box] |= body
        placed += 1
    return result


class LesionShapeBank:
    """The 26-connected lesion components of a set of lesion masks, as cropped boolean shapes.

    Build it once (labelling 29 MNI masks takes a few seconds) and call :meth:`place` per
    training sample. ``spacing`` is the masks' voxel size in mm (KJI order); components
    smaller than ``min_volume_mm3`` are left out.
    """

    def __init__(self, masks: Sequence[np.ndarray], *, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                 min_volume_mm3: float = 10.0) -> None:
        self.spacing = tuple(float(s) for s in spacing)
        voxel_mm3 = float(np.prod(self.spacing))
        self.shapes: list[np.ndarray] = []
        for mask in masks:
            labels, _ = ndimage.label(np.asarray(mask) > 0, structure=_CONN26)
            for index, box in enumerate(ndimage.find_objects(labels), start=1):
                if box is None:
                    continue
                shape = labels[box] == index
                if shape.sum() * voxel_mm3 >= min_volume_mm3:
                    self.shapes.append(shape)

    def __len__(self) -> int:
        return len(self.shapes)

    def _variant(self, shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random mirror along each axis and a random 90-degree turn in an isotropic plane."""
        for axis in range(3):
            if rng.random() < 0.5:
                shape = np.flip(shape, axis)
        planes = [(a, b) for a, b in ((0, 1), (0, 2), (1, 2))
                  if abs(self.spacing[a] - self.spacing[b]) < 1e-6]
        if planes:
            plane = planes[rng.integers(len(planes))]
            shape = np.rot90(shape, k=int(rng.integers(4)), axes=plane)
        return np.ascontiguousarray(shape)

    def place(self, wm: np.ndarray, n: int, rng: np.random.Generator, *,
              existing: np.ndarray | None = None, where: np.ndarray | None = None,
              min_wm_fraction: float = 0.5, max_tries: int = 100) -> np.ndarray:
        """Mask (uint8, KJI, grid of ``wm``) of ``n`` bank lesions at random WM locations.

        Each shape (randomly mirrored/turned) is centred on a WM voxel (wm >= 0.5, and
        ``where`` if given), must have at least ``min_wm_fraction`` of its voxels in WM, and
        must neither overlap nor touch ``existing`` or the lesions placed before it.
        Returns only the new lesions (fewer than ``n`` if no free place was found).
        """
        if not self.shapes:
            raise ValueError("the lesion shape bank is empty")
        grid_shape = np.array(np.shape(wm))
        wm_ok = _wm_fraction(wm) >= 0.5
        occupied = (np.zeros(wm_ok.shape, bool) if existing is None
                    else np.asarray(existing) > 0).copy()
        result = np.zeros(wm_ok.shape, np.uint8)
        flat = _candidates(wm, where)
        placed = 0
        for _ in range(max_tries * max(n, 1)):
            if placed >= n:
                break
            shape = self._variant(self.shapes[rng.integers(len(self.shapes))], rng)
            centre = np.array(np.unravel_index(flat[rng.integers(flat.size)], wm_ok.shape))
            com = np.round(ndimage.center_of_mass(shape)).astype(int)
            lo = centre - com
            hi = lo + np.array(shape.shape)
            if (lo < 0).any() or (hi > grid_shape).any():
                continue
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            if (wm_ok[box] & shape).sum() < min_wm_fraction * shape.sum():
                continue
            if not _free(occupied, shape, lo):
                continue
            result[box][shape] = 1
            occupied[box] |= shape
            placed += 1
        return result


def sample_lesion_shapes(masks: Sequence[np.ndarray] | LesionShapeBank, wm: np.ndarray, n: int,
                         rng: np.random.Generator, *, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                         existing: np.ndarray | None = None,
                         where: np.ndarray | None = None) -> np.ndarray:
    """Place ``n`` real lesion shapes, drawn from the 26-connected components of ``masks``
    (lesion masks on the grid of ``wm``, voxel size ``spacing`` mm), at random WM locations.

    Shapes are optionally mirrored and turned by 90 degrees and avoid ``existing`` lesions.
    Returns the mask of the new lesions only (uint8, KJI). Pass a :class:`LesionShapeBank`
    instead of ``masks`` to label the masks once for many calls.
    """
    bank = masks if isinstance(masks, LesionShapeBank) else LesionShapeBank(masks, spacing=spacing)
    return bank.place(wm, n, rng, existing=existing, where=where)
