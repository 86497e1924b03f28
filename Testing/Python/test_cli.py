"""The ``allnet`` command: help, exit codes, messages, no partial outputs, progress lines."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from allnet import cli, pipeline
from allnet.grid import working_reference
from allnet.progress import parse_line


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "allnet", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("command", [[], ["segment"], ["demo"], ["evaluate"], ["info"]])
def test_help_for_every_command(command: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: allnet" in text
    if command == ["segment"]:
        for option in ("--t1", "--t2", "--flair", "--cohort", "--preprocessed", "--device", "--tta",
                       "--ensemble", "--min-lesion-mm3", "--progress"):
            assert option in text


def _write(path: Path, array: np.ndarray, like: sitk.Image | None = None) -> Path:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    if like is not None:
        image.CopyInformation(like)
    sitk.WriteImage(image, str(path))
    return path


def test_missing_input_exits_2_names_the_file_and_writes_nothing(tmp_path, model_file) -> None:
    out = tmp_path / "out"
    flair = _write(tmp_path / "FLAIR.nii.gz", np.random.default_rng(0).random((20, 30, 30)))
    proc = _run("segment", "--t1", str(tmp_path / "nope_T1.nii.gz"), "--flair", str(flair),
                "-o", str(out), "--model", str(model_file), "--progress", "none")
    assert proc.returncode == 2
    assert "nope_T1.nii.gz" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_constant_image_exit_2_json_error_line(tmp_path, model_file) -> None:
    t1 = _write(tmp_path / "T1.nii.gz", np.full((20, 30, 30), 7.0))
    flair = _write(tmp_path / "FLAIR.nii.gz", np.random.default_rng(0).random((20, 30, 30)))
    proc = _run("segment", "--t1", str(t1), "--flair", str(flair), "-o", str(tmp_path / "out"),
                "--model", str(model_file), "--progress", "json")
    assert proc.returncode == 2
    events = [parse_line(line) for line in proc.stdout.splitlines()]
    errors = [payload for kind, payload in filter(None, events) if kind == "error"]
    assert errors and "T1.nii.gz" in errors[0]["message"] and errors[0]["exit_code"] == 2
    assert not (tmp_path / "out").exists()


def test_bad_model_file_exit_4(tmp_path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    t1 = _write(tmp_path / "T1.nii.gz", np.random.default_rng(0).random((20, 30, 30)))
    flair = _write(tmp_path / "FLAIR.nii.gz", np.random.default_rng(1).random((20, 30, 30)))
    proc = _run("segment", "--t1", str(t1), "--flair", str(flair), "-o", str(tmp_path / "o"),
                "--model", str(bad), "--progress", "none")
    assert proc.returncode == 4 and "model.pt" in proc.stderr


def test_batch_options_without_a_cohort_and_a_cohort_with_case_files_are_refused(tmp_path, model_file,
                                                                                 capsys) -> None:
    out = tmp_path / "out"
    base = ["segment", "-o", str(out), "--model", str(model_file), "--progress", "none"]
    assert cli.main([*base, "--t1", "a.nii.gz", "--flair", "b.nii.gz", "--workers", "2"]) == 2
    assert "apply to --cohort runs only" in capsys.readouterr().err
    assert cli.main([*base, "--cohort", str(tmp_path), "--t1", "a.nii.gz"]) == 2
    assert "either --cohort FOLDER or --t1/--flair/--t2" in capsys.readouterr().err
    a_file = tmp_path / "cases.txt"
    a_file.write_text("x")
    assert cli.main([*base, "--cohort", str(a_file)]) == 2
    assert "is a file; --cohort takes a folder" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("copy", [False, True], ids=["same path", "identical copy"])
def test_one_image_given_as_t1w_and_flair_is_exit_2(tmp_path, model_file, capsys, copy) -> None:
    """A FLAIR given again as the T1W would pass the one-head check trivially (edge
    correlation 1) and give a meaningless result: refused before any work."""
    flair = _write(tmp_path / "FLAIR.nii.gz", np.random.default_rng(0).random((20, 30, 30)))
    t1 = flair
    if copy:
        t1 = tmp_path / "T1.nii.gz"
        t1.write_bytes(flair.read_bytes())
    out = tmp_path / "out"
    code = cli.main(["segment", "--t1", str(t1), "--flair", str(flair), "-o", str(out),
                     "--model", str(model_file), "--progress", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "T1W" in err and "FLAIR" in err
    assert ("identical content" if copy else "the same file") in err
    assert not out.exists()


def test_bad_setting_exit_2(tmp_path, model_file, capsys) -> None:
    code = cli.main(["segment", "--t1", "a", "--flair", "b", "-o", str(tmp_path / "o"),
                     "--threshold", "1.5", "--model", str(model_file), "--progress", "none"])
    assert code == 2 and "--threshold" in capsys.readouterr().err


def test_no_bundled_model_exit_4_with_clear_message(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(pipeline, "bundled_model_path", lambda: None)
    code = cli.main(["segment", "--t1", "a", "--flair", "b", "-o", str(tmp_path / "o"), "--progress", "none"])
    assert code == 4 and "no trained model is bundled" in capsys.readouterr().err


def test_json_progress_and_result_lines_on_the_mni_grid(tmp_path, model_file) -> None:
    """A run on a small skull-stripped MNI-grid case: ALLNET-PROGRESS lines increase to 1,
    one ALLNET-RESULT line points at the outputs."""
    from allnet.templates import load_template
    template = load_template()
    t1 = sitk.GetArrayFromImage(template.t1)
    flair = sitk.GetArrayFromImage(template.gm) * 0.8 + sitk.GetArrayFromImage(template.wm) * 0.5
    ref = working_reference()
    p1 = _write(tmp_path / "T1.nii.gz", t1, ref)
    p2 = _write(tmp_path / "FLAIR.nii.gz", flair, ref)
    proc = _run("segment", "--t1", str(p1), "--flair", str(p2), "-o", str(tmp_path / "out"),
                "--model", str(model_file), "--preprocessed", "--progress", "json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [e for e in map(parse_line, proc.stdout.splitlines()) if e]
    fractions = [p["fraction"] for kind, p in events if kind == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    stages = {p["stage"] for kind, p in events if kind == "progress"}
    assert {"anatomy", "network", "lesion analysis", "writing"} <= stages
    results = [p for kind, p in events if kind == "result"]
    assert len(results) == 1
    summary = json.loads(Path(results[0]["summary"]).read_text())
    assert summary["modalities_present"] == ["t1", "flair"]


def test_info_names_the_images_the_bundled_model_reads(capsys) -> None:
    from allnet.io import ROLES
    from allnet.model import bundled_model_path, load_model_file

    assert cli.main(["info"]) == 0
    text = capsys.readouterr().out
    bundled = bundled_model_path()
    line = next(line for line in text.splitlines() if "model_reads" in line)
    if bundled is None:
        assert line.endswith("-")
    else:
        expected = ", ".join(ROLES[m] for m in load_model_file(bundled).config.modalities)
        assert line.split(": ", 1)[1] == expected and "FLAIR" in expected
