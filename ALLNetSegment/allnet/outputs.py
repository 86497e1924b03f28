"""Writes the result files of one segmentation run (all in the input FLAIR's geometry),
and checks an output location before a run starts.

The pipeline writes into a temporary folder and renames it into place
(``allnet.io.atomic_output_dir``), so a failed run leaves no partial outputs; each file
is also written under a temporary name and renamed (``allnet.atomic``).

File names, CSV columns and exit codes are defined once in ``allnet.contract``:
``lesion_mask.nii.gz`` uint8 0/1; ``lesion_probability.nii.gz`` float32 in [0, 1];
``lesion_labels.nii.gz`` uint16 lesion ids matching ``lesions.csv``; ``lesion_zones.nii.gz``
uint8 location zones (``allnet.lesions`` codes); ``lesions.seg.nrrd`` Slicer segmentation;
``lesions.csv``; ``summary.json`` (its ``outputs`` entry lists what was written). Optional
``mni/`` holds the working-grid versions.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicerio

from . import terminology
from .atomic import atomic_file, write_json_atomic
from .contract import (LABELS_FILE, MASK_FILE, PROBABILITY_FILE, SEGMENTATION_FILE,  # noqa: F401
                       SUMMARY_FILE, TABLE_FILE, WORKING_DIR, ZONES_FILE)
from .errors import InputError
from .grid import array_to_working_image
from .io import write_image_atomic

# Free disk space a run needs at its output location: a native case's outputs plus the
# working-grid folder take about 60 MB; the margin covers large native FLAIRs.
MIN_FREE_BYTES = 200 * 2**20


def check_output_location(path: str | Path) -> Path:
    """Refuse, before any computation, an output folder that cannot be written.

    Raises InputError naming ``path`` when it exists and is not a folder, when the nearest
    existing folder on its path is not writable, or when that disk has less than
    ``MIN_FREE_BYTES`` free. Creates nothing.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(path, "output path exists and is not a folder; give a folder name")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(path, f"cannot create the output folder: {existing} is a file")
    try:  # a real write: permission bits do not tell for root, read-only mounts or quotas
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise InputError(path, f"output location is not writable (writing in {existing} "
                               f"failed: {exc.strerror or exc})") from None
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise InputError(path, f"not enough free disk space at the output location: "
                               f"{free / 2**20:.0f} MiB free, a run needs about "
                               f"{MIN_FREE_BYTES / 2**20:.0f} MiB")
    return path


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
    """Write JSON with numpy values and paths converted to plain values (atomically)."""
    write_json_atomic(path, data)


def write_result_files(folder: Path, result, settings, working: dict[str, np.ndarray] | None = None
                       ) -> dict[str, str]:
    """Write the image, segmentation and table files of ``result`` (a
    ``pipeline.SegmentationResult``) into ``folder``; returns ``{key: file name}`` for
    ``summary.json["outputs"]`` (keys of ``allnet.contract.OUTPUT_FILES``; the summary
    itself is added by the caller). ``working``: working-grid KJI arrays for ``mni/``."""
    from .lesions import write_lesions_csv

    folder = Path(folder)
    files = {"mask": MASK_FILE, "labels": LABELS_FILE, "zones": ZONES_FILE,
             "segmentation": SEGMENTATION_FILE, "table": TABLE_FILE}
    write_image_atomic(result.mask, folder / MASK_FILE)
    write_image_atomic(sitk.Cast(result.labels, sitk.sitkUInt16), folder / LABELS_FILE)
    write_image_atomic(result.zones, folder / ZONES_FILE)
    if settings.write_probability:
        write_image_atomic(result.probability, folder / PROBABILITY_FILE)
        files["probability"] = PROBABILITY_FILE
    with atomic_file(folder / SEGMENTATION_FILE) as tmp:
        write_segmentation_nrrd(tmp, result.labels, [lesion.id for lesion in result.lesions],
                                per_lesion=settings.per_lesion_segments)
    write_lesions_csv(result.lesions, folder / TABLE_FILE)
    if working:
        for name, array in working.items():
            write_image_atomic(array_to_working_image(array), folder / WORKING_DIR / f"{name}.nii.gz")
        files["working_grid"] = WORKING_DIR
    return files


def write_summary(folder: Path, summary: dict) -> str:
    """Write ``summary.json`` into ``folder``; returns its file name."""
    write_json_atomic(Path(folder) / SUMMARY_FILE, summary)
    return SUMMARY_FILE
