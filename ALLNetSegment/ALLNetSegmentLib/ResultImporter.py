"""Loads the files of one ``allnet segment`` run into the scene.

The lesion mask (FLAIR geometry) is imported through the shipped MS-lesion colour table, so the
segment gets its name, colour and terminology; the segmentation's reference geometry is the
FLAIR volume (needed by DICOM SEG export) and every result goes into the FLAIR's study.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import slicer

from allnet.contract import SUMMARY_FILE, SUMMARY_OUTPUTS_KEY, SUMMARY_PLAN_KEY

COLOR_TABLE_FILE = "ALLNetSegment-MSLesion.csv"
COLOR_NODE_NAME = "ALLNet MS lesion colors"
LESION_LABEL = 1
PROBABILITY_ATTRIBUTE = "ALLNet.ProbabilityVolumeID"
CONNECTIVITY_ATTRIBUTE = "ALLNet.Connectivity"  # the run's connectivity, for recomputed tables


def runOutputs(outputDir: str | Path) -> dict[str, Path]:
    """The files a core run wrote, from its ``summary.json`` (``outputs``: key -> file name;
    keys of ``allnet.contract.OUTPUT_FILES``). RuntimeError naming the file when the summary
    is missing or unreadable: the names are never guessed."""
    import json

    summaryPath = Path(outputDir) / SUMMARY_FILE
    try:
        listed = json.loads(summaryPath.read_text(encoding="utf-8"))[SUMMARY_OUTPUTS_KEY]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RuntimeError(f"{summaryPath}: the ALLNet run summary is missing or unreadable ({error})") from None
    return {key: Path(outputDir) / name for key, name in listed.items()}


def runWarnings(outputDir: str | Path) -> list[str]:
    """The warnings of a run (``summary.json`` ``warnings``: a missing T2W, a head mismatch let
    through with allow_mismatch, ...)."""
    import json

    summary = json.loads((Path(outputDir) / SUMMARY_FILE).read_text(encoding="utf-8"))
    return [str(w) for w in summary.get("warnings") or []]


def runPlan(outputDir: str | Path) -> dict:
    """The post-processing values the run applied (``summary.json`` ``inference_plan``)."""
    import json

    summary = json.loads((Path(outputDir) / SUMMARY_FILE).read_text(encoding="utf-8"))
    return dict(summary.get(SUMMARY_PLAN_KEY) or {})


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
    reportPath: Path | None = None  # the run's QC report, kept after its folder is deleted
    warnings: list = field(default_factory=list)  # the run's summary.json warnings, for the Log


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
        files = runOutputs(outputDir)
        maskPath = files.get("mask")
        if maskPath is None or not maskPath.is_file():
            raise RuntimeError(f"{maskPath or outputDir}: the lesion mask is missing from the ALLNet output folder")
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
        connectivity = runPlan(outputDir).get("connectivity")
        if connectivity:
            segmentationNode.SetAttribute(CONNECTIVITY_ATTRIBUTE, str(int(connectivity)))

        probabilityNode = None
        probabilityPath = files.get("probability")
        if keepProbability and probabilityPath is not None and probabilityPath.is_file():
            probabilityNode = slicer.util.loadVolume(
                str(probabilityPath), {"name": f"{baseName} lesion probability", "show": False})
            displayNode = probabilityNode.GetDisplayNode()
            displayNode.SetAutoWindowLevel(False)
            displayNode.SetWindowLevelMinMax(0.0, 1.0)
            placeInStudyOf(flairNode, probabilityNode)
            segmentationNode.SetAttribute(PROBABILITY_ATTRIBUTE, probabilityNode.GetID())
            detachFromFile(probabilityNode)
        return ImportedResult(segmentationNode, probabilityNode, outputDir, self.readRows(outputDir),
                              self.readMaps(outputDir), warnings=runWarnings(outputDir))

    @staticmethod
    def readRows(outputDir: Path) -> list[dict]:
        from . import LesionTable

        path = runOutputs(outputDir).get("table")
        return LesionTable.rowsFromCsv(path) if path is not None and path.is_file() else []

    @staticmethod
    def readMaps(outputDir: Path) -> dict:
        """The run's probability and zone maps, read into memory (the folder may be deleted next)."""
        import SimpleITK as sitk

        files = runOutputs(outputDir)
        return {key: sitk.ReadImage(str(files[key])) for key in ("probability", "zones")
                if key in files and files[key].is_file()}

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
