"""Model normalisations: the robust z-score and the WM/CSF-referenced one, in the core and in
``allnet segment`` with a model trained in the latter."""
from __future__ import annotations

import json

import numpy as np
import pytest

from allnet import outputs, pipeline
from allnet.model import ModelConfig, random_bundle, save_model_file
from allnet.plan import (NORMALISATION_ROBUST_ZSCORE, NORMALISATION_WM_CSF, NORMALISATION_WM_CSF_CALIBRATED,
                         NORMALISATION_WM_CSF_FLAIR_T1, TISSUE_REFERENCE_TARGETS, InferencePlan)
from allnet.preprocessing.intensity import (WM_CSF_SCALE, apply_normalisation, flair_contrast, normalise,
                                           tissue_reference)
from allnet.tissue import CSF, GM, WM

from helpers_synthesis import ellipsoid_radius, write_mni_case

SHAPE = (40, 48, 48)


def _phantom(gm_level: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A FLAIR-like phantom (arbitrary scanner units): ventricle CSF, WM with lesions, a thick
    cortical GM shell, sulcal CSF outside. Returns image, brain, tissue labels, lesion mask."""
    rng = np.random.default_rng(seed)
    r, (_, _, i), c = ellipsoid_radius(SHAPE, (18, 22, 22))
    tissue = np.zeros(SHAPE, np.uint8)
    tissue[r < 1.0] = CSF
    tissue[r < 0.95] = GM
    tissue[r < 0.7] = WM
    tissue[r < 0.2] = CSF
    lesion = (tissue == WM) & (np.abs(r - 0.45) < 0.05) & (i > c[2])
    level = {CSF: 60.0, GM: 400.0 * gm_level, WM: 400.0}
    image = np.zeros(SHAPE, np.float32)
    for label, value in level.items():
        image[tissue == label] = value
    image[lesion] = 720.0
    brain = tissue > 0
    image = (image + rng.normal(0, 40, SHAPE)) * brain  # tissue texture ~10 % of WM
    return image.astype(np.float32), brain, tissue, lesion


def test_wm_csf_keeps_lesions_where_they_are_when_grey_matter_brightens() -> None:
    """The reason for the WM/CSF reference: cortex as bright as lesions moves the robust
    z-score of the whole brain (lesions fall towards the median) but not WM and CSF."""
    lesion_levels = {}
    for gm_level in (1.05, 1.6):
        image, brain, tissue, lesion = _phantom(gm_level)
        z = normalise(image, brain)
        ref = apply_normalisation({"flair": z}, brain, tissue, NORMALISATION_WM_CSF)["flair"]
        lesion_levels[gm_level] = (float(np.median(z[lesion])), float(np.median(ref[lesion])))
    (z_normal, ref_normal), (z_bright, ref_bright) = lesion_levels[1.05], lesion_levels[1.6]
    assert z_normal - z_bright > 1.0  # the robust z-score loses the lesions' contrast
    assert abs(ref_normal - ref_bright) < 0.05
    # the unit: WM at 0, CSF one WM-CSF distance (WM_CSF_SCALE) below it
    image, brain, tissue, _ = _phantom(1.05)
    ref = apply_normalisation({"flair": normalise(image, brain)}, brain, tissue, NORMALISATION_WM_CSF)["flair"]
    assert np.median(ref[tissue == WM]) == pytest.approx(0.0, abs=0.02)
    assert np.median(ref[tissue == CSF]) == pytest.approx(-WM_CSF_SCALE, abs=0.05)
    assert np.all(ref[~brain] == 0)


def test_robust_zscore_models_get_the_images_as_they_are_and_unknown_names_are_refused() -> None:
    image, brain, tissue, _ = _phantom(1.0)
    images = {"flair": normalise(image, brain)}
    assert apply_normalisation(images, brain, tissue, NORMALISATION_ROBUST_ZSCORE) is images
    with pytest.raises(ValueError, match="normalisation must be one of"):
        apply_normalisation(images, brain, tissue, "histogram-match")
    with pytest.raises(ValueError, match="tissue labels"):
        apply_normalisation(images, brain, None, NORMALISATION_WM_CSF)
    assert InferencePlan(normalisation=NORMALISATION_WM_CSF).normalisation == NORMALISATION_WM_CSF


def test_flair_t1_variant_leaves_t2w_as_robust_zscore() -> None:
    """'wm-csf-flair-t1' references FLAIR and T1W to the tissues and leaves T2W alone: on a
    T2W whose CSF class is barely brighter than grey matter the full 'wm-csf' gain explodes."""
    image, brain, tissue, _ = _phantom(1.6)
    z = normalise(image, brain)
    weak_t2 = np.where(tissue == CSF, z + 0.3, z).astype(np.float32)  # CSF ~ WM level on T2W
    images = {"flair": z, "t1": z, "t2": weak_t2}
    full = apply_normalisation(images, brain, tissue, NORMALISATION_WM_CSF)
    partial = apply_normalisation(images, brain, tissue, NORMALISATION_WM_CSF_FLAIR_T1)
    np.testing.assert_array_equal(partial["flair"], full["flair"])
    np.testing.assert_array_equal(partial["t1"], full["t1"])
    np.testing.assert_array_equal(partial["t2"], weak_t2)
    assert np.abs(full["t2"] - weak_t2)[brain].mean() > 0.5


def test_calibrated_variant_puts_t1w_wm_where_the_robust_zscore_usually_has_it() -> None:
    """'wm-csf-calibrated' sets each referenced modality's WM median and WM-CSF distance to
    its own target (T1W WM at +0.72 z, as the robust z-score leaves a typical T1W), keeps the
    bright-grey-matter invariance, and leaves T2W as it is."""
    image, brain, tissue, lesion = _phantom(1.05)
    t1 = np.where(tissue == CSF, 80.0, np.where(tissue == GM, 300.0, 400.0)).astype(np.float32)
    t1 = (t1 + np.random.default_rng(1).normal(0, 30, SHAPE)).astype(np.float32) * brain
    images = {"flair": normalise(image, brain), "t1": normalise(t1, brain), "t2": normalise(image, brain)}
    out = apply_normalisation(images, brain, tissue, NORMALISATION_WM_CSF_CALIBRATED)
    targets = TISSUE_REFERENCE_TARGETS[NORMALISATION_WM_CSF_CALIBRATED]
    for name in ("flair", "t1"):
        level, distance = targets[name]
        wm, csf = np.median(out[name][tissue == WM]), np.median(out[name][tissue == CSF])
        assert wm == pytest.approx(level, abs=0.02)
        assert wm - csf == pytest.approx(distance, abs=0.05)
    assert targets["t1"][0] > 0.5  # not the 0 of the other tissue references
    np.testing.assert_array_equal(out["t2"], images["t2"])
    # bright cortex does not move the lesions, as with the uncalibrated reference
    bright, brain_b, tissue_b, lesion_b = _phantom(1.6)
    moved = apply_normalisation({"flair": normalise(bright, brain_b)}, brain_b, tissue_b,
                                NORMALISATION_WM_CSF_CALIBRATED)["flair"]
    assert abs(np.median(moved[lesion_b]) - np.median(out["flair"][lesion])) < 0.05


def test_flair_contrast_is_in_wm_csf_units_whatever_the_scale_and_refuses_a_flat_csf() -> None:
    """The contrast map behind the lesion floor: 0 at the WM median, -1 at the CSF median,
    the same for the raw image and any affine rescaling of it (so for every normalisation);
    bright cortex does not move the lesions in these units. None when CSF is not darker."""
    image, brain, tissue, lesion = _phantom(1.05)
    raw = flair_contrast(image, brain, tissue)
    assert np.median(raw[tissue == WM]) == pytest.approx(0.0, abs=1e-6)
    assert np.median(raw[tissue == CSF]) == pytest.approx(-1.0, abs=1e-6)
    assert np.median(raw[lesion]) == pytest.approx((720 - 400) / (400 - 60), abs=0.05)
    np.testing.assert_allclose(flair_contrast(normalise(image, brain), brain, tissue), raw, atol=1e-4)
    assert np.all(raw[~brain] == 0)
    bright, brain_b, tissue_b, lesion_b = _phantom(1.6)
    assert np.median(flair_contrast(bright, brain_b, tissue_b)[lesion_b]) == pytest.approx(np.median(raw[lesion]), abs=0.05)
    flat = np.where(tissue == CSF, np.median(image[tissue == WM]), image).astype(np.float32)
    assert flair_contrast(flat, brain, tissue) is None


def test_without_usable_csf_the_image_is_only_recentred_on_wm() -> None:
    image, brain, tissue, _ = _phantom(1.0)
    z = normalise(image, brain)
    out = tissue_reference(z, brain, z[tissue == WM], np.array([], dtype=np.float32))
    wm_median = float(np.median(z[tissue == WM]))
    assert np.allclose(out[brain], np.clip(z[brain] - wm_median, -10, 10), atol=1e-5)


@pytest.fixture(scope="module")
def mni_case(tmp_path_factory):
    return write_mni_case(tmp_path_factory.mktemp("norm_case"), seed=5, n_lesions=6)


def test_segment_feeds_a_wm_csf_model_tissue_referenced_images(mni_case, tmp_path, monkeypatch) -> None:
    """``allnet segment`` applies the model's normalisation (read from its file) to every
    modality, with the tissue labels of the case's own T1W segmentation, before the network."""
    paths = mni_case
    seen = {}
    real_predict, real_anatomy = pipeline.predict, pipeline.compute_anatomy

    def spy_predict(bundle, images, anatomy, brain_mask, **kwargs):
        seen["images"], seen["brain"] = images.copy(), brain_mask > 0
        return real_predict(bundle, images, anatomy, brain_mask, **kwargs)

    def spy_anatomy(*args, **kwargs):
        seen["anatomy"] = real_anatomy(*args, **kwargs)
        return seen["anatomy"]

    monkeypatch.setattr(pipeline, "predict", spy_predict)
    monkeypatch.setattr(pipeline, "compute_anatomy", spy_anatomy)
    tiny = dict(base_channels=4, depth=2, max_channels=8, head_channels=4, head_mlp=(4,))
    bundle = random_bundle(ModelConfig(**tiny, normalisation=NORMALISATION_WM_CSF), n=1, seed=1)
    model = tmp_path / "wm_csf.pt"
    save_model_file(model, bundle.config, [m.state_dict() for m in bundle.members], {"name": "tiny"})
    out = tmp_path / "out"
    pipeline.segment(paths["t1"], paths["flair"], paths["t2"], out, model=str(model),
                     preprocessed=True, device="cpu", report=False)
    summary = json.loads((out / outputs.SUMMARY_FILE).read_text())
    assert NORMALISATION_WM_CSF in json.dumps(summary)
    tissue = seen["anatomy"].tissue
    wm, csf = seen["brain"] & (tissue == WM), seen["brain"] & (tissue == CSF)
    for image in seen["images"]:  # flair, t1, t2 in the model's order
        assert np.median(image[wm]) == pytest.approx(0.0, abs=1e-3)
        assert abs(np.median(image[wm]) - np.median(image[csf])) == pytest.approx(WM_CSF_SCALE, abs=1e-2)
