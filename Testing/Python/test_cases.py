"""Input discovery by name and the cohort batch runner."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from allnet.cases import find_inputs, modality_of_name, run_cohort
from allnet.errors import InputError


@pytest.mark.parametrize("name, role", [
    ("FLAIR.nii.gz", "flair"), ("study1_T1W.nii.gz", "t1"), ("study1_T2W.nii.gz", "t2"),
    ("P14_T2_T1.nii.gz", "t1"),      # visit "T2", modality T1W: the last modality token wins
    ("P14_T1_FLAIR.nii.gz", "flair"), ("sub-01_T2w.nrrd", "t2"), ("t1_mprage.mha", "t1"),
    ("P14_T3_MASK.nii.gz", None), ("lesions.nii.gz", None), ("T1_lesion_seg.nii.gz", None),
    ("notes.txt", None), ("Axial FLAIR 3mm", "flair"),
])
def test_modality_of_name(name: str, role: str | None) -> None:
    assert modality_of_name(name) == role


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_find_inputs_with_and_without_t2(tmp_path: Path) -> None:
    _touch(tmp_path / "a", "P14_T2_T1.nii.gz", "P14_T2_FLAIR.nii.gz", "P14_T2_T2.nii.gz", "P14_T2_MASK.nii.gz")
    found = find_inputs(tmp_path / "a")
    assert {k: v.name for k, v in found.items()} == {
        "t1": "P14_T2_T1.nii.gz", "flair": "P14_T2_FLAIR.nii.gz", "t2": "P14_T2_T2.nii.gz"}
    _touch(tmp_path / "b", "T1.nii.gz", "FLAIR.nii.gz")
    assert set(find_inputs(tmp_path / "b")) == {"t1", "flair"}


def test_find_inputs_errors_name_the_folder(tmp_path: Path) -> None:
    _touch(tmp_path / "no_flair", "T1.nii.gz", "T2.nii.gz")
    with pytest.raises(InputError, match="no_flair.*no FLAIR"):
        find_inputs(tmp_path / "no_flair")
    _touch(tmp_path / "two", "T1.nii.gz", "t1w_repeat.nii.gz", "FLAIR.nii.gz")
    with pytest.raises(InputError, match="several candidate T1"):
        find_inputs(tmp_path / "two")


def test_cohort_keeps_going_past_a_failed_case(tmp_path: Path) -> None:
    _touch(tmp_path / "cases" / "good", "T1.nii.gz", "FLAIR.nii.gz")
    _touch(tmp_path / "cases" / "bad", "T1.nii.gz")  # no FLAIR
    _touch(tmp_path / "cases" / "late", "T1.nii.gz", "FLAIR.nii.gz")
    from allnet.lesions import Lesion

    from allnet.lesions import write_lesions_csv

    def run_case(inputs, out):  # writes what a run writes: the table and the summary listing it
        lesion = Lesion(id=1, voxel_count=10, volume_mm3=10.0, centroid_ras=(1.0, 2.0, 3.0),
                        bbox=((0, 0, 0), (1, 1, 1)), mean_probability=0.9, max_probability=1.0,
                        location="deep white matter")
        write_lesions_csv([lesion], out / "lesions.csv")
        (out / "summary.json").write_text(json.dumps({
            "totals": {"count": 1, "total_volume_ml": 0.01}, "timings_s": {"total": 2.0},
            "outputs": {"table": "lesions.csv", "summary": "summary.json"}}))

    outcomes = run_cohort(tmp_path / "cases", tmp_path / "out", run_case)
    assert [(o.case_id, o.status) for o in outcomes] == [("bad", "failed"), ("good", "ok"), ("late", "ok")]
    assert "no FLAIR" in outcomes[0].error and outcomes[0].exit_code == 2
    merged = (tmp_path / "out" / "lesions_all.csv").read_text().splitlines()
    assert merged[0].startswith("case,") and len(merged) == 3
    summary = (tmp_path / "out" / "cohort_summary.csv").read_text()
    assert "bad,failed" in summary and "good,ok" in summary
    cohort_page = (tmp_path / "out" / "cohort_report.html").read_text(encoding="utf-8")
    assert "3 cases: 2 segmented, 1 failed" in cohort_page and "no FLAIR" in cohort_page
    run_cohort(tmp_path / "cases", tmp_path / "quiet", run_case, report=False)
    assert not (tmp_path / "quiet" / "cohort_report.html").exists()
