"""Lesion-wise change between two visits: new, enlarging, stable, shrinking, resolved.

Works on KJI arrays of ONE grid (in the product: the follow-up FLAIR's grid) holding both
visits' lesion ids (``allnet.postprocess`` of each visit's vote) and the FLAIR change
``followup - baseline`` of the jointly normalised FLAIRs (``allnet.preprocessing.pair``), in
units of the brain's robust standard deviation (z). Volumes are mm3 of that grid's voxels.

The rules (constants below), for each follow-up lesion F:

- **new**: F overlaps no baseline lesion AND the FLAIR rose inside F: mean change
  >= ``CHANGE_MIN_Z``. Without that rise F was there before (the baseline segmentation
  missed it): **stable**. This is what keeps noise of two independent segmentations from
  becoming new lesions.
- F overlapping baseline lesions B (all baseline lesions it touches, volume V_b):
  **enlarging** when V_f - V_b >= max(``ENLARGE_MIN_FRACTION`` x V_b, ``CHANGE_MIN_MM3``),
  AND the growth beyond a one-voxel band around B (26 neighbours) (partial-volume jitter of a border: a
  border that moves by less than one voxel is not growth) holds >= ``CHANGE_MIN_MM3``,
  AND the FLAIR rose there: mean change >= ``CHANGE_MIN_Z``;
  **shrinking** by the same rule with the visits swapped (V_b - V_f >= max(fraction x V_f,
  floor), the part of B beyond one voxel of F >= floor, mean change there <= -``CHANGE_MIN_Z``);
  otherwise **stable**.

For each baseline lesion that overlaps no follow-up lesion: **resolved** when the FLAIR fell
inside it (mean change <= -``CHANGE_MIN_Z``), else **stable** (the follow-up segmentation
missed it; it is drawn at its baseline voxels).

The change mask of new and enlarged tissue (``new_enlarged``): the voxels of new lesions and,
of an enlarging lesion, the voxels that were no lesion at baseline and lie within
``JITTER_VOXELS`` of its growth beyond the jitter band: the band next to real growth joins it to
the baseline lesion, the band elsewhere around the lesion is the same partial-volume jitter
the rule ignores and is not drawn (on a thick-slice grid such a one-voxel rim breaks into
specks when the mask is resampled).

``confidence`` of a change (0-1): the fraction of the changed voxels whose FLAIR changed by
at least ``CHANGE_MIN_Z`` in the direction of the change; of a stable lesion: the fraction of
its voxels whose FLAIR changed by less than that.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .contract import CHANGE_CLASSES, CHANGE_CODES

# Mean FLAIR change (robust-SD units of the brain) that counts as evidence of change. A new
# MS lesion is several SD brighter than the white matter it replaces; residual
# misregistration and noise average out over a lesion to a few tenths of an SD.
CHANGE_MIN_Z = 1.0
# Growth needed to call a lesion enlarging: half its baseline volume (a diameter ~15 %
# larger), and at least the smallest lesion the model's plan keeps.
ENLARGE_MIN_FRACTION = 0.5
CHANGE_MIN_MM3 = 10.0
JITTER_VOXELS = 1

NEW, ENLARGING, STABLE, SHRINKING, RESOLVED = CHANGE_CLASSES


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


def classify_changes(baseline_ids: np.ndarray, followup_ids: np.ndarray, flair_change: np.ndarray,
                     voxel_mm3: float) -> ChangeResult:
    """Apply the rules of the module docstring.

    ``baseline_ids``/``followup_ids``: integer KJI lesion ids (0 = background) of both visits
    on one grid; ``flair_change``: float KJI followup - baseline FLAIR (z units), same grid;
    ``voxel_mm3``: volume of one voxel. Deterministic: lesions are visited by id.
    """
    if not baseline_ids.shape == followup_ids.shape == flair_change.shape:
        raise ValueError("lesion ids and FLAIR change must lie on one grid")
    cube = ndimage.generate_binary_structure(3, 3)  # one voxel in every direction, diagonals too
    near = lambda mask: ndimage.binary_dilation(mask, cube, iterations=JITTER_VOXELS)  # noqa: E731
    rose, fell = flair_change >= CHANGE_MIN_Z, flair_change <= -CHANGE_MIN_Z
    steady = ~rose & ~fell
    changes: list[LesionChange] = []
    f_slices = ndimage.find_objects(followup_ids.astype(np.intp))
    b_slices = ndimage.find_objects(baseline_ids.astype(np.intp))

    for fid, box in enumerate(f_slices, start=1):
        if box is None:
            continue
        box = _grow(box, followup_ids.shape, JITTER_VOXELS + 1)
        region_box = followup_ids[box] == fid
        touched = tuple(int(i) for i in np.unique(baseline_ids[box][region_box]) if i)
        v_f = float(region_box.sum()) * voxel_mm3
        d = flair_change[box]
        if not touched:
            z = _mean(d, region_box)
            if z >= CHANGE_MIN_Z:
                changes.append(_change(NEW, box, region_box, region_box, 0.0, v_f, z,
                                       _fraction(rose[box], region_box),
                                       f"no baseline lesion here; FLAIR rose by {z:+.2f} z (>= {CHANGE_MIN_Z:g})",
                                       fid, touched))
            else:
                changes.append(_change(STABLE, box, region_box, None, v_f, v_f, z,
                                       _fraction(steady[box], region_box),
                                       f"not segmented at baseline, but the FLAIR changed by {z:+.2f} z only "
                                       f"(< {CHANGE_MIN_Z:g}): present before", fid, touched))
            continue
        # The baseline lesions may reach outside the follow-up lesion's box: use a box that holds both.
        full = _union_box([box] + [b_slices[i - 1] for i in touched], followup_ids.shape, JITTER_VOXELS + 1)
        region = followup_ids[full] == fid
        base = np.isin(baseline_ids[full], touched)
        d = flair_change[full]
        v_b = float(base.sum()) * voxel_mm3
        grown, lost = region & ~near(base), base & ~near(region)
        z_grown, z_lost = _mean(d, grown), _mean(d, lost)
        v_grown, v_lost = float(grown.sum()) * voxel_mm3, float(lost.sum()) * voxel_mm3
        if (v_f - v_b >= max(ENLARGE_MIN_FRACTION * v_b, CHANGE_MIN_MM3) and v_grown >= CHANGE_MIN_MM3
                and z_grown >= CHANGE_MIN_Z):
            changes.append(_change(ENLARGING, full, region, region & ~base & near(grown), v_b, v_f, z_grown,
                                   _fraction(rose[full], grown),
                                   f"volume {v_b:.0f} -> {v_f:.0f} mm3; {v_grown:.0f} mm3 beyond one voxel "
                                   f"of the baseline lesion, FLAIR rose there by {z_grown:+.2f} z",
                                   fid, touched))
        elif (v_b - v_f >= max(ENLARGE_MIN_FRACTION * v_f, CHANGE_MIN_MM3) and v_lost >= CHANGE_MIN_MM3
              and z_lost <= -CHANGE_MIN_Z):
            changes.append(_change(SHRINKING, full, region, base & ~region, v_b, v_f, z_lost,
                                   _fraction(fell[full], lost),
                                   f"volume {v_b:.0f} -> {v_f:.0f} mm3; {v_lost:.0f} mm3 lost beyond one "
                                   f"voxel, FLAIR fell there by {z_lost:+.2f} z",
                                   fid, touched))
        else:
            z = _mean(d, region | base)
            changes.append(_change(STABLE, full, region, None, v_b, v_f, z,
                                   _fraction(steady[full], region | base),
                                   f"volume {v_b:.0f} -> {v_f:.0f} mm3: below the change rules",
                                   fid, touched))

    for bid, box in enumerate(b_slices, start=1):
        if box is None:
            continue
        region_box = baseline_ids[box] == bid
        if (followup_ids[box][region_box] > 0).any():
            continue
        v_b = float(region_box.sum()) * voxel_mm3
        z = _mean(flair_change[box], region_box)
        if z <= -CHANGE_MIN_Z:
            changes.append(_change(RESOLVED, box, region_box, region_box, v_b, 0.0, z,
                                   _fraction(fell[box], region_box),
                                   f"no follow-up lesion here; FLAIR fell by {z:+.2f} z (<= -{CHANGE_MIN_Z:g})",
                                   None, (bid,)))
        else:
            changes.append(_change(STABLE, box, region_box, None, v_b, v_b, z,
                                   _fraction(steady[box], region_box),
                                   f"not segmented at follow-up, but the FLAIR changed by {z:+.2f} z only: "
                                   "still present", None, (bid,)))

    class_map = np.zeros(followup_ids.shape, dtype=np.uint8)
    new_enlarged = np.zeros(followup_ids.shape, dtype=np.uint8)
    for change in changes:
        class_map[change.box][change.region] = CHANGE_CODES[change.change_class]
        if change.change_class in (NEW, ENLARGING):
            new_enlarged[change.box][change.changed] = 1
    return ChangeResult(changes, class_map, new_enlarged)


def _grow(box: tuple[slice, ...], shape: tuple[int, ...], margin: int) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(box, shape))


def _union_box(boxes: list[tuple[slice, ...]], shape: tuple[int, ...], margin: int) -> tuple[slice, ...]:
    starts = np.min([[s.start for s in b] for b in boxes], axis=0)
    stops = np.max([[s.stop for s in b] for b in boxes], axis=0)
    return _grow(tuple(slice(int(a), int(b)) for a, b in zip(starts, stops)), shape, margin)


def _change(change_class: str, box: tuple[slice, ...], region_box: np.ndarray,
            changed_box: np.ndarray | None, v_b: float, v_f: float, z: float, confidence: float,
            rule: str, fid: int | None, bids: tuple[int, ...]) -> LesionChange:
    """A LesionChange (``changed_box`` None: nothing changed)."""
    changed = np.zeros_like(region_box) if changed_box is None else changed_box
    return LesionChange(change_class, box, region_box, changed, v_b, v_f, z, confidence, rule, fid, bids)


def counts(changes: list[LesionChange]) -> dict[str, int]:
    """Number of lesions per class (every class present, zeros included)."""
    return {name: sum(1 for c in changes if c.change_class == name) for name in CHANGE_CLASSES}
