"""Lesion table nodes (titles, units, totals), row -> RAS jump, LPS/RAS geometry on an oblique
volume, recomputation after an edit, and export."""
from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from helpers_slicer import LESIONS_KJI, MODULE_DIR, resetSlicer, writeOutputFolder

import slicer  # noqa: E402
from ALLNetSegmentLib import LesionTable  # noqa: E402
from ALLNetSegmentLib.Export import exportResults  # noqa: E402
from ALLNetSegmentLib.Geometry import ijkToRasArray, rasFromLps  # noqa: E402
from ALLNetSegmentLib.ResultImporter import ResultImporter  # noqa: E402


@pytest.fixture()
def loaded(tmp_path):
    resetSlicer()
    written = writeOutputFolder(tmp_path / "out")
    flairNode = slicer.util.loadVolume(str(tmp_path / "out" / "FLAIR.nii.gz"))
    result = ResultImporter(MODULE_DIR / "Resources").importResult(written["folder"], flairNode)
    return written, flairNode, result


def nibabelCentroidRas(path, kjiRegion) -> np.ndarray:
    """RAS centre of a voxel block computed with nibabel's affine: independent of SimpleITK."""
    affine = nib.load(str(path)).affine  # voxel (i, j, k) -> RAS mm
    k, j, i = (np.arange(s.start, s.stop).mean() for s in kjiRegion)
    return (affine @ [i, j, k, 1.0])[:3]


def test_tables_have_rows_titles_units_descriptions_and_totals(loaded):
    written, flairNode, _ = loaded
    rows = LesionTable.rowsFromCsv(written["folder"] / "lesions.csv")
    lesionTable, totalsTable = LesionTable.updateTables(rows, referenceNode=flairNode)
    assert lesionTable.GetNumberOfRows() == 2
    assert lesionTable.GetColumnTitle("volume_mm3") == "Volume"
    assert lesionTable.GetColumnUnitLabel("volume_mm3") == "mm3"
    assert [lesionTable.GetColumnUnitLabel(c) for c in ("centroid_r_mm", "centroid_a_mm", "centroid_s_mm")] == ["mm"] * 3
    assert all(lesionTable.GetColumnDescription(c.name) for c in LesionTable.COLUMNS)
    assert lesionTable.useColumnTitleAsColumnHeader and lesionTable.locked
    table = lesionTable.GetTable()
    assert table.GetColumnByName("location").GetValue(1) == "juxtacortical"
    assert table.GetColumnByName("max_prob").GetValue(1) == pytest.approx(0.7)

    totals = {totalsTable.GetCellText(r, 0): float(totalsTable.GetCellText(r, 1)) for r in range(totalsTable.GetNumberOfRows())}
    voxelMm3 = 0.9 * 1.1 * 3.0
    assert totals["Lesion count"] == 2
    assert totals["Total lesion volume"] == pytest.approx((60 + 18) * voxelMm3 / 1000, abs=1e-4)
    assert totals["periventricular: count"] == 1
    from allnet.contract import DIS_LABEL
    assert totals[DIS_LABEL] == 2  # periventricular and juxtacortical lesions, none infratentorial

    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    flairParent = sh.GetItemParent(sh.GetItemByDataNode(flairNode))
    assert sh.GetItemParent(sh.GetItemByDataNode(lesionTable)) == flairParent


def test_updating_reuses_the_nodes_and_replaces_rows(loaded):
    written, flairNode, _ = loaded
    rows = LesionTable.rowsFromCsv(written["folder"] / "lesions.csv")
    lesionTable, totalsTable = LesionTable.updateTables(rows)
    again = LesionTable.updateTables(rows[:1], lesionTable, totalsTable)
    assert again == (lesionTable, totalsTable)
    assert lesionTable.GetNumberOfRows() == 1
    assert lesionTable.GetNumberOfColumns() == len(LesionTable.COLUMNS)


def test_row_selection_jumps_to_the_lesion_in_ras(loaded):
    written, flairNode, _ = loaded
    rows = LesionTable.rowsFromCsv(written["folder"] / "lesions.csv")
    lesionTable, _ = LesionTable.updateTables(rows)
    point = LesionTable.jumpToRow(lesionTable, 1)
    jumps = slicer.modules.markups.logic().jumps
    assert jumps == [(*point, True)]
    # The CSV's RAS centre of lesion 2 agrees with nibabel's RAS affine (LPS -> RAS signs right).
    expected = nibabelCentroidRas(written["folder"] / "FLAIR.nii.gz", LESIONS_KJI[2])
    assert np.allclose(point, expected, atol=0.006)  # lesions.csv keeps centroids to 0.01 mm
    assert LesionTable.jumpToRow(lesionTable, 5) is None
    assert len(jumps) == 1


def test_mask_image_from_a_segmentation_keeps_the_oblique_geometry(loaded):
    written, flairNode, result = loaded
    # The volume node's IJK->RAS comes from the file; check it against nibabel first.
    affine = nib.load(str(written["folder"] / "FLAIR.nii.gz")).affine
    assert np.allclose(ijkToRasArray(flairNode), affine, atol=1e-4)
    assert not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3])))  # really oblique

    image = LesionTable.lesionMaskImage(result.segmentationNode, flairNode)
    assert np.allclose(image.GetDirection(), written["flair"].GetDirection(), atol=1e-6)
    assert np.allclose(image.GetOrigin(), written["flair"].GetOrigin(), atol=1e-4)
    assert np.allclose(image.GetSpacing(), written["flair"].GetSpacing(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(written["labels"]) > 0)
    # A voxel's LPS point, turned to RAS, is where the node's IJK->RAS puts it.
    i, j, k = 9, 11, 4
    ras = rasFromLps(image.TransformIndexToPhysicalPoint((i, j, k)))
    assert np.allclose(ras, (affine @ [i, j, k, 1])[:3], atol=1e-4)


def test_recompute_after_erasing_a_lesion(loaded):
    lesions = pytest.importorskip("allnet.lesions", reason="allnet.lesions (the core's lesion table) not available yet")
    written, flairNode, result = loaded
    node = result.segmentationNode
    segmentId = node.GetSegmentation().GetNthSegmentID(0)
    rows = LesionTable.recomputeRows(node, flairNode, written["folder"] / "lesion_probability.nii.gz",
                                     written["folder"] / "lesion_zones.nii.gz")
    assert len(rows) == 2
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segmentId, flairNode)
    mask[LESIONS_KJI[1]] = 0
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segmentId, flairNode)
    rows = LesionTable.recomputeRows(node, flairNode, written["folder"] / "lesion_probability.nii.gz")
    assert len(rows) == 1
    assert rows[0]["voxels"] == 18
    assert rows[0]["max_prob"] == pytest.approx(0.7)
    expected = nibabelCentroidRas(written["folder"] / "FLAIR.nii.gz", LESIONS_KJI[2])
    assert np.allclose([rows[0]["centroid_r_mm"], rows[0]["centroid_a_mm"], rows[0]["centroid_s_mm"]], expected, atol=0.01)  # the core rounds to 0.01 mm
    del lesions


def test_export_writes_mask_segmentation_and_table(loaded, tmp_path):
    written, flairNode, result = loaded
    rows = LesionTable.rowsFromCsv(written["folder"] / "lesions.csv")
    paths = exportResults(result.segmentationNode, flairNode, rows, tmp_path / "export")
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["lesion_mask.nii.gz", "lesions.csv", "lesions.seg.nrrd"]
    mask = sitk.ReadImage(str(paths["mask"]))
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert np.allclose(mask.GetDirection(), written["flair"].GetDirection(), atol=1e-6)
    assert np.array_equal(sitk.GetArrayFromImage(mask), (sitk.GetArrayFromImage(written["labels"]) > 0).astype(np.uint8))
    back = LesionTable.rowsFromCsv(paths["table"])
    assert [r["id"] for r in back] == [1, 2]
    assert math.isclose(back[0]["volume_mm3"], rows[0]["volume_mm3"])
    import slicerio
    segmentation = slicerio.read_segmentation(str(paths["segmentation"]))
    assert [s["name"] for s in segmentation["segments"]] == ["MS lesions"]
