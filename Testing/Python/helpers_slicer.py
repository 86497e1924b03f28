"""Shared set-up of the Slicer-side tests: the Slicer stand-in on sys.path, a clean scene, and a
small ALLNet output folder written with SimpleITK and slicerio on an oblique FLAIR grid."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
STUB = Path(__file__).resolve().parent / "slicer_stub"
MODULE_DIR = REPO / "ALLNetSegment"
for path in (str(STUB), str(MODULE_DIR)):
    if path not in sys.path:
        sys.path.insert(0, path)

import qt  # noqa: E402  (the stand-in)
import slicer  # noqa: E402  (the stand-in)
import slicer.packaging  # noqa: E402,F401


def resetSlicer() -> None:
    """Empty scene, no recorded dialogs, no pending timers, default dialog answers."""
    slicer.mrmlScene.Clear()
    for record in slicer.util.calls.values():
        record.clear()
    slicer.util.answers.update({"confirmOkCancelDisplay": True, "confirmYesNoDisplay": False})
    slicer.modules.markups.logic().jumps.clear()
    slicer.packaging.installs.clear()
    qt.QSettings.store.clear()
    qt._queue.clear()


def runEventLoopUntil(predicate, timeout: float = 30.0) -> None:
    import time

    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("condition not reached in the stand-in event loop")
        qt.processEvents()
        time.sleep(0.02)


def obliqueFlair(size=(40, 36, 24), spacing=(0.9, 1.1, 3.0)) -> sitk.Image:
    """A FLAIR-like image whose axes are rotated (not axis-aligned) and whose origin is off 0."""
    a, b = np.deg2rad(20.0), np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection((rz @ rx).ravel().tolist())
    image.SetOrigin((12.5, -30.0, 41.0))
    rng = np.random.default_rng(0)
    array = rng.normal(100, 10, size[::-1]).astype(np.float32)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


LESIONS_KJI = {1: (slice(8, 11), slice(10, 14), slice(8, 13)),   # 3 x 4 x 5 voxels
               2: (slice(15, 17), slice(22, 25), slice(25, 28))}  # 2 x 3 x 3 voxels


def writeOutputFolder(folder: Path, withLesions: bool = True) -> dict:
    """Files of one ``allnet segment`` run (the contract's names) on the oblique FLAIR grid."""
    import slicerio

    folder.mkdir(parents=True, exist_ok=True)
    flair = obliqueFlair()
    sitk.WriteImage(flair, str(folder / "FLAIR.nii.gz"))
    shape = sitk.GetArrayViewFromImage(flair).shape
    labels = np.zeros(shape, np.uint16)
    if withLesions:
        for lesionId, region in LESIONS_KJI.items():
            labels[region] = lesionId
    probability = np.where(labels > 0, 0.9, 0.05).astype(np.float32)
    probability[labels == 2] = 0.7
    zones = np.where(labels > 0, 1, 0).astype(np.uint8)

    def write(array, name):
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(flair)
        sitk.WriteImage(image, str(folder / name), True)
        return image

    write((labels > 0).astype(np.uint8), "lesion_mask.nii.gz")
    write(probability, "lesion_probability.nii.gz")
    labelsImage = write(labels, "lesion_labels.nii.gz")
    write(zones, "lesion_zones.nii.gz")

    voxelMm3 = float(np.prod(flair.GetSpacing()))
    rows = []
    for lesionId in sorted(int(v) for v in np.unique(labels) if v):
        kji = np.argwhere(labels == lesionId)
        centreIjk = kji.mean(axis=0)[::-1]
        lps = flair.TransformContinuousIndexToPhysicalPoint(centreIjk.tolist())
        rows.append({"id": lesionId, "voxels": len(kji), "volume_mm3": round(len(kji) * voxelMm3, 3),
                     "location": "periventricular" if lesionId == 1 else "juxtacortical",
                     "centroid_r_mm": -lps[0], "centroid_a_mm": -lps[1], "centroid_s_mm": lps[2],
                     "mean_prob": float(probability[labels == lesionId].mean()),
                     "max_prob": float(probability[labels == lesionId].max())})
    with open(folder / "lesions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "voxels", "volume_mm3", "location", "centroid_r_mm",
                                               "centroid_a_mm", "centroid_s_mm", "mean_prob", "max_prob"])
        writer.writeheader()
        writer.writerows(rows)

    direction = np.array(flair.GetDirection()).reshape(3, 3)
    ijkToLps = np.eye(4)
    ijkToLps[:3, :3] = direction @ np.diag(flair.GetSpacing())
    ijkToLps[:3, 3] = flair.GetOrigin()
    segmentation = slicerio.create_segmentation(labels.shape[::-1], ijkToLps)
    slicerio.add_segment(segmentation, (labels > 0).transpose(2, 1, 0), {"id": "ms_lesions", "name": "MS lesions",
                                                                          "color": [0.94, 0.82, 0.1]})
    slicerio.write_segmentation(str(folder / "lesions.seg.nrrd"), segmentation)
    summary = {"totals": {"count": len(rows), "total_volume_ml": sum(r["volume_mm3"] for r in rows) / 1000}}
    (folder / "summary.json").write_text(json.dumps(summary))
    return {"flair": flair, "labels": labelsImage, "rows": rows, "folder": folder}
