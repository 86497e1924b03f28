"""Loads the files of one ``allnet segment`` run into the scene.

The lesion mask (FLAIR geometry) is imported through the shipped MS-lesion colour table, so the
segment gets its name, colour and terminology; the segmentation's reference geometry is the
FLAIR volume (needed by DICOM SEG export) and every result goes into the FLAIR's study.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import slicer

MASK_FILE = "lesion_mask.nii.gz"
PROBABILITY_FILE = "lesion_probability.nii.gz"
ZONES_FILE = "lesion_zones.nii.gz"
TABLE_FILE = "lesions.csv"
SUMMARY_FILE = "summary.json"
COLOR_TABLE_FILE = "ALLNetSegment-MSLesion.csv"
COLOR_NODE_NAME = "ALLNet MS lesion colors"
LESION_LABEL = 1
PROBABILITY_ATTRIBUTE = "ALLNet.ProbabilityVolumeID"


@dataclass
class ImportedResult:
    """What a run left in the scene, plus what the lesion table needs once the output folder is
    gone: ``rows`` of lesions.csv and the ``maps`` (SimpleITK images, FLAIR geometry) that
    recomputation after edits reads: "probability" and "zones" when the run wrote them."""

    segmentationNode: object
    probabilityNode: object | None
    outputDir: Path
    rows: list = field(default_factory=list)
    maps: dict = field(default_factory=dict)


def placeInStudyOf(referenceNode, node) -> None:
    """Put ``node`` under the same subject-hierarchy parent (study) as ``referenceNode``."""
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    referenceItem = shNode.GetItemByDataNode(referenceNode)
    item = shNode.GetItemByDataNode(node)
    if not referenceItem or not item:
        return
    shNode.SetItemParent(item, shNode.GetItemParent(referenceItem))


def detachFromFile(node) -> None:
    """Forget the file a volume was read from: the run's folder is deleted after import, so a
    later scene save must write the data instead of pointing at a file that is gone."""
    storageNode = node.GetStorageNode()
    if storageNode is not None:
        node.SetAndObserveStorageNodeID(None)
        slicer.mrmlScene.RemoveNode(storageNode)


class ResultImporter:
    """``importResult(outputDir, flairNode, ...)`` -> :class:`ImportedResult`."""

    def __init__(self, resourcesDir: str | Path) -> None:
        self.colorTablePath = Path(resourcesDir) / COLOR_TABLE_FILE

    def colorNode(self):
        """The MS-lesion colour table node, loaded once per scene."""
        for node in slicer.util.getNodesByClass("vtkMRMLColorTableNode"):
            if node.GetName() == COLOR_NODE_NAME:
                return node
        node = slicer.util.loadColorTable(str(self.colorTablePath))
        node.SetName(COLOR_NODE_NAME)
        return node

    def importResult(self, outputDir: str | Path, flairNode, segmentationNode=None,
                     keepProbability: bool = True) -> ImportedResult:
        outputDir = Path(outputDir)
        maskPath = outputDir / MASK_FILE
        if not maskPath.is_file():
            raise RuntimeError(f"{maskPath}: the lesion mask is missing from the ALLNet output folder")
        colorNode = self.colorNode()
        baseName = flairNode.GetName()

        if segmentationNode is None:
            segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                                                  f"{baseName} MS lesions")
        segmentationNode.GetSegmentation().RemoveAllSegments()
        segmentationNode.CreateDefaultDisplayNodes()
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(flairNode)

        labelmapNode = slicer.util.loadLabelVolume(
            str(maskPath), {"name": f"{baseName} lesion mask", "show": False,
                            "colorNodeID": colorNode.GetID()})
        try:
            labelmapNode.GetDisplayNode().SetAndObserveColorNodeID(colorNode.GetID())
            if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(
                    labelmapNode, segmentationNode):
                raise RuntimeError(f"{maskPath}: Slicer could not import the lesion mask")
        finally:
            slicer.mrmlScene.RemoveNode(labelmapNode)
        self._ensureLesionSegment(segmentationNode, colorNode)
        self._applyTerminology(segmentationNode, colorNode)
        placeInStudyOf(flairNode, segmentationNode)

        probabilityNode = None
        probabilityPath = outputDir / PROBABILITY_FILE
        if keepProbability and probabilityPath.is_file():
            probabilityNode = slicer.util.loadVolume(
                str(probabilityPath), {"name": f"{baseName} lesion probability", "show": False})
            displayNode = probabilityNode.GetDisplayNode()
            displayNode.SetAutoWindowLevel(False)
            displayNode.SetWindowLevelMinMax(0.0, 1.0)
            placeInStudyOf(flairNode, probabilityNode)
            segmentationNode.SetAttribute(PROBABILITY_ATTRIBUTE, probabilityNode.GetID())
            detachFromFile(probabilityNode)
        return ImportedResult(segmentationNode, probabilityNode, outputDir, self.readRows(outputDir),
                              self.readMaps(outputDir))

    @staticmethod
    def readRows(outputDir: Path) -> list[dict]:
        from . import LesionTable

        path = outputDir / TABLE_FILE
        return LesionTable.rowsFromCsv(path) if path.is_file() else []

    @staticmethod
    def readMaps(outputDir: Path) -> dict:
        """The run's probability and zone maps, read into memory (the folder may be deleted next)."""
        import SimpleITK as sitk

        return {key: sitk.ReadImage(str(outputDir / name))
                for key, name in (("probability", PROBABILITY_FILE), ("zones", ZONES_FILE))
                if (outputDir / name).is_file()}

    @staticmethod
    def _ensureLesionSegment(segmentationNode, colorNode) -> None:
        """A result without lesions still gets an (empty) "MS lesions" segment to paint into."""
        segmentation = segmentationNode.GetSegmentation()
        if segmentation.GetNumberOfSegments() > 0:
            return
        color = [0.0, 0.0, 0.0, 0.0]
        colorNode.GetColor(LESION_LABEL, color)
        segmentId = segmentation.AddEmptySegment("", colorNode.GetColorName(LESION_LABEL), color[:3])
        segmentation.GetSegment(segmentId).SetLabelValue(LESION_LABEL)

    @staticmethod
    def _applyTerminology(segmentationNode, colorNode) -> None:
        # Set explicitly from the colour table: the terminology then does not depend on which
        # terminology contexts happen to be loaded in this Slicer.
        segmentation = segmentationNode.GetSegmentation()
        terminology = colorNode.GetTerminologyAsString(LESION_LABEL)
        for index in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetSegment(segmentation.GetNthSegmentID(index))
            segment.SetTerminology(terminology)
