"""``allnet-train`` refuses bad values and paths before any work, naming the option or the
file, with exit code 2 (4 for a bad model file) and nothing written."""
from __future__ import annotations

import json

import numpy as np
import pytest

from allnet.errors import InputError
from allnet_training import cache as cache_module
from allnet_training.cache import load_cached, prepare_cases, save_cached
from allnet_training.cli import main
from allnet_training.data import Case
from allnet_training.plan_tuning import load_oof, save_oof
from allnet_training.trainer import TrainConfig, train
from allnet_training.patches import CropSampler
from helpers_training import tiny_case, tiny_model_config, tiny_sampler_config


@pytest.mark.parametrize("option, value, words", [
    ("--epochs", "0", "at least 1"), ("--steps-per-epoch", "-3", "at least 1"),
    ("--batch-size", "0", "at least 1"), ("--micro-batch", "0", "at least 1"),
    ("--lr", "0", "above 0"), ("--lr", "nan", "finite"), ("--prior", "1", "below 1"),
    ("--lesion-p", "2", "between 0 and 1"), ("--t2-dropout", "-0.1", "between 0 and 1"),
    ("--threads", "0", "at least 1"), ("--base-channels", "zero", "not a whole number"),
])
def test_out_of_range_training_values_are_usage_errors(tmp_path, capsys, option, value, words) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--dev-data", str(tmp_path), "--out", str(out), option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and words in err
    assert not out.exists()


def test_crop_sizes_must_be_positive(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["crossval", "--dev-data", str(tmp_path), "--out", str(tmp_path / "o"), "--crop", "16", "0", "32"])
    assert exit_info.value.code == 2 and "--crop" in capsys.readouterr().err


def test_output_folder_that_is_a_file_is_named_before_any_data_is_read(tmp_path, capsys) -> None:
    taken = tmp_path / "taken"
    taken.write_text("x")
    for command in ("train", "crossval", "ablation"):
        assert main([command, "--dev-data", str(tmp_path), "--out", str(taken)]) == 2
        assert f"{taken}: output path exists and is not a folder" in capsys.readouterr().err
    assert main(["train", "--dev-data", str(tmp_path), "--cache", str(taken), "--out", str(tmp_path / "o")]) == 2
    assert "cache path exists and is not a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_missing_development_data_folder_is_named(tmp_path, capsys) -> None:
    missing = tmp_path / "nowhere"
    assert main(["prepare", "--dev-data", str(missing)]) == 2
    assert f"{missing}: development data folder not found" in capsys.readouterr().err


@pytest.mark.parametrize("command, extra, words", [
    ("stress", [], "holds no fold_*/bundle.pt"),
    ("curve", [], "holds no fold_*/seed0/snapshots/step*.pt"),
    ("plan", [], "holds no fold_*/oof/*.npz"),
])
def test_commands_on_an_empty_crossval_folder_say_what_is_missing(tmp_path, capsys, command, extra, words) -> None:
    folder = tmp_path / "cv"
    folder.mkdir()
    data = ["--dev-data", str(tmp_path)] if command != "plan" else []
    assert main([command, "--crossval", str(folder), *data, *extra]) == 2
    assert words in capsys.readouterr().err
    assert not any(folder.iterdir())


def test_audit_without_native_scans_is_an_error_not_an_empty_report(tmp_path, capsys) -> None:
    out = tmp_path / "audit"
    assert main(["audit", "--model", "unused.pt", "--dev-data", str(tmp_path), "--out", str(out)]) == 2
    assert "holds no native scans" in capsys.readouterr().err
    assert not out.exists()


def test_export_meta_and_out_are_checked(tmp_path, capsys) -> None:
    meta = tmp_path / "meta.json"
    meta.write_text("{not json")
    assert main(["export", "m.pt", "--out", str(tmp_path / "b.pt"), "--meta", str(meta)]) == 4  # model first
    capsys.readouterr()
    from allnet_training.checks import json_object

    with pytest.raises(InputError, match="not valid JSON"):
        json_object(meta)
    meta.write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        json_object(meta)
    assert main(["export", "m.pt", "--out", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err


def test_corrupt_cache_file_is_named_and_made_again_by_prepare(tmp_path, monkeypatch) -> None:
    case = tiny_case(0, "c0")
    version = cache_module.preprocessing_version()
    files = {}
    for role in ("t1", "flair", "mask"):
        files[role] = tmp_path / f"{role}.nii.gz"
        files[role].write_bytes(role.encode())  # the cache key reads size and time only
    source = Case("c0", "s0", files["t1"], files["flair"], files["mask"])
    path = cache_module.cache_path(source, tmp_path, version)
    save_cached(case, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="delete it and run allnet-train prepare") as info:
        load_cached(path)
    assert info.value.path == str(path)
    monkeypatch.setattr(cache_module, "preprocess_case", lambda c: (case, {"all": 0.0}))
    logged = []
    assert prepare_cases([source], tmp_path, log=logged.append) == [path]
    assert "corrupt cache file, made again" in logged[0]
    assert np.array_equal(load_cached(path).mask, case.mask)


def test_unreadable_checkpoint_is_named_on_resume(tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    sampler = CropSampler([tiny_case(0, "c0")], tiny_sampler_config())
    with pytest.raises(InputError, match="cannot resume from this checkpoint") as info:
        train(tiny_model_config(), TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1), sampler, out,
              resume=True, progress=False)
    assert info.value.path.endswith("checkpoint.pt")


def test_corrupt_held_out_prediction_is_named(tmp_path) -> None:
    fold = tmp_path / "fold_s0"
    shape = (8, 8, 8)
    path = save_oof(fold, "c0", np.zeros(shape), None, np.zeros(shape, np.uint8))
    assert set(load_oof(tmp_path)) == {"c0"}
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="unreadable held-out prediction") as info:
        load_oof(tmp_path)
    assert info.value.path == str(path)
    assert json.dumps(info.value.path)  # a plain path for the message


def test_plan_checks_its_model_file_before_tuning(tmp_path, capsys) -> None:
    cv = tmp_path / "cv"
    shape = (8, 8, 8)
    save_oof(cv / "fold_s0", "c0", np.zeros(shape), None, np.zeros(shape, np.uint8))
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    assert main(["plan", "--crossval", str(cv), "--model", str(bad)]) == 4
    assert "model.pt" in capsys.readouterr().err
    assert not (cv / "plan.json").exists()
