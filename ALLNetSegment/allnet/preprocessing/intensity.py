"""Per-modality intensity normalisation inside the brain on the working grid.

Robust z-score: ``(x - median) / (IQR / 1.349)`` over the brain voxels, so that normal
tissue has unit spread (IQR / 1.349 is the standard deviation of a normal distribution)
while hyperintense lesions, which may fill several percent of the brain, neither shift the
reference nor get clipped. Values are limited to +-CLIP to bound artefacts; zero outside
the brain.
"""
from __future__ import annotations

import numpy as np

from ..plan import SUPPORTED_NORMALISATIONS, TISSUE_REFERENCE_TARGETS, WM_CSF_SCALE
from ..tissue import CSF, WM

IQR_TO_SD = 1.349
CLIP = 10.0


def normalise(image: np.ndarray, brain_mask: np.ndarray,
              reference: np.ndarray | None = None) -> np.ndarray:
    """Robust z-score of ``image`` inside ``brain_mask`` (same shape, e.g. KJI working grid).

    The median and IQR come from the image inside the mask, or from ``reference`` when given
    (intensities standing for the whole brain, e.g. for a crop that holds only part of it).
    Returns float32, zero outside the mask. An image without contrast in the brain (IQR of
    zero, e.g. no signal) gives zeros rather than dividing by zero.
    """
    mask = brain_mask > 0
    out = np.zeros(image.shape, dtype=np.float32)
    values = image[mask].astype(np.float64)
    stats = values if reference is None else np.asarray(reference, dtype=np.float64)
    if stats.size == 0 or values.size == 0:
        return out
    q25, median, q75 = np.percentile(stats, [25, 50, 75])
    scale = (q75 - q25) / IQR_TO_SD
    if not np.isfinite(scale) or scale <= 0:
        return out
    out[mask] = np.clip((values - median) / scale, -CLIP, CLIP).astype(np.float32)
    return out


# Fewer reference voxels than this, or a WM-CSF contrast under MIN_CONTRAST robust SDs, and
# the tissue reference is not trusted: the image is only moved so that its WM sits at the level.
MIN_REFERENCE_VOXELS = 100
MIN_CONTRAST = 0.5


def tissue_reference(zscored: np.ndarray, mask: np.ndarray, wm_values: np.ndarray,
                     csf_values: np.ndarray, level: float = 0.0,
                     distance: float = WM_CSF_SCALE) -> np.ndarray:
    """Re-reference a robust z-scored image to its tissues: the WM median goes to ``level``
    and the WM-CSF distance of medians to ``distance`` (both z units), so the image no longer
    depends on how much grey matter there is or how bright it is (a FLAIR with cortex brighter
    than WM moves the whole-brain median and IQR, and with them every lesion).
    ``wm_values``/``csf_values``: the image's values in WM and CSF voxels (z units). Returns
    float32, zero outside ``mask``, clipped to +-CLIP."""
    inside = mask > 0
    out = np.zeros(zscored.shape, dtype=np.float32)
    if not inside.any():
        return out
    wm = np.asarray(wm_values, dtype=np.float64)
    csf = np.asarray(csf_values, dtype=np.float64)
    if wm.size < MIN_REFERENCE_VOXELS:
        out[inside] = zscored[inside]
        return out
    centre = float(np.median(wm))
    contrast = abs(centre - float(np.median(csf))) if csf.size >= MIN_REFERENCE_VOXELS else 0.0
    gain = distance / contrast if contrast >= MIN_CONTRAST else 1.0
    values = (zscored[inside].astype(np.float64) - centre) * gain + level
    out[inside] = np.clip(values, -CLIP, CLIP).astype(np.float32)
    return out


def flair_contrast(flair: np.ndarray, brain_mask: np.ndarray, tissue: np.ndarray) -> np.ndarray | None:
    """FLAIR in units of its own WM-CSF contrast, 0 at the white-matter median: ``(flair -
    median WM) / (median WM - median CSF)`` inside ``brain_mask`` (KJI working grid; tissue
    labels of ``allnet.tissue``, WM and CSF from the T1W). Any affine intensity scale gives the
    same map, so it does not depend on the model's normalisation. Float32, 0 outside the
    brain; None when WM or CSF has too few voxels or CSF is not darker than WM by
    MIN_CONTRAST of the image's units (the contrast floor then cannot be applied)."""
    brain = brain_mask > 0
    wm, csf = flair[brain & (tissue == WM)], flair[brain & (tissue == CSF)]
    if wm.size < MIN_REFERENCE_VOXELS or csf.size < MIN_REFERENCE_VOXELS:
        return None
    wm_median = float(np.median(wm))
    contrast = wm_median - float(np.median(csf))
    spread = float(np.subtract(*np.percentile(flair[brain], [75, 25]))) / IQR_TO_SD
    if not spread > 0 or contrast < MIN_CONTRAST * spread:
        return None
    out = np.zeros(flair.shape, dtype=np.float32)
    out[brain] = ((flair[brain].astype(np.float64) - wm_median) / contrast).astype(np.float32)
    return out


def apply_normalisation(images: dict[str, np.ndarray], brain_mask: np.ndarray,
                        tissue: np.ndarray | None, normalisation: str) -> dict[str, np.ndarray]:
    """The model's normalisation (``allnet.plan`` names) of robust z-scored images (KJI, as
    ``normalise`` returns them, keyed by modality 'flair'/'t1'/'t2') given the case's T1W
    tissue labels (``allnet.tissue``: 1 CSF, 3 WM; same grid). 'robust-zscore' returns the
    images as they are; the others apply :func:`tissue_reference` to the modalities and with
    the targets of ``allnet.plan.TISSUE_REFERENCE_TARGETS`` ('wm-csf': every modality,
    'wm-csf-flair-t1' and 'wm-csf-calibrated': FLAIR and T1W)."""
    if normalisation not in SUPPORTED_NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {SUPPORTED_NORMALISATIONS}, got {normalisation!r}")
    referenced = TISSUE_REFERENCE_TARGETS[normalisation]
    if not referenced:
        return images
    if tissue is None:
        raise ValueError(f"the {normalisation!r} normalisation needs the case's tissue labels")
    brain = brain_mask > 0
    wm, csf = brain & (tissue == WM), brain & (tissue == CSF)
    return {name: tissue_reference(image, brain, image[wm], image[csf], *referenced[name])
            if name in referenced else image for name, image in images.items()}
