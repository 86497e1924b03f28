"""Longitudinal mode: halfway space, joint normalisation, bad inputs (exit 2, no outputs),
and a whole run on two synthetic visits with known changes (outputs, classes, determinism)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from allnet import cli
from allnet import longitudinal_pipeline as longitudinal
from allnet.anatomy import Anatomy
from allnet.contract import (CHANGE_CLASSES, CHANGE_CODES, CHANGE_COLUMN_NAMES, CHANGE_TABLE_FILE,
                             CHANGE_SEGMENTATION_FILE, EXIT_BAD_INPUT, LONGITUDINAL_OUTPUT_FILES,
                             SUMMARY_FILE)
from allnet.errors import InputError, RegistrationError
from allnet.grid import WORKING_SHAPE_KJI, working_reference
from allnet.inference import Prediction
from allnet.model import ModelConfig, random_bundle, save_model_file
from allnet.preprocessing import pair, registration
from allnet.preprocessing.pair import PairCase, VisitImages, half_rigid, joint_normalise, rotation_deg

TINY = dict(base_channels=4, depth=2, max_channels=8, head_channels=4, head_mlp=(4,))
NATIVE = "lesjak2018/native"


def rigid(angles_rad, translation) -> sitk.Euler3DTransform:
    transform = sitk.Euler3DTransform()
    transform.SetCenter((10.0, -20.0, 5.0))
    transform.SetRotation(*angles_rad)
    transform.SetTranslation(translation)
    return transform


# ----------------------------------------------------------------- halfway space
@pytest.mark.parametrize("angles, shift", [((0.05, -0.12, 0.2), (4.0, -7.0, 12.0)),
                                           ((0.0, 0.0, 0.0), (1.0, 2.0, 3.0)),
                                           ((0.6, 0.3, -0.4), (0.0, 0.0, 0.0))])
def test_half_of_a_rigid_transform_applied_twice_is_the_transform(angles, shift) -> None:
    transform = rigid(angles, shift)
    half = half_rigid(transform)
    points = np.random.default_rng(0).uniform(-100, 100, (50, 3))
    for p in points:
        twice = half.TransformPoint(half.TransformPoint(tuple(p)))
        assert np.allclose(twice, transform.TransformPoint(tuple(p)), atol=1e-6)
    assert rotation_deg(half) == pytest.approx(rotation_deg(transform) / 2, abs=1e-6)


def test_joint_normalisation_removes_a_scanner_gain_between_visits() -> None:
    rng = np.random.default_rng(1)
    brain = np.zeros((20, 20, 20), bool)
    brain[3:17, 3:17, 3:17] = True
    tissue = rng.normal(100.0, 10.0, brain.shape).astype(np.float32)
    raw = {"baseline": {"flair": tissue.copy()}, "followup": {"flair": 1.7 * tissue + 30.0}}
    raw["followup"]["flair"][:, :, :2] = np.nan  # the follow-up saw less: statistics over the common view
    out = joint_normalise(raw, brain)
    common = brain.copy()
    common[:, :, :2] = False
    assert np.allclose(out["baseline"]["flair"][common], out["followup"]["flair"][common], atol=1e-4)
    assert np.all(out["followup"]["flair"][~brain] == 0)


# ----------------------------------------------------------------- bad inputs (exit 2, nothing written)
def _flair_file(folder: Path, name: str, seed: int = 0) -> Path:
    image = sitk.GetImageFromArray(np.random.default_rng(seed).random((8, 10, 12)).astype(np.float32))
    path = folder / name
    sitk.WriteImage(image, str(path))
    return path


def test_same_file_twice_is_exit_2_before_any_work(tmp_path, capsys) -> None:
    flair = _flair_file(tmp_path, "flair.nii.gz")
    t1 = _flair_file(tmp_path, "t1.nii.gz", seed=1)
    out = tmp_path / "out"
    code = cli.main(["longitudinal", "--baseline-flair", str(flair), "--followup-flair", str(flair),
                     "--baseline-t1", str(t1), "-o", str(out), "--progress", "none"])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert str(flair) in err and "baseline FLAIR" in err and "follow-up FLAIR" in err
    assert not out.exists()


def test_copy_of_one_file_under_another_name_is_exit_2(tmp_path, capsys) -> None:
    flair = _flair_file(tmp_path, "visit1_flair.nii.gz")
    copy = tmp_path / "visit2_flair.nii.gz"
    shutil.copyfile(flair, copy)
    t1 = _flair_file(tmp_path, "t1.nii.gz", seed=1)
    code = cli.main(["longitudinal", "--baseline-flair", str(flair), "--followup-flair", str(copy),
                     "--followup-t1", str(t1), "-o", str(tmp_path / "out"), "--progress", "none"])
    assert code == EXIT_BAD_INPUT
    assert "identical content" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_no_t1_at_either_visit_is_exit_2(tmp_path, capsys) -> None:
    a, b = _flair_file(tmp_path, "a.nii.gz"), _flair_file(tmp_path, "b.nii.gz", seed=2)
    code = cli.main(["longitudinal", "--baseline-flair", str(a), "--followup-flair", str(b),
                     "-o", str(tmp_path / "out"), "--progress", "none"])
    assert code == EXIT_BAD_INPUT and "T1W at one visit" in capsys.readouterr().err


def test_visits_that_cannot_be_registered_name_both_files(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise RegistrationError("follow-up FLAIR -> FLAIR registration failed: the images do not overlap")
    monkeypatch.setattr(registration, "register_to_flair", fail)
    image = sitk.Image([8, 8, 8], sitk.sitkFloat32)
    visits = [VisitImages(image, names={"flair": name}) for name in ("v1_flair.nii", "v2_flair.nii")]
    with pytest.raises(InputError) as caught:
        pair.register_visits(*visits)
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert "v1_flair.nii" in str(caught.value) and "v2_flair.nii" in str(caught.value)
    assert "too far apart" in str(caught.value)


def test_a_head_turned_on_its_side_is_refused() -> None:
    """Follow-up = the baseline head turned by 90 degrees: not registrable as one person's
    visits (the registration cannot find the turn), exit 2 naming both files."""
    from allnet.templates import load_template

    head = sitk.Cast(load_template().t1, sitk.sitkFloat32)
    centre = head.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in head.GetSize()])
    turn = sitk.Euler3DTransform(centre, 0.0, np.pi / 2, 0.0)
    turned = sitk.Resample(head, head, turn, sitk.sitkLinear, 0.0)
    with pytest.raises(InputError) as caught:
        pair.register_visits(VisitImages(head, names={"flair": "b.nii"}),
                             VisitImages(turned, names={"flair": "f.nii"}))
    assert "b.nii" in str(caught.value) and "f.nii" in str(caught.value)


# ----------------------------------------------------------------- a whole run, synthetic
def _ball(centre, radius) -> np.ndarray:
    k, j, i = np.ogrid[tuple(slice(0, n) for n in WORKING_SHAPE_KJI)]
    return (k - centre[0]) ** 2 + (j - centre[1]) ** 2 + (i - centre[2]) ** 2 <= radius ** 2


@pytest.fixture(scope="module")
def synthetic_pair():
    """Two visits on the working grid (identity geometry): lesion A stable, B enlarging,
    N new, S segmented at follow-up only with an unchanged FLAIR (noise of the second
    segmentation), C resolved; FLAIR noise between the visits."""
    rng = np.random.default_rng(5)
    brain = _ball((91, 109, 91), 60)
    a, b0, b1 = _ball((80, 100, 70), 4), _ball((80, 100, 110), 3), _ball((80, 100, 110), 6)
    n, s, c = _ball((110, 120, 90), 4), _ball((60, 80, 90), 4), _ball((100, 80, 70), 4)
    flair = {"baseline": rng.normal(0, 0.3, WORKING_SHAPE_KJI).astype(np.float32),
             "followup": rng.normal(0, 0.3, WORKING_SHAPE_KJI).astype(np.float32)}
    for visit, lesions in (("baseline", (a, b0, s, c)), ("followup", (a, b1, n, s))):
        for lesion in lesions:
            flair[visit][lesion] += 4.0
    votes = {"baseline": a | b0 | c, "followup": a | b1 | n | s}
    for array in flair.values():
        array[~brain] = 0.0
    reference = working_reference()
    case = PairCase(
        images={v: {"flair": flair[v], "t1": np.where(brain, 1.0, 0.0).astype(np.float32)} for v in flair},
        brain_mask=brain.astype(np.uint8), t1_for_anatomy=brain.astype(np.float32),
        flair_native={v: reference for v in flair},
        working_to_flair={v: sitk.AffineTransform(3) for v in flair},
        baseline_to_followup=sitk.Euler3DTransform(),
        modalities_present={v: ["flair", "t1"] for v in flair}, t1_source={"baseline": "own", "followup": "baseline"})
    return case, votes, {"A": a, "B": b1, "N": n, "S": s, "C": c}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    bundle = random_bundle(ModelConfig(**TINY), n=1, seed=1)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model_file(path, bundle.config, [m.state_dict() for m in bundle.members], {"name": "tiny"})
    return path


def _run(case, votes, model, out, monkeypatch, tissue=None, **settings):
    calls = iter(["baseline", "followup"])

    def fake_predict(bundle, images, anatomy, brain_mask, **kwargs) -> Prediction:
        vote = votes[next(calls)]
        return Prediction(probability=vote * np.float32(0.9), mask=vote.astype(np.uint8), n_members=1,
                          device_used="cpu", seconds=0.0, mode="whole", patch_size=(0, 0, 0),
                          n_windows=1, crop=(slice(None),) * 3)

    zones = np.where(case.brain_mask > 0, 1, 0).astype(np.uint8)
    monkeypatch.setattr(longitudinal, "preprocess_pair", lambda *a, **k: case)
    monkeypatch.setattr(longitudinal, "compute_anatomy", lambda t1, brain: Anatomy(
        np.zeros((6,) + WORKING_SHAPE_KJI, np.float32), zones if tissue is None else tissue, zones))
    monkeypatch.setattr(longitudinal, "predict", fake_predict)
    # Real, distinct files for the input checks (the preprocessing that would use them is replaced).
    inputs = {name: _flair_file(out.parent, f"{name}.nii.gz", seed)
              for seed, name in enumerate(("b_flair", "f_flair", "b_t1"))}
    return longitudinal.longitudinal(inputs["b_flair"], inputs["f_flair"], baseline_t1=inputs["b_t1"],
                                     output_dir=out, model=str(model), device="cpu",
                                     min_lesion_mm3=0.0, **settings)


def test_whole_run_on_synthetic_visits(synthetic_pair, tiny_model, tmp_path, monkeypatch) -> None:
    case, votes, truth = synthetic_pair
    out = tmp_path / "out"
    result = _run(case, votes, tiny_model, out, monkeypatch)
    assert {p.name for p in out.iterdir()} == set(LONGITUDINAL_OUTPUT_FILES.values())
    codes = sitk.GetArrayFromImage(sitk.ReadImage(str(out / LONGITUDINAL_OUTPUT_FILES["change_labels"])))
    names = {code: name for name, code in CHANGE_CODES.items()}
    expected = {"A": "stable", "B": "enlarging", "N": "new", "S": "stable", "C": "resolved"}
    for lesion, name in expected.items():
        assert {names[int(v)] for v in np.unique(codes[truth[lesion]])} == {name}, lesion
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / LONGITUDINAL_OUTPUT_FILES["new_enlarged"])))
    assert np.array_equal(mask > 0, truth["N"] | (truth["B"] & ~votes["baseline"]))

    with (out / CHANGE_TABLE_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0].keys()) == CHANGE_COLUMN_NAMES
    assert sorted(r["class"] for r in rows) == sorted(expected.values())
    new = next(r for r in rows if r["class"] == "new")
    assert float(new["volume_baseline_mm3"]) == 0.0 and new["change_percent"] == ""
    assert float(new["volume_followup_mm3"]) == pytest.approx(truth["N"].sum())

    seg = slicerio.read_segmentation(str(out / CHANGE_SEGMENTATION_FILE))
    assert [s["name"] for s in seg["segments"]] == [f"{c.capitalize()} MS lesions" for c in CHANGE_CLASSES]
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["counts"] == {"new": 1, "enlarging": 1, "stable": 2, "shrinking": 0, "resolved": 1}
    assert summary["outputs"] == LONGITUDINAL_OUTPUT_FILES
    assert summary["t1_source"]["followup"] == "baseline"
    assert result.summary["counts"] == summary["counts"]

    page = (out / "report.html").read_text()
    assert "ALLNet longitudinal report" in page and page.count("<img") == 2 * 3  # new, enlarging, resolved
    again = _run(case, votes, tiny_model, tmp_path / "again", monkeypatch, report=False)
    assert not (tmp_path / "again" / "report.html").exists()
    assert "report" not in again.summary["outputs"]
    assert np.array_equal(sitk.GetArrayFromImage(again.change_labels), codes)
    assert (tmp_path / "again" / CHANGE_TABLE_FILE).read_bytes() == (out / CHANGE_TABLE_FILE).read_bytes()


def test_t2_at_one_visit_only_is_warned() -> None:
    one = longitudinal.input_warnings({"baseline": ["flair", "t1", "t2"], "followup": ["flair", "t1"]})
    assert len(one) == 1 and "baseline visit only" in one[0]
    assert longitudinal.input_warnings({"baseline": ["flair", "t1", "t2"],
                                        "followup": ["flair", "t1", "t2"]}) == []
    assert "T2W not given" in longitudinal.input_warnings({"baseline": ["flair", "t1"],
                                                           "followup": ["flair", "t1"]})[0]


# ----------------------------------------------------------------- real data
@pytest.mark.realdata
@pytest.mark.slow
def test_visits_of_two_people_are_refused(shared_data) -> None:
    from allnet.io import read_image

    paths = [shared_data / NATIVE / "patient01" / "study1_FLAIR.nii.gz",
             shared_data / NATIVE / "patient12" / "study2_FLAIR.nii.gz"]
    visits = [VisitImages(read_image(p, "flair"), names={"flair": str(p)}) for p in paths]
    with pytest.raises(InputError) as caught:
        pair.register_visits(*visits)
    assert "same person" in str(caught.value) and str(paths[0]) in str(caught.value)


@pytest.mark.realdata
@pytest.mark.slow
def test_visits_of_one_person_pass_the_checks(shared_data) -> None:
    from allnet.io import read_image

    folder = shared_data / NATIVE / "patient12"
    visits = [VisitImages(read_image(folder / f"{s}_FLAIR.nii.gz", "flair")) for s in ("study1", "study2")]
    transform, qc = pair.register_visits(*visits)
    assert qc["visit_edge_correlation"] >= pair.SAME_PERSON_MIN
    assert qc["visit_rotation_deg"] < 15.0


@pytest.mark.realdata
@pytest.mark.slow
def test_pair_preprocessing_with_one_t1_aligns_the_visits(shared_data) -> None:
    """patient12 with the follow-up's T1W left out: the follow-up borrows the baseline T1W,
    both visits land on one grid (their FLAIRs agree voxel by voxel), and the joint
    normalisation puts both on one scale (median 0, IQR 1.349 over the common brain)."""
    from allnet.io import read_image

    folder = shared_data / NATIVE / "patient12"

    def visit(study: str, t1: bool) -> VisitImages:
        names = {"flair": str(folder / f"{study}_FLAIR.nii.gz")}
        if t1:
            names["t1"] = str(folder / f"{study}_T1W.nii.gz")
        return VisitImages(read_image(names["flair"], "flair"),
                           read_image(names["t1"], "t1") if t1 else None, names=names)

    case = pair.preprocess_pair(visit("study1", True), visit("study2", False), device="cpu")
    assert case.t1_source == {"baseline": "own", "followup": "baseline"}
    assert case.modalities_present["followup"] == ["flair", "t1"]
    brain = case.brain_mask > 0
    assert 1.0e6 < brain.sum() < 2.0e6  # mm3 on the 1 mm grid: a plausible brain
    flairs = [case.images[v]["flair"][brain] for v in ("baseline", "followup")]
    assert np.corrcoef(*flairs)[0, 1] > 0.8  # the same anatomy in the same voxels
    for values in flairs:
        q25, median, q75 = np.percentile(values, [25, 50, 75])
        assert abs(median) < 0.05 and (q75 - q25) == pytest.approx(1.349, abs=0.05)
    # the borrowed T1W channel is the baseline's, seen through one consistent transform
    # (equal up to the rounding of two compositions of the same affine maps)
    assert np.allclose(case.images["baseline"]["t1"], case.images["followup"]["t1"], atol=1e-3)


def test_the_grey_matter_fraction_applies_to_both_visits(synthetic_pair, tiny_model, tmp_path, monkeypatch) -> None:
    """The plan's grey-matter fraction uses the one tissue segmentation of the head at both
    visits: the new lesion N lying wholly in grey matter is no lesion at follow-up, so no
    change is called there; the other lesions keep their classes."""
    from allnet.tissue import GM, WM

    case, votes, truth = synthetic_pair
    tissue = np.where(case.brain_mask > 0, WM, 0).astype(np.uint8)
    tissue[truth["N"]] = GM
    result = _run(case, votes, tiny_model, tmp_path / "out", monkeypatch, tissue=tissue,
                  max_grey_matter_fraction=0.99, report=False)
    assert result.summary["counts"] == {"new": 0, "enlarging": 1, "stable": 2, "shrinking": 0, "resolved": 1}
    assert not (sitk.GetArrayFromImage(result.followup_labels)[truth["N"]] > 0).any()
