"""One-head check (allnet.preprocessing.headcheck): same head passes, another head is refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from allnet.contract import EXIT_BAD_INPUT
from allnet.errors import InputError
from allnet.preprocessing import headcheck


@pytest.fixture(scope="module")
def template_arrays() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A FLAIR-like and a T1W-like image of the template head, and another 'head': the T1W
    warped smoothly by up to 6 mm (same outline, gyri and ventricles elsewhere)."""
    from allnet.templates import load_template

    t1 = sitk.GetArrayFromImage(load_template().t1)
    brain = t1 > 0
    flair = np.where(brain, 1.2 - t1, 0.0).astype(np.float32)  # CSF bright... dark WM, like T2
    k, j, i = np.indices(t1.shape, dtype=np.float32)
    warp = [k + 6 * np.sin(j / 9.0), j + 6 * np.sin(i / 11.0), i + 6 * np.sin(k / 7.0)]
    other = ndimage.map_coordinates(t1, warp, order=1).astype(np.float32)
    return {"flair": flair, "t1": t1, "t2": other}, brain


def test_same_head_passes_and_a_warped_head_does_not(template_arrays):
    arrays, brain = template_arrays
    matches = {m.role: m for m in headcheck.measure_working(arrays, brain)}
    assert matches["t1"].same_head and matches["t1"].edge_correlation > 0.8
    assert not matches["t2"].same_head
    assert matches["t2"].edge_correlation < headcheck.EDGE_CORRELATION_MIN_MNI
    assert matches["t1"].nmi > matches["t2"].nmi > 1.0
    assert matches["t1"].to_dict()["same_head"] is True


def test_mismatch_error_names_both_files_or_warns_when_allowed(template_arrays):
    arrays, brain = template_arrays
    matches = headcheck.measure_working(arrays, brain)
    paths = {"t1": "/data/a/T1.nii.gz", "t2": "/data/b/T2.nii.gz", "flair": "/data/a/FLAIR.nii.gz"}
    with pytest.raises(InputError) as error:
        headcheck.check_same_head(matches, paths)
    assert error.value.exit_code == EXIT_BAD_INPUT
    assert error.value.path == "/data/b/T2.nii.gz" and "/data/a/FLAIR.nii.gz" in str(error.value)
    assert "--allow-mismatch" in str(error.value)
    warnings = headcheck.check_same_head(matches, paths, allow_mismatch=True)
    assert len(warnings) == 1 and "T2W" in warnings[0] and "/data/a/FLAIR.nii.gz" in warnings[0]
    assert headcheck.check_same_head(matches[:1], paths) == []  # the T1W alone is fine


def test_empty_brain_is_not_a_match():
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    match = headcheck.similarity(image, image, np.zeros((20, 20, 20), bool), "t1", 0.5)
    assert not match.same_head


# -- real data ---------------------------------------------------------------------------------
def _mni(folder: Path, names: dict[str, str]) -> dict[str, np.ndarray]:
    return {role: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / name), sitk.sitkFloat32))
            for role, name in names.items() if (folder / name).exists()}


@pytest.mark.realdata
def test_every_mni_case_passes_and_swapped_people_do_not(shared_data):
    mni = shared_data / "lesjak2018" / "mni"
    cases = {p: _mni(mni / p, {"flair": "FLAIR.nii.gz", "t1": "T1.nii.gz", "t2": "T2.nii.gz"})
             for p in ("patient07", "patient19")}
    for visit in ("T1", "T2", "T3"):
        cases[f"P14 {visit}"] = _mni(shared_data / "mslesseg" / "P14" / visit,
                                     {r: f"P14_{visit}_{m}.nii.gz" for r, m in
                                      (("flair", "FLAIR"), ("t1", "T1"), ("t2", "T2"))})
    for name, arrays in cases.items():
        brain = ndimage.binary_fill_holes(arrays["flair"] > 0)
        for match in headcheck.measure_working(arrays, brain):
            assert match.same_head, (name, match)
    for flair_case, other in (("patient07", "patient19"), ("patient19", "P14 T2"), ("P14 T1", "patient07")):
        arrays = {"flair": cases[flair_case]["flair"], "t1": cases[other]["t1"], "t2": cases[other]["t2"]}
        brain = ndimage.binary_fill_holes(arrays["flair"] > 0)
        for match in headcheck.measure_working(arrays, brain):
            assert not match.same_head, (flair_case, other, match)


@pytest.mark.realdata
def test_patient01_t1w_with_patient12_flair_is_refused(shared_data):
    from allnet.io import read_image
    from allnet.preprocessing.pipeline import preprocess

    native = shared_data / "lesjak2018" / "native"
    paths = {"t1": str(native / "patient01" / "study1_T1W.nii.gz"),
             "flair": str(native / "patient12" / "study1_FLAIR.nii.gz")}
    with pytest.raises(InputError) as error:
        preprocess(read_image(paths["t1"], "t1"), read_image(paths["flair"], "flair"), None, paths=paths)
    assert error.value.exit_code == EXIT_BAD_INPUT
    assert error.value.path == paths["t1"] and paths["flair"] in error.value.problem


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("patient, study", [("patient01", "study1"), ("patient01", "study2"),
                                            ("patient12", "study1"), ("patient12", "study2"),
                                            ("patient04", "study1")])
def test_every_native_visit_passes(shared_data, patient, study):
    from allnet.io import read_image
    from allnet.preprocessing import registration
    from allnet.preprocessing.brain import extract_brain

    folder = shared_data / "lesjak2018" / "native" / patient
    images = {role: read_image(folder / f"{study}_{name}.nii.gz", role)
              for role, name in (("flair", "FLAIR"), ("t1", "T1W"), ("t2", "T2W"))}
    t1_mask = extract_brain(images["t1"])
    flair_to_t1 = registration.register_to_flair(images["flair"], images["t1"], moving_brain_mask=t1_mask)
    flair_to_t2 = registration.register_to_flair(images["flair"], images["t2"], moving_name="T2W")
    for role, transform in (("t1", flair_to_t1), ("t2", flair_to_t2)):
        match = headcheck.measure_native(images["flair"], images[role], transform, t1_mask, flair_to_t1, role)
        assert match.same_head, match
        assert match.brain_inside_fov > 0.9


@pytest.fixture()
def tiny_model(tmp_path: Path) -> Path:
    from allnet.model import ModelConfig, random_bundle, save_model_file

    bundle = random_bundle(ModelConfig(base_channels=4, depth=2, max_channels=8, head_channels=4,
                                       head_mlp=(4,)), n=1)
    path = tmp_path / "tiny.pt"
    save_model_file(path, bundle.config, [m.state_dict() for m in bundle.members], {"name": "tiny"})
    return path


@pytest.mark.realdata
def test_cli_refuses_another_persons_t1w_with_exit_2_and_no_output(shared_data, tiny_model, tmp_path):
    import subprocess
    import sys

    mni = shared_data / "lesjak2018" / "mni"
    t1, flair = mni / "patient19" / "T1.nii.gz", mni / "patient07" / "FLAIR.nii.gz"
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "allnet", "segment", "--t1", str(t1), "--flair", str(flair),
                           "--preprocessed", "--model", str(tiny_model), "-o", str(out), "--progress", "none"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert str(t1) in proc.stderr and str(flair) in proc.stderr and "same head" in proc.stderr
    assert not out.exists()


@pytest.mark.realdata
def test_allow_mismatch_runs_with_a_warning_in_summary_and_report(shared_data, tiny_model, tmp_path):
    import json

    from allnet.pipeline import segment

    mni = shared_data / "lesjak2018" / "mni"
    t1, flair = mni / "patient19" / "T1.nii.gz", mni / "patient07" / "FLAIR.nii.gz"
    result = segment(t1, flair, output_dir=tmp_path / "out", preprocessed=True, model=str(tiny_model),
                     allow_mismatch=True)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    mismatch = [w for w in summary["warnings"] if "same head" in w]
    assert len(mismatch) == 1 and str(t1) in mismatch[0] and str(flair) in mismatch[0]
    assert summary["qc"]["head_check"]["t1"]["same_head"] is False
    assert summary["outputs"]["report"] == "report.html" and "report" in summary["timings_s"]
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "same head" in report and result.files["report"].is_file()
