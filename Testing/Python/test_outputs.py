"""The Slicer segmentation file and JSON writer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicerio

from allnet import outputs, terminology


def _oblique_labels() -> sitk.Image:
    array = np.zeros((6, 10, 12), np.uint16)  # KJI
    array[1:3, 2:5, 3:7] = 1
    array[4, 7, 9] = 2
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.8, 3.0))
    image.SetOrigin((-20.0, 15.0, 4.0))
    rotation = sitk.VersorTransform((0.0, 0.0, 1.0), 0.3).GetMatrix()
    image.SetDirection(rotation)
    return image


def test_ijk_to_lps_matches_simpleitk() -> None:
    image = _oblique_labels()
    matrix = outputs.ijk_to_lps_matrix(image)
    for index in [(0, 0, 0), (11, 9, 5), (3, 4, 2)]:
        expected = image.TransformIndexToPhysicalPoint(index)
        assert np.allclose(matrix @ np.array([*index, 1.0]), [*expected, 1.0])


def test_segmentation_file_round_trip(tmp_path: Path) -> None:
    labels = _oblique_labels()
    path = tmp_path / "lesions.seg.nrrd"
    outputs.write_segmentation_nrrd(path, labels, [1, 2])
    seg = slicerio.read_segmentation(str(path))
    assert [s["name"] for s in seg["segments"]] == [terminology.SEGMENT_NAME]
    segment = seg["segments"][0]
    assert segment["terminology"]["type"][1] == "52988006"
    assert np.allclose(seg["ijkToLPS"], outputs.ijk_to_lps_matrix(labels))
    voxels = seg["voxels"] == segment["labelValue"]
    expected = sitk.GetArrayFromImage(labels).transpose(2, 1, 0) > 0
    assert np.array_equal(voxels, expected)


def test_per_lesion_segments(tmp_path: Path) -> None:
    labels = _oblique_labels()
    path = tmp_path / "per.seg.nrrd"
    outputs.write_segmentation_nrrd(path, labels, [1, 2], per_lesion=True)
    seg = slicerio.read_segmentation(str(path))
    names = [s["name"] for s in seg["segments"]]
    assert names == ["Lesion 1", "Lesion 2"]
    second = seg["segments"][1]
    assert int((seg["voxels"] == second["labelValue"]).sum()) == 1
    assert seg["segments"][0]["color"] != seg["segments"][1]["color"]


def test_write_json_converts_numpy(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    outputs.write_json({"a": np.float32(1.5), "b": np.int64(3), "c": np.arange(2), "d": tmp_path}, path)
    assert json.loads(path.read_text()) == {"a": 1.5, "b": 3, "c": [0, 1], "d": str(tmp_path)}
