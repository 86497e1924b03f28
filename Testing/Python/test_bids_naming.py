"""BIDS naming rules, session discovery and derivative names (no pipeline runs).

The official validator checks whole datasets (test_bids_app.py); these tests cover what it
does not see: names ALLNet refuses to build, how candidates are chosen or refused, and that
every output of a run has a derivative name.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from allnet import contract
from allnet.bids_app import columns_sidecar, derivative_name, write_tsv
from allnet.bids_inputs import Selection, find_sessions
from allnet.bids_naming import build_name, parse_name, strip_prefix
from allnet.errors import InputError


def test_parse_name_reads_entities_suffix_and_compound_extensions() -> None:
    name = parse_name("sub-01_ses-2_acq-3d_rec-norm_run-01_FLAIR.nii.gz")
    assert name.entities == {"sub": "01", "ses": "2", "acq": "3d", "rec": "norm", "run": "01"}
    assert (name.suffix, name.extension) == ("FLAIR", ".nii.gz")
    assert parse_name("sub-01_space-orig_desc-lesion_dseg.seg.nrrd").extension == ".seg.nrrd"


@pytest.mark.parametrize("name, problem", [
    ("ses-01_sub-01_T1w.nii.gz", "starts with sub"),
    ("sub-01_run-1_acq-x_T1w.nii.gz", "order"),
    ("sub-01_acq-a_acq-b_T1w.nii.gz", "twice"),
    ("sub-01_run-one_T1w.nii.gz", "non-negative integer"),
    ("sub-0_1_T1w.nii.gz", "key-value"),
    ("sub-01_foo-bar_T1w.nii.gz", "unknown BIDS entity"),
    ("sub-01_acq-a.b_T1w.nii.gz", "acq must be alphanumeric"),
    ("sub-01_T1-w.nii.gz", "suffix"),
    ("T1w.nii.gz", "entities and a suffix"),
])
def test_parse_name_refuses_names_against_the_rules(name: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_name(name)


def test_build_name_orders_entities_and_checks_values() -> None:
    assert build_name({"desc": "lesion", "space": "orig", "ses": "1", "sub": "01"}, "mask", ".nii.gz") \
        == "sub-01_ses-1_space-orig_desc-lesion_mask.nii.gz"
    with pytest.raises(ValueError, match="alphanumeric"):
        build_name({"sub": "01", "desc": "my-lesion"}, "mask", ".nii.gz")
    with pytest.raises(ValueError, match="needs the sub"):
        build_name({"desc": "lesion"}, "mask", ".nii.gz")
    assert strip_prefix("sub-01", "sub") == strip_prefix("01", "sub") == "01"
    with pytest.raises(ValueError):
        strip_prefix("sub_01", "sub")


def test_every_run_output_has_a_derivative_name_with_the_session_entities() -> None:
    # A new entry of OUTPUT_FILES must get a BIDS name (working_grid is refused by allnet bids).
    assert set(contract.OUTPUT_FILES) - {"working_grid"} == set(contract.BIDS_OUTPUTS)
    entities = {"sub": "01", "ses": "02"}
    names = {key: derivative_name(entities, key) for key in contract.BIDS_OUTPUTS}
    assert names["mask"] == "sub-01_ses-02_space-orig_desc-lesion_mask.nii.gz"
    assert names["probability"] == "sub-01_ses-02_space-orig_label-lesion_probseg.nii.gz"
    assert len(set(names.values())) == len(names)
    assert all(parse_name(n).entities["sub"] == "01" for n in names.values())
    assert derivative_name({"sub": "01"}, "mask") == "sub-01_space-orig_desc-lesion_mask.nii.gz"


def test_lesion_table_sidecar_describes_every_column_with_its_unit(tmp_path: Path) -> None:
    sidecar = columns_sidecar(contract.LESION_COLUMNS)
    assert list(sidecar) == list(contract.LESION_COLUMN_NAMES)
    assert sidecar["volume_mm3"] == {"Description": "lesion volume", "Units": "mm3"}
    assert "Units" not in sidecar["id"]
    write_tsv(tmp_path / "t.tsv", [{"id": 1, "volume_mm3": 2.5, "confidence": None}], contract.LESION_COLUMNS)
    header, row = (tmp_path / "t.tsv").read_text().splitlines()
    assert header.split("\t") == list(contract.LESION_COLUMN_NAMES)
    values = dict(zip(header.split("\t"), row.split("\t")))
    assert (values["id"], values["volume_mm3"], values["confidence"]) == ("1", "2.5", "n/a")
    assert json.loads((tmp_path / "t.json").read_text()) == sidecar


def _dataset(root: Path, files: list[str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.10.0"}')
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    return root


def test_sessions_are_found_by_entities_with_t2w_optional(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", [
        "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", "sub-01/ses-1/anat/sub-01_ses-1_FLAIR.nii.gz",
        "sub-01/ses-1/anat/sub-01_ses-1_T2w.nii.gz", "sub-01/ses-1/anat/sub-01_ses-1_T2w.json",
        "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii", "sub-01/ses-2/anat/sub-01_ses-2_FLAIR.nii.gz",
        "sub-02/anat/sub-02_T1w.nii.gz",  # no FLAIR: fails alone
        "sub-02/anat/sub-02_lesions.nii.gz", "sub-02/anat/notes.txt",
    ])
    sessions = find_sessions(root)
    assert [s.case_id for s in sessions] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02"]
    assert set(sessions[0].inputs) == {"t1", "t2", "flair"} and set(sessions[1].inputs) == {"t1", "flair"}
    assert not sessions[0].problem and "no FLAIR image" in sessions[2].problem
    assert sessions[2].folder == Path("sub-02")
    assert [s.case_id for s in find_sessions(root, ["sub-01"], ["2"])] == ["sub-01_ses-2"]
    with pytest.raises(InputError, match="no participant 03"):
        find_sessions(root, ["03"])
    with pytest.raises(InputError, match="no session 9"):
        find_sessions(root, None, ["ses-9"])
    with pytest.raises(InputError, match="dataset_description.json is missing"):
        find_sessions(tmp_path)


def test_several_candidates_are_refused_with_the_list_unless_selected(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "ds", [
        "sub-01/anat/sub-01_acq-mprage_T1w.nii.gz", "sub-01/anat/sub-01_acq-spgr_T1w.nii.gz",
        "sub-01/anat/sub-01_run-1_FLAIR.nii.gz", "sub-01/anat/sub-01_run-2_FLAIR.nii.gz",
    ])
    with pytest.raises(InputError) as refused:
        find_sessions(root)
    message = str(refused.value)
    assert "sub-01_acq-mprage_T1w.nii.gz, sub-01_acq-spgr_T1w.nii.gz" in message
    assert "--select T1w:ENTITY-LABEL" in message and "acq-mprage or acq-spgr" in message
    assert "run-1 or run-2" in message
    picked = [Selection.parse("T1w:acq-spgr"), Selection.parse("FLAIR:run-02")]
    (session,) = find_sessions(root, selections=picked)
    assert session.inputs["t1"].name == "sub-01_acq-spgr_T1w.nii.gz"
    assert session.inputs["flair"].name == "sub-01_run-2_FLAIR.nii.gz"  # run-02 is index 2
    (session,) = find_sessions(root, selections=[Selection.parse("acq-mprage"), Selection.parse("run-3")])
    assert session.problem == ("no FLAIR image in sub-01 matches --select run-3 (candidates: "
                               "sub-01_run-1_FLAIR.nii.gz, sub-01_run-2_FLAIR.nii.gz)")
    # A selection does not apply where no candidate has its entity (one FLAIR without run).
    (root / "sub-01/anat/sub-01_run-2_FLAIR.nii.gz").unlink()
    (root / "sub-01/anat/sub-01_run-1_FLAIR.nii.gz").rename(root / "sub-01/anat/sub-01_FLAIR.nii.gz")
    (session,) = find_sessions(root, selections=[Selection.parse("acq-mprage"), Selection.parse("run-3")])
    assert not session.problem and session.inputs["flair"].name == "sub-01_FLAIR.nii.gz"


@pytest.mark.parametrize("text", ["T1:acq-x", "acq", "sub-01", "acq-a_b"])
def test_selection_syntax_is_checked(text: str) -> None:
    with pytest.raises(ValueError):
        Selection.parse(text)


def test_bids_command_refuses_bad_requests_before_any_work(tmp_path: Path, capsys) -> None:
    from allnet import cli

    root = _dataset(tmp_path / "ds", ["sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_FLAIR.nii.gz"])
    out = tmp_path / "out"
    assert cli.main(["bids", str(root), str(root), "participant"]) == contract.EXIT_BAD_INPUT
    assert "must differ from the BIDS dataset" in capsys.readouterr().err
    assert cli.main(["bids", str(root), str(out), "participant", "--save-working-grid"]) == contract.EXIT_BAD_INPUT
    assert "--save-working-grid is not available" in capsys.readouterr().err
    assert cli.main(["bids", str(root), str(out), "participant", "--select", "T1:acq-x"]) == contract.EXIT_BAD_INPUT
    assert "expected [SUFFIX:]ENTITY-LABEL" in capsys.readouterr().err
    assert cli.main(["bids", str(root), str(out), "group"]) == contract.EXIT_BAD_INPUT
    assert "run the participant level first" in capsys.readouterr().err
    assert cli.main(["bids", str(root), str(out), "participant", "--workers", "0"]) == contract.EXIT_BAD_INPUT
    assert not out.exists()  # nothing written by a refused run


def _fake_run(work: Path, outputs: dict[str, str]) -> None:
    """A run folder as the pipeline leaves it: the listed files and summary.json."""
    work.mkdir(parents=True)
    for key, name in outputs.items():
        text = "id,volume_mm3\n1,12.5\n" if key == "table" else f"<{key}>"
        (work / name).write_text(text)
    (work / contract.SUMMARY_FILE).write_text(json.dumps(
        {"totals": {"count": 1}, contract.SUMMARY_OUTPUTS_KEY: outputs | {"summary": contract.SUMMARY_FILE}}))


def test_a_runs_listed_files_are_published_under_bids_names(tmp_path: Path) -> None:
    from allnet.bids_app import SessionRunner
    from allnet.contract import RunSettings

    raw = tmp_path / "raw"
    inputs = {"t1": raw / "sub-01/ses-2/anat/sub-01_ses-2_T1w.nii.gz",
              "flair": raw / "sub-01/ses-2/anat/sub-01_ses-2_acq-3d_FLAIR.nii.gz"}
    runner = SessionRunner(RunSettings(), raw)
    work, anat = tmp_path / "out/sub-01/ses-2/.work", tmp_path / "out/sub-01/ses-2/anat"
    _fake_run(work, {"mask": contract.MASK_FILE, "table": contract.TABLE_FILE, "report": contract.REPORT_FILE})
    runner._publish(work, anat, {"sub": "01", "ses": "2"}, inputs)
    assert sorted(p.name for p in anat.iterdir()) == [
        "sub-01_ses-2_desc-lesion_report.html", "sub-01_ses-2_desc-lesion_summary.json",
        "sub-01_ses-2_space-orig_desc-lesion_lesions.json", "sub-01_ses-2_space-orig_desc-lesion_lesions.tsv",
        "sub-01_ses-2_space-orig_desc-lesion_mask.json", "sub-01_ses-2_space-orig_desc-lesion_mask.nii.gz"]
    assert (anat / "sub-01_ses-2_desc-lesion_report.html").read_text() == "<report>"
    summary = json.loads((anat / "sub-01_ses-2_desc-lesion_summary.json").read_text())
    assert summary[contract.SUMMARY_OUTPUTS_KEY]["report"] == "sub-01_ses-2_desc-lesion_report.html"
    sidecar = json.loads((anat / "sub-01_ses-2_space-orig_desc-lesion_mask.json").read_text())
    assert sidecar["SpatialReference"] == "bids:raw:sub-01/ses-2/anat/sub-01_ses-2_acq-3d_FLAIR.nii.gz"
    table = (anat / "sub-01_ses-2_space-orig_desc-lesion_lesions.tsv").read_text().splitlines()
    assert table[0].split("\t") == list(contract.LESION_COLUMN_NAMES) and table[1].startswith("1\tn/a\t12.5\t")

    # An output without a BIDS name stops the session: nothing is published.
    work2, anat2 = tmp_path / "out/sub-02/.work", tmp_path / "out/sub-02/anat"
    _fake_run(work2, {"mask": contract.MASK_FILE, "extra": "extra.txt"})
    with pytest.raises(RuntimeError, match="'extra'.*no BIDS-Derivatives name"):
        runner._publish(work2, anat2, {"sub": "02"}, inputs)
    assert not anat2.exists()
