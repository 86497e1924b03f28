"""Noise harmonisation: smooth a normalised image until its voxel-scale noise is no higher
than a fixed level, so scanners differ less in noise at the network's input.

Noise is measured as the standard deviation, in eroded white matter, of the image minus its
3x3x3 local mean (normalised units; the same measure the model card reports per scan). A
scan already at or under the target is returned unchanged; a noisier one is smoothed with
the smallest isotropic Gaussian (voxels of the working grid, i.e. mm on the 1 mm MNI grid)
that brings the measure down to the target, found by bisection. Smoothing is confined to
the brain (normalised convolution), so the zero background does not darken the brain edge.
Everything is deterministic.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

from ..tissue import WM
from .intensity import apply_normalisation, normalise

# Smallest Gaussian sigma tried, largest allowed (voxels), and bisection steps: a 0.03-voxel
# resolution, far finer than the measure's spread between scans of one scanner.
SIGMA_MIN, SIGMA_MAX, BISECTION_STEPS = 0.2, 2.0, 6
# Fewer eroded-WM voxels than this and the noise is not measured (the image is left alone).
MIN_WM_VOXELS = 1000
# The bisection smooths only the white-matter core's bounding box plus this margin (voxels):
# scipy's Gaussian reaches int(4 sigma + 0.5) = 8 voxels at SIGMA_MAX and the local mean 1
# more, so the noise measured in the core is exactly that of the whole smoothed volume.
_BOX_MARGIN = int(4.0 * SIGMA_MAX + 0.5) + 2


def white_matter_core(brain_mask: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """White matter (``allnet.tissue`` labels) eroded by 2 voxels, inside ``brain_mask``:
    the voxels where local variation is noise rather than anatomy."""
    wm = (tissue == WM) & (brain_mask > 0)
    return ndimage.binary_erosion(wm, iterations=2)


def noise_level(image: np.ndarray, core: np.ndarray) -> float:
    """Voxel-scale noise of ``image`` (normalised units): standard deviation over ``core`` of
    the image minus its 3x3x3 mean. NaN when ``core`` has fewer than MIN_WM_VOXELS voxels."""
    if int(core.sum()) < MIN_WM_VOXELS:
        return float("nan")
    image = image.astype(np.float32, copy=False)
    residual = image - ndimage.uniform_filter(image, 3)
    return float(residual[core].std(dtype=np.float64))


def _box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown by ``margin`` voxels, clipped to the array."""
    lo_hi = [np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
             for axis in range(mask.ndim)]
    return tuple(slice(max(0, int(ix[0]) - margin), min(n, int(ix[-1]) + margin + 1))
                 for ix, n in zip(lo_hi, mask.shape))


def _rounded(value: float) -> float | None:
    return round(value, 4) if np.isfinite(value) else None


class _MaskedSmoother:
    """Gaussian smoothing (sigma in voxels) restricted to ``inside``: the smoothed image
    divided by the smoothed mask, zero outside. The smoothed masks are kept per sigma, since
    every modality of a case shares the mask and the bisection often tries the same sigmas."""

    def __init__(self, inside: np.ndarray) -> None:
        self.inside = inside
        self._weights: dict[float, np.ndarray] = {}

    def __call__(self, image: np.ndarray, sigma: float) -> np.ndarray:
        weight = self._weights.get(sigma)
        if weight is None:
            weight = self._weights[sigma] = ndimage.gaussian_filter(self.inside.astype(np.float32), sigma)
        num = ndimage.gaussian_filter(np.where(self.inside, image, 0.0).astype(np.float32), sigma)
        out = np.zeros_like(image, dtype=np.float32)
        out[self.inside] = num[self.inside] / np.maximum(weight[self.inside], 1e-6)
        return out


def harmonise_noise(image: np.ndarray, brain_mask: np.ndarray, tissue: np.ndarray,
                    target: float) -> tuple[np.ndarray, dict[str, float]]:
    """``image`` (normalised, KJI working grid, zero outside ``brain_mask``) smoothed to a
    voxel-scale noise of at most ``target`` (see the module docstring); ``tissue``: the
    case's tissue labels on the same grid. Returns the image (float32) and a record
    ``{"noise_before", "noise_after", "sigma_voxels"}`` (sigma 0: left unchanged; noise
    None where too little white matter was found to measure it)."""
    return _Harmoniser(brain_mask, tissue)(image, target)


class _Harmoniser:
    """:func:`harmonise_noise` for the modalities of one case: the white-matter core, its
    box and the smoothed masks are computed once and shared."""

    def __init__(self, brain_mask: np.ndarray, tissue: np.ndarray) -> None:
        self.core = white_matter_core(brain_mask, tissue)
        inside = brain_mask > 0
        self.full = _MaskedSmoother(inside)
        self.box = _box(self.core, _BOX_MARGIN) if self.core.any() else None
        self.boxed = _MaskedSmoother(inside[self.box]) if self.box is not None else None

    def __call__(self, image: np.ndarray, target: float) -> tuple[np.ndarray, dict[str, float]]:
        core = self.core
        before = noise_level(image, core)
        record = {"noise_before": _rounded(before), "noise_after": _rounded(before), "sigma_voxels": 0.0}
        if not np.isfinite(before) or before <= target:
            return image.astype(np.float32, copy=False), record
        image_box, core_box = image[self.box], core[self.box]
        lo, hi = SIGMA_MIN, SIGMA_MAX
        best_sigma = hi
        for _ in range(BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            if noise_level(self.boxed(image_box, mid), core_box) <= target:
                best_sigma, hi = mid, mid
            else:
                lo = mid
        best = self.full(image, best_sigma)
        record.update(noise_after=_rounded(noise_level(best, core)), sigma_voxels=round(best_sigma, 4))
        return best, record


def harmonise_images(images: dict[str, np.ndarray], brain_mask: np.ndarray, tissue: np.ndarray,
                     target: float) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
    """:func:`harmonise_noise` on every modality of ``images`` (robust z-scored, keyed
    'flair'/'t1'/'t2'); a smoothed modality is robust z-scored again, since smoothing narrows
    its spread. ``target`` <= 0 leaves them as they are. Returns the images and one record
    per modality."""
    if target <= 0:
        return images, {}
    harmonise = _Harmoniser(brain_mask, tissue)

    def one(image: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        smoothed, record = harmonise(image, target)
        changed = record["sigma_voxels"] > 0
        return (normalise(smoothed, (brain_mask > 0) & (image != 0)) if changed else image), record

    # modalities are independent and scipy's filters release the GIL: two at a time on two
    # cores, each with exactly the result it has alone
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = dict(zip(images, pool.map(one, images.values())))
    return {name: image for name, (image, _) in done.items()}, {name: rec for name, (_, rec) in done.items()}


def model_inputs(images: dict[str, np.ndarray], brain_mask: np.ndarray, tissue: np.ndarray,
                 normalisation: str, noise_target: float
                 ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]]]:
    """The input steps of a model's plan on robust z-scored images (KJI working grid, keyed
    'flair'/'t1'/'t2'): noise harmonisation to ``noise_target`` (0: off), then the
    ``normalisation`` (``allnet.plan`` names). The one function segmentation, longitudinal
    runs and training apply. Returns the images and the harmonisation records."""
    images, records = harmonise_images(images, brain_mask, tissue, noise_target)
    return apply_normalisation(images, brain_mask, tissue, normalisation), records
