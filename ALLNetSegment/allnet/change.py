"""Lesion-wise change between two visits: new, enlarging, stable, shrinking, resolved.

Works on KJI arrays of ONE grid (in the product: the follow-up FLAIR's grid) holding both
visits' lesion ids (``allnet.postprocess`` of each visit's vote) and the FLAIR change
``followup - baseline`` of the jointly normalised FLAIRs (``allnet.preprocessing.pair``), in
units of the brain's robust standard deviation (z). Volumes are mm3 of that grid's voxels.

Evidence is voxel-wise, as a reader compares the two FLAIRs: two independent segmentations
disagree at the border of every lesion and on faint lesions, and a confluent lesion splits
differently at each visit, so neither a segmentation difference nor a difference of lesion
volumes is a change by itself. A change needs a **region** of at least ``CHANGE_MIN_MM3``
(26-connected) where the segmentations differ AND the FLAIR changed by at least
``CHANGE_MIN_Z`` in the same direction:

- growth regions: follow-up lesion, no baseline lesion, FLAIR change >= ``CHANGE_MIN_Z``;
- loss regions: baseline lesion, no follow-up lesion, FLAIR change <= -``CHANGE_MIN_Z``.

Each region lies inside one lesion of its visit (regions are taken per lesion). For each
follow-up lesion F:

- F touches no baseline lesion: **new** when F holds a growth region (drawn whole in the
  change mask), else **stable** (the baseline segmentation missed a lesion that was there);
- F touches baseline lesions B: **enlarging** when F holds a growth region (the change mask
  holds its growth regions: the new tissue where the FLAIR rose, also the local growth of a
  large confluent lesion); else **shrinking** when B holds a loss region; else **stable**.

For each baseline lesion that touches no follow-up lesion: **resolved** when it holds a loss
region, else **stable** (the follow-up segmentation missed it; it is drawn at its baseline
voxels).

The change mask of new and enlarged tissue (``new_enlarged``): new lesions whole, and the
growth regions of enlarging lesions.

``confidence`` of a change (0-1): the fraction of the voxels that changed segmentation (new
lesion: all of it; enlarging: follow-up lesion outside the baseline lesions; shrinking: the
reverse; resolved: all of it) whose FLAIR changed by at least ``CHANGE_MIN_Z`` in the
direction of the change; of a stable lesion: the fraction of its voxels whose FLAIR changed by
less than that.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .contract import CHANGE_CLASSES, CHANGE_CODES

# FLAIR change (robust-SD units of the brain) that counts as evidence of change. A new MS
# lesion is several SD brighter than the white matter it replaces; noise and residual
# misregistration of two visits rarely reach one SD over a connected region.
CHANGE_MIN_Z = 1.0
# Smallest region of change: the smallest lesion volume the model's plans keep.
CHANGE_MIN_MM3 = 10.0

NEW, ENLARGING, STABLE, SHRINKING, RESOLVED = CHANGE_CLASSES
_CUBE = ndimage.generate_binary_structure(3, 3)  # 26-connectivity


@dataclass(frozen=True)
class LesionChange:
    """One lesion across the visits. ``box``: KJI slices of the grid; ``region``: boolean mask
    inside ``box`` of the lesion where it is drawn (its follow-up voxels; for a lesion seen
    only at baseline, its baseline voxels); ``changed``: the voxels inside ``box`` that
    changed (all False for stable). Volumes mm3; ``flair_change_z``: mean FLAIR change over
    the voxels the rule looked at."""

    change_class: str
    box: tuple[slice, ...]
    region: np.ndarray
    changed: np.ndarray
    volume_baseline_mm3: float
    volume_followup_mm3: float
    flair_change_z: float
    confidence: float
    rule: str
    followup_id: int | None
    baseline_ids: tuple[int, ...]

    @property
    def change_mm3(self) -> float:
        return self.volume_followup_mm3 - self.volume_baseline_mm3

    @property
    def change_percent(self) -> float | None:
        if self.volume_baseline_mm3 <= 0:
            return None
        return 100.0 * self.change_mm3 / self.volume_baseline_mm3


@dataclass
class ChangeResult:
    """``changes`` in drawing order; ``class_map``: uint8 KJI, ``CHANGE_CODES`` per lesion
    region (0 background); ``new_enlarged``: uint8 KJI 0/1 change mask (module docstring)."""

    changes: list[LesionChange]
    class_map: np.ndarray
    new_enlarged: np.ndarray


def _mean(values: np.ndarray, where: np.ndarray) -> float:
    return float(values[where].mean()) if where.any() else 0.0


def _fraction(condition: np.ndarray, where: np.ndarray) -> float:
    return float(condition[where].mean()) if where.any() else 0.0


def _regions(candidates: np.ndarray, voxel_mm3: float) -> np.ndarray:
    """The 26-connected components of ``candidates`` of at least ``CHANGE_MIN_MM3``."""
    labels, n = ndimage.label(candidates, _CUBE)
    if n == 0:
        return np.zeros_like(candidates)
    sizes = np.bincount(labels.ravel(), minlength=n + 1) * voxel_mm3
    keep = sizes >= CHANGE_MIN_MM3
    keep[0] = False
    return keep[labels]


def classify_changes(baseline_ids: np.ndarray, followup_ids: np.ndarray, flair_change: np.ndarray,
                     voxel_mm3: float) -> ChangeResult:
    """Apply the rules of the module docstring.

    ``baseline_ids``/``followup_ids``: integer KJI lesion ids (0 = background) of both visits
    on one grid; ``flair_change``: float KJI followup - baseline FLAIR (z units), same grid;
    ``voxel_mm3``: volume of one voxel. Deterministic: lesions are visited by id.
    """
    if not baseline_ids.shape == followup_ids.shape == flair_change.shape:
        raise ValueError("lesion ids and FLAIR change must lie on one grid")
    rose, fell = flair_change >= CHANGE_MIN_Z, flair_change <= -CHANGE_MIN_Z
    steady = ~rose & ~fell
    in_base, in_follow = baseline_ids > 0, followup_ids > 0
    changes: list[LesionChange] = []
    f_slices = ndimage.find_objects(followup_ids.astype(np.intp))
    b_slices = ndimage.find_objects(baseline_ids.astype(np.intp))

    for fid, box in enumerate(f_slices, start=1):
        if box is None:
            continue
        touched = tuple(int(i) for i in np.unique(baseline_ids[box][followup_ids[box] == fid]) if i)
        # The baseline lesions may reach outside the follow-up lesion's box: use a box that holds both.
        full = _union_box([box] + [b_slices[i - 1] for i in touched], followup_ids.shape)
        region = followup_ids[full] == fid
        base = np.isin(baseline_ids[full], touched) if touched else np.zeros_like(region)
        d = flair_change[full]
        v_f, v_b = float(region.sum()) * voxel_mm3, float(base.sum()) * voxel_mm3
        beyond = region & ~in_base[full]  # follow-up lesion where no baseline lesion was
        growth = _regions(beyond & rose[full], voxel_mm3)
        v_growth = float(growth.sum()) * voxel_mm3
        z_growth = _mean(d, growth)
        if not touched:
            if growth.any():
                changes.append(_change(NEW, full, region, region, 0.0, v_f, z_growth,
                                       _fraction(rose[full], region),
                                       f"no baseline lesion here; FLAIR rose by {z_growth:+.2f} z over "
                                       f"{v_growth:.0f} mm3 (>= {CHANGE_MIN_Z:g} z, >= {CHANGE_MIN_MM3:g} mm3)",
                                       fid, touched))
            else:
                z = _mean(d, region)
                changes.append(_change(STABLE, full, region, None, v_f, v_f, z,
                                       _fraction(steady[full], region),
                                       f"not segmented at baseline, but no region of >= {CHANGE_MIN_MM3:g} mm3 "
                                       f"where the FLAIR rose by >= {CHANGE_MIN_Z:g} z (mean {z:+.2f} z): "
                                       "present before", fid, touched))
            continue
        loss = _regions(base & ~in_follow[full] & fell[full], voxel_mm3)
        if growth.any():
            changes.append(_change(ENLARGING, full, region, growth, v_b, v_f, z_growth,
                                   _fraction(rose[full], beyond),
                                   f"volume {v_b:.0f} -> {v_f:.0f} mm3; FLAIR rose by {z_growth:+.2f} z over "
                                   f"{v_growth:.0f} mm3 of new lesion tissue", fid, touched))
        elif loss.any():
            z_loss = _mean(d, loss)
            changes.append(_change(SHRINKING, full, region, loss, v_b, v_f, z_loss,
                                   _fraction(fell[full], base & ~in_follow[full]),
                                   f"volume {v_b:.0f} -> {v_f:.0f} mm3; FLAIR fell by {z_loss:+.2f} z over "
                                   f"{float(loss.sum()) * voxel_mm3:.0f} mm3 of lost lesion tissue",
                                   fid, touched))
        else:
            z = _mean(d, region | base)
            changes.append(_change(STABLE, full, region, None, v_b, v_f, z,
                                   _fraction(steady[full], region | base),
                                   f"volume {v_b:.0f} -> {v_f:.0f} mm3: no region of >= {CHANGE_MIN_MM3:g} mm3 "
                                   f"where segmentation and FLAIR (>= {CHANGE_MIN_Z:g} z) both changed",
                                   fid, touched))

    for bid, box in enumerate(b_slices, start=1):
        if box is None:
            continue
        region_box = baseline_ids[box] == bid
        if in_follow[box][region_box].any():
            continue
        v_b = float(region_box.sum()) * voxel_mm3
        loss = _regions(region_box & fell[box], voxel_mm3)
        if loss.any():
            z = _mean(flair_change[box], loss)
            changes.append(_change(RESOLVED, box, region_box, region_box, v_b, 0.0, z,
                                   _fraction(fell[box], region_box),
                                   f"no follow-up lesion here; FLAIR fell by {z:+.2f} z over "
                                   f"{float(loss.sum()) * voxel_mm3:.0f} mm3", None, (bid,)))
        else:
            z = _mean(flair_change[box], region_box)
            changes.append(_change(STABLE, box, region_box, None, v_b, v_b, z,
                                   _fraction(steady[box], region_box),
                                   f"not segmented at follow-up, but no region where the FLAIR fell by "
                                   f">= {CHANGE_MIN_Z:g} z (mean {z:+.2f} z): still present", None, (bid,)))

    class_map = np.zeros(followup_ids.shape, dtype=np.uint8)
    new_enlarged = np.zeros(followup_ids.shape, dtype=np.uint8)
    for change in changes:
        class_map[change.box][change.region] = CHANGE_CODES[change.change_class]
        if change.change_class in (NEW, ENLARGING):
            new_enlarged[change.box][change.changed] = 1
    return ChangeResult(changes, class_map, new_enlarged)


def _union_box(boxes: list[tuple[slice, ...]], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """The box holding all ``boxes``, one voxel wider on each side (inside ``shape``) so that
    26-connected regions at a lesion's edge are labelled whole."""
    starts = np.min([[s.start for s in b] for b in boxes], axis=0)
    stops = np.max([[s.stop for s in b] for b in boxes], axis=0)
    return tuple(slice(max(int(a) - 1, 0), min(int(b) + 1, n)) for a, b, n in zip(starts, stops, shape))


def _change(change_class: str, box: tuple[slice, ...], region_box: np.ndarray,
            changed_box: np.ndarray | None, v_b: float, v_f: float, z: float, confidence: float,
            rule: str, fid: int | None, bids: tuple[int, ...]) -> LesionChange:
    """A LesionChange (``changed_box`` None: nothing changed)."""
    changed = np.zeros_like(region_box) if changed_box is None else changed_box
    return LesionChange(change_class, box, region_box, changed, v_b, v_f, z, confidence, rule, fid, bids)


def counts(changes: list[LesionChange]) -> dict[str, int]:
    """Number of lesions per class (every class present, zeros included)."""
    return {name: sum(1 for c in changes if c.change_class == name) for name in CHANGE_CLASSES}
