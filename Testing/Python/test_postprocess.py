"""The inference plan (allnet.plan), the one post-processing (allnet.postprocess), lesion scores
from the sphere head, plan storage in model files and plan tuning on out-of-fold predictions."""
from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from allnet.contract import RunSettings, SettingError
from allnet.inference import predict
from allnet.model import ModelConfig, load_model_file, random_bundle, save_model_file, set_inference_plan
from allnet.pipeline import model_plan
from allnet.plan import DEFAULT_PLAN, InferencePlan, resolve_plan
from allnet.postprocess import postprocess, postprocess_array

TINY = dict(base_channels=4, depth=2, max_channels=8, head_channels=4, head_mlp=(4,))


def _two_lesions() -> tuple[np.ndarray, np.ndarray]:
    """Vote with a 27-voxel cube and a 8-voxel cube; score map 0.9 in the first, 0.2 in the second."""
    vote = np.zeros((20, 20, 20), np.float32)
    score = np.zeros_like(vote)
    vote[2:5, 2:5, 2:5] = 1
    score[2:5, 2:5, 2:5] = 0.9
    vote[10:12, 10:12, 10:12] = 1
    score[10:12, 10:12, 10:12] = 0.2
    return vote, score


def test_lesion_score_threshold_drops_low_scoring_components_and_renumbers() -> None:
    vote, score = _two_lesions()
    plan = InferencePlan(min_lesion_mm3=0.0)
    labels, scores = postprocess_array(vote, plan, score)
    assert labels.max() == 2 and scores == {1: pytest.approx(0.9), 2: pytest.approx(0.2)}
    kept, kept_scores = postprocess_array(vote, InferencePlan(min_lesion_mm3=0.0, lesion_score_threshold=0.5), score)
    assert kept.max() == 1 and (kept > 0).sum() == 27 and kept_scores == {1: pytest.approx(0.9)}


def test_flair_contrast_floor_drops_components_by_their_mean_contrast_after_the_score_floor() -> None:
    """The contrast floor judges a lesion by its mean FLAIR contrast (a bright rim around a
    WM-level core does not save it); the score floor acts first and each step counts its
    own drops; ids and scores of the survivors follow them."""
    vote, score = _two_lesions()
    vote[14:17, 14:17, 14:17] = 1
    score[14:17, 14:17, 14:17] = 0.95
    contrast = np.zeros_like(vote)
    contrast[2:5, 2:5, 2:5] = 0.2          # 27 voxels, mean 0.2 + 0.8 / 27 = 0.23
    contrast[3, 3, 3] = 1.0
    contrast[10:12, 10:12, 10:12] = 0.9    # bright, but a low score
    contrast[14:17, 14:17, 14:17] = 0.6
    plan = InferencePlan(min_lesion_mm3=0.0, lesion_score_threshold=0.5, min_flair_contrast=0.3)
    image = sitk.GetImageFromArray(vote)
    found = postprocess(image, plan, sitk.GetImageFromArray(score), sitk.GetImageFromArray(contrast))
    labels = sitk.GetArrayFromImage(found.labels)
    assert (found.dropped_by_score, found.dropped_by_contrast) == (1, 1)
    assert labels.max() == 1 and labels[15, 15, 15] == 1 and found.scores == {1: pytest.approx(0.95)}
    # floor 0 keeps every component, as does a run without a contrast map
    for kept_plan, kept_map in ((InferencePlan(min_lesion_mm3=0.0), contrast), (plan, None)):
        out, _ = postprocess_array(vote, InferencePlan(min_lesion_mm3=0.0, lesion_score_threshold=0.5)
                                   if kept_map is None else kept_plan, score, contrast_map=kept_map)
        assert out.max() == (2 if kept_map is None else 3)
    with pytest.raises(ValueError, match="FLAIR-contrast map must lie on the grid"):
        shifted = sitk.GetImageFromArray(contrast)
        shifted.SetOrigin((1.0, 0.0, 0.0))
        postprocess(image, plan, None, shifted)


def test_minimum_size_uses_the_voxel_volume_and_connectivity_joins_diagonals() -> None:
    vote = np.zeros((10, 10, 10), np.float32)
    vote[2, 2, 2] = vote[3, 3, 3] = 1  # corner neighbours
    assert postprocess_array(vote, InferencePlan(min_lesion_mm3=0.0, connectivity=26))[0].max() == 1
    assert postprocess_array(vote, InferencePlan(min_lesion_mm3=0.0, connectivity=6))[0].max() == 2
    # two 1 mm3 voxels joined = 2 mm3: kept at 2 mm3, dropped at 3 mm3; at 2 x 2 x 2 mm voxels 16 mm3
    assert postprocess_array(vote, InferencePlan(min_lesion_mm3=2.0))[0].max() == 1
    assert postprocess_array(vote, InferencePlan(min_lesion_mm3=3.0))[0].max() == 0
    assert postprocess_array(vote, InferencePlan(min_lesion_mm3=10.0), spacing_mm=(2.0, 2.0, 2.0))[0].max() == 1


def test_a_fractional_vote_is_cut_at_one_half() -> None:
    vote = np.zeros((6, 6, 6), np.float32)
    vote[1:3, 1:3, 1:3] = 0.49
    vote[3:5, 3:5, 3:5] = 0.51
    labels, _ = postprocess_array(vote, InferencePlan(min_lesion_mm3=0.0))
    assert labels[1:3, 1:3, 1:3].max() == 0 and (labels[3:5, 3:5, 3:5] == 1).all()


def test_image_and_array_forms_agree_and_the_score_map_must_share_the_grid() -> None:
    vote, score = _two_lesions()
    image = sitk.GetImageFromArray(vote)
    image.SetSpacing((0.8, 0.9, 3.0))
    image.SetOrigin((10.0, -5.0, 2.0))
    score_image = sitk.GetImageFromArray(score)
    score_image.CopyInformation(image)
    found = postprocess(image, InferencePlan(min_lesion_mm3=0.0), score_image)
    labels, scores = postprocess_array(vote, InferencePlan(min_lesion_mm3=0.0), score, (0.8, 0.9, 3.0))
    assert np.array_equal(sitk.GetArrayFromImage(found.labels), labels) and found.scores == scores
    assert found.labels.GetOrigin() == (10.0, -5.0, 2.0)
    with pytest.raises(ValueError, match="grid"):
        postprocess(image, DEFAULT_PLAN, sitk.GetImageFromArray(score))


def test_settings_override_the_model_plan_and_the_sources_say_so() -> None:
    resolved = resolve_plan({"threshold": 0.4, "lesion_score_threshold": 0.3},
                            RunSettings(lesion_score_threshold=0.0, connectivity=18))
    assert (resolved.plan.threshold, resolved.plan.lesion_score_threshold, resolved.plan.connectivity,
            resolved.plan.min_lesion_mm3) == (0.4, 0.0, 18, DEFAULT_PLAN.min_lesion_mm3)
    assert resolved.sources == {"threshold": "model", "lesion_score_threshold": "setting",
                                "connectivity": "setting", "min_lesion_mm3": "default",
                                "min_flair_contrast": "default", "max_grey_matter_fraction": "default"}


@pytest.mark.parametrize("plan", [{"threshold": 1.5}, {"connectivity": 4}, {"grid": "mni152_2mm"},
                                  {"unknown_step": True}])
def test_plans_the_core_cannot_apply_are_refused(plan: dict) -> None:
    with pytest.raises((SettingError, TypeError)):
        InferencePlan.from_dict(plan)


def test_plan_stored_in_a_model_file_is_what_a_run_reads(tmp_path) -> None:
    bundle = random_bundle(ModelConfig(**TINY), n=2)
    path = tmp_path / "m.pt"
    save_model_file(path, bundle.config, [m.state_dict() for m in bundle.members], {"name": "m"}, fp16=True)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in load_model_file(path).members]
    assert model_plan(load_model_file(path)) == {"grid": "mni152_1mm", "normalisation": "robust-zscore",
                                                 "noise_target": 0.0, "average_without": ()}
    set_inference_plan(path, {"threshold": 0.35, "lesion_score_threshold": 0.25})
    loaded = load_model_file(path)
    assert loaded.meta["name"] == "m"
    assert InferencePlan.from_dict(model_plan(loaded)) == InferencePlan(threshold=0.35, lesion_score_threshold=0.25)
    for old, new in zip(before, (m.state_dict() for m in loaded.members)):
        assert all(np.array_equal(old[k].numpy(), new[k].numpy()) for k in old)
    with pytest.raises(SettingError):
        set_inference_plan(path, {"threshold": 2.0})


def test_predict_returns_the_sphere_head_as_lesion_score_map() -> None:
    rng = np.random.default_rng(0)
    shape = (16, 24, 16)
    images = rng.normal(size=(3, *shape)).astype(np.float32)
    anatomy = rng.normal(size=(6, *shape)).astype(np.float32)
    brain = np.zeros(shape, np.uint8)
    brain[2:14, 3:20, 2:14] = 1
    with_sphere = predict(random_bundle(ModelConfig(**TINY), n=2), images, anatomy, brain, device="cpu")
    assert with_sphere.sphere_probability is not None
    inside = with_sphere.sphere_probability[brain > 0]
    assert 0 < inside.min() and inside.max() < 1 and (with_sphere.sphere_probability[brain == 0] == 0).all()
    windowed = predict(random_bundle(ModelConfig(**TINY), n=2), images, anatomy, brain, device="cpu",
                       patch_size=(8, 8, 8))
    assert np.allclose(windowed.sphere_probability, with_sphere.sphere_probability, atol=0.05)
    without = predict(random_bundle(ModelConfig(**TINY, sphere_head=False), n=1), images, anatomy, brain,
                      device="cpu")
    assert without.sphere_probability is None


def test_plan_tuning_on_out_of_fold_predictions_prefers_the_lesion_score_when_it_separates(tmp_path) -> None:
    from allnet_training.plan_tuning import PLAN_FILE, read_plan, save_oof, tune_plan

    assert tune_plan(tmp_path) is None
    for case in range(2):
        reference = np.zeros((24, 24, 24), np.uint8)
        reference[3:7, 3:7, 3:7] = 1
        probability = np.where(reference > 0, 0.9, 0.05).astype(np.float32)
        sphere = np.where(reference > 0, 0.8, 0.0).astype(np.float32)
        probability[14:17, 14:17, 14:17] = 0.7  # a false positive the sphere head does not back
        sphere[14:17, 14:17, 14:17] = 0.15
        save_oof(tmp_path / f"fold_s{case}", f"case{case}", probability, sphere, reference)
    tuned = tune_plan(tmp_path)
    assert tuned["plan"]["lesion_score_threshold"] >= 0.2
    assert tuned["chosen"]["mean_lf1"] == pytest.approx(1.0) and tuned["default"]["mean_lf1"] < 1.0
    assert read_plan(tmp_path / PLAN_FILE) == tuned["plan"]
    assert json.loads((tmp_path / PLAN_FILE).read_text())["cases"] == ["case0", "case1"]


def test_plan_tuning_raises_the_minimum_size_only_when_small_components_are_false(tmp_path) -> None:
    from allnet_training.plan_tuning import save_oof, tune_plan

    reference = np.zeros((24, 24, 24), np.uint8)
    reference[3:7, 3:7, 3:7] = 1  # 64 mm3
    probability = np.where(reference > 0, 0.9, 0.05).astype(np.float32)
    sphere = np.where(reference > 0, 0.8, 0.0).astype(np.float32)
    probability[14:16, 14:16, 14:18] = 0.9  # 16 mm3 false positive the sphere head backs
    sphere[14:16, 14:16, 14:18] = 0.8
    save_oof(tmp_path / "small_false" / "fold_a", "a", probability, sphere, reference)
    tuned = tune_plan(tmp_path / "small_false")
    assert tuned["plan"]["min_lesion_mm3"] == 20.0 and tuned["chosen"]["mean_lf1"] == pytest.approx(1.0)
    assert tuned["default"]["min_lesion_mm3"] == 10.0 and tuned["default"]["mean_lf1"] < 1.0
    reference[14:16, 14:16, 14:18] = 1  # the same small component, now a true lesion
    save_oof(tmp_path / "small_true" / "fold_a", "a", probability, sphere, reference)
    assert tune_plan(tmp_path / "small_true")["plan"]["min_lesion_mm3"] == 10.0


def test_plan_tuning_keeps_the_3_mm_floor_when_a_larger_one_gains_only_noise(tmp_path) -> None:
    """One false 16 mm3 speck among 75 true lesions: a 20 mm3 floor would gain 0.004 of the
    objective, within the tolerance, so the smallest floor stays."""
    from allnet_training.plan_tuning import OBJECTIVE_TOLERANCE, save_oof, tune_plan

    reference = np.zeros((48, 48, 48), np.uint8)
    for n in range(75):
        k, j, i = 1 + 6 * (n // 25), 1 + 6 * ((n // 5) % 5), 1 + 6 * (n % 5)
        reference[k:k + 4, j:j + 4, i:i + 4] = 1  # 64 mm3 each
    probability = np.where(reference > 0, 0.9, 0.05).astype(np.float32)
    sphere = np.where(reference > 0, 0.8, 0.0).astype(np.float32)
    probability[40:42, 40:42, 40:44] = 0.9  # 16 mm3 false positive the sphere head backs
    sphere[40:42, 40:42, 40:44] = 0.8
    save_oof(tmp_path / "fold_a", "a", probability, sphere, reference)
    tuned = tune_plan(tmp_path)
    gain = tuned["best_objective"] - tuned["chosen"]["objective"]
    assert 0 < gain <= OBJECTIVE_TOLERANCE
    assert tuned["plan"]["min_lesion_mm3"] == 10.0 and tuned["plan"]["lesion_score_threshold"] == 0.0


def _lesion_and_false_positive(false_contrast: float) -> dict[str, np.ndarray]:
    """Held-out arrays of one 24^3 case: a true 4^3 lesion and a 3^3 false positive that the
    network and the sphere head back as strongly (probability 0.9, score 0.8); the FLAIR
    contrast is 0.8 in the lesion and ``false_contrast`` in the false positive."""
    reference = np.zeros((24, 24, 24), np.uint8)
    reference[3:7, 3:7, 3:7] = 1
    probability = np.where(reference > 0, 0.9, 0.05).astype(np.float32)
    sphere = np.where(reference > 0, 0.8, 0.0).astype(np.float32)
    contrast = np.where(reference > 0, 0.8, 0.0).astype(np.float32)
    probability[14:17, 14:17, 14:17], sphere[14:17, 14:17, 14:17] = 0.9, 0.8
    contrast[14:17, 14:17, 14:17] = false_contrast
    return {"reference": reference, "probability": probability, "sphere": sphere, "contrast": contrast}


def _fast_search_is_exact(arrays: dict[str, np.ndarray], floors: list[tuple[float, float, float]]):
    """The plan search's per-floor scores equal scoring each plan through the post-processing;
    returns them."""
    import dataclasses

    from allnet_training.plan_tuning import _floor_scores, score_case

    fast = _floor_scores(arrays, DEFAULT_PLAN, floors)
    slow = [score_case(arrays, dataclasses.replace(DEFAULT_PLAN, lesion_score_threshold=s, min_flair_contrast=c,
                                                   max_grey_matter_fraction=g)) for s, c, g in floors]
    assert fast == slow
    return fast


def test_plan_tuning_sets_a_flair_contrast_floor_when_false_lesions_are_not_flair_bright(tmp_path) -> None:
    """A false positive that the sphere head backs but whose FLAIR is barely above WM (a
    T2W-driven detection) is removed by the contrast floor, not by a score floor; the fast
    search gives exactly what scoring each plan through the post-processing gives; without
    contrast maps no floor is searched."""
    from allnet_training.plan_tuning import load_oof, save_oof, tune_plan

    case = _lesion_and_false_positive(false_contrast=0.1)
    maps = (case["probability"], case["sphere"], case["reference"])
    save_oof(tmp_path / "with" / "fold_a", "a", *maps, contrast=case["contrast"])
    tuned = tune_plan(tmp_path / "with")
    assert tuned["plan"]["min_flair_contrast"] == 0.2 and tuned["plan"]["lesion_score_threshold"] == 0.0
    assert tuned["chosen"]["mean_lf1"] == pytest.approx(1.0) and tuned["default"]["mean_lf1"] < 1.0
    _fast_search_is_exact(load_oof(tmp_path / "with")["a"],
                          [(0.0, 0.0, 1.0), (0.5, 0.0, 1.0), (0.0, 0.2, 1.0), (0.9, 0.4, 1.0)])
    save_oof(tmp_path / "without" / "fold_a", "a", *maps)
    assert {g["min_flair_contrast"] for g in tune_plan(tmp_path / "without")["grid"]} == {0.0}


def test_plan_tuning_drops_bright_grey_matter_by_its_share_and_keeps_lesions_partly_classed_gm(tmp_path) -> None:
    """A false positive lying wholly in grey matter (FLAIR-bright cortex: bright, sphere head
    backs it) is removed by the grey-matter fraction, while a true lesion half of whose voxels
    the T1W segmentation calls GM (T1W-hypointense) stays; the least strict fraction that does
    it is chosen (0.99); the fast search equals scoring each plan through the post-processing;
    without grey-matter maps the fraction stays 1."""
    from allnet_training.plan_tuning import load_oof, save_oof, tune_plan

    case = _lesion_and_false_positive(false_contrast=0.8)  # as bright as the lesion: no floor helps
    maps = (case["probability"], case["sphere"], case["reference"])
    grey = np.zeros_like(case["reference"])
    grey[3:5, 3:7, 3:7] = 1  # half the true lesion classed GM
    grey[13:18, 13:18, 13:18] = 1
    save_oof(tmp_path / "with" / "fold_a", "a", *maps, contrast=case["contrast"], grey_matter=grey)
    tuned = tune_plan(tmp_path / "with")
    assert tuned["plan"]["max_grey_matter_fraction"] == 0.99 and tuned["plan"]["min_flair_contrast"] == 0.0
    assert tuned["chosen"]["mean_lf1"] == pytest.approx(1.0) and tuned["default"]["mean_lf1"] < 1.0
    fast = _fast_search_is_exact(load_oof(tmp_path / "with")["a"],
                                 [(0.0, 0.0, 1.0), (0.0, 0.0, 0.99), (0.0, 0.0, 0.4), (0.5, 0.2, 0.9)])
    assert fast[2][1] == 0.0  # 0.4 also drops the half-GM true lesion
    save_oof(tmp_path / "without" / "fold_a", "a", *maps, contrast=case["contrast"])
    assert {g["max_grey_matter_fraction"] for g in tune_plan(tmp_path / "without")["grid"]} == {1.0}
    fixed = tune_plan(tmp_path / "with", grey_matter_fractions=(0.9,))
    assert fixed["plan"]["max_grey_matter_fraction"] == 0.9 and fixed["grey_matter_fractions_searched"] == [0.9]


def test_postprocess_drops_lesions_by_grey_matter_share_and_counts_them() -> None:
    """Components with more than the plan's share of voxels in grey matter are dropped and
    counted apart from the score and contrast rules; the map must lie on the vote's grid; a
    fraction of 1 keeps all."""
    vote = np.zeros((12, 12, 12), np.float32)
    vote[1:4, 1:4, 1:4] = 1  # 27 voxels, all GM
    vote[6:9, 6:9, 6:9] = 1  # 27 voxels, 9 GM (one slab)
    grey = np.zeros_like(vote)
    grey[1:4, 1:4, 1:4] = 1
    grey[6:7, 6:9, 6:9] = 1
    image, grey_image = sitk.GetImageFromArray(vote), sitk.GetImageFromArray(grey)
    found = postprocess(image, InferencePlan(min_lesion_mm3=0.0, max_grey_matter_fraction=0.99),
                        grey_matter_map=grey_image)
    labels = sitk.GetArrayFromImage(found.labels)
    assert labels.max() == 1 and labels[7, 7, 7] == 1 and found.dropped_by_grey_matter == 1
    assert found.dropped_by_score == found.dropped_by_contrast == 0
    strict = postprocess(image, InferencePlan(min_lesion_mm3=0.0, max_grey_matter_fraction=0.3),
                         grey_matter_map=grey_image)
    assert sitk.GetArrayFromImage(strict.labels).max() == 0 and strict.dropped_by_grey_matter == 2
    kept = postprocess(image, InferencePlan(min_lesion_mm3=0.0), grey_matter_map=grey_image)
    assert sitk.GetArrayFromImage(kept.labels).max() == 2
    shifted = sitk.GetImageFromArray(grey)
    shifted.SetOrigin((5.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="grey-matter map must lie on the grid"):
        postprocess(image, InferencePlan(min_lesion_mm3=0.0, max_grey_matter_fraction=0.9),
                    grey_matter_map=shifted)


def test_the_nested_estimate_chooses_each_folds_plan_without_that_fold(tmp_path) -> None:
    """Fold a has a low-contrast false positive, fold b none: the plan chosen on both sets a
    contrast floor, but fold a's nested plan comes from fold b alone (no floor: nothing there
    shows a need), so the nested estimate is the lower, honest one."""
    from allnet_training.plan_tuning import save_oof, tune_plan

    for fold, with_false in (("a", True), ("b", False)):
        case = _lesion_and_false_positive(false_contrast=0.1)
        if not with_false:
            case["probability"][14:17, 14:17, 14:17], case["sphere"][14:17, 14:17, 14:17] = 0.05, 0.0
            case["contrast"][14:17, 14:17, 14:17] = 0.0
        save_oof(tmp_path / f"fold_{fold}", f"case_{fold}", case["probability"], case["sphere"],
                 case["reference"], contrast=case["contrast"])
    tuned = tune_plan(tmp_path)
    assert tuned["plan"]["min_flair_contrast"] > 0 and tuned["chosen"]["mean_lf1"] == pytest.approx(1.0)
    nested = {row["case"]: row for row in tuned["nested"]["cases"]}
    assert nested["case_a"]["plan"]["min_flair_contrast"] == 0.0 and nested["case_a"]["lf1"] < 1.0
    assert nested["case_b"]["plan"]["min_flair_contrast"] > 0 and nested["case_b"]["lf1"] == pytest.approx(1.0)
    assert tuned["nested"]["mean_lf1"] < tuned["chosen"]["mean_lf1"]
    # the floor fixed as a rule: every fold's plan keeps it, and the default plan is still reported
    fixed = tune_plan(tmp_path, flair_contrasts=(0.3,))
    assert fixed["flair_contrasts_searched"] == [0.3] and fixed["plan"]["min_flair_contrast"] == 0.3
    assert {row["plan"]["min_flair_contrast"] for row in fixed["nested"]["cases"]} == {0.3}
    assert fixed["nested"]["mean_lf1"] == pytest.approx(1.0)
    assert fixed["default"]["min_flair_contrast"] == 0.0 and fixed["default"]["mean_lf1"] < 1.0


def test_lesion_score_roc_and_the_plan_command_store_the_plan_in_a_model(tmp_path, capsys) -> None:
    from allnet_training import cli as train_cli
    from allnet_training.plan_tuning import CURVE_FIGURE, lesion_score_curve, load_oof, save_oof

    reference = np.zeros((24, 24, 24), np.uint8)
    reference[3:7, 3:7, 3:7] = 1
    reference[3:7, 14:18, 3:7] = 1  # a second lesion the model scores low
    probability = np.where(reference > 0, 0.9, 0.05).astype(np.float32)
    sphere = np.zeros_like(probability)
    sphere[3:7, 3:7, 3:7] = 0.8
    sphere[3:7, 14:18, 3:7] = 0.3
    probability[14:17, 14:17, 14:17] = 0.7  # false positive with score 0.15
    sphere[14:17, 14:17, 14:17] = 0.15
    save_oof(tmp_path / "fold_a", "a1", probability, sphere, reference)
    curve = lesion_score_curve(load_oof(tmp_path), DEFAULT_PLAN, (0.0, 0.2, 0.5, 0.9))
    assert curve["ltpr"] == [1.0, 1.0, 0.5, 0.0] and curve["fp_per_scan"] == [1.0, 0.0, 0.0, 0.0]
    assert curve["n_reference_lesions"] == 2

    bundle = random_bundle(ModelConfig(**TINY), n=1)
    model = tmp_path / "m.pt"
    save_model_file(model, bundle.config, [m.state_dict() for m in bundle.members], {})
    assert train_cli.main(["plan", "--crossval", str(tmp_path), "--model", str(model)]) == 0
    assert (tmp_path / CURVE_FIGURE).stat().st_size > 1000
    stored = InferencePlan.from_dict(model_plan(load_model_file(model)))
    assert 0.15 < stored.lesion_score_threshold <= 0.3  # drops the false positive, keeps both lesions
    assert "stored in" in capsys.readouterr().out
    assert train_cli.main(["plan", "--crossval", str(tmp_path / "empty")]) == 2
