"""Writes the result files of one segmentation run (all in the input FLAIR's geometry).

The caller writes into a temporary folder and renames it into place
(``allnet.io.atomic_output_dir``), so a failed run leaves no partial outputs.

Files (names fixed: the Slicer module and batch mode rely on them):
``lesion_mask.nii.gz`` uint8 0/1; ``lesion_probability.nii.gz`` float32 in [0, 1];
``lesion_labels.nii.gz`` uint16 lesion ids matching ``lesions.csv``; ``lesion_zones.nii.gz``
uint8 location zones (``allnet.lesions`` codes); ``lesions.seg.nrrd`` Slicer segmentation;
``lesions.csv``; ``summary.json``. Optional ``mni/`` holds the working-grid versions.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicerio

from . import terminology

MASK_FILE = "lesion_mask.nii.gz"
PROBABILITY_FILE = "lesion_probability.nii.gz"
LABELS_FILE = "lesion_labels.nii.gz"
ZONES_FILE = "lesion_zones.nii.gz"
SEGMENTATION_FILE = "lesions.seg.nrrd"
TABLE_FILE = "lesions.csv"
SUMMARY_FILE = "summary.json"
WORKING_DIR = "mni"


def ijk_to_lps_matrix(image: sitk.Image) -> np.ndarray:
    """4x4 matrix from voxel index (i, j, k) to physical LPS mm of a SimpleITK image."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def write_segmentation_nrrd(path: Path, labels: sitk.Image, lesion_ids: list[int],
                            per_lesion: bool = False) -> None:
    """Write a Slicer ``.seg.nrrd``: one segment "MS lesions", or one segment per lesion id.

    Each segment carries the MS-lesion terminology (``allnet.terminology``) so Slicer shows
    a name and colour, and DICOM SEG export has codes.
    """
    ids_ijk = np.ascontiguousarray(sitk.GetArrayViewFromImage(labels).transpose(2, 1, 0))
    segmentation = slicerio.create_segmentation(ids_ijk.shape, ijk_to_lps_matrix(labels))
    if per_lesion:
        colors = _lesion_colors(len(lesion_ids))
        for lesion_id, color in zip(lesion_ids, colors):
            slicerio.add_segment(segmentation, ids_ijk == lesion_id, {
                "id": f"lesion_{lesion_id}", "name": f"Lesion {lesion_id}",
                "color": color, "terminology": terminology.TERMINOLOGY})
    else:
        slicerio.add_segment(segmentation, ids_ijk > 0, {
            "id": "ms_lesions", "name": terminology.SEGMENT_NAME,
            "color": list(terminology.SEGMENT_COLOR_RGB), "terminology": terminology.TERMINOLOGY})
    slicerio.write_segmentation(str(path), segmentation)


def _lesion_colors(n: int) -> list[list[float]]:
    """Distinct, deterministic colours (golden-ratio hue steps) for per-lesion segments."""
    import colorsys
    return [list(colorsys.hsv_to_rgb((0.13 + i * 0.618034) % 1.0, 0.75, 0.95)) for i in range(n)]


def write_json(data: dict, path: Path) -> None:
    """Write JSON with numpy scalars and paths converted to plain values."""
    Path(path).write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _json_default(value: object) -> object:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray,)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
