"""Registration: recovery of known transforms, determinism, plausibility checks, real data."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from allnet.errors import RegistrationError
from allnet.preprocessing import registration as reg
from allnet.templates import load_template


@pytest.fixture(scope="module")
def template_2mm():
    """Template T1 and brain mask on a 2 mm grid (91 x 109 x 91): a realistic brain, small."""
    template = load_template()
    t1 = reg.isotropic_grid(template.t1, 2.0)
    mask = sitk.Resample(template.brain_mask, t1, sitk.Transform(), sitk.sitkNearestNeighbor,
                         0, sitk.sitkUInt8)
    return t1, mask


def native_grid(reference: sitk.Image, spacing=(1.2, 1.2, 3.0), angle_deg=10.0) -> sitk.Image:
    """An oblique, anisotropic grid covering ``reference``'s field of view (generously)."""
    rotation = sitk.VersorTransform((0.2, 1.0, 0.3), np.deg2rad(angle_deg))
    direction = np.array(rotation.GetMatrix()).reshape(3, 3)
    extent = np.array(reference.GetSize()) * np.array(reference.GetSpacing()) * 1.3
    size = [int(np.ceil(e / s)) for e, s in zip(extent, spacing)]
    centre = np.array(reference.TransformContinuousIndexToPhysicalPoint(
        [(n - 1) / 2 for n in reference.GetSize()]))
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing(spacing)
    grid.SetDirection(tuple(direction.ravel()))
    grid.SetOrigin(tuple(centre - direction @ (np.array(size) * spacing / 2)))
    return grid


def rigid(angles_deg, translation_mm, centre) -> sitk.Euler3DTransform:
    transform = sitk.Euler3DTransform()
    transform.SetCenter(tuple(centre))
    transform.SetRotation(*np.deg2rad(angles_deg))
    transform.SetTranslation(tuple(translation_mm))
    return transform


def moved(fixed: sitk.Image, fixed_to_moving: sitk.Transform, grid: sitk.Image) -> sitk.Image:
    """The image a scanner would give if the head moved by ``fixed_to_moving``."""
    return sitk.Resample(fixed, grid, reg.invert(fixed_to_moving), sitk.sitkLinear, 0.0)


def test_affine_helpers_compose_and_invert():
    a = rigid((5, -3, 8), (4, -2, 7), (10, 20, 30))
    b = reg.to_affine(np.diag([1.1, 0.9, 1.05]), np.array([1.0, 2.0, 3.0]))
    points = np.random.default_rng(0).uniform(-80, 80, (50, 3))
    ab = reg.compose(a, b)
    for p in points[:5]:
        np.testing.assert_allclose(ab.TransformPoint(tuple(p)),
                                   a.TransformPoint(b.TransformPoint(tuple(p))), atol=1e-9)
    assert reg.mean_displacement_mm(reg.compose(reg.invert(ab), ab), sitk.Transform(),
                                    points) < 1e-9
    assert reg.scaling(b) == pytest.approx(1.1 * 0.9 * 1.05)


def test_mask_points_are_physical_lps():
    mask = sitk.Image([5, 6, 7], sitk.sitkUInt8)
    mask.SetSpacing((0.5, 2.0, 3.0))
    mask.SetOrigin((10.0, -5.0, 2.0))
    mask[3, 4, 5] = 1
    np.testing.assert_allclose(reg.mask_points(mask, step=1),
                               [mask.TransformIndexToPhysicalPoint((3, 4, 5))])


def test_rigid_registration_recovers_known_motion_with_other_contrast(template_2mm):
    flair, brain = template_2mm
    truth = rigid((6, -4, 8), (7.0, -5.0, 4.0), reg.mask_points(brain).mean(axis=0))
    t1 = moved(flair, truth, native_grid(flair))
    top = float(np.percentile(sitk.GetArrayViewFromImage(flair), 99))
    t1 = sitk.Mask(1.2 * top - t1, t1 > 0.05 * top)  # inverted contrast: needs MI
    found = reg.register_to_flair(flair, t1)
    assert isinstance(found, sitk.Euler3DTransform)
    error = reg.mean_displacement_mm(found, truth, reg.mask_points(brain))
    assert error < 1.0, f"mean displacement {error:.2f} mm"
    start = reg.mean_displacement_mm(sitk.Transform(), truth, reg.mask_points(brain))
    assert start > 8.0  # the test is not trivially satisfied by the identity


def test_registration_is_bit_identical_across_runs(template_2mm):
    flair, brain = template_2mm
    truth = rigid((3, 2, -5), (3.0, 4.0, -2.0), reg.mask_points(brain).mean(axis=0))
    t1 = moved(flair, truth, native_grid(flair))
    first = reg.register_to_flair(flair, t1, affine=True)
    second = reg.register_to_flair(flair, t1, affine=True)
    assert isinstance(first, sitk.AffineTransform)
    assert first.GetParameters() == second.GetParameters()
    assert first.GetFixedParameters() == second.GetFixedParameters()


def test_registrations_side_by_side_in_threads_give_the_sequential_transforms(template_2mm):
    """The pipeline registers T1W and T2W to the FLAIR in two threads: each result is the one a
    lone run gives, and ITK's thread default is restored once the last one finishes."""
    from concurrent.futures import ThreadPoolExecutor

    flair, brain = template_2mm
    centre = reg.mask_points(brain).mean(axis=0)
    movers = [moved(flair, rigid(a, t, centre), native_grid(flair, angle_deg=g))
              for a, t, g in (((3, 2, -5), (3.0, 4.0, -2.0), 10.0), ((-4, 1, 6), (-2.0, 1.0, 5.0), 20.0))]
    alone = [reg.register_to_flair(flair, m) for m in movers]
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(lambda m: reg.register_to_flair(flair, m), movers))
    assert [t.GetParameters() for t in together] == [t.GetParameters() for t in alone]
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == before


def test_non_overlapping_images_raise(template_2mm):
    head, brain = template_2mm
    # A "FLAIR" that is a 16 mm slab above the brain's vertex region: most of the T1W brain
    # cannot lie inside its field of view whatever the registration does.
    slab = head[:, :, 70:78]
    with pytest.raises(RegistrationError, match="FLAIR") as info:
        reg.register_to_flair(slab, head, moving_brain_mask=brain)
    assert "T1W" in str(info.value)


def test_template_registration_recovers_known_affine(template_2mm):
    template = load_template()
    _, brain = template_2mm
    centre = reg.mask_points(brain).mean(axis=0)
    matrix = sitk.VersorTransform((0.1, 0.2, 1.0), np.deg2rad(7)).GetMatrix()
    linear = np.array(matrix).reshape(3, 3) @ np.diag([0.88, 0.92, 0.85])
    truth = reg.to_affine(linear, centre + np.array([6.0, -9.0, 12.0]) - linear @ centre)
    subject = moved(template.t1, truth, native_grid(template.t1, (1.0, 1.0, 3.0), 12.0))
    found = reg.register_to_template(subject, template.t1, template.brain_mask)
    error = reg.mean_displacement_mm(found, truth, reg.mask_points(brain))
    assert error < 1.5, f"mean displacement {error:.2f} mm"
    assert reg.scaling(found) == pytest.approx(np.linalg.det(linear), rel=0.03)


def test_template_fit_rejects_implausible_scaling_and_overlap():
    mask = np.zeros((40, 40, 40), np.uint8)
    mask[8:32, 8:32, 8:32] = 1
    qc = reg.check_template_fit(sitk.AffineTransform(3), mask, mask)
    assert qc == {"template_dice": 1.0, "affine_scaling": 1.0}
    squash = reg.to_affine(np.diag([0.4, 0.5, 0.5]), np.zeros(3))
    with pytest.raises(RegistrationError, match="scales the brain volume by 0.10"):
        reg.check_template_fit(squash, mask, mask)
    shifted = np.roll(mask, 12, axis=0)
    with pytest.raises(RegistrationError, match=r"Dice 0\.50"):
        reg.check_template_fit(sitk.AffineTransform(3), shifted, mask)


# ----------------------------------------------------------------- real data
CASES = [(p, s) for p in ("patient01", "patient12") for s in ("study1", "study2")]


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("patient, study", CASES)
def test_t1_and_t2_to_flair_match_the_database_transforms(shared_data, patient, study):
    """The database's ``studyN_{T1W,T2W}_intrastudy_to_FLAIR.txt`` follow ITK's resampling
    convention: they map FLAIR points to T1W/T2W points (checked below: the inverse is
    further from our independent estimate). Our rigid result must agree to < 1.5 mm over
    the brain."""
    from allnet.io import read_image
    from allnet.preprocessing.brain import extract_brain

    folder = shared_data / "lesjak2018" / "native" / patient
    flair = read_image(folder / f"{study}_FLAIR.nii.gz", "flair")
    t1 = read_image(folder / f"{study}_T1W.nii.gz", "t1")
    t2 = read_image(folder / f"{study}_T2W.nii.gz", "t2")
    flair_to_t1 = sitk.ReadTransform(str(folder / f"{study}_T1W_intrastudy_to_FLAIR.txt"))
    brain = sitk.Resample(extract_brain(t1), flair, flair_to_t1, sitk.sitkNearestNeighbor, 0,
                          sitk.sitkUInt8)
    points = reg.mask_points(brain)
    for name, image in (("T1W", t1), ("T2W", t2)):
        database = sitk.ReadTransform(str(folder / f"{study}_{name}_intrastudy_to_FLAIR.txt"))
        ours = reg.register_to_flair(flair, image, moving_name=name)
        error = reg.mean_displacement_mm(ours, database, points)
        error_inverse = reg.mean_displacement_mm(ours, reg.invert(database), points)
        assert error < 1.5, f"{patient} {study} {name}: {error:.2f} mm from the database"
        assert error <= error_inverse + 1e-6
