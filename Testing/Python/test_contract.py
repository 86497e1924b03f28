"""What the layers agree on (allnet.contract): a change on one side breaks a test here.

Run settings (core API, command line, Slicer panel), the output files a run lists in its
summary and that Slicer, cohort tables and evaluation read, CSV columns, exit codes.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from helpers_slicer import REPO, resetSlicer  # puts the Slicer stand-in on sys.path

from allnet import cli, contract, evaluate  # noqa: E402
from allnet.contract import (EXIT_CODES, LESION_COLUMN_NAMES, OUTPUT_FILES, RunSettings,  # noqa: E402
                             SettingError)
from allnet.grid import working_reference  # noqa: E402
from allnet.model import ModelConfig, random_bundle, save_model_file  # noqa: E402
from allnet.plan import DEFAULT_PLAN  # noqa: E402
from ALLNetSegmentLib import LesionTable  # noqa: E402
from ALLNetSegmentLib.Parameter import (NOT_ON_PANEL, PANEL_SETTINGS, ALLNetSegmentParameterNode,  # noqa: E402
                                        SegmentationSettings)
from ALLNetSegmentLib.ProcessRunner import EXIT_CODE_MEANINGS  # noqa: E402
from ALLNetSegmentLib.ResultImporter import runOutputs, runPlan  # noqa: E402

SETTINGS_CASES = [
    RunSettings(),
    RunSettings(model=["a.pt", "b.pt"], device="cuda:1", ensemble="fast", tta=True, threshold=0.35,
                min_lesion_mm3=3.0, connectivity=6, lesion_score_threshold=0.4, preprocessed=True,
                write_probability=False, per_lesion_segments=True, save_working_grid=True),
    RunSettings(connectivity=18, lesion_score_threshold=0.0),
]


def _parse_segment(argv: list[str]) -> RunSettings:
    args = cli.build_parser().parse_args(["segment", "-o", "out", *argv])
    return RunSettings.from_namespace(args)


@pytest.mark.parametrize("settings", SETTINGS_CASES)
def test_settings_round_trip_through_the_command_line(settings: RunSettings) -> None:
    assert _parse_segment(settings.validate().to_argv()) == settings


def test_every_setting_has_one_documented_option() -> None:
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["segment"].format_help()
    for field in dataclasses.fields(RunSettings):
        assert contract.option_flag(field.name) in help_text, field.name
        assert field.metadata["help"], field.name


@pytest.mark.parametrize("values, option", [({"threshold": 1.2}, "--threshold"),
                                            ({"connectivity": 8}, "--connectivity"),
                                            ({"device": "gpu"}, "--device"),
                                            ({"min_lesion_mm3": -1.0}, "--min-lesion-mm3"),
                                            ({"ensemble": "all"}, "--ensemble")])
def test_one_validation_names_setting_and_option(values: dict, option: str) -> None:
    name = next(iter(values))
    with pytest.raises(SettingError) as info:
        RunSettings(**values).validate()
    assert name in str(info.value) and option in str(info.value)


def test_slicer_panel_covers_every_setting_once() -> None:
    names = {f.name for f in dataclasses.fields(RunSettings)}
    assert set(PANEL_SETTINGS) | set(NOT_ON_PANEL) == names
    assert not set(PANEL_SETTINGS) & set(NOT_ON_PANEL)
    parameters = ALLNetSegmentParameterNode.__annotations__
    assert all(panelName in parameters for panelName in PANEL_SETTINGS.values())


def test_slicer_defaults_are_the_contract_defaults() -> None:
    resetSlicer()
    import slicer

    node = ALLNetSegmentParameterNode(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
    defaults = RunSettings()
    for name, panelName in PANEL_SETTINGS.items():
        expected = getattr(DEFAULT_PLAN, name) if name in DEFAULT_PLAN.to_dict() else getattr(defaults, name)
        assert getattr(node, panelName) == expected, name
    assert SegmentationSettings.fromParameterNode(node).run == defaults  # the model's plan applies


def test_slicer_panel_values_reach_the_core_unchanged() -> None:
    resetSlicer()
    import slicer

    node = ALLNetSegmentParameterNode(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode"))
    node.useModelPlan = False
    node.threshold, node.minLesionSizeMm3, node.connectivity = 0.3, 25.0, 6
    node.lesionScoreThreshold, node.ensemble, node.device, node.tta = 0.45, "fast", "cuda:1", True
    settings = SegmentationSettings.fromParameterNode(node)
    parsed = _parse_segment(settings.cliArgs())
    assert parsed == settings.run
    assert (parsed.threshold, parsed.min_lesion_mm3, parsed.connectivity, parsed.lesion_score_threshold,
            parsed.ensemble, parsed.device, parsed.tta) == (0.3, 25.0, 6, 0.45, "fast", "cuda:1", True)
    node.useModelPlan = True
    plan_free = _parse_segment(SegmentationSettings.fromParameterNode(node).cliArgs())
    assert plan_free.threshold is None and plan_free.connectivity is None


def test_exit_codes_agree_across_core_slicer_and_readme() -> None:
    assert EXIT_CODE_MEANINGS == {c: m for c, m in EXIT_CODES.items() if c != 0}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for code, meaning in EXIT_CODES.items():
        assert re.search(rf"^\| {code} \| {re.escape(meaning)} \|", readme, re.M), (code, meaning)


def test_slicer_table_columns_are_csv_columns() -> None:
    assert {c.name for c in LesionTable.COLUMNS} <= set(LESION_COLUMN_NAMES)
    for column in LesionTable.COLUMNS:
        spec = next(c for c in contract.LESION_COLUMNS if c.name == column.name)
        assert (column.unit, column.description, column.kind) == (spec.unit, spec.description, spec.kind)


# -- one real run of the core, read by every consumer ------------------------------------------
@pytest.fixture(scope="module")
def core_run(tmp_path_factory) -> Path:
    """``allnet segment --preprocessed`` with a tiny model on a template-made MNI case."""
    from allnet.templates import load_template

    tmp = tmp_path_factory.mktemp("run")
    bundle = random_bundle(ModelConfig(base_channels=4, depth=2, max_channels=8, head_channels=4,
                                       head_mlp=(4,)), n=1)
    model = tmp / "tiny.pt"
    save_model_file(model, bundle.config, [m.state_dict() for m in bundle.members],
                    {"name": "tiny", "inference_plan": {"threshold": 0.4, "min_lesion_mm3": 0.0}})
    template = load_template()
    ref = working_reference()
    paths = {}
    for role, array in (("T1", sitk.GetArrayFromImage(template.t1)),
                        ("FLAIR", sitk.GetArrayFromImage(template.gm) * 0.8
                         + sitk.GetArrayFromImage(template.wm) * 0.5)):
        image = sitk.GetImageFromArray(array.astype(np.float32))
        image.CopyInformation(ref)
        paths[role] = tmp / f"{role}.nii.gz"
        sitk.WriteImage(image, str(paths[role]))
    out = tmp / "out"
    code = cli.main(["segment", "--t1", str(paths["T1"]), "--flair", str(paths["FLAIR"]), "-o", str(out),
                     "--model", str(model), "--preprocessed", "--device", "cpu", "--progress", "none",
                     "--connectivity", "18"])
    assert code == 0
    return out


def test_run_lists_its_outputs_and_slicer_reads_that_list(core_run: Path) -> None:
    summary = json.loads((core_run / contract.SUMMARY_FILE).read_text())
    listed = summary[contract.SUMMARY_OUTPUTS_KEY]
    assert set(listed) <= set(OUTPUT_FILES) and {"mask", "table", "summary", "labels"} <= set(listed)
    assert all((core_run / name).exists() for name in listed.values())
    assert runOutputs(core_run) == {key: core_run / name for key, name in listed.items()}
    assert sorted(p.name for p in core_run.iterdir()) == sorted(listed.values())  # nothing unlisted


def test_run_records_the_plan_it_applied_and_where_each_value_came_from(core_run: Path) -> None:
    plan = runPlan(core_run)
    assert (plan["threshold"], plan["min_lesion_mm3"], plan["connectivity"]) == (0.4, 0.0, 18)
    assert plan["sources"] == {"threshold": "model", "min_lesion_mm3": "model", "connectivity": "setting",
                               "lesion_score_threshold": "default", "min_flair_contrast": "default",
                               "max_grey_matter_fraction": "default"}


def test_lesion_table_columns_reach_slicer_and_export(core_run: Path, tmp_path: Path) -> None:
    with open(core_run / contract.TABLE_FILE, newline="") as f:
        assert tuple(next(csv.reader(f))) == LESION_COLUMN_NAMES
    rows = LesionTable.rowsFromCsv(core_run / contract.TABLE_FILE)
    assert all(tuple(row) == LESION_COLUMN_NAMES for row in rows)
    LesionTable.writeCsv(rows, tmp_path / "exported.csv")
    with open(tmp_path / "exported.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == LESION_COLUMN_NAMES


def test_evaluation_finds_a_run_folder_by_the_contract_names(core_run: Path) -> None:
    cases = evaluate.find_cases(core_run / contract.MASK_FILE, core_run / contract.MASK_FILE)
    assert cases[0].pred == core_run / contract.MASK_FILE
    assert cases[0].probability == core_run / contract.PROBABILITY_FILE


def test_cohort_tables_have_fixed_headers_even_when_empty(tmp_path: Path) -> None:
    from allnet.cases import COHORT_SUMMARY_COLUMNS, run_cohort
    from allnet.errors import InputError

    (tmp_path / "cases" / "c1").mkdir(parents=True)
    for name in ("T1.nii.gz", "FLAIR.nii.gz"):
        (tmp_path / "cases" / "c1" / name).write_bytes(b"x")

    def failing(inputs, out):
        raise InputError(inputs["t1"], "broken")

    outcomes = run_cohort(tmp_path / "cases", tmp_path / "out", failing)
    assert [o.status for o in outcomes] == ["failed"]
    with open(tmp_path / "out" / contract.COHORT_LESIONS_FILE, newline="") as f:
        assert next(csv.reader(f)) == ["case", *LESION_COLUMN_NAMES]
    with open(tmp_path / "out" / contract.COHORT_SUMMARY_FILE, newline="") as f:
        assert tuple(next(csv.reader(f))) == COHORT_SUMMARY_COLUMNS


def test_slicer_refuses_a_run_folder_without_its_summary(tmp_path: Path) -> None:
    (tmp_path / contract.MASK_FILE).write_bytes(b"")
    with pytest.raises(RuntimeError, match=contract.SUMMARY_FILE):
        runOutputs(tmp_path)


def test_contract_modules_need_only_the_standard_library() -> None:
    """Slicer's GUI process imports these without numpy, SimpleITK or torch."""
    import subprocess
    import sys

    code = ("import sys; import allnet.contract, allnet.plan, allnet.progress; "
            "heavy = {'numpy', 'SimpleITK', 'torch', 'scipy'} & set(sys.modules); "
            "sys.exit(f'imported {sorted(heavy)}' if heavy else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=str(REPO / "ALLNetSegment"))
    assert proc.returncode == 0, proc.stderr
