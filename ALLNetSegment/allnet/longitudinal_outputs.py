"""Writes the files of a longitudinal run, all on the follow-up FLAIR's grid.

Names and columns come from ``allnet.contract`` (``LONGITUDINAL_OUTPUT_FILES``,
``CHANGE_COLUMNS``): ``change_labels.nii.gz`` (uint8 class codes 1..5, ``CHANGE_CODES``),
``new_enlarged_mask.nii.gz`` (uint8 0/1), ``baseline_lesion_labels.nii.gz`` and
``followup_lesion_labels.nii.gz`` (uint16 lesion ids of each visit), ``flair_change.nii.gz``
(float32, follow-up - baseline FLAIR in z units), ``changes.seg.nrrd`` (one named, coloured
segment per class, with the MS-lesion terminology), ``changes.csv`` and, unless switched
off, ``report.html`` (``allnet.longitudinal_report``); the caller adds ``summary.json``. Every file is written under a temporary name and renamed.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicerio

from . import terminology
from .atomic import atomic_file
from .contract import (BASELINE_LABELS_FILE, CHANGE_CLASSES, CHANGE_CODES, CHANGE_COLORS_RGB,
                       CHANGE_COLUMN_NAMES, CHANGE_LABELS_FILE, CHANGE_SEGMENTATION_FILE,
                       CHANGE_TABLE_FILE, FLAIR_CHANGE_FILE, FOLLOWUP_LABELS_FILE,
                       NEW_ENLARGED_FILE, REPORT_FILE, SUMMARY_FILE)
from .io import write_image_atomic
from .outputs import ijk_to_lps_matrix


def segment_name(change_class: str) -> str:
    """Segment name of a change class in ``changes.seg.nrrd`` (e.g. "New MS lesions")."""
    return f"{change_class.capitalize()} MS lesions"


def write_change_segmentation(path: Path, class_map: sitk.Image) -> None:
    """``.seg.nrrd`` with one segment per change class (all five, empty ones included, so a
    reader always finds them), named, coloured (``CHANGE_COLORS_RGB``) and with the lesion
    terminology of ``allnet.terminology``."""
    codes = np.ascontiguousarray(sitk.GetArrayViewFromImage(class_map).transpose(2, 1, 0))
    segmentation = slicerio.create_segmentation(codes.shape, ijk_to_lps_matrix(class_map))
    for name in CHANGE_CLASSES:
        slicerio.add_segment(segmentation, codes == CHANGE_CODES[name], {
            "id": f"{name}_lesions", "name": segment_name(name),
            "color": list(CHANGE_COLORS_RGB[name]), "terminology": terminology.TERMINOLOGY})
    slicerio.write_segmentation(str(path), segmentation)


def change_rows(result) -> list[dict]:
    """Rows of ``changes.csv`` (keys ``CHANGE_COLUMN_NAMES``) from a ``LongitudinalResult``."""
    rows = []
    for number, (item, place) in enumerate(zip(result.changes, result.places), start=1):
        r, a, s = place.centroid_ras
        percent = item.change_percent
        rows.append({
            "id": number, "class": item.change_class,
            "volume_baseline_mm3": round(item.volume_baseline_mm3, 3),
            "volume_followup_mm3": round(item.volume_followup_mm3, 3),
            "change_mm3": round(item.change_mm3, 3),
            "change_percent": None if percent is None else round(percent, 1),
            "flair_change_z": round(item.flair_change_z, 3), "confidence": round(item.confidence, 3),
            "location": place.location,
            "centroid_r_mm": round(r, 2), "centroid_a_mm": round(a, 2), "centroid_s_mm": round(s, 2),
            "followup_lesion_id": item.followup_id,
            "baseline_lesion_ids": ";".join(str(i) for i in item.baseline_ids),
            "rule": item.rule,
        })
    return rows


def write_changes_csv(result, path: Path) -> None:
    with atomic_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CHANGE_COLUMN_NAMES)
        writer.writeheader()
        writer.writerows(change_rows(result))


def write_longitudinal_files(folder: Path, result, report: bool = True) -> dict[str, str]:
    """Write every file but ``summary.json`` into ``folder`` (``report.html`` when ``report``);
    returns ``{key: file name}`` for ``summary.json["outputs"]`` (summary included)."""
    folder = Path(folder)
    write_image_atomic(sitk.Cast(result.change_labels, sitk.sitkUInt8), folder / CHANGE_LABELS_FILE)
    write_image_atomic(sitk.Cast(result.new_enlarged, sitk.sitkUInt8), folder / NEW_ENLARGED_FILE)
    write_image_atomic(sitk.Cast(result.baseline_labels, sitk.sitkUInt16), folder / BASELINE_LABELS_FILE)
    write_image_atomic(sitk.Cast(result.followup_labels, sitk.sitkUInt16), folder / FOLLOWUP_LABELS_FILE)
    write_image_atomic(sitk.Cast(result.flair_change, sitk.sitkFloat32), folder / FLAIR_CHANGE_FILE)
    with atomic_file(folder / CHANGE_SEGMENTATION_FILE) as tmp:
        write_change_segmentation(tmp, result.change_labels)
    write_changes_csv(result, folder / CHANGE_TABLE_FILE)
    written = {"report": REPORT_FILE} if report else {}
    if report:
        from .longitudinal_report import write_longitudinal_report
        write_longitudinal_report(folder / REPORT_FILE, result, result.visit_flairs, result.change_ids)
    return written | {"change_labels": CHANGE_LABELS_FILE, "new_enlarged": NEW_ENLARGED_FILE,
            "baseline_labels": BASELINE_LABELS_FILE, "followup_labels": FOLLOWUP_LABELS_FILE,
            "flair_change": FLAIR_CHANGE_FILE, "segmentation": CHANGE_SEGMENTATION_FILE,
            "table": CHANGE_TABLE_FILE, "summary": SUMMARY_FILE}
