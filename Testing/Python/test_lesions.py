"""Tests of allnet.lesions: components, minimum size, per-lesion table, locations, CSV."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from allnet.contract import DIS_AREAS
from allnet.errors import InputError
from allnet.lesions import (
    CSV_COLUMNS, DEFAULT_MIN_LESION_MM3, LOC_DEEP_WM, LOC_INFRATENTORIAL, LOC_JUXTACORTICAL,
    LOC_PERIVENTRICULAR, LOCATIONS, ZONE_DEEP_WM, ZONE_INFRATENTORIAL, ZONE_JUXTACORTICAL,
    ZONE_PERIVENTRICULAR, label_lesions, lesion_table, lesion_totals, table_rows, write_lesions_csv,
)

SPACING = (0.5, 0.8, 3.0)  # (i, j, k) mm: a 2D-like clinical FLAIR
# Oblique, permuted axes (a rotation): i -> +S, j and k rotated by 30 degrees in the L/P plane.
_C, _S = np.cos(np.deg2rad(30)), np.sin(np.deg2rad(30))
DIRECTION = np.array([[0.0, -_C, _S], [0.0, _S, _C], [1.0, 0.0, 0.0]])  # columns = axis directions
assert np.allclose(DIRECTION.T @ DIRECTION, np.eye(3))
ORIGIN = (12.5, -40.0, 7.0)


def _image(array_kji: np.ndarray, like: sitk.Image | None = None) -> sitk.Image:
    image = sitk.GetImageFromArray(array_kji)
    if like is None:
        image.SetSpacing(SPACING)
        image.SetDirection(tuple(DIRECTION.flatten()))
        image.SetOrigin(ORIGIN)
    else:
        image.CopyInformation(like)
    return image


def _two_cubes() -> tuple[sitk.Image, np.ndarray, np.ndarray]:
    """Mask with a 4x4x2-voxel cube A (38.4 mm^3) and a 2x2x1 cube B (4.8 mm^3), KJI slices."""
    mask = np.zeros((10, 16, 20), dtype=np.uint8)  # (k, j, i)
    a = np.zeros_like(mask, dtype=bool)
    a[2:4, 2:6, 3:7] = True
    b = np.zeros_like(mask, dtype=bool)
    b[6:7, 10:12, 12:14] = True
    mask[a | b] = 1
    return _image(mask), a, b


def _expected_centroid_ras(image: sitk.Image, voxels_kji: np.ndarray) -> np.ndarray:
    k, j, i = np.nonzero(voxels_kji)
    lps = image.TransformContinuousIndexToPhysicalPoint((i.mean(), j.mean(), k.mean()))
    return np.array([-lps[0], -lps[1], lps[2]])


def test_label_lesions_sorts_by_volume_and_keeps_geometry():
    mask, a, b = _two_cubes()
    labels = label_lesions(mask, connectivity=26, min_size_mm3=0)
    arr = sitk.GetArrayFromImage(labels)
    assert labels.GetPixelID() == sitk.sitkUInt16
    assert np.allclose(labels.GetDirection(), mask.GetDirection())
    assert np.allclose(labels.GetOrigin(), ORIGIN) and np.allclose(labels.GetSpacing(), SPACING)
    assert set(np.unique(arr[a])) == {1} and set(np.unique(arr[b])) == {2}
    assert not arr[~(a | b)].any()


def test_minimum_size_removes_small_components():
    mask, a, b = _two_cubes()
    # B is 4.8 mm^3: under the default minimum, kept at 4.8, removed at 4.9
    assert DEFAULT_MIN_LESION_MM3 > 4.8
    arr = sitk.GetArrayFromImage(label_lesions(mask))
    assert arr.max() == 1 and not arr[b].any() and (arr[a] == 1).all()
    assert sitk.GetArrayFromImage(label_lesions(mask, min_size_mm3=4.8)).max() == 2
    assert sitk.GetArrayFromImage(label_lesions(mask, min_size_mm3=4.9)).max() == 1


@pytest.mark.parametrize("offset, counts", [
    ((1, 1, 1), {6: 2, 18: 2, 26: 1}),  # corner contact only
    ((0, 1, 1), {6: 2, 18: 1, 26: 1}),  # edge contact
    ((0, 0, 1), {6: 1, 18: 1, 26: 1}),  # face contact
])
def test_connectivity(offset, counts):
    mask = np.zeros((6, 6, 6), dtype=np.uint8)
    mask[2, 2, 2] = 1
    mask[2 + offset[0], 2 + offset[1], 2 + offset[2]] = 1
    image = _image(mask)
    for connectivity, expected in counts.items():
        labels = label_lesions(image, connectivity=connectivity, min_size_mm3=0)
        assert sitk.GetArrayFromImage(labels).max() == expected, connectivity


def test_bad_arguments_raise_input_error():
    mask, _, _ = _two_cubes()
    with pytest.raises(InputError, match="connectivity"):
        label_lesions(mask, connectivity=8)
    with pytest.raises(InputError, match="minimum lesion size"):
        label_lesions(mask, min_size_mm3=-1)
    with pytest.raises(InputError, match="integer"):
        lesion_table(sitk.Cast(mask, sitk.sitkFloat32))
    with pytest.raises(InputError, match="3D"):
        label_lesions(sitk.Image([4, 4], sitk.sitkUInt8))


def test_table_volumes_centroids_bbox_and_probabilities():
    mask, a, b = _two_cubes()
    labels = label_lesions(mask, min_size_mm3=0)
    prob = np.where(a | b, 0.6, 0.05).astype(np.float32)
    prob[3, 5, 6] = 0.95  # one voxel of A
    table = lesion_table(labels, probability=_image(prob, like=mask))
    assert [les.id for les in table] == [1, 2]
    first, second = table
    voxel_mm3 = 0.5 * 0.8 * 3.0
    assert first.voxel_count == 32 and first.volume_mm3 == pytest.approx(32 * voxel_mm3)
    assert second.voxel_count == 4 and second.volume_mm3 == pytest.approx(4 * voxel_mm3)
    assert np.allclose(first.centroid_ras, _expected_centroid_ras(mask, a), atol=1e-6)
    assert np.allclose(second.centroid_ras, _expected_centroid_ras(mask, b), atol=1e-6)
    assert first.bbox == ((3, 2, 2), (6, 5, 3))  # (i, j, k) min / max, inclusive
    assert second.bbox == ((12, 10, 6), (13, 11, 6))
    assert first.mean_probability == pytest.approx((31 * 0.6 + 0.95) / 32, rel=1e-6)
    assert first.max_probability == pytest.approx(0.95, rel=1e-6)
    assert second.max_probability == pytest.approx(0.6, rel=1e-6)
    assert first.location is None  # no zones image
    no_prob = lesion_table(labels)
    assert no_prob[0].mean_probability is None and no_prob[0].max_probability is None


def test_location_rule_order():
    mask, a, b = _two_cubes()
    labels = label_lesions(mask, min_size_mm3=0)
    zones = np.full(a.shape, ZONE_DEEP_WM, dtype=np.uint8)
    zones[2, 2, 3] = ZONE_PERIVENTRICULAR  # one voxel of A
    zones[3, 2:6, 3:7] = ZONE_JUXTACORTICAL  # half of A: periventricular wins
    zones[6, 10, 12] = ZONE_JUXTACORTICAL  # one voxel of B
    table = lesion_table(labels, zones=_image(zones, like=mask))
    assert [les.location for les in table] == [LOC_PERIVENTRICULAR, LOC_JUXTACORTICAL]

    zones[a] = ZONE_INFRATENTORIAL
    zones[2, 2, 3] = ZONE_PERIVENTRICULAR  # minority: most of A is infratentorial
    zones[b] = ZONE_DEEP_WM
    zones[6, 10:12, 12] = ZONE_INFRATENTORIAL  # exactly half of B: not "most"
    table = lesion_table(labels, zones=_image(zones, like=mask))
    assert [les.location for les in table] == [LOC_INFRATENTORIAL, LOC_DEEP_WM]


def test_zones_on_another_grid_are_resampled():
    mask, _, _ = _two_cubes()
    labels = label_lesions(mask, min_size_mm3=0)
    # an axis-aligned 1 mm zones image that covers the labels image entirely
    zones = sitk.Image([120, 120, 120], sitk.sitkUInt8) + ZONE_INFRATENTORIAL
    zones.SetOrigin((-60.0, -100.0, -50.0))
    table = lesion_table(labels, zones=zones)
    assert [les.location for les in table] == [LOC_INFRATENTORIAL] * 2
    far = sitk.Image([10, 10, 10], sitk.sitkUInt8) + ZONE_INFRATENTORIAL
    far.SetOrigin((500.0, 500.0, 500.0))  # no overlap: the lesions lie outside every zone
    assert [les.location for les in lesion_table(labels, zones=far)] == [None, None]


def test_many_lesions_match_scipy():
    rng = np.random.default_rng(7)
    mask = (ndimage.gaussian_filter(rng.random((48, 56, 64)), 1.0) > 0.56).astype(np.uint8)
    image = _image(mask)
    labels = label_lesions(image, connectivity=18, min_size_mm3=0)
    arr = sitk.GetArrayFromImage(labels)
    reference, n = ndimage.label(mask, ndimage.generate_binary_structure(3, 2))
    assert n > 300 and arr.max() == n
    table = lesion_table(labels)
    counts = np.array([les.voxel_count for les in table])
    assert np.all(np.diff(counts) <= 0)  # ids sorted by decreasing size
    assert counts.sum() == mask.sum()
    assert sorted(counts) == sorted(np.bincount(reference.ravel())[1:])
    for les in table[:: max(len(table) // 25, 1)]:
        assert np.allclose(les.centroid_ras, _expected_centroid_ras(image, arr == les.id), atol=1e-6)


def test_totals_rows_and_csv(tmp_path):
    mask, a, _ = _two_cubes()
    labels = label_lesions(mask, min_size_mm3=0)
    zones = np.full(a.shape, ZONE_DEEP_WM, dtype=np.uint8)
    zones[a] = ZONE_PERIVENTRICULAR
    table = lesion_table(labels, zones=_image(zones, like=mask))
    totals = lesion_totals(table)
    assert totals["count"] == 2 and totals["total_voxels"] == 36
    assert totals["total_volume_ml"] == pytest.approx(36 * 1.2 / 1000)
    assert set(totals["by_location"]) == set(LOCATIONS)
    assert totals["by_location"][LOC_PERIVENTRICULAR] == {"count": 1, "volume_ml": pytest.approx(0.0384)}
    assert totals["by_location"][LOC_DEEP_WM]["count"] == 1
    assert totals["by_location"][LOC_JUXTACORTICAL]["count"] == 0
    assert lesion_totals(lesion_table(labels))["by_location"]["unknown"]["count"] == 2
    dis = totals["dissemination_in_space"]
    assert dis["areas_with_lesions"] == 1 and dis["areas_assessed"] == 3  # deep WM is not a DIS area
    assert dis["areas"] == {LOC_PERIVENTRICULAR: 1, LOC_JUXTACORTICAL: 0, LOC_INFRATENTORIAL: 0}
    assert "not a diagnosis" in dis["note"]
    assert lesion_totals([])["dissemination_in_space"]["areas_with_lesions"] == 0
    # the contract's DIS areas (read by the Slicer table without numpy) are location names
    assert set(DIS_AREAS) <= set(LOCATIONS) and LOC_DEEP_WM not in DIS_AREAS

    rows = table_rows(table)
    assert all(tuple(row) == CSV_COLUMNS for row in rows)
    path = write_lesions_csv(table, tmp_path / "lesions.csv")
    with open(path, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert list(read[0]) == list(CSV_COLUMNS)
    assert [int(r["id"]) for r in read] == [1, 2]
    assert float(read[0]["volume_mm3"]) == pytest.approx(38.4)
    assert read[0]["location"] == LOC_PERIVENTRICULAR and read[0]["mean_prob"] == ""
    assert float(read[1]["centroid_s_mm"]) == pytest.approx(table[1].centroid_ras[2], abs=0.01)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lesions.csv"]  # no temporary left


def test_empty_mask_gives_empty_table(tmp_path):
    mask = _image(np.zeros((4, 5, 6), dtype=np.uint8))
    labels = label_lesions(mask)
    assert sitk.GetArrayFromImage(labels).max() == 0
    assert lesion_table(labels) == []
    assert lesion_totals([])["count"] == 0
    with open(write_lesions_csv([], tmp_path / "empty.csv")) as handle:
        assert handle.read().strip() == ",".join(CSV_COLUMNS)
