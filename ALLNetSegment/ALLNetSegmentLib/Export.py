"""One-step export of a (possibly edited) result: lesion mask NIfTI, .seg.nrrd and table CSV.

Every file is first written under a temporary name in the target folder and renamed only when
all were written, so a failure leaves no partial set of outputs.
"""
from __future__ import annotations

from pathlib import Path

import slicer

from allnet.atomic import atomic_file
from allnet.contract import MASK_FILE as MASK_NAME  # the same names as a core run's files
from allnet.contract import SEGMENTATION_FILE as SEGMENTATION_NAME
from allnet.contract import TABLE_FILE as TABLE_NAME

from .LesionTable import lesionMaskImage, writeCsv


def exportResults(segmentationNode, referenceVolumeNode, rows: list[dict], folder: str | Path) -> dict[str, Path]:
    """Write the three files into ``folder``; returns ``{kind: path}``.

    The mask is the union of all segments on the reference (FLAIR) grid, uint8 0/1.
    """
    import SimpleITK as sitk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    targets = {"mask": folder / MASK_NAME, "segmentation": folder / SEGMENTATION_NAME, "table": folder / TABLE_NAME}
    # Nested atomic writers: every file is written under a temporary name first; the renames
    # happen only after all three were written, and a failure removes every temporary file.
    with atomic_file(targets["mask"]) as maskTmp, atomic_file(targets["segmentation"]) as segTmp, \
            atomic_file(targets["table"]) as tableTmp:
        sitk.WriteImage(lesionMaskImage(segmentationNode, referenceVolumeNode), str(maskTmp), True)
        if not slicer.util.saveNode(segmentationNode, str(segTmp)):
            raise RuntimeError(f"{targets['segmentation']}: Slicer could not write the segmentation")
        writeCsv(rows, tableTmp)
    storageNode = segmentationNode.GetStorageNode()
    if storageNode is not None:  # saveNode pointed it at the temporary name
        storageNode.SetFileName(str(targets["segmentation"]))
    return targets
