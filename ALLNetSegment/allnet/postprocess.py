"""One post-processing for every caller: from the network's vote to lesion instances.

``allnet segment`` applies it on the FLAIR's native grid, cross-validation and evaluation
on the working grid; the values come from the model's inference plan (``allnet.plan``),
so a threshold chosen on out-of-fold predictions is exactly what users get.

Steps: the vote image (fraction of members voting lesion, or a binary mask; linear
resampling makes it fractional) is cut at 0.5; connected components at
``plan.connectivity``; components under ``plan.min_lesion_mm3`` (mm3 of the image's own
voxels) are dropped; each remaining component gets a lesion score, the peak of the
sphere-head probability inside it, and components scoring below
``plan.lesion_score_threshold`` are dropped. Ids are 1..N by decreasing volume.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .grid import same_grid
from .lesions import label_lesions
from .plan import InferencePlan


@dataclass
class Lesions:
    """``labels``: lesion ids 1..N (uint16, or uint32 above 65,535), geometry of the input;
    ``scores``: lesion id -> lesion score (0-1), empty without a score map;
    ``dropped_by_score``: number of components removed by the lesion-score threshold."""

    labels: sitk.Image
    scores: dict[int, float]
    dropped_by_score: int = 0


def component_peaks(labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-id maximum of ``values`` over ``labels`` (KJI arrays of one shape); index = id,
    entry 0 (background) is 0."""
    n = int(labels.max()) if labels.size else 0
    peaks = np.zeros(n + 1, dtype=np.float64)
    inside = labels > 0
    np.maximum.at(peaks, labels[inside].astype(np.intp), values[inside].astype(np.float64))
    return peaks


def postprocess(vote: sitk.Image, plan: InferencePlan, score_map: sitk.Image | None = None) -> Lesions:
    """Lesion instances from a vote image (see module docstring); ``score_map`` is the
    sphere-head probability (0-1) on the same grid as ``vote``, or None."""
    labels = label_lesions(vote >= 0.5, connectivity=plan.connectivity,
                           min_size_mm3=plan.min_lesion_mm3)
    if score_map is None:
        return Lesions(labels, {})
    if not same_grid(score_map, vote):
        raise ValueError("the lesion-score map must lie on the grid of the vote image")
    ids = sitk.GetArrayFromImage(labels)
    peaks = component_peaks(ids, sitk.GetArrayViewFromImage(score_map))
    keep = peaks >= plan.lesion_score_threshold
    keep[0] = False
    dropped = int((~keep[1:]).sum())
    if dropped:
        # Surviving ids keep their (volume) order; renumber them 1..M.
        remap = np.zeros(peaks.size, dtype=ids.dtype)
        remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=ids.dtype)
        renumbered = sitk.GetImageFromArray(remap[ids])
        renumbered.CopyInformation(labels)
        labels, peaks = renumbered, np.concatenate([[0.0], peaks[keep]])
    scores = {int(i): float(peaks[i]) for i in range(1, peaks.size)}
    return Lesions(labels, scores, dropped)


def postprocess_array(vote: np.ndarray, plan: InferencePlan, score_map: np.ndarray | None = None,
                      spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> tuple[np.ndarray, dict[int, float]]:
    """:func:`postprocess` on KJI arrays of one grid (``spacing_mm`` in i, j, k order; the
    working grid is 1 mm). Returns (lesion ids KJI, scores)."""
    def image(array: np.ndarray) -> sitk.Image:
        img = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
        img.SetSpacing(tuple(float(s) for s in spacing_mm))
        return img

    result = postprocess(image(vote), plan, None if score_map is None else image(score_map))
    return sitk.GetArrayFromImage(result.labels), result.scores
