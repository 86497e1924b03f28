"""Tests of `allnet evaluate` (allnet.evaluate): case discovery, outputs, errors, real data."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from allnet import evaluate as E
from allnet import metrics as M
from allnet.contract import SettingError
from allnet.errors import EXIT_OK, InputError

SPACING = (1.0, 1.0, 1.5)
ORIGIN = (-10.0, 20.0, 5.0)


def write(path: Path, array: np.ndarray, spacing=SPACING, origin=ORIGIN) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def make_case(seed: int, shape=(20, 24, 22)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference uint8, prediction uint8, probability float32) with a few box lesions."""
    rng = np.random.default_rng(seed)
    ref = np.zeros(shape, np.uint8)
    for _ in range(4):
        c = rng.integers(2, np.array(shape) - 6)
        ref[c[0]:c[0] + 3, c[1]:c[1] + rng.integers(2, 5), c[2]:c[2] + 3] = 1
    prob = np.clip(0.7 * ref + 0.3 * rng.random(shape) ** 4, 0, 1).astype(np.float32)
    prob[np.roll(ref, 2, axis=2) > 0] += 0.25  # partly shifted prediction
    prob = np.clip(prob, 0, 1).astype(np.float32)
    return ref, (prob >= 0.5).astype(np.uint8), prob


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="allnet")
    E.register(parser.add_subparsers())
    args = parser.parse_args(["evaluate", *map(str, argv)])
    return args.func(args)


def test_single_case_files(tmp_path, capsys):
    ref, pred, _ = make_case(0)
    rp, pp = write(tmp_path / "ref.nii.gz", ref), write(tmp_path / "pred.nii.gz", pred)
    out = tmp_path / "out"
    assert cli(pp, rp, "-o", out, "--connectivity", "26") == EXIT_OK
    expected = M.evaluate_case(pred, ref, SPACING, connectivity=26)
    printed = capsys.readouterr().out
    assert "DSC" in printed and f"{expected.dsc:.3f}" in printed
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 1 and rows[0]["case"] == "pred"
    assert float(rows[0]["dsc"]) == pytest.approx(expected.dsc)
    assert float(rows[0]["ref_volume_mm3"]) == pytest.approx(ref.sum() * 1.5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["connectivity"] == 26
    assert summary["summary"]["mean"]["ltpr"] == pytest.approx(expected.ltpr)
    assert summary["summary"]["isbi_score"] is None  # one case: no volume correlation
    assert not (out / "curves.png").exists()         # no probability map beside pred.nii.gz
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "summary.json"]  # no temp files left


def test_cohort_of_case_folders_with_probabilities_and_comparison(tmp_path):
    pred_dir, ref_dir, other_dir = tmp_path / "pred", tmp_path / "ref", tmp_path / "other"
    expected, expected_other = [], []
    for i in range(3):
        ref, pred, prob = make_case(i)
        write(ref_dir / f"case{i}.nii.gz", ref)                        # flat reference files
        write(pred_dir / f"case{i}" / E.MASK_NAME, pred)                # allnet --cohort layout
        write(pred_dir / f"case{i}" / E.PROBABILITY_NAME, prob)
        other = np.roll(pred, 1, axis=0)
        write(other_dir / f"case{i}.nii.gz", other)
        expected.append(M.evaluate_case(pred, ref, SPACING, case=f"case{i}"))
        expected_other.append(M.evaluate_case(other, ref, SPACING, case=f"case{i}"))
    out = tmp_path / "out"
    assert cli(pred_dir, ref_dir, "-o", out, "--compare", other_dir) == EXIT_OK
    assert (out / "curves.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    want = M.summarise(expected)
    assert summary["summary"]["isbi_score"] == pytest.approx(want["isbi_score"])
    assert summary["summary"]["volume_correlation"] == pytest.approx(want["volume_correlation"])
    assert 0 < summary["voxel_average_precision"] <= 1
    assert len(summary["lesion_curve"]["ltpr"]) == len(M.DEFAULT_THRESHOLDS)
    tests = {r["metric"]: r for r in summary["comparison"]["paired_t_tests"]}
    want_tests = {r["metric"]: r for r in M.paired_tests(expected, expected_other)}
    assert tests["dsc"]["t"] == pytest.approx(want_tests["dsc"]["t"])
    assert tests["dsc"]["mean_diff"] == pytest.approx(
        np.mean([a.dsc - b.dsc for a, b in zip(expected, expected_other)]))
    rows = list(csv.DictReader((out / "metrics_compare.csv").open()))
    assert [r["case"] for r in rows] == ["case0", "case1", "case2"]


def test_explicit_probability_folder_and_allnet_output_folder(tmp_path):
    ref, pred, prob = make_case(5)
    write(tmp_path / "ref.nii.gz", ref)
    write(tmp_path / "seg" / E.MASK_NAME, pred)
    write(tmp_path / "probs" / "p.nii.gz", prob)
    cases = E.find_cases(tmp_path / "seg", tmp_path / "ref.nii.gz")
    assert cases[0].name == "seg" and cases[0].probability is None
    cases = E.find_cases(tmp_path / "seg", tmp_path / "ref.nii.gz", tmp_path / "probs" / "p.nii.gz")
    result = E.evaluate_cases(cases)
    assert result.pr_curve is not None and result.lesion_curve.n_scans == 1


@pytest.mark.parametrize(
    "problem, match",
    [("origin", "origin"), ("spacing", "spacing"), ("size", "size")],
)
def test_grid_mismatch_names_the_file(tmp_path, problem, match):
    ref, pred, _ = make_case(1)
    rp = write(tmp_path / "ref.nii.gz", ref)
    if problem == "origin":
        pp = write(tmp_path / "pred.nii.gz", pred, origin=(-10.0, 20.0, 7.0))
    elif problem == "spacing":
        pp = write(tmp_path / "pred.nii.gz", pred, spacing=(1.0, 1.0, 1.0))
    else:
        pp = write(tmp_path / "pred.nii.gz", pred[:, :, :-1].copy())
    with pytest.raises(InputError, match=match) as info:
        cli(pp, rp)
    assert info.value.path == str(pp) and "ref.nii.gz" in str(info.value)


def test_bad_inputs(tmp_path):
    ref, pred, prob = make_case(2)
    rp, pp = write(tmp_path / "ref.nii.gz", ref), write(tmp_path / "pred.nii.gz", pred)
    with pytest.raises(InputError, match="not found") as info:
        cli(tmp_path / "missing.nii.gz", rp)
    assert info.value.path.endswith("missing.nii.gz")
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot be read"):
        cli(bad, rp)
    with pytest.raises(InputError, match="not a mask"):
        cli(write(tmp_path / "prob.nii.gz", prob), rp)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        cli(pp, rp, "--probability", write(tmp_path / "p2.nii.gz", prob * 3))
    with pytest.raises(InputError, match="two files or two folders"):
        cli(pp, tmp_path)


def test_bad_output_location_and_minimum_size_are_refused_before_scoring(tmp_path):
    ref, pred, _ = make_case(3)
    rp, pp = write(tmp_path / "ref.nii.gz", ref), write(tmp_path / "pred.nii.gz", pred)
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    with pytest.raises(InputError, match="not a folder") as info:
        cli(pp, rp, "-o", a_file)
    assert info.value.path.endswith("taken.txt")
    for bad in ("nan", "inf", "-1"):  # segment's bounds for the same option
        with pytest.raises(SettingError, match="min-lesion-mm3"):
            cli(pp, rp, "--min-lesion-mm3", bad)


def test_rerun_into_the_same_folder_leaves_no_file_of_the_earlier_run(tmp_path):
    ref, pred, prob = make_case(4)
    rp = write(tmp_path / "ref" / "c.nii.gz", ref)
    pp = write(tmp_path / "pred" / "c.nii.gz", pred)
    prob_file = write(tmp_path / "prob.nii.gz", prob)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert cli(pp, rp, "--probability", prob_file, "-o", out) == EXIT_OK
    assert (out / "curves.png").is_file()
    assert cli(pp, rp, "--no-curves", "-o", out) == EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == ["metrics.csv", "notes.txt", "summary.json"]
    assert "curves" not in json.loads((out / "summary.json").read_text())["outputs"]


def test_unmatched_cases_in_folders(tmp_path):
    ref, pred, _ = make_case(3)
    for name in ("a", "b"):
        write(tmp_path / "ref" / f"{name}.nii.gz", ref)
    write(tmp_path / "pred" / "a.nii.gz", pred)
    with pytest.raises(InputError, match="no file for reference case"):
        cli(tmp_path / "pred", tmp_path / "ref")
    write(tmp_path / "pred" / "b.nii.gz", pred)
    write(tmp_path / "pred" / "c.nii.gz", pred)
    with pytest.raises(InputError, match="have no reference"):
        cli(tmp_path / "pred", tmp_path / "ref")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no cases found"):
        cli(tmp_path / "empty", tmp_path / "ref")


@pytest.mark.realdata
def test_real_longitudinal_masks_are_plausible(shared_data, tmp_path):
    """P14 at visit T2 scored against visit T3 (same patient, months apart, both on the MNI grid)."""
    root = shared_data / "mslesseg" / "P14"
    pred, ref = root / "T2" / "P14_T2_MASK.nii.gz", root / "T3" / "P14_T3_MASK.nii.gz"
    if not (pred.is_file() and ref.is_file()):
        pytest.skip(f"mslesseg P14 masks not found under {root}")
    out = tmp_path / "out"
    assert cli(pred, ref, "-o", out) == EXIT_OK
    row = next(csv.DictReader((out / "metrics.csv").open()))
    m = {k: float(v) for k, v in row.items() if k != "case"}
    # Most lesion volume persists between visits, yet readings differ: high but imperfect overlap.
    assert 0.6 < m["dsc"] < 0.95
    assert 0.6 < m["ppv"] < 1 and 0.6 < m["tpr"] < 1
    assert 0.5 < m["ltpr"] < 1 and 0 < m["lfpr"] < 0.6
    assert 10 <= m["n_ref_lesions"] <= 60 and 10 <= m["n_pred_lesions"] <= 60
    assert 0.5 < m["pred_volume_ml"] / m["ref_volume_ml"] < 2
    assert m["ref_volume_mm3"] == pytest.approx(
        np.count_nonzero(sitk.GetArrayViewFromImage(sitk.ReadImage(str(ref)))))  # 1 mm grid
    # 6-connectivity can only split lesions, never merge them.
    assert cli(pred, ref, "-o", tmp_path / "c6", "--connectivity", "6") == EXIT_OK
    row6 = next(csv.DictReader((tmp_path / "c6" / "metrics.csv").open()))
    assert int(row6["n_ref_lesions"]) >= int(row["n_ref_lesions"])
