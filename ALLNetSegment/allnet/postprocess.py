"""One post-processing for every caller: from the network's vote to lesion instances.

``allnet segment`` applies it on the FLAIR's native grid, cross-validation and evaluation
on the working grid; the values come from the model's inference plan (``allnet.plan``),
so a threshold chosen on out-of-fold predictions is exactly what users get.

Steps: the vote image (fraction of members voting lesion, or a binary mask; linear
resampling makes it fractional) is cut at 0.5; connected components at
``plan.connectivity``; components under ``plan.min_lesion_mm3`` (mm3 of the image's own
voxels) are dropped; each remaining component gets a lesion score, the peak of the
sphere-head probability inside it, and components scoring below
``plan.lesion_score_threshold`` are dropped; then components whose mean FLAIR contrast
(``allnet.preprocessing.intensity.flair_contrast``: 0 at the WM median, 1 one WM-CSF
contrast above it) is below ``plan.min_flair_contrast`` are dropped; then components with
more than ``plan.max_grey_matter_fraction`` of their voxels in grey matter (a 0/1 map of the
T1W tissue segmentation's GM class, resampled nearest-neighbour) are dropped. Ids are 1..N by
decreasing volume.
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
    ``dropped_by_score``/``dropped_by_contrast``/``dropped_by_grey_matter``: components
    removed by the lesion-score threshold, the FLAIR-contrast floor and the grey-matter
    fraction (each counted once, by the first rule that removed it)."""

    labels: sitk.Image
    scores: dict[int, float]
    dropped_by_score: int = 0
    dropped_by_contrast: int = 0
    dropped_by_grey_matter: int = 0


def component_peaks(labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-id maximum of ``values`` over ``labels`` (KJI arrays of one shape); index = id,
    entry 0 (background) is 0."""
    n = int(labels.max()) if labels.size else 0
    peaks = np.zeros(n + 1, dtype=np.float64)
    inside = labels > 0
    np.maximum.at(peaks, labels[inside].astype(np.intp), values[inside].astype(np.float64))
    return peaks


def component_means(labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-id mean of ``values`` over ``labels`` (KJI arrays of one shape); index = id,
    entry 0 (background) is 0."""
    n = int(labels.max()) if labels.size else 0
    flat = labels.ravel().astype(np.intp)
    sums = np.bincount(flat, weights=values.ravel().astype(np.float64), minlength=n + 1)
    counts = np.bincount(flat, minlength=n + 1)
    means = np.divide(sums, counts, out=np.zeros(n + 1), where=counts > 0)
    means[0] = 0.0
    return means


def _keep_only(labels: sitk.Image, ids: np.ndarray, keep: np.ndarray) -> tuple[sitk.Image, np.ndarray]:
    """``labels`` with the ids where ``keep`` is False removed and the survivors renumbered
    1..M in their (volume) order; also returns the old id of each new id (index = new id)."""
    remap = np.zeros(keep.size, dtype=ids.dtype)
    remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=ids.dtype)
    renumbered = sitk.GetImageFromArray(remap[ids])
    renumbered.CopyInformation(labels)
    return renumbered, np.concatenate([[0], np.flatnonzero(keep)])


def postprocess(vote: sitk.Image, plan: InferencePlan, score_map: sitk.Image | None = None,
                contrast_map: sitk.Image | None = None,
                grey_matter_map: sitk.Image | None = None) -> Lesions:
    """Lesion instances from a vote image (see module docstring); ``score_map`` is the
    sphere-head probability (0-1), ``contrast_map`` the FLAIR contrast and
    ``grey_matter_map`` 1 in grey matter, 0 elsewhere, each on the grid of ``vote``, or None
    (then that step is skipped)."""
    labels = label_lesions(vote >= 0.5, connectivity=plan.connectivity,
                           min_size_mm3=plan.min_lesion_mm3)
    for name, image in (("lesion-score", score_map), ("FLAIR-contrast", contrast_map),
                        ("grey-matter", grey_matter_map)):
        if image is not None and not same_grid(image, vote):
            raise ValueError(f"the {name} map must lie on the grid of the vote image")
    ids = sitk.GetArrayFromImage(labels)
    n = int(ids.max()) if ids.size else 0
    peaks = (component_peaks(ids, sitk.GetArrayViewFromImage(score_map)) if score_map is not None
             else np.zeros(n + 1))
    keeps = [np.ones(n + 1, dtype=bool) for _ in range(3)]  # score, contrast, grey matter
    if score_map is not None:
        keeps[0] = peaks >= plan.lesion_score_threshold
    if contrast_map is not None and plan.min_flair_contrast > 0:
        keeps[1] = component_means(ids, sitk.GetArrayViewFromImage(contrast_map)) >= plan.min_flair_contrast
    if grey_matter_map is not None and plan.max_grey_matter_fraction < 1:
        keeps[2] = component_means(ids, sitk.GetArrayViewFromImage(grey_matter_map)) <= plan.max_grey_matter_fraction
    dropped, keep = [], np.ones(n + 1, dtype=bool)
    for rule in keeps:
        rule[0] = False
        dropped.append(int((keep[1:] & ~rule[1:]).sum()))
        keep &= rule
    if any(dropped):
        labels, old = _keep_only(labels, ids, keep)
        peaks = peaks[old]
    scores = {} if score_map is None else {int(i): float(peaks[i]) for i in range(1, peaks.size)}
    return Lesions(labels, scores, *dropped)


def postprocess_array(vote: np.ndarray, plan: InferencePlan, score_map: np.ndarray | None = None,
                      spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
                      contrast_map: np.ndarray | None = None,
                      grey_matter_map: np.ndarray | None = None) -> tuple[np.ndarray, dict[int, float]]:
    """:func:`postprocess` on KJI arrays of one grid (``spacing_mm`` in i, j, k order; the
    working grid is 1 mm). Returns (lesion ids KJI, scores)."""
    def image(array: np.ndarray) -> sitk.Image:
        img = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
        img.SetSpacing(tuple(float(s) for s in spacing_mm))
        return img

    result = postprocess(image(vote), plan, None if score_map is None else image(score_map),
                         None if contrast_map is None else image(contrast_map),
                         None if grey_matter_map is None else image(grey_matter_map))
    return sitk.GetArrayFromImage(result.labels), result.scores
