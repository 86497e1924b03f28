"""GM/WM/CSF segmentation of a T1W image on the working grid.

Method: a three-class Gaussian mixture on T1W intensities inside the brain mask, fitted
by EM, with the template tissue probability maps as per-voxel (spatial) priors, as in
atlas-guided segmentation (Ashburner & Friston 2005, without the bias and warp terms:
preprocessing has already corrected the bias field and registered the case to the
template). The priors are smoothed (Gaussian, ``PRIOR_SMOOTHING_MM``) and mixed with a
uniform floor (``PRIOR_FLOOR``) so that an affine-only alignment and MS lesions (hypo- or
isointense on T1W, so labelled CSF or GM) never meet a zero prior. After EM one
neighbourhood step multiplies the prior by the Gaussian-smoothed posteriors, which removes
isolated misclassified voxels without a full MRF.

All arrays are numpy KJI. Intensities are in the units of the input (any affine scale
works: class means and spreads are estimated). Results are deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import InputError
from .grid import WORKING_SHAPE_KJI

BACKGROUND, CSF, GM, WM = 0, 1, 2, 3
TISSUE_NAMES: dict[int, str] = {BACKGROUND: "background", CSF: "CSF", GM: "GM", WM: "WM"}

PRIOR_SMOOTHING_MM = 2.0  # absorbs residual misalignment after affine registration
PRIOR_FLOOR = 0.1  # share of a uniform prior mixed into the atlas priors
NEIGHBOURHOOD_SIGMA_VOX = 1.0  # Gaussian sigma of the final neighbourhood step
MAX_ITERATIONS = 100  # EM stops earlier, when no class mean moves by more than TOLERANCE
TOLERANCE = 1e-4  # of the 0.5-99.5 percentile intensity range (real T1W: ~40 iterations)
_MIN_STD_FRACTION = 1e-3  # floor of a class spread, as a fraction of the intensity range
# EM estimates 6 numbers; a fixed-stride sample of this many voxels pins them to within ~0.2 %
# of a full-mask fit, at a fraction of the cost. The final posteriors use every voxel.
EM_SAMPLE_VOXELS = 200_000


@dataclass
class TissueSegmentation:
    """Result of :func:`segment_tissue` (arrays KJI, same shape as the input).

    ``labels``: uint8, 0 background, 1 CSF, 2 GM, 3 WM.
    ``posteriors``: float32 (3, K, J, I) probabilities of CSF, GM, WM (sum 1 in the mask,
    0 outside). ``means``/``stds``: (3,) class intensity mean and spread (input units)."""

    labels: np.ndarray
    posteriors: np.ndarray
    means: np.ndarray
    stds: np.ndarray


def grey_matter_indicator(labels: np.ndarray) -> np.ndarray:
    """float32 KJI, 1 where ``labels`` (tissue classes, same grid) is GM, else 0: the map whose
    mean over a lesion is its grey-matter fraction (``allnet.postprocess``)."""
    return (np.asarray(labels) == GM).astype(np.float32)


@lru_cache(maxsize=1)
def template_priors(sigma_mm: float = PRIOR_SMOOTHING_MM) -> np.ndarray:
    """Smoothed template CSF, GM, WM priors on the working grid: float32 (3, K, J, I),
    read-only, cached per process and on disk (``allnet.disk_cache``)."""
    from . import grid, templates
    from .disk_cache import keyed_path, read_arrays, write_arrays

    path = keyed_path(f"tissue_priors_sigma{sigma_mm:g}", __file__, templates.__file__, grid.__file__)
    stored = read_arrays(path, {"priors": ((3,) + WORKING_SHAPE_KJI, "float32")})
    if stored is None:
        priors = _build_priors(sigma_mm)
        write_arrays(path, {"priors": priors})
    else:
        priors = stored["priors"]
    priors.setflags(write=False)
    return priors


def _build_priors(sigma_mm: float) -> np.ndarray:
    from .templates import load_template

    template = load_template()
    maps = []
    for image in (template.csf, template.gm, template.wm):
        if sigma_mm > 0:
            image = sitk.SmoothingRecursiveGaussian(image, sigma_mm)
        maps.append(np.clip(sitk.GetArrayFromImage(image), 0.0, 1.0))
    return np.stack(maps).astype(np.float32)


def _bounding_box(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """Slices of the bounding box of ``mask`` grown by ``pad`` voxels (clipped to the array)."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    return tuple(slice(max(s.start - pad, 0), min(s.stop + pad, n)) for s, n in zip(box, mask.shape))


def _log_likelihoods(x: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """Gaussian log-densities (up to a shared constant), shape (3, N)."""
    z = (x[None, :] - means[:, None]) / stds[:, None]
    return -0.5 * z * z - np.log(stds)[:, None]


def _posteriors(log_prior: np.ndarray, loglik: np.ndarray) -> np.ndarray:
    """Normalised posteriors from log-prior and log-likelihood, shape (3, N), float32."""
    logp = log_prior + loglik
    logp -= logp.max(axis=0, keepdims=True)
    post = np.exp(logp)
    post /= post.sum(axis=0, keepdims=True)
    return post


def _fit(x: np.ndarray, weights: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Weighted class means and standard deviations, shapes (3,)."""
    total = weights.sum(axis=1) + 1e-12
    means = weights @ x / total
    var = np.einsum("cn,cn->c", weights, (x[None, :] - means[:, None]) ** 2) / total
    return means.astype(np.float32), np.maximum(np.sqrt(var), floor).astype(np.float32)


def _check_inputs(t1: np.ndarray, brain_mask: np.ndarray, priors: np.ndarray | None) -> np.ndarray:
    if t1.ndim != 3 or t1.shape != brain_mask.shape:
        raise InputError(None, f"T1W shape {t1.shape} and brain mask shape {brain_mask.shape} differ "
                               "(both must be 3D arrays on the same grid)")
    if priors is None:
        if t1.shape != WORKING_SHAPE_KJI:
            raise InputError(None, f"T1W shape {t1.shape} is not the working grid {WORKING_SHAPE_KJI}; "
                                   "pass priors for other grids")
        priors = template_priors()
    if priors.shape != (3,) + t1.shape:
        raise InputError(None, f"priors shape {priors.shape} must be (3,) + {t1.shape}")
    if not brain_mask.any():
        raise InputError(None, "brain mask is empty")
    return priors


def _intensity_range(x: np.ndarray) -> float:
    """The 0.5-99.5 percentile range of the brain's intensities (EM tolerance and spread floor)."""
    lo, hi = np.percentile(x, [0.5, 99.5])
    return max(float(hi - lo), 1e-6)


def _mixed_priors(p: np.ndarray, prior_floor: float) -> np.ndarray:
    """Priors (3, N) normalised per voxel and mixed with a uniform floor, float32."""
    p = np.clip(p.astype(np.float32), 0.0, None)
    p /= np.maximum(p.sum(axis=0, keepdims=True), 1e-6)
    return (1.0 - prior_floor) * p + prior_floor / 3.0


def _em(image: np.ndarray, brain_mask: np.ndarray, priors: np.ndarray, max_iterations: int,
        prior_floor: float) -> tuple:
    """EM of the three-class mixture on a fixed-stride sample of the brain's voxels.
    Returns (box, mask in the box, intensities, log priors, means, stds); the means are in
    the priors' order (CSF, GM, WM), not sorted."""
    box = _bounding_box(brain_mask != 0, pad=2)
    mask = brain_mask[box] != 0
    x = np.asarray(image[box][mask], dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise InputError(None, "T1W has NaN or infinite values inside the brain mask")
    intensity_range = _intensity_range(x)
    std_floor = intensity_range * _MIN_STD_FRACTION
    p = _mixed_priors(np.stack([pr[box][mask] for pr in priors]), prior_floor)
    log_prior = np.log(p)

    stride = max(x.size // EM_SAMPLE_VOXELS, 1)
    means, stds = _em_loop(x[::stride], p[:, ::stride], log_prior[:, ::stride], std_floor,
                           intensity_range, max_iterations)
    return box, mask, x, log_prior, means, stds


def _em_loop(xs: np.ndarray, p: np.ndarray, log_prior: np.ndarray, std_floor: float,
             intensity_range: float, max_iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """EM iterations on sampled intensities ``xs`` with priors ``p`` (3, N): class means, stds."""
    means, stds = _fit(xs, p, std_floor)
    for _ in range(max(int(max_iterations), 1)):
        post = _posteriors(log_prior, _log_likelihoods(xs, means, stds))
        previous = means
        means, stds = _fit(xs, post, std_floor)
        if np.max(np.abs(means - previous)) < TOLERANCE * intensity_range:
            break
    return means, stds


def class_means(image: np.ndarray, brain_mask: np.ndarray, priors: np.ndarray | None = None) -> np.ndarray:
    """Mean intensity of the CSF, GM and WM classes of ``image`` (KJI, working grid unless
    ``priors`` are given) inside ``brain_mask``: the EM of :func:`segment_tissue` with the
    template priors, in the priors' order and NOT sorted, so it shows the image's contrast
    (T1W: CSF < GM < WM; FLAIR: CSF darkest, GM near WM; T2W: CSF brightest). Input units."""
    priors = _check_inputs(image, brain_mask, priors)
    # only the EM sample is needed (the voxels segment_tissue's EM uses), not the whole brain
    inside = np.flatnonzero(np.asarray(brain_mask).ravel() != 0)
    inside = inside[:: max(inside.size // EM_SAMPLE_VOXELS, 1)]
    xs = np.asarray(image, dtype=np.float32).ravel()[inside]
    if not np.all(np.isfinite(xs)):
        raise InputError(None, "image has NaN or infinite values inside the brain mask")
    intensity_range = _intensity_range(xs)
    p = _mixed_priors(priors.reshape(3, -1)[:, inside], PRIOR_FLOOR)
    means, _ = _em_loop(xs, p, np.log(p), intensity_range * _MIN_STD_FRACTION, intensity_range, MAX_ITERATIONS)
    return means


def segment_tissue(t1: np.ndarray, brain_mask: np.ndarray, priors: np.ndarray | None = None, *,
                   max_iterations: int = MAX_ITERATIONS, prior_floor: float = PRIOR_FLOOR,
                   neighbourhood_sigma_vox: float = NEIGHBOURHOOD_SIGMA_VOX) -> TissueSegmentation:
    """Segment CSF, GM and WM in ``t1`` (KJI float) inside ``brain_mask`` (KJI, nonzero = brain).

    ``priors``: (3, K, J, I) CSF, GM, WM prior probabilities; default: the smoothed template
    priors (then ``t1`` must be on the working grid). ``neighbourhood_sigma_vox`` 0 skips the
    final neighbourhood step. Raises InputError for mismatched shapes, an empty mask or
    non-finite intensities in the mask.
    """
    priors = _check_inputs(t1, brain_mask, priors)
    box, mask, x, log_prior, means, stds = _em(t1, brain_mask, priors, max_iterations, prior_floor)
    loglik = _log_likelihoods(x, means, stds)
    post = _posteriors(log_prior, loglik)

    if neighbourhood_sigma_vox > 0:
        field = np.zeros(mask.shape, dtype=np.float32)
        local = np.empty_like(post)
        for c in range(3):
            field[mask] = post[c]
            local[c] = ndimage.gaussian_filter(field, neighbourhood_sigma_vox, truncate=3.0)[mask]
        post = _posteriors(log_prior + np.log(np.maximum(local, 1e-4)), loglik)

    # CSF is the darkest class on T1W; keep the label order whatever the EM converged to.
    order = np.argsort(means)
    post, means, stds = post[order], means[order], stds[order]

    labels = np.zeros(t1.shape, dtype=np.uint8)
    posteriors = np.zeros((3,) + t1.shape, dtype=np.float32)
    labels_box = labels[box]
    labels_box[mask] = (np.argmax(post, axis=0) + 1).astype(np.uint8)
    for c in range(3):
        posteriors[c][box][mask] = post[c]
    return TissueSegmentation(labels=labels, posteriors=posteriors, means=means.astype(np.float32),
                              stds=stds.astype(np.float32))
