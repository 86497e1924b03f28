"""ResultImporter against the Slicer stand-in: geometry, name, colour, terminology, study, probability."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from helpers_slicer import MODULE_DIR, resetSlicer, writeOutputFolder

import slicer  # noqa: E402  (stand-in, on sys.path through helpers_slicer)
from ALLNetSegmentLib.ResultImporter import ResultImporter  # noqa: E402

EXPECTED_TERMINOLOGY = ("~SCT^49755003^Morphologically Altered Structure~SCT^52988006^Lesion~^^~"
                        "~SCT^12738006^Brain~^^~")


@pytest.fixture()
def run(tmp_path):
    resetSlicer()
    written = writeOutputFolder(tmp_path / "out")
    flairNode = slicer.util.loadVolume(str(tmp_path / "out" / "FLAIR.nii.gz"), {"name": "patient07 FLAIR"})
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    study = sh.CreateStudyItem(sh.CreateSubjectItem(sh.GetSceneItemID(), "patient07"), "MR brain 2019")
    sh.SetItemParent(sh.GetItemByDataNode(flairNode), study)
    return written, flairNode, study


def test_segment_is_named_coloured_and_coded_from_the_shipped_colour_table(run):
    written, flairNode, _ = run
    result = ResultImporter(MODULE_DIR / "Resources").importResult(written["folder"], flairNode)
    segmentation = result.segmentationNode.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 1
    segment = segmentation.GetSegment(segmentation.GetNthSegmentID(0))
    assert segment.GetName() == "MS lesions"
    assert np.allclose(segment.GetColor(), (240 / 255, 209 / 255, 26 / 255))
    assert segment.GetTerminology() == EXPECTED_TERMINOLOGY


def test_segmentation_has_flair_reference_geometry_and_the_written_voxels(run):
    written, flairNode, _ = run
    result = ResultImporter(MODULE_DIR / "Resources").importResult(written["folder"], flairNode)
    node = result.segmentationNode
    assert node.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()) is flairNode
    segmentId = node.GetSegmentation().GetNthSegmentID(0)
    voxels = slicer.util.arrayFromSegmentBinaryLabelmap(node, segmentId, flairNode)
    expected = sitk.GetArrayFromImage(written["labels"]) > 0
    assert voxels.shape == expected.shape
    assert np.array_equal(voxels > 0, expected)


def test_results_go_into_the_study_of_the_flair(run):
    written, flairNode, study = run
    result = ResultImporter(MODULE_DIR / "Resources").importResult(written["folder"], flairNode)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    assert sh.GetItemParent(sh.GetItemByDataNode(result.segmentationNode)) == study
    assert sh.GetItemParent(sh.GetItemByDataNode(result.probabilityNode)) == study


def test_probability_volume_is_optional_and_shown_on_a_0_1_window(run):
    written, flairNode, _ = run
    importer = ResultImporter(MODULE_DIR / "Resources")
    result = importer.importResult(written["folder"], flairNode)
    assert result.probabilityNode.GetDisplayNode().windowLevelMinMax == (0.0, 1.0)
    assert float(slicer.util.arrayFromVolume(result.probabilityNode).max()) == pytest.approx(0.9)
    again = importer.importResult(written["folder"], flairNode, result.segmentationNode, keepProbability=False)
    assert again.probabilityNode is None
    assert again.segmentationNode is result.segmentationNode
    assert again.segmentationNode.GetSegmentation().GetNumberOfSegments() == 1  # replaced, not appended


def test_a_result_without_lesions_gives_an_empty_coded_segment(tmp_path):
    resetSlicer()
    written = writeOutputFolder(tmp_path / "out", withLesions=False)
    flairNode = slicer.util.loadVolume(str(tmp_path / "out" / "FLAIR.nii.gz"))
    result = ResultImporter(MODULE_DIR / "Resources").importResult(written["folder"], flairNode)
    segmentation = result.segmentationNode.GetSegmentation()
    segment = segmentation.GetSegment(segmentation.GetNthSegmentID(0))
    assert segmentation.GetNumberOfSegments() == 1
    assert segment.GetName() == "MS lesions"
    assert "52988006" in segment.GetTerminology()


def test_missing_mask_names_the_file(tmp_path):
    resetSlicer()
    written = writeOutputFolder(tmp_path / "out")
    flairNode = slicer.util.loadVolume(str(tmp_path / "out" / "FLAIR.nii.gz"))
    (written["folder"] / "lesion_mask.nii.gz").unlink()
    with pytest.raises(RuntimeError, match="lesion_mask.nii.gz"):
        ResultImporter(MODULE_DIR / "Resources").importResult(written["folder"], flairNode)
