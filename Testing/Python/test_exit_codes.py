"""Every row of the README's exit-code table, through ``allnet.cli.main``, and the checks that
must fail fast (before a model is loaded or an image read)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from allnet import cli, outputs, pipeline, validation
from allnet.contract import (EXIT_BAD_INPUT, EXIT_BATCH_FAILURES, EXIT_CANCELLED, EXIT_CODES,
                             EXIT_INTERNAL, EXIT_MODEL, EXIT_OK, EXIT_REGISTRATION, EXIT_RESOURCES)
from allnet.errors import CancelledError, RegistrationError
from allnet.model import ModelConfig, random_bundle, save_model_file


@pytest.fixture()
def images(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    paths = {}
    for role in ("T1", "FLAIR"):
        paths[role] = tmp_path / f"{role}.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(rng.random((12, 16, 16)).astype(np.float32)), str(paths[role]))
    return paths


def _segment(images: dict[str, Path], out: Path, model: Path, *extra: str) -> list[str]:
    return ["segment", "--t1", str(images["T1"]), "--flair", str(images["FLAIR"]), "-o", str(out),
            "--model", str(model), "--progress", "none", *extra]


@pytest.fixture()
def no_model_loading(monkeypatch):
    """Fail the test if a run gets as far as loading its model."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("the run should have stopped before loading the model")
    monkeypatch.setattr(pipeline, "load_models", refuse)


def test_the_table_covers_every_code_tested_here() -> None:
    assert set(EXIT_CODES) == {EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_REGISTRATION, EXIT_MODEL,
                               EXIT_RESOURCES, EXIT_BATCH_FAILURES, EXIT_CANCELLED}


def test_0_ok(tmp_path, images, model_file, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(pipeline, "run_pipeline", lambda *a, **k: calls.append(a) or _FakeResult(tmp_path))
    assert cli.main(_segment(images, tmp_path / "out", model_file)) == EXIT_OK and calls


class _FakeResult:
    def __init__(self, out: Path) -> None:
        self.lesions, self.output_dir, self.files = [], out, {}
        self.totals = {"count": 0, "total_volume_ml": 0.0}
        self.summary = {"model": {"trained": True}, "warnings": []}


def test_1_internal_error_is_a_message_not_a_traceback(tmp_path, images, model_file, monkeypatch, capsys) -> None:
    def boom(*_a, **_k):
        raise RuntimeError("boom")
    monkeypatch.setattr(pipeline, "run_pipeline", boom)
    assert cli.main(_segment(images, tmp_path / "out", model_file)) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "internal error" in err and "boom" in err and "Traceback" not in err


def test_2_missing_required_input(tmp_path, model_file, no_model_loading, capsys) -> None:
    code = cli.main(["segment", "--flair", "x.nii.gz", "-o", str(tmp_path / "o"), "--model", str(model_file)])
    assert code == EXIT_BAD_INPUT and "--t1" in capsys.readouterr().err


def test_2_missing_output_option_is_an_argparse_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["segment", "--t1", "a", "--flair", "b"])
    assert info.value.code == EXIT_BAD_INPUT and "-o/--output" in capsys.readouterr().err


def test_2_output_path_is_a_file_before_any_work(tmp_path, images, model_file, no_model_loading, capsys) -> None:
    target = tmp_path / "taken"
    target.write_text("a file")
    assert cli.main(_segment(images, target, model_file)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert str(target) in err and "not a folder" in err
    assert target.read_text() == "a file"


def test_2_unwritable_output_location_before_any_work(images, model_file, no_model_loading, capsys) -> None:
    target = Path("/proc/allnet-out")  # /proc takes no new files, whoever runs the test
    assert cli.main(_segment(images, target, model_file)) == EXIT_BAD_INPUT
    assert "not writable" in capsys.readouterr().err


def test_2_full_disk_before_any_work(tmp_path, images, model_file, no_model_loading, monkeypatch, capsys) -> None:
    class Usage:
        total, used, free = 10**9, 10**9 - 2**20, 2**20
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda _path: Usage)
    assert cli.main(_segment(images, tmp_path / "out", model_file)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "free disk space" in err and str(tmp_path / "out") in err


def test_3_registration_failure(tmp_path, images, model_file, monkeypatch, capsys) -> None:
    def fail(*_a, **_k):
        raise RegistrationError("T1W -> MNI: brain overlap 0.41 < 0.8")
    monkeypatch.setattr(pipeline, "preprocess", fail)
    assert cli.main(_segment(images, tmp_path / "out", model_file)) == EXIT_REGISTRATION
    assert "overlap" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_4_bad_model_file(tmp_path, images, capsys) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a model")
    assert cli.main(_segment(images, tmp_path / "out", bad)) == EXIT_MODEL
    assert "broken.pt" in capsys.readouterr().err


def test_4_model_plan_this_version_cannot_apply(tmp_path, images, capsys) -> None:
    bundle = random_bundle(ModelConfig(base_channels=4, depth=2, max_channels=8, head_channels=4,
                                       head_mlp=(4,)), n=1)
    path = tmp_path / "future.pt"
    save_model_file(path, bundle.config, [m.state_dict() for m in bundle.members],
                    {"inference_plan": {"threshold": 0.5, "fancy_new_step": 1}})
    assert cli.main(_segment(images, tmp_path / "out", path)) == EXIT_MODEL
    assert "future.pt" in capsys.readouterr().err


def test_5_memory_guard(tmp_path, images, model_file, monkeypatch, capsys) -> None:
    monkeypatch.setattr(validation, "MAX_VOXELS", 100)
    assert cli.main(_segment(images, tmp_path / "out", model_file)) == EXIT_RESOURCES
    assert "T1.nii.gz" in capsys.readouterr().err


def test_6_batch_with_a_failed_case(tmp_path, model_file) -> None:
    case = tmp_path / "cohort" / "case1"
    case.mkdir(parents=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.full((8, 8, 8), 3.0, np.float32)), str(case / "T1.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(np.full((8, 8, 8), 3.0, np.float32)), str(case / "FLAIR.nii.gz"))
    code = cli.main(["segment", "--cohort", str(tmp_path / "cohort"), "-o", str(tmp_path / "out"),
                     "--model", str(model_file), "--progress", "none"])
    assert code == EXIT_BATCH_FAILURES
    assert "failed" in (tmp_path / "out" / "cohort_summary.csv").read_text()


@pytest.mark.parametrize("error", [KeyboardInterrupt(), CancelledError("cancelled by the user")])
def test_130_cancelled(tmp_path, images, model_file, monkeypatch, error) -> None:
    def stop(*_a, **_k):
        raise error
    monkeypatch.setattr(pipeline, "run_pipeline", stop)
    assert cli.main(_segment(images, tmp_path / "out", model_file)) == EXIT_CANCELLED
