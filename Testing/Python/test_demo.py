"""Tests of allnet.demo: the synthetic case in native-like geometry with a known truth."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from allnet.demo import ACQUISITIONS, make_demo_case
from allnet.grid import working_reference
from allnet.templates import load_template


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return make_demo_case(tmp_path_factory.mktemp("demo") / "case", seed=0)


def test_files_and_native_geometry(case):
    images = {name: sitk.ReadImage(str(getattr(case, name))) for name in ("t1", "t2", "flair")}
    truth = sitk.ReadImage(str(case.truth))
    for name, image in images.items():
        spacing = np.array(image.GetSpacing())
        np.testing.assert_allclose(spacing, ACQUISITIONS[name][0], atol=1e-4)
        direction = np.array(image.GetDirection()).reshape(3, 3)
        assert not np.allclose(direction, np.eye(3), atol=1e-3)  # oblique slices
        np.testing.assert_allclose(direction @ direction.T, np.eye(3), atol=1e-5)
        assert image.GetPixelID() == sitk.sitkInt16
    for name in ("flair", "t2"):
        spacing = images[name].GetSpacing()
        assert spacing[2] / spacing[0] > 3  # 2D-like thick slices
    # Each series has its own grid and field of view.
    assert len({images[n].GetSize() for n in images}) == 3
    assert len({tuple(np.round(images[n].GetOrigin(), 3)) for n in images}) == 3
    # The truth lives on the FLAIR grid.
    assert truth.GetSize() == images["flair"].GetSize()
    np.testing.assert_allclose(truth.GetOrigin(), images["flair"].GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(truth.GetDirection(), images["flair"].GetDirection(), atol=1e-6)
    values = np.unique(sitk.GetArrayViewFromImage(truth))
    assert set(values.tolist()) == {0, 1}


def test_truth_lesions_are_counted_and_bright_on_flair(case):
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(case.truth))) > 0
    flair = sitk.GetArrayFromImage(sitk.ReadImage(str(case.flair))).astype(np.float32)
    labels, n = ndimage.label(truth, structure=np.ones((3, 3, 3)))
    assert n == case.lesion_count >= 10
    assert len(case.lesion_volumes_mm3) >= n
    assert min(case.lesion_volumes_mm3) < 20 and max(case.lesion_volumes_mm3) > 2000
    voxel_mm3 = float(np.prod(ACQUISITIONS["flair"][0]))
    assert truth.sum() * voxel_mm3 == pytest.approx(case.truth_volume_mm3)
    # The truth is aligned with the image: lesions are brighter than the tissue around them.
    brighter = 0
    for index in range(1, n + 1):
        lesion = labels == index
        ring = ndimage.binary_dilation(lesion, iterations=3) & ~ndimage.binary_dilation(lesion)
        brighter += flair[lesion].mean() > flair[ring & ~truth].mean()
    assert brighter >= 0.9 * n


def test_transform_maps_template_onto_the_case(case):
    """Resampling the native T1W back with working_to_native lines it up with the template."""
    t1 = sitk.Cast(sitk.ReadImage(str(case.t1)), sitk.sitkFloat32)
    stored = sitk.ReadTransform(str(case.t1.parent / "working_to_native.tfm"))
    point = (10.0, -20.0, 30.0)
    np.testing.assert_allclose(stored.TransformPoint(point), case.working_to_native.TransformPoint(point),
                               atol=1e-6)
    template = load_template()
    brain = sitk.GetArrayFromImage(template.brain_mask) > 0
    reference = sitk.GetArrayFromImage(template.t1)[brain]

    def correlation(transform: sitk.Transform) -> float:
        back = sitk.Resample(t1, working_reference(), transform, sitk.sitkLinear, 0.0)
        return float(np.corrcoef(sitk.GetArrayFromImage(back)[brain], reference)[0, 1])

    aligned = correlation(case.working_to_native)
    assert aligned > 0.8
    assert aligned > correlation(sitk.Transform()) + 0.2  # the case is really moved away from MNI


def test_same_seed_gives_identical_case(case, tmp_path):
    again = make_demo_case(tmp_path / "again", seed=0)
    for name in ("t1", "t2", "flair", "truth"):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(getattr(case, name))))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(getattr(again, name))))
        np.testing.assert_array_equal(a, b)
    assert again.lesion_volumes_mm3 == case.lesion_volumes_mm3
    assert not list((tmp_path / "again").glob(".demo-*"))  # no staging leftovers


def test_deepbet_finds_the_brain_in_the_demo_t1w(case):
    """The synthetic skull and scalp are removed by deepbet, leaving a brain of true size."""
    import nibabel as nib
    from deepbet.bet import BrainExtraction

    _, mask, _ = BrainExtraction(no_gpu=True).run(nib.load(str(case.t1)))
    found = np.asarray(mask.dataobj).transpose(2, 1, 0) > 0  # nibabel IJK -> KJI
    t1 = sitk.ReadImage(str(case.t1))
    true_brain = sitk.Resample(load_template().brain_mask, t1, case.working_to_native.GetInverse(),
                               sitk.sitkNearestNeighbor, 0)
    truth = sitk.GetArrayFromImage(true_brain) > 0
    voxel_ml = float(np.prod(t1.GetSpacing())) / 1000.0
    assert 1200 < found.sum() * voxel_ml < 2200  # adult brain, mL
    dice = 2 * (found & truth).sum() / (found.sum() + truth.sum())
    assert dice > 0.9
