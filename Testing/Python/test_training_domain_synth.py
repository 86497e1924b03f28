"""Domain-randomised synthesis: the generator's guarantees, determinism, held-out exclusion,
the sampler mix and the acquisition helpers."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

from allnet.preprocessing.intensity import normalise
from allnet_training import labelmaps as lm
from allnet_training.domain_synth import DomainSynth, DomainSynthConfig, brain_from_labels
from allnet_training.patches import CropSampler
from allnet_training.synth_acquisition import (BiasField, pipeline_normalised, quantise, robust_zscore,
                                               thick_slice_matrix, thick_slices)

from helpers_training import tiny_case, tiny_sampler_config

SHAPE = (48, 64, 64)
REGION = (24, 40, 40)


def _phantom_labels() -> np.ndarray:
    """A brain-like label map: ventricles, deep GM, WM, cortex, sulcal CSF, a cerebellum
    and brainstem at the bottom."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    c = [(n - 1) / 2 for n in SHAPE]
    r = np.sqrt(((k - c[0]) / 22) ** 2 + ((j - c[1]) / 30) ** 2 + ((i - c[2]) / 30) ** 2)
    labels = np.zeros(SHAPE, np.uint8)
    labels[r < 1.0] = lm.SULCAL_CSF
    labels[r < 0.93] = lm.CORTICAL_GM
    labels[r < 0.8] = lm.WM
    labels[(r < 0.45) & (np.abs(i - c[2]) > 6)] = lm.DEEP_GM
    labels[(r < 0.3) & (np.abs(i - c[2]) < 5)] = lm.VENTRICLE_CSF
    low = (k < 12) & (r < 0.93)
    labels[low & (r > 0.7)] = lm.CEREBELLAR_GM
    labels[low & (r <= 0.7)] = lm.CEREBELLAR_WM
    labels[low & (np.abs(i - c[2]) < 4) & (np.abs(j - c[1]) < 4)] = lm.BRAINSTEM
    return labels


def _lesion_map(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    mask = np.zeros(SHAPE, bool)
    for _ in range(6):
        centre = np.array([24, 32, 32]) + rng.uniform(-8, 8, 3)
        mask |= ((k - centre[0]) ** 2 / 9 + (j - centre[1]) ** 2 / 16 + (i - centre[2]) ** 2 / 9) <= 1
    return mask


def _anatomy() -> np.ndarray:
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) / 100 for n in SHAPE), indexing="ij")
    return np.stack([k, j, i, k + j, j * 0.5, i * 0.5]).astype(np.float16)


def _synth(cfg: DomainSynthConfig = DomainSynthConfig(), **kw) -> DomainSynth:
    labels = _phantom_labels()
    brains = [brain_from_labels("dev_a", "A", labels, _anatomy()),
              brain_from_labels("other", "other", labels, _anatomy())]
    maps = [("A", "A", _lesion_map(1)), ("B", "B", _lesion_map(2)), ("x", "lesionmap:x", _lesion_map(3))]
    return DomainSynth(brains, maps, cfg, None, development_subjects={"A", "B"}, **kw)


def _local_wm(region, component: np.ndarray) -> np.ndarray:
    near = ndimage.binary_dilation(component, iterations=4) & ~ndimage.binary_dilation(component, iterations=1)
    return near & (region.labels == lm.WM) & (region.lesion == 0) & (region.brain > 0)


def test_render_shapes_dtypes_and_determinism():
    synth = _synth()
    a = synth.render(REGION, 0.8, np.random.default_rng(5))
    b = synth.render(REGION, 0.8, np.random.default_rng(5))
    c = synth.render(REGION, 0.8, np.random.default_rng(6))
    assert a.images.shape == (3, *REGION) and a.images.dtype == np.float32
    assert a.anatomy.shape == (6, *REGION) and a.lesion.shape == REGION and a.brain.shape == REGION
    for name in ("images", "lesion", "brain", "anatomy", "labels"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.images, c.images)
    assert np.all(a.images[:, a.brain == 0] == 0)  # zero outside the brain, as the pipeline
    assert set(a.present) in ({"flair", "t1"}, {"flair", "t1", "t2"})
    if "t2" not in a.present:
        assert not a.images[2].any()


def test_mri_guarantees_hold_over_many_samples():
    """FLAIR lesions brighter than the WM around them; T1W lesions not brighter than it;
    CSF dark on FLAIR and bright on T2W (skull-strip and T2W-dropout off to see all)."""
    synth = _synth(DomainSynthConfig(t2_missing_p=0.0, skull_p=0.0))
    checked = 0
    for seed in range(25):
        region = synth.render(REGION, 1.0, np.random.default_rng(seed))
        flair, t1, t2 = region.images
        wm = (region.labels == lm.WM) & (region.lesion == 0)
        csf = region.labels == lm.VENTRICLE_CSF
        if csf.sum() > 50 and wm.sum() > 50:
            assert np.median(flair[csf]) < np.median(flair[wm])
            assert np.median(t2[csf]) > np.median(t2[wm])
        components, n = ndimage.label(region.lesion > 0)
        for index in range(1, n + 1):
            component = components == index
            around = _local_wm(region, component)
            if component.sum() < 30 or around.sum() < 30:
                continue
            assert flair[component].mean() > np.median(flair[around]), f"seed {seed}"
            spread = np.subtract(*np.percentile(t1[around], [75, 25]))
            assert t1[component].mean() <= np.median(t1[around]) + 0.5 * spread, f"seed {seed}"
            checked += 1
    assert checked >= 10


def _flair_lesion_contrast(synth: DomainSynth, seeds: range) -> float:
    """Median over lesions of (lesion mean - local WM median) on the rendered FLAIR."""
    contrasts = []
    for seed in seeds:
        region = synth.render(REGION, 1.0, np.random.default_rng(seed))
        components, n = ndimage.label(region.lesion > 0)
        for index in range(1, n + 1):
            component = components == index
            around = _local_wm(region, component)
            if component.sum() >= 30 and around.sum() >= 30:
                contrasts.append(region.images[0][component].mean() - np.median(region.images[0][around]))
    assert len(contrasts) >= 10
    return float(np.median(contrasts))


def test_flair_lesion_range_sets_how_far_lesions_stand_out_and_keeps_them_brighter():
    """Faint lesions (1.05-1.15 x WM) stand out less than the default range and still stand out."""
    plain = dict(t2_missing_p=0.0, skull_p=0.0, flair_gm_bright_p=0.0, thick_slice_p=0.0, quantise_p=0.0)
    default = _flair_lesion_contrast(_synth(DomainSynthConfig(**plain)), range(12))
    faint = _flair_lesion_contrast(_synth(DomainSynthConfig(flair_lesion=(1.05, 1.15), **plain)), range(12))
    assert 0 < faint < 0.5 * default
    with pytest.raises(ValueError, match="flair_lesion"):
        DomainSynthConfig(flair_lesion=(0.9, 1.5))  # lesions darker than WM on FLAIR: not MS imaging


def test_held_out_subjects_brains_and_masks_are_excluded():
    synth = _synth()
    view = synth.for_training({"A"})  # B held out
    assert {m.name for m in view.maps} == {"A", "x"}
    assert {b.brain_id for b in view.brains} == {"dev_a", "other"}
    view = synth.for_training({"B"})  # A held out: its brain and mask go
    assert {m.name for m in view.maps} == {"B", "x"}
    assert {b.brain_id for b in view.brains} == {"other"}
    assert "A" not in view.subjects


def test_sampler_mixes_synthetic_crops_and_keeps_the_real_stream_without_them():
    cases = [tiny_case(0, "A"), tiny_case(1, "B")]
    plain = CropSampler(cases, tiny_sampler_config())
    with_synth_off = CropSampler(cases, tiny_sampler_config(), synth=_synth())
    for seed in range(3):
        a, b = plain.sample(seed), with_synth_off.sample(seed)
        assert all(torch.equal(a[k], b[k]) for k in a)
    cfg = replace(tiny_sampler_config(), synthetic_ratio=1.0)
    mixed = CropSampler(cases[:1], cfg, synth=_synth())  # trains on A only: B's data excluded
    assert "B" not in mixed.synth.subjects
    batch = mixed.batch([0, 1])
    assert batch["image"].shape == (2, 3, *cfg.crop)
    assert batch["lesion"].shape == batch["sphere"].shape == (2, 1, *cfg.crop)
    assert cfg.to_dict()["synthetic_ratio"] == 1.0
    # the settings the model file records are those the generator renders with
    bright = CropSampler(cases[:1], cfg, synth=_synth(replace(DomainSynthConfig(), flair_gm_bright_p=0.6)))
    assert bright.cfg.to_dict()["domain"]["flair_gm_bright_p"] == 0.6
    with pytest.raises(ValueError, match="synthetic_ratio"):
        CropSampler(cases, cfg)


def test_robust_zscore_is_the_pipeline_normalisation_given_the_whole_brain():
    rng = np.random.default_rng(0)
    image = rng.gamma(3.0, 1.0, (20, 30, 30)).astype(np.float32)
    mask = np.zeros(image.shape, np.uint8)
    mask[3:17, 5:25, 5:25] = 1
    np.testing.assert_allclose(robust_zscore(image, mask, image[mask > 0]), normalise(image, mask),
                               rtol=1e-5, atol=1e-5)


def test_wm_csf_crops_are_the_core_normalisation_given_the_whole_brain():
    """A synthetic crop in the 'wm-csf' normalisation equals what ``allnet segment`` makes of
    the same image with the same tissue classes (the reference sample = the whole brain)."""
    from allnet.preprocessing.intensity import apply_normalisation
    from allnet.tissue import CSF, WM

    rng = np.random.default_rng(1)
    tissue = rng.choice([CSF, 2, WM], size=(20, 30, 30), p=[0.2, 0.4, 0.4]).astype(np.uint8)
    image = (np.select([tissue == CSF, tissue == WM], [0.3, 1.0], 1.4)
             * rng.gamma(20.0, 0.05, tissue.shape)).astype(np.float32)
    mask = np.ones(image.shape, np.uint8)
    zscored = normalise(image, mask)
    for normalisation in ("wm-csf", "wm-csf-flair-t1", "robust-zscore"):
        core = apply_normalisation({m: zscored for m in ("flair", "t1", "t2")}, mask, tissue, normalisation)
        for modality in ("flair", "t1", "t2"):
            crop = pipeline_normalised(image, mask, image.ravel(), tissue.ravel(), normalisation, modality)
            np.testing.assert_allclose(crop, core[modality], rtol=1e-4, atol=1e-4)
    # T2W stays robust z-scored under 'wm-csf-flair-t1' and is re-referenced under 'wm-csf'
    t2 = {n: pipeline_normalised(image, mask, image.ravel(), tissue.ravel(), n, "t2")
          for n in ("wm-csf", "wm-csf-flair-t1")}
    np.testing.assert_allclose(t2["wm-csf-flair-t1"], zscored, rtol=1e-5, atol=1e-5)
    assert np.abs(t2["wm-csf"] - zscored).max() > 0.1


def test_rendered_crops_follow_the_model_normalisation():
    """'wm-csf' rendering puts the region's WM near 0 while the generator's draws stay the same."""
    region = (24, 40, 40)
    robust = _synth().render(region, 1.0, np.random.default_rng(4))
    referenced = _synth().with_normalisation("wm-csf").render(region, 1.0, np.random.default_rng(4))
    assert np.array_equal(robust.lesion, referenced.lesion) and robust.present == referenced.present
    wm = (referenced.labels == lm.WM) & (referenced.lesion == 0) & (referenced.brain > 0)
    flair = referenced.images[0]
    assert abs(float(np.median(flair[wm]))) < 0.5
    assert not np.allclose(robust.images[0], flair)


def test_thick_slices_keep_constants_and_blur_along_their_axis_only():
    matrix = thick_slice_matrix(40, 5.0, 0.3)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-5)
    plane = np.zeros((40, 20, 20), np.float32)
    plane[:, 10, :] = 1.0  # thin in j, extended in k and i
    out = thick_slices(plane, axis=1, thickness=5.0, phase=0.0)
    assert out[:, 10].max() < 0.6 and out[:, 8].max() > 0.05  # smeared along j
    np.testing.assert_allclose(thick_slices(plane, axis=0, thickness=5.0, phase=0.0)[5:35], plane[5:35], atol=1e-5)


def test_bias_field_box_matches_pointwise_and_quantise_levels():
    field = BiasField(np.random.default_rng(3), 0.3)
    start = np.array([5, 10, 20])
    box = field.on_box(start, (20, 30, 25))
    pos = np.stack(np.meshgrid(*[np.arange(n) + s for n, s in zip((20, 30, 25), start)], indexing="ij"), -1)
    np.testing.assert_allclose(box, field.at(pos.astype(float)), rtol=2e-3)
    assert np.exp(-0.31) < box.min() and box.max() < np.exp(0.31)
    q = quantise(np.linspace(0, 2, 1000, dtype=np.float32), top=1.0)
    assert len(np.unique(q)) == 256 and q.max() == pytest.approx(1.0)


@pytest.mark.realdata
def test_label_map_of_a_real_scan_has_every_class(shared_data, tmp_path):
    pytest.importorskip("allnet.regions")
    from allnet_training.cache import load_cached, prepare_cases
    from allnet_training.data import dev_cases

    case = [c for c in dev_cases(shared_data) if c.case_id == "patient19"]
    cached = load_cached(prepare_cases(case, tmp_path, log=lambda *_: None)[0])
    labels = lm.label_map(lm.source_from_cached(cached), lm.template_regions_or_none())
    counts = np.bincount(labels.ravel(), minlength=lm.N_LABELS)
    assert all(counts[label] > 100 for label in lm.LABEL_NAMES), counts
    # the expert-labelled lesions became white matter in the label map
    assert np.mean(labels[cached.mask > 0] == lm.WM) > 0.9
    # the atrial walls stay WM (lesions may be placed there); only non-WM tissue is plexus
    assert not np.any((labels == lm.CHOROID_PLEXUS) & (cached.tissue == 3))
