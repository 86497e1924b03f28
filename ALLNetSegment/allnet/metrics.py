"""Voxel- and lesion-wise segmentation metrics (ISBI-2015 definitions) and their summaries.

Masks are boolean (or 0/non-zero) numpy arrays with a voxel spacing in mm, or SimpleITK
images (spacing read from the image). Only the voxel volume (product of the spacing) enters
any metric, so the spacing may be given in any axis order. Lesions are connected components
with 6-, 18- (default, as in ISBI-2015) or 26-connectivity. Definitions, edge cases and the
differences to other evaluation tools are in docs/METRICS.md.

From a probability map: lesion-wise detection curves (LTPR against false-positive lesions per
scan, and against LFPR) over thresholds, and the voxel-wise precision-recall curve with its
average precision (the plots are drawn by ``allnet.evaluate``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Iterable, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, optimize, stats

from .grid import geometry_mismatch  # noqa: F401  (part of this module's API)

CONNECTIVITIES = (6, 18, 26)
DEFAULT_CONNECTIVITY = 18
# Per-case numbers that summaries average and paired tests compare (volumes in mL).
CASE_METRIC_NAMES = (
    "dsc", "ppv", "tpr", "vf1", "ltpr", "lfpr", "lf1", "mr_lesion_f1", "isbi_partial",
    "ref_volume_ml", "pred_volume_ml", "abs_volume_diff_ml",
    "n_ref_lesions", "n_pred_lesions",
)


def structure(connectivity: int) -> np.ndarray:
    """3D neighbourhood for ``scipy.ndimage.label``: 6 (faces), 18 (+edges), 26 (+corners)."""
    if connectivity not in CONNECTIVITIES:
        raise ValueError(f"connectivity must be one of {CONNECTIVITIES}, not {connectivity}")
    return ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])


def label_components(mask: np.ndarray, connectivity: int = DEFAULT_CONNECTIVITY) -> tuple[np.ndarray, int]:
    """Connected components of a 3D mask: (int32 labels 1..n, 0 = background; n)."""
    labels, n = ndimage.label(np.asarray(mask, dtype=bool), structure=structure(connectivity))
    return labels.astype(np.int32, copy=False), int(n)


def remove_small_lesions(
    mask: np.ndarray, voxel_volume_mm3: float, connectivity: int = DEFAULT_CONNECTIVITY,
    min_lesion_mm3: float = 0.0,
) -> np.ndarray:
    """Boolean copy of ``mask`` without components smaller than ``min_lesion_mm3`` (mm^3)."""
    mask = np.asarray(mask, dtype=bool)
    if min_lesion_mm3 <= 0:
        return mask.copy()
    labels, n = label_components(mask, connectivity)
    volumes = np.bincount(labels.ravel(), minlength=n + 1) * voxel_volume_mm3
    keep = volumes >= min_lesion_mm3
    keep[0] = False
    return keep[labels]


def _ratio(numerator: float, denominator: float, empty_value: float) -> float:
    """numerator / denominator; ``empty_value`` when there is nothing to count (0/0)."""
    return float(numerator) / float(denominator) if denominator > 0 else float(empty_value)


def _harmonic(a: float, b: float) -> float:
    return 2.0 * a * b / (a + b) if a + b > 0 else 0.0


@dataclass(frozen=True)
class CaseMetrics:
    """Metrics of one scan. Rates in [0, 1]; volumes in mm^3; counts of lesions (components)."""

    case: str
    dsc: float            # 2|P&G| / (|P|+|G|)
    ppv: float            # |P&G| / |P|          (voxel precision)
    tpr: float            # |P&G| / |G|          (voxel sensitivity)
    vf1: float            # harmonic mean of ppv and tpr
    ltpr: float           # reference lesions overlapped by P / reference lesions
    lfpr: float           # predicted lesions not overlapping G / predicted lesions
    lf1: float            # 2 (1-lfpr) ltpr / ((1-lfpr) + ltpr)
    mr_lesion_f1: float   # TP / (TP + (FP+FN)/2) after one-to-one lesion matching
    n_ref_lesions: int
    n_pred_lesions: int
    n_ref_detected: int   # reference lesions overlapped by the prediction
    n_pred_false: int     # predicted lesions that overlap no reference lesion
    mr_tp: int
    mr_fp: int
    mr_fn: int
    ref_volume_mm3: float
    pred_volume_mm3: float

    @property
    def isbi_partial(self) -> float:
        """This scan's ISBI-2015 terms without volume correlation: DSC/8+PPV/8+(1-LFPR)/4+LTPR/4."""
        return self.dsc / 8 + self.ppv / 8 + (1 - self.lfpr) / 4 + self.ltpr / 4

    @property
    def ref_volume_ml(self) -> float:
        return self.ref_volume_mm3 / 1000.0

    @property
    def pred_volume_ml(self) -> float:
        return self.pred_volume_mm3 / 1000.0

    @property
    def abs_volume_diff_ml(self) -> float:
        return abs(self.pred_volume_mm3 - self.ref_volume_mm3) / 1000.0

    def value(self, name: str) -> float:
        """A per-case number by name (fields and the derived ones in CASE_METRIC_NAMES)."""
        return float(getattr(self, name))

    def as_dict(self) -> dict:
        """Flat row for tables: all fields plus the derived numbers."""
        row = asdict(self)
        for name in ("isbi_partial", "ref_volume_ml", "pred_volume_ml", "abs_volume_diff_ml"):
            row[name] = getattr(self, name)
        return row


def as_mask_array(mask: np.ndarray | sitk.Image) -> tuple[np.ndarray, tuple[float, ...] | None]:
    """Boolean KJI array (non-zero = lesion) and, for an image, its spacing in mm (i, j, k)."""
    if isinstance(mask, sitk.Image):
        return sitk.GetArrayViewFromImage(mask) != 0, tuple(mask.GetSpacing())
    return np.asarray(mask) != 0, None


def _mr_matching(ref_lab: np.ndarray, n_ref: int, pred_lab: np.ndarray, n_pred: int,
                 overlap: np.ndarray, iou_threshold: float) -> int:
    """Number of one-to-one matched lesion pairs (maximum total IoU, each IoU > threshold)."""
    if n_ref == 0 or n_pred == 0 or not overlap.any():
        return 0
    r, p = ref_lab[overlap].astype(np.int64), pred_lab[overlap].astype(np.int64)
    pairs, inter = np.unique(r * (n_pred + 1) + p, return_counts=True)
    r_ids, p_ids = pairs // (n_pred + 1), pairs % (n_pred + 1)
    ref_size = np.bincount(ref_lab.ravel(), minlength=n_ref + 1)
    pred_size = np.bincount(pred_lab.ravel(), minlength=n_pred + 1)
    iou = inter / (ref_size[r_ids] + pred_size[p_ids] - inter)
    # Only lesions that overlap something can be matched: keeps the assignment matrix small.
    rows, r_idx = np.unique(r_ids, return_inverse=True)
    cols, p_idx = np.unique(p_ids, return_inverse=True)
    matrix = np.zeros((rows.size, cols.size))
    matrix[r_idx, p_idx] = iou
    ri, ci = optimize.linear_sum_assignment(matrix, maximize=True)
    return int(np.count_nonzero(matrix[ri, ci] > iou_threshold))


def evaluate_case(
    pred: np.ndarray | sitk.Image,
    ref: np.ndarray | sitk.Image,
    spacing: Sequence[float] | None = None,
    connectivity: int = DEFAULT_CONNECTIVITY,
    min_lesion_mm3: float = 0.0,
    *,
    case: str = "",
    mr_iou_threshold: float = 0.0,
) -> CaseMetrics:
    """All per-scan metrics of predicted mask ``pred`` against reference ``ref``.

    ``spacing``: voxel size in mm (any axis order); taken from the images when they are
    SimpleITK images, required for arrays when ``min_lesion_mm3`` > 0 (otherwise 1 mm).
    Components smaller than ``min_lesion_mm3`` are removed from both masks before any metric.
    ``mr_iou_threshold``: a matched lesion pair must have IoU above it (MetricsReloaded-style F1).
    Raises ValueError on shapes or image grids that differ.
    """
    if isinstance(pred, sitk.Image) and isinstance(ref, sitk.Image):
        problem = geometry_mismatch(pred, ref)
        if problem:
            raise ValueError(f"prediction and reference grids differ: {problem}")
    p, p_spacing = as_mask_array(pred)
    g, g_spacing = as_mask_array(ref)
    if p.shape != g.shape or p.ndim != 3:
        raise ValueError(f"masks must be 3D arrays of one shape, got {p.shape} and {g.shape}")
    spacing = spacing if spacing is not None else (p_spacing or g_spacing)
    if spacing is None:
        if min_lesion_mm3 > 0:
            raise ValueError("a voxel spacing (mm) is needed for a minimum lesion size")
        spacing = (1.0, 1.0, 1.0)
    voxel_mm3 = float(np.prod(spacing))
    p = remove_small_lesions(p, voxel_mm3, connectivity, min_lesion_mm3)
    g = remove_small_lesions(g, voxel_mm3, connectivity, min_lesion_mm3)

    n_p, n_g = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    overlap = p & g
    n_pg = int(np.count_nonzero(overlap))
    both_empty = 1.0 if n_p == 0 and n_g == 0 else 0.0
    ppv = _ratio(n_pg, n_p, 1.0)
    tpr = _ratio(n_pg, n_g, 1.0)

    ref_lab, n_ref = label_components(g, connectivity)
    pred_lab, n_pred = label_components(p, connectivity)
    ref_hit = np.unique(ref_lab[overlap])
    pred_hit = np.unique(pred_lab[overlap])
    n_ref_detected = int(np.count_nonzero(ref_hit))
    n_pred_false = n_pred - int(np.count_nonzero(pred_hit))
    ltpr = _ratio(n_ref_detected, n_ref, 1.0)
    lfpr = _ratio(n_pred_false, n_pred, 0.0)
    mr_tp = _mr_matching(ref_lab, n_ref, pred_lab, n_pred, overlap, mr_iou_threshold)
    mr_fp, mr_fn = n_pred - mr_tp, n_ref - mr_tp
    return CaseMetrics(
        case=case,
        dsc=_ratio(2 * n_pg, n_p + n_g, both_empty),
        ppv=ppv,
        tpr=tpr,
        vf1=_harmonic(ppv, tpr),
        ltpr=ltpr,
        lfpr=lfpr,
        lf1=_harmonic(1.0 - lfpr, ltpr),
        mr_lesion_f1=_ratio(mr_tp, mr_tp + (mr_fp + mr_fn) / 2, 1.0),
        n_ref_lesions=n_ref,
        n_pred_lesions=n_pred,
        n_ref_detected=n_ref_detected,
        n_pred_false=n_pred_false,
        mr_tp=mr_tp,
        mr_fp=mr_fp,
        mr_fn=mr_fn,
        ref_volume_mm3=n_g * voxel_mm3,
        pred_volume_mm3=n_p * voxel_mm3,
    )


def volume_correlation(cases: Sequence[CaseMetrics]) -> float:
    """Pearson correlation of predicted vs reference lesion volume over cases (NaN if undefined)."""
    if len(cases) < 2:
        return math.nan
    pred = np.array([c.pred_volume_mm3 for c in cases])
    ref = np.array([c.ref_volume_mm3 for c in cases])
    if np.ptp(pred) == 0 or np.ptp(ref) == 0:  # Pearson's r is undefined for a constant series
        return math.nan
    return float(stats.pearsonr(pred, ref).statistic)


def summarise(cases: Sequence[CaseMetrics]) -> dict:
    """Means (and SDs) of the per-case metrics, pooled lesion counts, VC and the ISBI-2015 score.

    ``isbi_score`` = mean over scans of DSC/8 + PPV/8 + (1-LFPR)/4 + LTPR/4, plus VC/4
    (unscaled, one rater); None when VC is undefined (fewer than 2 scans or constant volumes).
    """
    if not cases:
        raise ValueError("no cases to summarise")
    means = {n: float(np.mean([c.value(n) for c in cases])) for n in CASE_METRIC_NAMES}
    sds = {n: float(np.std([c.value(n) for c in cases], ddof=1)) if len(cases) > 1 else math.nan
           for n in CASE_METRIC_NAMES}
    vc = volume_correlation(cases)
    partial = means["isbi_partial"]
    return {
        "n_cases": len(cases),
        "mean": means,
        "sd": sds,
        "volume_correlation": None if math.isnan(vc) else vc,
        "isbi_score": None if math.isnan(vc) else partial + vc / 4,
        "isbi_score_without_vc": partial,
        "pooled": {
            "ref_lesions": sum(c.n_ref_lesions for c in cases),
            "pred_lesions": sum(c.n_pred_lesions for c in cases),
            "ref_detected": sum(c.n_ref_detected for c in cases),
            "pred_false": sum(c.n_pred_false for c in cases),
        },
    }


def isbi_score_over_raters(per_rater: Sequence[Sequence[CaseMetrics]]) -> float:
    """Unscaled ISBI-2015 score averaged over raters (each rater: the scans scored against it)."""
    scores = [summarise(cases)["isbi_score"] for cases in per_rater]
    if not scores or any(s is None for s in scores):
        return math.nan
    return float(np.mean(scores))


def paired_tests(a: Sequence[CaseMetrics], b: Sequence[CaseMetrics],
                 names: Sequence[str] = CASE_METRIC_NAMES) -> list[dict]:
    """Paired t-tests (scipy.stats.ttest_rel) of method ``a`` vs ``b`` over the same cases.

    Cases are paired by ``case`` name. Returns one dict per metric: mean_a, mean_b,
    mean_diff (a - b), t, p (None when undefined: fewer than 2 cases or no variation).
    """
    b_by_case = {c.case: c for c in b}
    missing = [c.case for c in a if c.case not in b_by_case]
    if missing or len(a) != len(b):
        raise ValueError(f"the two methods do not cover the same cases (unpaired: {missing})")
    rows = []
    for name in names:
        x = np.array([c.value(name) for c in a])
        y = np.array([b_by_case[c.case].value(name) for c in a])
        diff = x - y
        t = p = None
        if len(x) >= 2 and np.ptp(diff) > 0:
            res = stats.ttest_rel(x, y)
            t, p = float(res.statistic), float(res.pvalue)
        rows.append({"metric": name, "n": len(x), "mean_a": float(x.mean()), "mean_b": float(y.mean()),
                     "mean_diff": float(diff.mean()), "t": t, "p": p})
    return rows


def case_field_names() -> list[str]:
    """Column order of per-case tables (dataclass fields, then the derived numbers)."""
    return [f.name for f in fields(CaseMetrics)] + [
        "isbi_partial", "ref_volume_ml", "pred_volume_ml", "abs_volume_diff_ml"]


DEFAULT_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))


@dataclass(frozen=True)
class LesionCurve:
    """Lesion-wise detection over probability thresholds (a voxel is lesion when p >= t).

    Pooled over scans: ltpr = detected reference lesions / reference lesions, lfpr = false
    predicted lesions / predicted lesions (0 with none), fp_per_scan = false lesions / scans.
    """

    thresholds: np.ndarray
    ltpr: np.ndarray
    lfpr: np.ndarray
    fp_per_scan: np.ndarray
    n_scans: int


def _bbox(mask: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of a non-empty mask, one voxel wider (components keep their neighbours)."""
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in idx)


def lesion_curve(
    probabilities: Iterable[np.ndarray], refs: Iterable[np.ndarray], voxel_volumes_mm3: Iterable[float],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS, connectivity: int = DEFAULT_CONNECTIVITY,
    min_lesion_mm3: float = 0.0,
) -> LesionCurve:
    """Lesion-wise curve of probability maps (float KJI) against reference masks, one per scan.

    The inputs may be generators: each scan is read once, so a cohort need not fit in memory.
    """
    thresholds = np.asarray(sorted(thresholds), dtype=float)
    detected = np.zeros(thresholds.size)
    false = np.zeros(thresholds.size)
    predicted = np.zeros(thresholds.size)
    n_ref_total = n_scans = 0
    for prob, ref, vox in zip(probabilities, refs, voxel_volumes_mm3, strict=True):
        prob = np.asarray(prob, dtype=np.float32)
        g = remove_small_lesions(np.asarray(ref) != 0, vox, connectivity, min_lesion_mm3)
        n_ref_total += label_components(g, connectivity)[1]
        n_scans += 1
        support = (prob >= thresholds[0]) | g
        if not support.any():
            continue
        box = _bbox(support)  # labelling only the region that can hold lesions saves most of the time
        prob_b, g_b = prob[box], g[box]
        ref_lab, _ = label_components(g_b, connectivity)
        for i, t in enumerate(thresholds):
            p = remove_small_lesions(prob_b >= t, vox, connectivity, min_lesion_mm3)
            pred_lab, n_pred = label_components(p, connectivity)
            overlap = p & g_b
            detected[i] += np.count_nonzero(np.unique(ref_lab[overlap]))
            false[i] += n_pred - np.count_nonzero(np.unique(pred_lab[overlap]))
            predicted[i] += n_pred
    ltpr = detected / n_ref_total if n_ref_total else np.ones(thresholds.size)
    lfpr = np.divide(false, predicted, out=np.zeros(thresholds.size), where=predicted > 0)
    return LesionCurve(thresholds, ltpr, lfpr, false / max(n_scans, 1), n_scans)


@dataclass(frozen=True)
class PRCurve:
    """Voxel-wise precision-recall over all distinct probability values (pooled over scans).

    ``thresholds`` decrease; point n counts voxels with p >= thresholds[n]. ``average_precision``
    = sum_n (R_n - R_{n-1}) P_n (step-wise area, no interpolation); NaN without lesion voxels.
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    average_precision: float


def precision_recall(probabilities: Iterable[np.ndarray], refs: Iterable[np.ndarray]) -> PRCurve:
    """Voxel-wise precision-recall curve and average precision of probability maps vs masks."""
    scores, labels, n_zero_background = [], [], 0
    for prob, ref in zip(probabilities, refs, strict=True):
        prob = np.asarray(prob, dtype=np.float32).ravel()
        g = (np.asarray(ref) != 0).ravel()
        if prob.shape != g.shape:
            raise ValueError(f"probability shape {prob.shape} differs from reference {g.shape}")
        # Zero-probability background voxels only matter at threshold 0: keep just their number.
        keep = (prob > 0) | g
        scores.append(prob[keep])
        labels.append(g[keep])
        n_zero_background += int(keep.size - np.count_nonzero(keep))
    if not scores:
        raise ValueError("no probability maps given")
    s, y = np.concatenate(scores), np.concatenate(labels)
    order = np.argsort(-s)  # ties form one threshold below, so a stable sort is not needed
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1].astype(np.int64)  # last index of each score
    last = last[last >= 0]
    tps = np.cumsum(y, dtype=np.float64)[last]
    fps = np.cumsum(~y, dtype=np.float64)[last]
    thr = s[last]
    if n_zero_background:
        if not (thr.size and thr[-1] == 0):  # add the threshold-0 point: every voxel positive
            tps = np.r_[tps, tps[-1] if tps.size else 0.0]
            fps = np.r_[fps, fps[-1] if fps.size else 0.0]
            thr = np.r_[thr, np.float32(0.0)]
        fps[-1] += n_zero_background
    keep = (tps + fps) > 0
    tps, fps, thr = tps[keep], fps[keep], thr[keep]
    total = tps[-1] if tps.size else 0.0
    precision = tps / (tps + fps)
    if total == 0:
        return PRCurve(precision, np.zeros_like(precision), thr, math.nan)
    recall = tps / total
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return PRCurve(precision, recall, thr, ap)
