"""The panel's longitudinal section against the Slicer stand-in: the command it builds (parsed
back by the real ``allnet`` parser), a run of a stand-in ``allnet longitudinal`` whose files are
written by the core's own writers and imported (segments named and coloured per class, the
change table with the contract's columns, counts per class), inputs refused before any process
starts, a failing core process with the meaning of its exit code, cancel, and scripted use."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from helpers_slicer import MODULE_DIR, STUB, obliqueFlair, runEventLoopUntil
from helpers_slicer_longitudinal import EXPECTED_COUNTS, FAKE_LONGITUDINAL_CORE, WARNING, changeArrays

import slicer  # noqa: E402  (the stand-in)
from allnet.contract import (CHANGE_CLASSES, CHANGE_CODES, CHANGE_COLORS_RGB, CHANGE_COLUMN_NAMES,  # noqa: E402
                             CHANGE_COLUMNS, EXIT_CODES, EXIT_REGISTRATION, LONGITUDINAL_COMMAND,
                             LONGITUDINAL_INPUT_OPTIONS, RunSettings)
from ALLNetSegmentLib.LongitudinalLogic import LongitudinalLogic  # noqa: E402
from ALLNetSegmentLib.Parameter import VISIT_VOLUMES  # noqa: E402

BASELINE_FLAIR, BASELINE_T1, FOLLOWUP_FLAIR, FOLLOWUP_T1 = (
    ("baseline", "flair"), ("baseline", "t1"), ("followup", "flair"), ("followup", "t1"))


@pytest.fixture()
def lpanel(panel, monkeypatch):
    """The module's panel with ``allnet longitudinal`` replaced by FAKE_LONGITUDINAL_CORE."""
    script = panel.scriptPath.parent / "fake_longitudinal_core.py"
    script.write_text(FAKE_LONGITUDINAL_CORE)
    original = LongitudinalLogic.buildCommand

    def buildCommand(inputs, outputDir, settings, python=None):
        real = original(inputs, outputDir, settings, python=sys.executable)
        assert real[1:4] == ["-m", "allnet", LONGITUDINAL_COMMAND]
        return [sys.executable, str(script), *real[4:]]

    monkeypatch.setattr(LongitudinalLogic, "buildCommand", staticmethod(buildCommand))
    panel.longitudinalScript = script
    return panel


def loadVisits(folder: Path, keys=(BASELINE_FLAIR, BASELINE_T1, FOLLOWUP_FLAIR, ("followup", "t2"))) -> dict:
    """One volume per key, each from its own file with its own content, on the oblique test grid."""
    folder.mkdir(parents=True, exist_ok=True)
    base = obliqueFlair()
    nodes = {}
    for index, key in enumerate(keys):
        image = sitk.Add(base, float(10 * (index + 1)))
        path = folder / f"{key[0]}_{key[1]}.nii.gz"
        sitk.WriteImage(image, str(path))
        nodes[key] = slicer.util.loadVolume(str(path), {"name": f"visit {key[0]} {key[1].upper()}"})
    return nodes


def select(panel, nodes: dict) -> None:
    p = panel.panel._parameterNode
    for key, name in VISIT_VOLUMES.items():
        setattr(p, name, nodes.get(key))


def runLongitudinal(panel) -> dict:
    w = panel.panel
    assert w.ui.longitudinalApplyButton.enabled, w.ui.longitudinalMessageLabel.text
    w.ui.longitudinalApplyButton.emit("clicked(bool)", False)
    runEventLoopUntil(lambda: w.ui.longitudinalApplyButton.text == "Find lesion changes", timeout=120)
    return json.loads(panel.longitudinalScript.with_suffix(".args.json").read_text())


def parseCore(args: list[str]):
    from allnet.cli import build_parser

    return build_parser().parse_args([LONGITUDINAL_COMMAND, *args])


# -- the command ---------------------------------------------------------------------------------
def test_contract_options_are_the_cli_options():
    """Each (visit, modality) option of the contract is an option of `allnet longitudinal`."""
    for (visit, modality), option in LONGITUDINAL_INPUT_OPTIONS.items():
        args = [LONGITUDINAL_INPUT_OPTIONS[BASELINE_FLAIR], "b", LONGITUDINAL_INPUT_OPTIONS[FOLLOWUP_FLAIR], "f",
                option, "x", "--output", "out"]
        assert getattr(parseCore(args), f"{visit}_{modality}") == "x", option


def test_panel_inputs_and_settings_reach_the_core_options(lpanel, tmp_path, monkeypatch):
    """Round trip: panel -> argv -> the real CLI parser gives back each visit's volume (by its
    voxels) under its own option and the panel's run settings."""
    from ALLNetSegmentLib.SegmentationLogic import SegmentationLogic

    monkeypatch.setattr(SegmentationLogic, "removeWorkFolder", staticmethod(lambda outputDir: None))  # keep inputs
    w = lpanel.panel
    nodes = loadVisits(tmp_path / "visits")
    select(lpanel, nodes)
    p = w._parameterNode
    p.device, p.ensemble, p.useModelPlan, p.threshold = "cpu", "fast", False, 0.4
    parsed = parseCore(runLongitudinal(lpanel))
    assert parsed.progress == "json" and parsed.followup_t1 is None and parsed.baseline_t2 is None
    for key, node in nodes.items():
        path = getattr(parsed, f"{key[0]}_{key[1]}")
        assert Path(path).parent.name == key[0]
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(path)), node.array), key
    assert RunSettings.from_namespace(parsed) == RunSettings(device="cpu", ensemble="fast", threshold=0.4,
                                                             min_lesion_mm3=p.minLesionSizeMm3,
                                                             connectivity=p.connectivity,
                                                             lesion_score_threshold=p.lesionScoreThreshold,
                                                             min_flair_contrast=p.minFlairContrast,
                                                             max_grey_matter_fraction=p.maxGreyMatterFraction)


# -- a run and its import ------------------------------------------------------------------------
def test_a_run_imports_named_coloured_segments_the_change_table_and_counts(lpanel, tmp_path):
    from allnet import change
    from allnet.longitudinal_outputs import segment_name

    w = lpanel.panel
    nodes = loadVisits(tmp_path / "visits")
    followup = nodes[FOLLOWUP_FLAIR]
    select(lpanel, nodes)
    args = runLongitudinal(lpanel)
    assert slicer.util.calls["errorDisplay"] == [], w.ui.logTextEdit.plainText
    workDir = Path(args[args.index("--output") + 1]).parent
    assert not workDir.exists()  # imported, then removed

    segmentationNode = w._parameterNode.changeSegmentation
    assert segmentationNode.GetName() == "visit followup FLAIR lesion changes"
    assert segmentationNode.GetNodeReference("referenceImageGeometryRef") is followup
    assert segmentationNode.GetStorageNode() is None  # the file it was read from is gone
    segmentation = segmentationNode.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(CHANGE_CLASSES)
    shape = followup.array.shape
    classMap = change.classify_changes(*changeArrays(shape), float(np.prod(obliqueFlair().GetSpacing()))).class_map
    for index, name in enumerate(CHANGE_CLASSES):
        segmentId = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segmentId)
        assert segment.GetName() == segment_name(name)
        assert np.allclose(segment.GetColor(), CHANGE_COLORS_RGB[name], atol=1e-3)
        assert "52988006" in segment.GetTerminology()  # SNOMED CT "Lesion"
        voxels = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, followup)
        assert np.array_equal(voxels > 0, classMap == CHANGE_CODES[name]), name
        assert voxels.any()

    table = w.longitudinal.tableNode
    assert w.ui.changeTableView.tableNode is table
    assert [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())] == list(CHANGE_COLUMN_NAMES)
    for column in CHANGE_COLUMNS:
        assert table.GetColumnUnitLabel(column.name) == column.unit
        assert table.GetColumnDescription(column.name) == column.description
    classes = table.GetTable().GetColumnByName("class")
    resolved = next(r for r in range(table.GetNumberOfRows()) if classes.GetValue(r) == "resolved")
    followupIds = list(CHANGE_COLUMN_NAMES).index("followup_lesion_id")
    assert table.GetCellText(resolved, followupIds) == ""  # no follow-up lesion: empty, not "nan" or 0
    assert table.GetTable().GetColumnByName("id").IsA("vtkIntArray")
    assert sorted(classes.GetValue(r) for r in range(table.GetNumberOfRows())) == sorted(
        name for name, n in EXPECTED_COUNTS.items() for _ in range(n))

    counts = "1 new, 1 enlarging, 2 stable, 1 shrinking, 1 resolved"
    assert counts in w.ui.statusLabel.text and w.ui.statusLabel.text.startswith("Done")
    log = w.ui.logTextEdit.plainText.splitlines()
    assert f"Lesion changes: {counts}." in log and f"Warning: {WARNING}" in log

    # A row click centres the views on that lesion's centroid (RAS, from changes.csv).
    w.ui.changeTableView.emit("clicked(QModelIndex)", __import__("qt").QModelIndex(2, 0))
    centre = [float(table.GetTable().GetColumnByName(c).GetValue(2)) for c in
              ("centroid_r_mm", "centroid_a_mm", "centroid_s_mm")]
    assert slicer.modules.markups.logic().jumps[-1][:3] == pytest.approx(tuple(centre))
    # The single-visit controls are usable again.
    assert w.ui.inputsCollapsibleButton.enabled and w.ui.advancedCollapsibleButton.enabled


# -- inputs refused before any process starts ----------------------------------------------------
def _sameFile(nodes, folder):
    again = slicer.util.loadVolume(str(folder / "baseline_flair.nii.gz"), {"name": "copy of baseline FLAIR"})
    return nodes | {FOLLOWUP_FLAIR: again}


BAD_INPUTS = {
    "no follow-up FLAIR": (lambda nodes, folder: {k: v for k, v in nodes.items() if k != FOLLOWUP_FLAIR},
                           "Select the follow-up FLAIR volume."),
    "no T1W at either visit": (lambda nodes, folder: {k: v for k, v in nodes.items() if k[1] != "t1"},
                               "Select a T1W at one visit at least"),
    "one volume for both FLAIRs": (lambda nodes, folder: nodes | {FOLLOWUP_FLAIR: nodes[BASELINE_FLAIR]},
                                   "The baseline FLAIR and the follow-up FLAIR are the same volume"),
    "one file for both FLAIRs": (_sameFile, "The baseline FLAIR and the follow-up FLAIR were loaded from the same file"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_are_explained_and_start_no_process(lpanel, tmp_path, case):
    w = lpanel.panel
    edit, message = BAD_INPUTS[case]
    nodes = edit(loadVisits(tmp_path / "visits"), tmp_path / "visits")
    select(lpanel, nodes)
    assert not w.ui.longitudinalApplyButton.enabled
    assert w.ui.longitudinalMessageLabel.text.startswith(message)
    with pytest.raises(ValueError, match=message.split(":")[0][:40]):  # a click anyway
        w.ui.longitudinalApplyButton.emit("clicked(bool)", False)
    assert len(slicer.util.calls["errorDisplay"]) == 1 and message in slicer.util.calls["errorDisplay"][0]
    assert not w.logic.isRunning() and w.logic.runner.lastOutcome is None
    assert not lpanel.longitudinalScript.with_suffix(".args.json").exists()
    assert w.ui.longitudinalApplyButton.text == "Find lesion changes"


def test_already_preprocessed_is_refused_for_two_visits(lpanel, tmp_path):
    w = lpanel.panel
    select(lpanel, loadVisits(tmp_path / "visits"))
    assert w.ui.longitudinalApplyButton.enabled
    w._parameterNode.preprocessed = True
    assert not w.ui.longitudinalApplyButton.enabled
    assert "native scans of both visits" in w.ui.longitudinalMessageLabel.text


# -- a failing core process ----------------------------------------------------------------------
RECORD_ARGS = ("import json, sys\nfrom pathlib import Path\n"
               "Path(sys.argv[0]).with_suffix('.args.json').write_text(json.dumps(sys.argv[1:]))\n")


@pytest.mark.parametrize("errorLine", [False, True], ids=["crash", "core error line"])
def test_a_failing_process_is_reported_with_the_meaning_of_its_exit_code(lpanel, tmp_path, errorLine):
    w = lpanel.panel
    line = ("print('ALLNET-ERROR {\"message\": \"the visits could not be registered\", \"exit_code\": 3}')\n"
            if errorLine else "print('Traceback: something broke')\n")
    lpanel.longitudinalScript.write_text(RECORD_ARGS + line + f"sys.exit({EXIT_REGISTRATION})\n")
    select(lpanel, loadVisits(tmp_path / "visits"))
    args = runLongitudinal(lpanel)
    (message,) = slicer.util.calls["errorDisplay"]
    assert f"exit code {EXIT_REGISTRATION}" in message and EXIT_CODES[EXIT_REGISTRATION] in message
    assert ("the visits could not be registered" if errorLine else "something broke") in message
    workDir = Path(args[args.index("--output") + 1]).parent
    assert workDir.is_dir() and f"kept in: {workDir}" in w.ui.logTextEdit.plainText
    assert w.ui.statusLabel.text.startswith("Failed") and w._parameterNode.changeSegmentation is None
    assert w.ui.longitudinalApplyButton.enabled and w.ui.applyButton.text == "Segment lesions"


def test_cancel_stops_the_run_and_locks_single_visit_controls_meanwhile(lpanel, tmp_path):
    w = lpanel.panel
    select(lpanel, loadVisits(tmp_path / "visits"))
    w._parameterNode.tta = True  # the stand-in core then sleeps like a long run
    w.ui.longitudinalApplyButton.emit("clicked(bool)", False)
    assert w.ui.longitudinalApplyButton.text == "Cancel" and w.ui.longitudinalApplyButton.enabled
    assert not w.ui.applyButton.enabled and not w.ui.inputsCollapsibleButton.enabled
    assert not w.ui.longitudinalInputsFrame.enabled
    runEventLoopUntil(lambda: w.ui.progressBar.value == 20)  # the core's progress line arrived
    w.ui.longitudinalApplyButton.emit("clicked(bool)", False)
    runEventLoopUntil(lambda: w.ui.longitudinalApplyButton.text == "Find lesion changes", timeout=15)
    assert w.ui.statusLabel.text == "Cancelled." and slicer.util.calls["errorDisplay"] == []
    assert w.ui.inputsCollapsibleButton.enabled and w.ui.longitudinalInputsFrame.enabled


def test_a_single_visit_run_locks_the_longitudinal_section(lpanel, tmp_path):
    from helpers_slicer import loadCase

    w = lpanel.panel
    loadCase(tmp_path)
    runEventLoopUntil(lambda: w._parameterNode.flairVolume is not None and w._parameterNode.t1Volume is not None)
    w.ui.applyButton.emit("clicked(bool)", False)
    assert not w.ui.longitudinalCollapsibleButton.enabled
    runEventLoopUntil(lambda: w.ui.applyButton.text == "Segment lesions")
    assert w.ui.longitudinalCollapsibleButton.enabled and w._parameterNode.changeSegmentation is None


# -- scripted use and the GUI process --------------------------------------------------------------
def test_scripted_longitudinal_blocks_and_returns_the_result(module, tmp_path, monkeypatch):
    script = tmp_path / "fake_longitudinal_core.py"
    script.write_text(FAKE_LONGITUDINAL_CORE)
    original = LongitudinalLogic.buildCommand
    monkeypatch.setattr(LongitudinalLogic, "buildCommand", staticmethod(
        lambda inputs, out, settings, python=None: [sys.executable, str(script),
                                                    *original(inputs, out, settings, python="x")[4:]]))
    logic = module.ALLNetSegmentLogic()
    monkeypatch.setattr(logic.segmentationLogic.installLogic, "ensure", lambda askConfirmation=True: True)
    nodes = loadVisits(tmp_path / "visits", keys=(BASELINE_FLAIR, FOLLOWUP_FLAIR, FOLLOWUP_T1))
    result = logic.longitudinal(nodes[BASELINE_FLAIR], nodes[FOLLOWUP_FLAIR], followupT1Node=nodes[FOLLOWUP_T1],
                                device="cpu")
    assert result.counts == EXPECTED_COUNTS and result.tableNode.GetNumberOfRows() == sum(EXPECTED_COUNTS.values())
    assert result.segmentationNode.GetSegmentation().GetNumberOfSegments() == len(CHANGE_CLASSES)
    parsed = parseCore(json.loads(script.with_suffix(".args.json").read_text()))
    assert parsed.baseline_t1 is None and parsed.followup_t1 and parsed.device == "cpu"
    with pytest.raises(ValueError, match="T1W at one visit"):
        logic.longitudinal(nodes[BASELINE_FLAIR], nodes[FOLLOWUP_FLAIR])


def test_the_longitudinal_modules_load_no_heavy_core_module_in_the_gui_process():
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
            "import slicer, ALLNetSegmentLib.LongitudinalPanel, ALLNetSegmentLib.Widget\n"
            "heavy = {'torch', 'SimpleITK', 'allnet.longitudinal_pipeline', 'allnet.longitudinal_outputs',\n"
            "         'allnet.change', 'allnet.cli'}\n"
            "print(sorted(heavy & set(sys.modules)))\n")
    completed = subprocess.run([sys.executable, "-c", code, str(STUB), str(MODULE_DIR)], capture_output=True,
                               text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"
