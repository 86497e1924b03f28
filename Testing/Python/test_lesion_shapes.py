"""Tests of allnet.lesion_shapes: ellipsoidal lesions and real lesion shapes at new WM places."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from allnet.lesion_shapes import LesionShapeBank, ellipsoid_lesions, sample_lesion_shapes
from helpers_synthesis import CONN26, phantom_maps


@pytest.fixture(scope="module")
def phantom() -> dict[str, np.ndarray]:
    return phantom_maps()


def test_ellipsoid_lesions_sizes_and_placement(phantom):
    rng = np.random.default_rng(11)
    wm = phantom["wm"]
    existing = np.zeros(wm.shape, np.uint8)
    existing[30:34, 30:34, 45:49] = 1
    mask = ellipsoid_lesions(wm.shape, wm, 8, rng, (1.5, 3.0), existing=existing)
    labels, n = ndimage.label(mask, structure=CONN26)
    assert n == 8
    assert (wm[mask > 0] >= 0.5).all()
    volumes = np.bincount(labels.ravel())[1:]
    assert volumes.max() <= 4 / 3 * np.pi * 3.0 ** 3 + 1
    assert volumes.min() >= 0.5 * 4 / 3 * np.pi * 1.5 ** 3 - 1
    touching = ndimage.binary_dilation(existing, structure=CONN26)
    assert not (touching & (mask > 0)).any()
    again = ellipsoid_lesions(wm.shape, wm, 8, np.random.default_rng(11), (1.5, 3.0), existing=existing)
    np.testing.assert_array_equal(mask, again)


def _blob_masks() -> list[np.ndarray]:
    """Two lesion masks with distinctive component sizes (voxels: 27, 45, 12 and 64)."""
    a = np.zeros((40, 40, 40), np.uint8)
    a[5:8, 5:8, 5:8] = 1
    a[20:25, 20:23, 10:13] = 1
    b = np.zeros((40, 40, 40), np.uint8)
    b[10:12, 10:16, 10:11] = 1
    b[30:34, 30:34, 30:34] = 1
    b[2, 2, 2] = 1  # too small for the bank (1 mm3 < 10 mm3)
    return [a, b]


def test_sample_lesion_shapes_places_bank_components(phantom):
    wm = phantom["wm"]
    bank = LesionShapeBank(_blob_masks())
    assert len(bank) == 4
    existing = np.zeros(wm.shape, np.uint8)
    existing[31, 20:40, 31] = 1
    placed = sample_lesion_shapes(bank, wm, 6, np.random.default_rng(3), existing=existing)
    labels, n = ndimage.label(placed, structure=CONN26)
    assert n == 6
    assert set(np.bincount(labels.ravel())[1:]) <= {27, 45, 12, 64}
    assert not (ndimage.binary_dilation(existing, structure=CONN26) & (placed > 0)).any()
    for index in range(1, n + 1):
        assert (wm[labels == index] >= 0.5).mean() >= 0.5
    same = sample_lesion_shapes(_blob_masks(), wm, 6, np.random.default_rng(3), existing=existing)
    np.testing.assert_array_equal(placed, same)


@pytest.mark.realdata
def test_sample_lesion_shapes_from_real_mni_masks(shared_data):
    import nibabel as nib

    from allnet.templates import load_template

    folder = shared_data / "lesjak2018" / "lesion_masks_mni"
    paths = sorted(folder.glob("*.nii.gz"))[:4]
    assert paths, f"no lesion masks in {folder}"
    # nibabel arrays are (i, j, k); the working grid's KJI arrays are their transpose.
    masks = [np.asarray(nib.load(p).dataobj).transpose(2, 1, 0) > 0 for p in paths]
    wm = sitk.GetArrayFromImage(load_template().wm)
    assert masks[0].shape == wm.shape
    bank = LesionShapeBank(masks)
    assert len(bank) >= 10
    sizes = {int(shape.sum()) for shape in bank.shapes}
    placed = bank.place(wm, 12, np.random.default_rng(0))
    labels, n = ndimage.label(placed, structure=CONN26)
    assert n == 12
    assert set(np.bincount(labels.ravel())[1:]) <= sizes
    in_wm = (wm[placed > 0] >= 0.5).mean()
    assert in_wm > 0.6


def test_no_white_matter_is_an_error(phantom):
    with pytest.raises(ValueError, match="no white-matter"):
        ellipsoid_lesions(phantom["wm"].shape, np.zeros_like(phantom["wm"]), 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="empty"):
        LesionShapeBank([np.zeros((8, 8, 8), bool)]).place(phantom["wm"], 1, np.random.default_rng(0))
