"""Stress perturbations and the false-positive audit (tiny cases, no real data)."""
from __future__ import annotations

import numpy as np
import pytest

from allnet_training.cache import MODALITIES
from allnet_training.stress import PERTURBATIONS, audit_volumes, perturb

from helpers_training import tiny_case

FLAIR, T2 = MODALITIES.index("flair"), MODALITIES.index("t2")


def test_gm_brightening_moves_grey_matter_towards_the_lesions_on_flair_only():
    case = tiny_case(0)
    out = perturb(case, "gm_bright")
    gm = (case.tissue == 2) & (case.mask == 0)
    wm = (case.tissue == 3) & (case.mask == 0)
    before = np.median(case.images[FLAIR][gm].astype(float)) - np.median(case.images[FLAIR][wm].astype(float))
    after = np.median(out.images[FLAIR][gm].astype(float)) - np.median(out.images[FLAIR][wm].astype(float))
    assert after > before + 0.3
    t1 = MODALITIES.index("t1")
    assert np.corrcoef(out.images[t1][case.brain > 0].astype(float),
                       case.images[t1][case.brain > 0].astype(float))[0, 1] > 0.999


def test_quantisation_thick_slices_and_missing_t2():
    case = tiny_case(1)
    eight = perturb(case, "8bit")
    assert len(np.unique(eight.images[FLAIR][case.brain > 0])) <= 256
    thick = perturb(case, "thick_5mm")
    assert not np.array_equal(thick.images[FLAIR], case.images[FLAIR])
    assert np.all(thick.images[:, case.brain == 0] == 0)
    no_t2 = perturb(case, "no_t2")
    assert "t2" not in no_t2.present and not no_t2.images[T2].any()
    assert perturb(case, "none") is case
    assert set(PERTURBATIONS) >= {"gm_bright", "thick_5mm", "8bit", "no_t2"}
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(case, "blur")


def test_audit_counts_predicted_millilitres_per_region():
    shape = (10, 10, 10)
    regions = {name: np.zeros(shape, bool) for name in ("midline_gm", "cerebellar_cortex", "choroid_plexus")}
    regions["midline_gm"][:2] = True
    regions["choroid_plexus"][1:3] = True
    mask = np.zeros(shape, bool)
    mask[:5, :5, :4] = True  # 100 voxels
    volumes = audit_volumes(mask, regions)
    assert volumes["midline_gm"] == pytest.approx(0.040)
    assert volumes["choroid_plexus"] == pytest.approx(0.040)
    assert volumes["cerebellar_cortex"] == 0.0
    assert volumes["total_normal_tissue"] == pytest.approx(0.060)


def test_learning_curve_scores_every_snapshot(tmp_path):
    import json

    from allnet_training.curve import run_curve
    from allnet_training.ensemble import export_bundle
    from allnet.model import ALLNet

    from helpers_training import tiny_model_config

    cases = [tiny_case(0, "A"), tiny_case(1, "B")]
    config = tiny_model_config()
    for subject in ("A", "B"):
        folder = tmp_path / f"fold_{subject}" / "seed0" / "snapshots"
        for step in (10, 20):
            export_bundle(folder / f"step{step}.pt", config, [ALLNet(config).state_dict()], {"step": step})
    rows = run_curve(cases, tmp_path, log=lambda *_: None)
    assert [(r["case"], r["step"]) for r in rows] == [("A", 10), ("A", 20), ("B", 10), ("B", 20)]
    summary = json.loads((tmp_path / "curve.json").read_text())
    assert sorted(summary["mean"]) == ["10", "20"]
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_plan_labels_post_process_a_cached_prediction_as_segment_does():
    """``plan_labels`` applies the plan's rules with the case's own maps: a detection lying in
    the phantom's grey-matter shell goes with a grey-matter fraction of 0.99 and stays without
    it; the true lesions in the white-matter core stay either way."""
    from types import SimpleNamespace

    from allnet.plan import InferencePlan
    from allnet_training.crossval import plan_labels

    from helpers_training import tiny_case, tiny_model_config

    case = tiny_case(3, "s0")
    vote = case.mask.astype(np.uint8).copy()
    k, j, i = np.argwhere((case.tissue == 2) & (np.roll(case.tissue, 1, 2) == 2)
                          & (np.roll(case.tissue, -1, 2) == 2))[0]
    vote[k, j, i - 1:i + 2] = 1  # a 3-voxel detection in grey matter
    prediction = SimpleNamespace(mask=vote, sphere_probability=None)
    config = tiny_model_config()
    keep_all = plan_labels(prediction, case, config, InferencePlan(min_lesion_mm3=0.0))
    ruled = plan_labels(prediction, case, config, InferencePlan(min_lesion_mm3=0.0, max_grey_matter_fraction=0.99))
    assert keep_all[k, j, i] > 0 and ruled[k, j, i] == 0
    assert (ruled[case.mask > 0] > 0).all()
