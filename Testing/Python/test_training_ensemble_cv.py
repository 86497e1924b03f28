"""Ensemble cross-validation: the held-out predictions of separately cross-validated members,
averaged per fold, scored and used to choose the ensemble's plan."""
from __future__ import annotations

import json

import numpy as np
import pytest

from allnet.model import ModelConfig, load_model_file, random_bundle, save_model_file
from allnet.pipeline import model_plan
from allnet.plan import DEFAULT_PLAN
from allnet_training.cli import main
from allnet_training.ensemble_cv import combine_crossvals, score_oof
from allnet_training.plan_tuning import save_oof

SHAPE = (24, 24, 24)


def _member(folder, false_positive: tuple[slice, ...], cases=("s0", "s1")):
    """One member's cross-validation: every case has the true lesion at p 0.9 and a member-
    specific false positive at p 0.9 (what one seed gets wrong and another does not)."""
    for case in cases:
        reference = np.zeros(SHAPE, np.uint8)
        reference[3:8, 3:8, 3:8] = 1
        probability = np.where(reference > 0, 0.9, 0.02).astype(np.float32)
        probability[false_positive] = 0.9
        sphere = np.where(probability > 0.5, 0.7, 0.0).astype(np.float32)
        save_oof(folder / f"fold_{case}", case, probability, sphere, reference)


def test_members_that_err_in_different_places_score_as_the_ensemble_would(tmp_path) -> None:
    _member(tmp_path / "a", np.s_[14:18, 14:18, 14:18])
    _member(tmp_path / "b", np.s_[14:18, 3:7, 14:18])
    single = score_oof(tmp_path / "a" / "fold_s0" / "oof" / "s0.npz", DEFAULT_PLAN)
    assert single.n_pred_false == 1 and single.lf1 < 1.0
    tuned = combine_crossvals([tmp_path / "a", tmp_path / "b"], tmp_path / "ens")
    summary = json.loads((tmp_path / "ens" / "crossval.json").read_text())
    assert summary["model"]["mean"]["lf1"] == pytest.approx(1.0) and summary["model"]["mean"]["dsc"] == pytest.approx(1.0)
    assert summary["model"]["n_cases"] == 2
    assert [r["case"] for r in summary["cases"]] == ["s0", "s1"]
    assert tuned["chosen"]["mean_lf1"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "ens" / "sources.json").read_text())["members"] == 2
    averaged = np.load(tmp_path / "ens" / "fold_s1" / "oof" / "s1.npz")["probability"]
    assert averaged[15, 15, 15] == pytest.approx(0.46, abs=0.01)  # (0.9 + 0.02) / 2


def test_ensembles_are_scored_by_strict_majority_vote_as_the_product_votes(tmp_path) -> None:
    """A component one of two members finds at p 0.9 and the other at p 0.3 has a mean of 0.6
    but no strict majority: allnet.inference drops it, so the ensemble's estimate must too."""
    for name, level in (("a", 0.9), ("b", 0.3)):
        reference = np.zeros(SHAPE, np.uint8)
        reference[3:8, 3:8, 3:8] = 1
        probability = np.where(reference > 0, 0.9, 0.02).astype(np.float32)
        probability[14:18, 14:18, 14:18] = level
        save_oof(tmp_path / name / "fold_s0", "s0", probability, None, reference)
    combine_crossvals([tmp_path / "a", tmp_path / "b"], tmp_path / "ens")
    summary = json.loads((tmp_path / "ens" / "crossval.json").read_text())
    assert summary["metrics"]["model"][0]["n_pred_lesions"] == 1  # the disputed component is out
    assert json.loads((tmp_path / "ens" / "sources.json").read_text())["combination"].startswith("strict majority")


def test_members_of_other_folds_are_refused_naming_the_folder(tmp_path, capsys) -> None:
    _member(tmp_path / "a", np.s_[14:18, 14:18, 14:18])
    _member(tmp_path / "c", np.s_[14:18, 14:18, 14:18], cases=("s0", "s2"))
    with pytest.raises(ValueError, match="other folds or cases"):
        combine_crossvals([tmp_path / "a", tmp_path / "c"], tmp_path / "ens")
    assert main(["ensemble-cv", "--crossval", str(tmp_path / "a"), str(tmp_path / "c"),
                 "--out", str(tmp_path / "ens")]) == 2
    assert str(tmp_path / "c") in capsys.readouterr().err
    assert not (tmp_path / "ens" / "crossval.json").exists()


def test_the_command_line_chooses_a_plan_that_plan_stores_in_the_model(tmp_path, capsys) -> None:
    _member(tmp_path / "a", np.s_[14:18, 14:18, 14:18])
    _member(tmp_path / "b", np.s_[14:18, 3:7, 14:18])
    tiny = ModelConfig(base_channels=4, depth=2, head_channels=4, head_mlp=(4,))
    for seed, member in enumerate("ab"):  # each member's fold models
        for fold in ("fold_s0", "fold_s1"):
            b = random_bundle(tiny, n=1, seed=seed)
            save_model_file(tmp_path / member / fold / "bundle.pt", b.config, [m.state_dict() for m in b.members], {})
    assert main(["ensemble-cv", "--crossval", str(tmp_path / "a"), str(tmp_path / "b"),
                 "--out", str(tmp_path / "ens")]) == 0
    assert "mean (2 cases)" in capsys.readouterr().out
    fold_ensemble = load_model_file(tmp_path / "ens" / "fold_s1" / "bundle.pt")  # what stress perturbs
    assert len(fold_ensemble.members) == 2 and fold_ensemble.meta["fold"] == "s1"
    bundle = random_bundle(ModelConfig(base_channels=4, depth=2, head_channels=4, head_mlp=(4,)), n=1)
    model = tmp_path / "m.pt"
    save_model_file(model, bundle.config, [m.state_dict() for m in bundle.members], {})
    assert main(["plan", "--crossval", str(tmp_path / "ens"), "--model", str(model)]) == 0
    chosen = json.loads((tmp_path / "ens" / "plan.json").read_text())["plan"]
    assert {k: model_plan(load_model_file(model))[k] for k in chosen} == chosen


def test_held_out_predictions_without_a_contrast_map_get_the_model_inputs_one(tmp_path) -> None:
    """Predictions saved before the FLAIR-contrast floor existed get the map of the FLAIR their
    fold model was given (``model_flair_contrast``: noise harmonisation and normalisation of
    the model's config) and the case's grey-matter map, once; a case or fold model that is
    missing is named."""
    from allnet_training.crossval import add_case_maps, model_flair_contrast
    from allnet_training.plan_tuning import CONTRAST_KEY, GREY_MATTER_KEY, load_oof

    from helpers_training import tiny_case, tiny_model_config

    case = tiny_case(3, "s0")
    config = tiny_model_config(noise_target=0.05)
    bundle = random_bundle(config, n=1)
    fold = tmp_path / "cv" / "fold_s0"
    save_model_file(fold / "bundle.pt", bundle.config, [m.state_dict() for m in bundle.members], {})
    probability = np.where(case.mask > 0, 0.9, 0.0).astype(np.float32)
    save_oof(fold, "s0", probability, None, case.mask)
    assert add_case_maps(tmp_path / "cv", [case]) == 1
    stored = load_oof(tmp_path / "cv")["s0"][CONTRAST_KEY].astype(np.float32)
    expected = model_flair_contrast(config, case)
    np.testing.assert_allclose(stored, expected, atol=2e-3)  # float16 storage
    assert np.median(stored[case.mask > 0]) > 1.0  # the phantom's lesions: +1.5 on a WM-CSF contrast of ~0.3-1
    grey = load_oof(tmp_path / "cv")["s0"][GREY_MATTER_KEY]
    np.testing.assert_array_equal(grey, (case.tissue == 2).astype(np.uint8))
    assert grey.any() and not grey.all()
    assert add_case_maps(tmp_path / "cv", [case]) == 0  # already there
    save_oof(tmp_path / "cv" / "fold_s1", "s1", probability, None, case.mask)
    with pytest.raises(ValueError, match="s1 is not among the given cases"):
        add_case_maps(tmp_path / "cv", [case])
    with pytest.raises(ValueError, match="no fold model"):
        add_case_maps(tmp_path / "cv", [case, tiny_case(4, "s1")])
