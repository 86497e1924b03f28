"""Preprocessing steps (brain extraction, N4, normalisation) and ``preprocess`` end to end."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from allnet.errors import CancelledError, InputError
from allnet.grid import WORKING_SHAPE_KJI, array_to_working_image, working_reference
from allnet.preprocessing.bias import correct_bias
from allnet.preprocessing.brain import extract_brain, mask_volume_ml, to_deepbet_grid
from allnet.preprocessing.intensity import CLIP, normalise
from allnet.preprocessing.pipeline import PreprocessedCase, check_mni_brain, preprocess
from allnet.templates import load_template
from allnet.progress import Progress
from helpers_io import oblique_direction


def two_tissue_phantom(size=(48, 48, 24), spacing=(1.0, 1.0, 3.0)):
    """Ellipsoidal 'brain' with a darker core and a brighter shell, plus its mask."""
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in size[::-1]), indexing="ij")
    r = np.sqrt(i**2 + j**2 + k**2)
    tissue = np.where(r < 0.45, 1, np.where(r < 0.85, 2, 0))
    array = np.choose(tissue, [0.0, 300.0, 500.0]).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetDirection(oblique_direction(15))
    mask = sitk.GetImageFromArray((tissue > 0).astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask, tissue, (i, j, k)


def test_n4_removes_a_smooth_multiplicative_field():
    image, mask, tissue, (i, j, k) = two_tissue_phantom()
    field = np.exp(0.3 * i - 0.2 * j + 0.15 * k**2).astype(np.float32)
    biased = sitk.GetImageFromArray(sitk.GetArrayFromImage(image) * field)
    biased.CopyInformation(image)
    corrected = correct_bias(biased, mask, fit_spacing_mm=3.0)
    assert corrected.GetSize() == image.GetSize()
    assert corrected.GetDirection() == image.GetDirection()
    before, after = sitk.GetArrayFromImage(biased), sitk.GetArrayFromImage(corrected)
    for label in (1, 2):
        cv_before = before[tissue == label].std() / before[tissue == label].mean()
        cv_after = after[tissue == label].std() / after[tissue == label].mean()
        assert cv_after < 0.4 * cv_before, (label, cv_before, cv_after)
    np.testing.assert_array_equal(after, sitk.GetArrayFromImage(
        correct_bias(biased, mask, fit_spacing_mm=3.0)))  # deterministic


def test_normalise_is_a_robust_z_score_inside_the_brain():
    rng = np.random.default_rng(1)
    image = rng.normal(400.0, 50.0, (30, 30, 30)).astype(np.float32)
    mask = np.zeros(image.shape, np.uint8)
    mask[5:25, 5:25, 5:25] = 1
    image[10:13, 10:13, 10:13] = 800.0  # hyperintense "lesion": must keep its contrast
    out = normalise(image, mask)
    inside = out[mask > 0]
    assert abs(np.median(inside)) < 0.01
    q25, q75 = np.percentile(inside, [25, 75])
    assert (q75 - q25) == pytest.approx(1.349, rel=0.02)
    assert np.all(out[mask == 0] == 0)
    assert out[11, 11, 11] == pytest.approx((800 - 400) / 50, rel=0.05)
    assert out.dtype == np.float32 and out.max() <= CLIP


def test_normalise_of_a_flat_image_is_zero():
    assert not normalise(np.full((8, 8, 8), 7.0), np.ones((8, 8, 8))).any()


def test_deepbet_grid_is_1mm_ras_over_the_same_field_of_view():
    image, *_ = two_tissue_phantom(spacing=(0.7, 0.7, 4.0))
    grid = to_deepbet_grid(image)
    assert grid.GetSpacing() == (1.0, 1.0, 1.0)
    direction = np.array(grid.GetDirection()).reshape(3, 3)
    assert direction[0, 0] < 0 and direction[1, 1] < 0 and direction[2, 2] > 0  # RAS order
    centre = lambda im: np.array(im.TransformContinuousIndexToPhysicalPoint(  # noqa: E731
        [(n - 1) / 2 for n in im.GetSize()]))
    assert np.linalg.norm(centre(grid) - centre(image)) < 1.0


def test_brain_extraction_of_a_non_head_gives_no_plausible_brain(tmp_path):
    image, *_ = two_tissue_phantom(size=(40, 40, 40), spacing=(1.0, 1.0, 1.0))
    mask = extract_brain(image)
    assert mask.GetSize() == image.GetSize() and mask.GetPixelID() == sitk.sitkUInt8
    assert mask_volume_ml(mask) < 100  # a 40 mm ball holds at most ~34 mL


def test_not_a_brain_t1_is_rejected_naming_the_file():
    image, *_ = two_tissue_phantom(size=(40, 40, 40), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="does not look like a brain") as info:
        preprocess(image, image, paths={"t1": "/data/phantom_T1.nii.gz"})
    assert "/data/phantom_T1.nii.gz" in str(info.value)


def mni_like_case():
    """Brain-like images on the working grid (template tissue priors with T1W and FLAIR
    contrasts and noise), zero outside the template's brain, a zero voxel inside the FLAIR."""
    from scipy import ndimage

    template = load_template()
    csf, gm, wm = (sitk.GetArrayFromImage(getattr(template, n)) for n in ("csf", "gm", "wm"))
    inside = ndimage.binary_fill_holes(sitk.GetArrayFromImage(template.brain_mask) > 0)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 20, inside.shape)
    t1 = np.where(inside, 300 * csf + 600 * gm + 800 * wm + noise, 0).astype(np.float32)
    flair = np.where(inside, 100 * csf + 330 * gm + 300 * wm + noise, 0).astype(np.float32)
    flair[91, 109, 91] = 0.0  # e.g. a zero voxel inside: the mask must fill it
    return array_to_working_image(t1), array_to_working_image(flair), inside


def test_preprocess_already_in_mni():
    t1, flair, inside = mni_like_case()
    events = []
    case = preprocess(t1, flair, None, already_in_mni=True,
                      progress=Progress(lambda *e: events.append(e)))
    assert isinstance(case, PreprocessedCase)
    assert case.modalities_present == ["t1", "flair"]
    assert case.brain_mask.dtype == np.uint8
    np.testing.assert_array_equal(case.brain_mask, inside)
    for name in ("t1", "flair"):
        image = case.images[name]
        assert image.shape == WORKING_SHAPE_KJI and image.dtype == np.float32
        assert not image[~inside].any()
        assert abs(np.median(image[inside])) < 0.05
    assert case.working_to_native.TransformPoint((1.0, 2.0, 3.0)) == (1.0, 2.0, 3.0)
    assert case.qc["brain_volume_ml"] == pytest.approx(inside.sum() / 1000)
    assert events and events[0][0] == "resampling"


def test_images_in_the_wrong_roles_are_named_or_let_through_with_a_warning():
    """A FLAIR given as the T1W and the T1W as the FLAIR pass the one-head check; their
    contrasts do not (``allnet.preprocessing.roles``)."""
    t1, flair, _ = mni_like_case()
    paths = {"t1": "a_T1W.nii.gz", "flair": "a_FLAIR.nii.gz", "t2": "a_T2W.nii.gz"}
    case = preprocess(t1, flair, None, already_in_mni=True, paths=paths)
    levels = case.qc["tissue_levels"]
    assert levels["t1"]["csf"] == -1.0 and levels["flair"]["csf"] == -1.0
    assert levels["t1"]["gm"] < levels["flair"]["gm"]
    with pytest.raises(InputError, match="swapped") as info:
        preprocess(flair, t1, None, already_in_mni=True, paths={"t1": paths["flair"], "flair": paths["t1"]})
    assert info.value.path == "a_FLAIR.nii.gz"  # the file given as the T1W
    t2_like = sitk.Cast(sitk.Mask(1200 - t1, t1 > 0), sitk.sitkFloat32)  # CSF brightest
    with pytest.raises(InputError, match="CSF is darker than its white matter, unlike a T2W"):
        preprocess(t1, flair, t1, already_in_mni=True, paths=paths)
    case = preprocess(t1, flair, t2_like, already_in_mni=True, paths=paths)
    assert case.qc["tissue_levels"]["t2"]["csf"] == 1.0 and not case.warnings
    swapped = preprocess(flair, t1, None, already_in_mni=True, allow_mismatch=True)
    assert any("swapped" in w and "--allow-mismatch" in w for w in swapped.warnings)


def test_preprocess_already_in_mni_resamples_an_off_grid_input():
    t1, flair, inside = mni_like_case()
    shifted = sitk.Resample(flair, working_reference(), sitk.TranslationTransform(3, (0, 0, 0)))
    shifted.SetOrigin(tuple(np.array(flair.GetOrigin()) + (0.0, 0.0, 4.0)))  # 4 mm superior
    case = preprocess(t1, shifted, None, already_in_mni=True)
    moved = np.roll(inside, 4, axis=0)  # k is the S axis of the working grid
    assert abs(int(case.brain_mask.sum()) - int(moved.sum())) < 0.02 * moved.sum()
    assert (case.brain_mask.astype(bool) & moved).sum() > 0.98 * moved.sum()


def test_preprocessed_input_that_is_not_a_brain_on_the_mni_grid_is_refused():
    """--preprocessed: a whole head (not skull-stripped) or a brain placed elsewhere in
    space (native scanner coordinates, origin at a corner) is named, not segmented."""
    t1, flair, inside = mni_like_case()
    head = array_to_working_image(np.where(np.roll(inside, 0), 300.0, 0.0).astype(np.float32) + 1.0)
    with pytest.raises(InputError, match="not a skull-stripped brain") as info:
        preprocess(t1, head, None, already_in_mni=True, paths={"flair": "head_FLAIR.nii.gz"})
    assert info.value.path.endswith("head_FLAIR.nii.gz")
    template = sitk.GetArrayFromImage(load_template().brain_mask) > 0
    assert check_mni_brain("MNI.nii.gz", template) == 1.0
    elsewhere = np.roll(template, 70, axis=1)  # the same brain 7 cm anterior (wrapped: same volume)
    with pytest.raises(InputError, match="MNI template's brain") as info:
        check_mni_brain("moved_FLAIR.nii.gz", elsewhere)
    assert info.value.path.endswith("moved_FLAIR.nii.gz")
    case = preprocess(t1, flair, None, already_in_mni=True)
    assert 0.5 <= case.qc["template_brain_dice"] <= 1.0


def test_an_implausible_registration_to_the_template_names_the_t1w(monkeypatch):
    """The registration to the template and its plausibility check name the T1W (exit 3)."""
    from allnet.errors import RegistrationError
    from allnet.preprocessing import pipeline as steps

    def refuse(*args, **kwargs):
        raise RegistrationError("registration to the MNI template is implausible: Dice 0.41")

    with pytest.raises(RegistrationError, match=r"^subject_T1W\.nii\.gz: registration to the MNI"):
        with steps._naming("subject_T1W.nii.gz"):
            refuse()
    monkeypatch.setattr(steps.registration, "check_template_fit", refuse)
    image, mask, _, _ = two_tissue_phantom()
    monkeypatch.setattr(steps, "extract_brain", lambda *a, **k: mask)
    monkeypatch.setattr(steps, "check_brain_volume", lambda *a, **k: None)
    monkeypatch.setattr(steps.registration, "register_to_flair", lambda *a, **k: sitk.Euler3DTransform())
    monkeypatch.setattr(steps.registration, "register_to_template", lambda *a, **k: sitk.AffineTransform(3))
    monkeypatch.setattr(steps.headcheck, "check_same_head", lambda *a, **k: [])
    with pytest.raises(RegistrationError, match=r"^my_T1W\.nii\.gz: registration to the MNI"):
        preprocess(image, image, None, paths={"t1": "my_T1W.nii.gz", "flair": "my_FLAIR.nii.gz"})


def test_preprocess_can_be_cancelled():
    t1, flair, _ = mni_like_case()
    with pytest.raises(CancelledError):
        preprocess(t1, flair, already_in_mni=True, progress=Progress(lambda *e: False))


# ----------------------------------------------------------------- real data
@pytest.mark.realdata
def test_brain_extraction_on_a_real_thick_slice_t1(shared_data):
    from allnet.io import read_image

    t1 = read_image(shared_data / "lesjak2018/native/patient12/study1_T1W.nii.gz", "t1")
    mask = extract_brain(t1)
    assert mask.GetSize() == t1.GetSize() and mask.GetOrigin() == t1.GetOrigin()
    assert 1000 < mask_volume_ml(mask) < 1800
    values = sitk.GetArrayViewFromImage(t1)
    inside = sitk.GetArrayViewFromImage(mask) > 0
    assert values[inside].mean() > 2 * values[~inside].mean()  # brain, not background
    np.testing.assert_array_equal(sitk.GetArrayFromImage(extract_brain(t1)),
                                  sitk.GetArrayFromImage(mask))


@pytest.mark.realdata
def test_preprocess_real_mni_case(shared_data):
    from allnet.io import read_image

    folder = shared_data / "lesjak2018/mni/patient07"
    images = {r: read_image(folder / f"{n}.nii.gz", r)
              for r, n in (("t1", "T1"), ("flair", "FLAIR"), ("t2", "T2"))}
    case = preprocess(images["t1"], images["flair"], images["t2"], already_in_mni=True)
    assert 900 < case.qc["brain_volume_ml"] < 1800
    lesions = sitk.GetArrayFromImage(read_image(folder / "lesions.nii.gz", "mask")) > 0
    # A few rater-marked voxels at the cortex lie where the FLAIR was stripped to <= 0.
    assert case.brain_mask[lesions].mean() > 0.95
    # FLAIR lesions are hyperintense relative to the brain after normalisation.
    assert np.median(case.images["flair"][lesions]) > 1.5


@pytest.mark.realdata
@pytest.mark.slow
def test_preprocess_native_clinical_scans(shared_data):
    from allnet.io import read_image

    folder = shared_data / "lesjak2018/native/patient01"
    paths = {r: str(folder / f"study1_{n}.nii.gz")
             for r, n in (("t1", "T1W"), ("flair", "FLAIR"), ("t2", "T2W"))}
    images = {r: read_image(p, r) for r, p in paths.items()}
    events = []
    case = preprocess(images["t1"], images["flair"], images["t2"], paths=paths,
                      progress=Progress(lambda *e: events.append(e)))
    assert 1000 < case.qc["brain_volume_ml"] < 1800
    assert case.qc["template_dice"] > 0.9
    assert 0.6 < case.qc["affine_scaling"] < 1.0  # MNI brains are larger than most
    assert case.modalities_present == ["t1", "flair", "t2"]
    assert set(case.timings) == {"brain extraction", "registration to FLAIR",
                                 "bias correction", "registration to MNI", "resampling"}
    fractions = [e[1] for e in events]
    assert fractions == sorted(fractions)
    assert [e[0] for e in events] == ["brain extraction", "registration", "bias correction",
                                      "registration", "resampling"]
    brain = case.brain_mask > 0
    for name, image in case.images.items():
        assert image.shape == WORKING_SHAPE_KJI and not image[~brain].any(), name
    # The FLAIR brain mapped back to native space must cover the native FLAIR's bright head.
    back = sitk.Resample(array_to_working_image(case.brain_mask.astype(np.float32)),
                         case.flair_native, registration_inverse(case.working_to_native),
                         sitk.sitkLinear, 0.0)
    native = sitk.GetArrayViewFromImage(case.flair_native)
    in_brain = sitk.GetArrayViewFromImage(back) > 0.5
    assert native[in_brain].mean() > 2 * native[~in_brain].mean()


def registration_inverse(transform):
    from allnet.preprocessing.registration import invert

    return invert(transform)


def test_n4_beside_a_registration_gives_what_it_gives_alone_single_threaded():
    """The pipeline runs the FLAIR/T2W N4 in a thread while the (single-threaded) MNI
    registration runs, ITK single-threaded for the whole block: the corrected images are
    the ones a lone single-threaded N4 gives, bit for bit, and ITK's thread default is
    restored afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    from allnet.preprocessing import registration

    image, mask, _, (i, j, k) = two_tissue_phantom()
    biased = sitk.GetImageFromArray(sitk.GetArrayFromImage(image) * np.exp(0.3 * i - 0.2 * j).astype(np.float32))
    biased.CopyInformation(image)
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    with registration.single_threaded():
        alone = sitk.GetArrayFromImage(correct_bias(biased, mask, fit_spacing_mm=3.0))
    moving = sitk.Resample(image, image, sitk.Euler3DTransform((0, 0, 0), 0.05, 0.0, 0.0, (2.0, 1.0, 0.0)),
                           sitk.sitkLinear, 0.0)
    with registration.single_threaded(), ThreadPoolExecutor(max_workers=1) as pool:
        job = pool.submit(correct_bias, biased, mask, fit_spacing_mm=3.0)
        registration.register_to_flair(image, moving)
        beside = sitk.GetArrayFromImage(job.result())
    np.testing.assert_array_equal(beside, alone)
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == before
