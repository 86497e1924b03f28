"""Per-modality intensity normalisation inside the brain on the working grid.

Robust z-score: ``(x - median) / (IQR / 1.349)`` over the brain voxels, so that normal
tissue has unit spread (IQR / 1.349 is the standard deviation of a normal distribution)
while hyperintense lesions, which may fill several percent of the brain, neither shift the
reference nor get clipped. Values are limited to +-CLIP to bound artefacts; zero outside
the brain.
"""
from __future__ import annotations

import numpy as np

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
