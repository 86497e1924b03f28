"""Loads the files of one ``allnet segment`` run into the scene.

The lesion mask (FLAIR geometry) is imported through the shipped MS-lesion colour table, so the
segment gets its name, colour and terminology; the segmentation's reference geometry is the
FLAIR volume (needed by DICOM SEG export) and every result goes into the FLAIR's study.
"""
from __future__ import annotations

from dataclasses import dataclass
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
OUTPUT_DIR_ATTRIBUTE = "ALLNet.OutputDir"
PROBABILITY_ATTRIBUTE = "ALLNet.ProbabilityVolumeID"


@dataclass
class ImportedResult:
    segmentationNode: object
    probabilityNode: object | None
    outputDir: Path


def placeInStudyOf(referenceNode, node) -> None:
    """Put ``node`` under the same subject-hierarchy parent (study) as ``referenceNode``."""
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    referenceItem = shNode.GetItemByDataNode(referenceNode)
    item = shNode.GetItemByDataNode(node)
    if not referenceItem or not item:
        return
    shNode.SetItemParent(item, shNode.GetItemParent(referenceItem))


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
        segmentationNode.SetAttribute(OUTPUT_DIR_ATTRIBUTE, str(outputDir))
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
        return ImportedResult(segmentationNode, probabilityNode, outputDir)

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
