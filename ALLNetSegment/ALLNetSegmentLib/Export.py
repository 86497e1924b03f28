"""One-step export of a (possibly edited) result: lesion mask NIfTI, .seg.nrrd and table CSV.

Every file is first written under a temporary name in the target folder and renamed only when
all were written, so a failure leaves no partial set of outputs.
"""
from __future__ import annotations

import os
from pathlib import Path

import slicer

from .LesionTable import lesionMaskImage, writeCsv

from allnet.contract import MASK_FILE as MASK_NAME  # the same names as a core run's files
from allnet.contract import SEGMENTATION_FILE as SEGMENTATION_NAME
from allnet.contract import TABLE_FILE as TABLE_NAME


def exportResults(segmentationNode, referenceVolumeNode, rows: list[dict], folder: str | Path) -> dict[str, Path]:
    """Write the three files into ``folder``; returns ``{kind: path}``.

    The mask is the union of all segments on the reference (FLAIR) grid, uint8 0/1.
    """
    import SimpleITK as sitk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    targets = {"mask": folder / MASK_NAME, "segmentation": folder / SEGMENTATION_NAME, "table": folder / TABLE_NAME}
    temporary = {kind: path.with_name(".part-" + path.name) for kind, path in targets.items()}
    try:
        sitk.WriteImage(lesionMaskImage(segmentationNode, referenceVolumeNode), str(temporary["mask"]), True)
        if not slicer.util.saveNode(segmentationNode, str(temporary["segmentation"])):
            raise RuntimeError(f"{targets['segmentation']}: Slicer could not write the segmentation")
        writeCsv(rows, temporary["table"])
        for kind, path in targets.items():
            os.replace(temporary[kind], path)
    finally:
        for path in temporary.values():
            if path.exists():
                path.unlink()
    storageNode = segmentationNode.GetStorageNode()
    if storageNode is not None:  # saveNode pointed it at the temporary name
        storageNode.SetFileName(str(targets["segmentation"]))
    return targets
