"""``allnet bids`` end to end on a small BIDS dataset of real scans (MNI-grid cases,
``--preprocessed``, a tiny random model, 2 Dask workers), checked by the official validator.

Dataset: sub-01 with two sessions (ses-01 without T2w; ses-02 with two FLAIR runs, picked
with --select) and sub-02 whose FLAIR is a truncated file (the session fails alone).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from allnet import cli, contract
from allnet.bids_app import session_output_names
from allnet.model import ModelConfig, random_bundle, save_model_file

from conftest import TINY_MODEL

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

VALIDATOR = "bids-validator-deno"


def build_dataset(root: Path, data: Path) -> Path:
    """The test dataset from ../shared/data (files copied, the FLAIR of sub-02 truncated)."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "ALLNet BIDS test", "BIDSVersion": "1.10.0", "DatasetType": "raw",
        "License": "CC-BY-4.0", "Authors": ["Lesjak et al. 2018", "Guarnera et al. 2025"]}))
    (root / "README.md").write_text("MNI-grid scans of the Lesjak 2018 and MSLesSeg datasets "
                                    "arranged as a BIDS dataset for the allnet bids tests.\n")
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    p14, p07 = data / "mslesseg" / "P14", data / "lesjak2018" / "mni" / "patient07"
    files = {
        "sub-01/ses-01/anat/sub-01_ses-01_T1w.nii.gz": p14 / "T1" / "P14_T1_T1.nii.gz",
        "sub-01/ses-01/anat/sub-01_ses-01_FLAIR.nii.gz": p14 / "T1" / "P14_T1_FLAIR.nii.gz",
        "sub-01/ses-02/anat/sub-01_ses-02_T1w.nii.gz": p14 / "T2" / "P14_T2_T1.nii.gz",
        "sub-01/ses-02/anat/sub-01_ses-02_T2w.nii.gz": p14 / "T2" / "P14_T2_T2.nii.gz",
        "sub-01/ses-02/anat/sub-01_ses-02_run-1_FLAIR.nii.gz": p14 / "T2" / "P14_T2_FLAIR.nii.gz",
        "sub-01/ses-02/anat/sub-01_ses-02_run-2_FLAIR.nii.gz": p14 / "T3" / "P14_T3_FLAIR.nii.gz",
        "sub-02/ses-01/anat/sub-02_ses-01_T1w.nii.gz": p07 / "T1.nii.gz",
        "sub-02/ses-01/anat/sub-02_ses-01_T2w.nii.gz": p07 / "T2.nii.gz",
        "sub-02/ses-01/anat/sub-02_ses-01_FLAIR.nii.gz": p07 / "FLAIR.nii.gz",
    }
    for rel, source in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / rel)
    broken = root / "sub-02/ses-01/anat/sub-02_ses-01_FLAIR.nii.gz"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 3])  # header intact, data cut
    return root


def validator_errors(dataset: Path) -> list[str]:
    """Errors of the official BIDS validator (skips the test when it is not installed)."""
    exe = shutil.which(VALIDATOR)
    if exe is None:
        pytest.skip(f"{VALIDATOR} is not installed (pip install bids-validator-deno)")
    run = subprocess.run([exe, str(dataset), "--json"], capture_output=True, text=True, timeout=600)
    report = json.loads(run.stdout)
    return [f"{i['code']} {i.get('location', '')}" for i in report["issues"]["issues"]
            if i["severity"] == "error"]


@pytest.fixture(scope="module")
def bids_run(tmp_path_factory, shared_data: Path) -> dict:
    tmp = tmp_path_factory.mktemp("bids")
    dataset = build_dataset(tmp / "ds", shared_data)
    bundle = random_bundle(ModelConfig(**TINY_MODEL), n=1)
    model = tmp / "tiny.pt"
    save_model_file(model, bundle.config, [m.state_dict() for m in bundle.members],
                    {"name": "tiny", "inference_plan": {"threshold": 0.4, "min_lesion_mm3": 0.0}})
    out = tmp / "derivatives" / "allnet"
    common = ["--model", str(model), "--preprocessed", "--device", "cpu"]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        refused = cli.main(["bids", str(dataset), str(out), "participant", *common])
        participant = cli.main(["bids", str(dataset), str(out), "participant", "--workers", "2",
                                "--select", "FLAIR:run-1", *common])
        group = cli.main(["bids", str(dataset), str(out), "group", "--select", "FLAIR:run-1"])
    first_err = stderr.getvalue()
    summaries = sorted(out.glob("sub-*/ses-*/anat/*_summary.json"))
    stamps = [p.stat().st_mtime_ns for p in summaries]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        resumed = cli.main(["bids", str(dataset), str(out), "participant", "--resume",
                            "--select", "FLAIR:run-1", *common])
    return {"dataset": dataset, "out": out, "codes": (refused, participant, group, resumed),
            "stderr": first_err, "resume_stderr": stderr.getvalue(),
            "rewritten": [p for p, t in zip(summaries, stamps) if p.stat().st_mtime_ns != t]}


def test_exit_codes_and_messages(bids_run: dict) -> None:
    assert bids_run["codes"] == (contract.EXIT_BAD_INPUT, contract.EXIT_BATCH_FAILURES, contract.EXIT_OK,
                                 contract.EXIT_BATCH_FAILURES)
    err = bids_run["stderr"]
    # Two FLAIR runs without --select: refused before any work, the candidates listed.
    assert "sub-01_ses-02_run-1_FLAIR.nii.gz, sub-01_ses-02_run-2_FLAIR.nii.gz" in err
    assert "--select FLAIR:ENTITY-LABEL" in err
    # The truncated file fails its session, named; the others are segmented.
    assert "FAILED sub-02_ses-01:" in err and "sub-02_ses-01_FLAIR.nii.gz" in err
    assert "2 of 3 sessions segmented" in err


def test_resume_skips_finished_sessions_and_reruns_the_failed_one(bids_run: dict) -> None:
    err = bids_run["resume_stderr"]
    assert "sub-01_ses-01: resumed" in err and "sub-01_ses-02: resumed" in err
    assert "FAILED sub-02_ses-01:" in err and bids_run["rewritten"] == []


def test_input_dataset_passes_the_validator(bids_run: dict) -> None:
    assert validator_errors(bids_run["dataset"]) == []


def test_derivatives_pass_the_validator(bids_run: dict) -> None:
    assert validator_errors(bids_run["out"]) == []


def test_participant_level_writes_bids_derivatives_per_session(bids_run: dict) -> None:
    out = bids_run["out"]
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    (generated,) = description["GeneratedBy"]
    assert generated["Name"] == "ALLNet" and generated["Version"] and "model tiny" in generated["Description"]
    assert not (out / "sub-02" / "ses-01").exists()  # the failed session left nothing
    logged = json.loads((out / contract.BIDS_LOGS_DIR / "sub-02_ses-01.json").read_text())
    assert logged["status"] == "failed" and logged["exit_code"] == contract.EXIT_BAD_INPUT
    assert not list(out.rglob(".*work*")) and not list(out.rglob(".*tmp*"))
    for folder, prefix in (("sub-01/ses-01/anat", "sub-01_ses-01"), ("sub-01/ses-02/anat", "sub-01_ses-02")):
        anat = out / folder
        summary = json.loads((anat / f"{prefix}_desc-lesion_summary.json").read_text())
        listed = summary[contract.SUMMARY_OUTPUTS_KEY]
        assert listed["mask"] == f"{prefix}_space-orig_desc-lesion_mask.nii.gz"
        assert {"mask", "probability", "labels", "segmentation", "table", "summary"} <= set(listed)
        sidecars = {n[: -len(".nii.gz")] + ".json" for n in listed.values() if n.endswith(".nii.gz")}
        table_sidecar = listed["table"][: -len(".tsv")] + ".json"
        assert sorted(p.name for p in anat.iterdir()) == sorted({*listed.values(), *sidecars, table_sidecar})
        # a rerun removes what it does not write again: every file here is one the session owns
        sub, ses = prefix.split("_")
        owned = session_output_names({"sub": sub[4:], "ses": ses[4:]})
        assert {p.name for p in anat.iterdir()} <= owned
        mask_sidecar = json.loads((anat / f"{prefix}_space-orig_desc-lesion_mask.json").read_text())
        assert mask_sidecar["Type"] == "Lesion"
        assert mask_sidecar["SpatialReference"].startswith(f"bids:raw:{folder}/{prefix}")
        assert mask_sidecar["SpatialReference"].endswith("FLAIR.nii.gz")
    ses1 = json.loads((out / "sub-01/ses-01/anat/sub-01_ses-01_desc-lesion_summary.json").read_text())
    assert ses1["modalities_present"] == ["t1", "flair"]  # the session without T2w
    ses2 = json.loads((out / "sub-01/ses-02/anat/sub-01_ses-02_desc-lesion_summary.json").read_text())
    assert ses2["inputs"]["flair"].endswith("sub-01_ses-02_run-1_FLAIR.nii.gz")


def _tsv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def test_group_level_merges_tables_and_lists_every_session(bids_run: dict) -> None:
    out = bids_run["out"]
    sessions = _tsv(out / contract.BIDS_GROUP_SESSIONS_FILE)
    assert [(r["participant_id"], r["session_id"], r["status"]) for r in sessions] == [
        ("sub-01", "ses-01", "ok"), ("sub-01", "ses-02", "ok"), ("sub-02", "ses-01", "missing")]
    assert (sessions[0]["modalities"], sessions[1]["modalities"]) == ("t1+flair", "t1+flair+t2")
    assert "T2W not given" in sessions[0]["note"] and sessions[0]["model"].startswith("tiny")
    assert sessions[2]["note"].startswith("failed: ") and "sub-02_ses-01_FLAIR.nii.gz" in sessions[2]["note"]
    lesions = _tsv(out / contract.BIDS_GROUP_LESIONS_FILE)
    for row in sessions[:2]:
        anat = out / row["participant_id"] / row["session_id"] / "anat"
        own = _tsv(next(anat.glob("*_lesions.tsv")))
        assert len(own) == int(row["lesion_count"])
        merged = [r for r in lesions if (r["participant_id"], r["session_id"]) == (row["participant_id"], row["session_id"])]
        assert [r["volume_mm3"] for r in merged] == [r["volume_mm3"] for r in own]
    for name in (contract.BIDS_GROUP_SESSIONS_FILE, contract.BIDS_GROUP_LESIONS_FILE):
        sidecar = json.loads((out / name.replace(".tsv", ".json")).read_text())
        assert list(sidecar) == list(_tsv(out / name)[0])  # every column described
    assert json.loads((out / contract.BIDS_GROUP_SESSIONS_FILE.replace(".tsv", ".json")).read_text())[
        "total_volume_ml"]["Units"] == "mL"
