"""ALLNetSegment.py and its panel against the Slicer stand-in: metadata, widget build with the
.ui bound to the parameter node, input auto-fill, settings, and a full run through a stand-in
core process (inputs written, progress, import, table, row jump, edit -> debounced recompute,
export, cancel)."""
from __future__ import annotations

import json
import types

import numpy as np
import pytest

from helpers_slicer import loadCase, runEventLoopUntil

import qt  # noqa: E402
import slicer  # noqa: E402
from ALLNetSegmentLib.InputMatching import assignByName, roleOfName  # noqa: E402
from ALLNetSegmentLib.Parameter import DEVICES, SegmentationSettings  # noqa: E402

def test_module_metadata_cites_the_method(module):
    parent = types.SimpleNamespace()
    module.ALLNetSegment(parent)
    assert parent.title == "ALLNet Segment" and parent.categories == ["Segmentation"]
    assert "NeuroImage: Clinical 32:102854" in parent.acknowledgementText
    assert "ALLNetSegment" in slicer.selfTests


def test_names_are_matched_to_inputs():
    assert roleOfName("T2-FLAIR_axial") == "flair"
    assert roleOfName("study1_T1W") == "t1" and roleOfName("sub-01_T2w.nii.gz") == "t2"
    assert roleOfName("MPRAGE") == "t1" and roleOfName("DWI") is None and roleOfName("t1000") is None
    assert assignByName(["DWI", "T2", "flair", "T1 post"]) == {"t2": 1, "flair": 2, "t1": 3}


def test_widget_builds_and_binds_every_ui_parameter(panel):
    ui = panel.panel.ui
    p = panel.panel._parameterNode
    assert ui.applyButton.text == "Segment lesions" and not ui.applyButton.enabled
    assert ui.deviceComboBox._items == DEVICES and ui.ensembleComboBox._items == ["full", "fast"]
    assert ui.thresholdSliderWidget.value == 0.5 and ui.minLesionSizeSpinBox.value == p.minLesionSizeMm3
    assert ui.t1Selector.mrmlScene is slicer.mrmlScene  # scene passed on through the .ui connections
    assert panel.panel.segmentEditorWidget in ui.segmentEditorFrame.layout().widgets
    ui.ttaCheckBox.checked = True
    ui.ttaCheckBox.emit("toggled(bool)", True)  # the user ticks the box
    assert p.tta is True


def test_inputs_are_auto_filled_and_machine_settings_persist(panel, tmp_path):
    _, (t1, t2, flair) = loadCase(tmp_path)
    runEventLoopUntil(lambda: panel.panel._parameterNode.flairVolume is not None)
    p = panel.panel._parameterNode
    assert (p.t1Volume, p.t2Volume, p.flairVolume) == (t1, t2, flair)
    assert panel.panel.ui.applyButton.enabled
    p.device = "cpu"
    assert qt.QSettings().value("ALLNet/device") == "cpu"
    slicer.mrmlScene.Clear()
    panel.panel._parameterNode = None
    panel.panel.initializeParameterNode()
    assert panel.panel._parameterNode.device == "cpu"


def test_settings_become_core_options():
    args = SegmentationSettings.fromOptions(threshold=0.4, min_lesion_mm3=5.0, tta=True, ensemble="fast",
                                            device="cpu", preprocessed=True, keepProbability=False).cliArgs()
    assert args == ["--device", "cpu", "--ensemble", "fast", "--tta", "--threshold", "0.4",
                    "--min-lesion-mm3", "5", "--preprocessed"]
    with pytest.raises(ValueError, match="--threshold"):
        SegmentationSettings.fromOptions(threshold=1.5)


def test_segment_review_edit_and_export(panel, tmp_path):
    w = panel.panel
    _, (t1, t2, flair) = loadCase(tmp_path)
    runEventLoopUntil(lambda: w._parameterNode.flairVolume is not None)
    w.ui.applyButton.emit("clicked(bool)", False)
    assert w.ui.applyButton.text == "Cancel"
    runEventLoopUntil(lambda: w.ui.applyButton.text == "Segment lesions")
    assert w.ui.statusLabel.text.startswith("Done"), w.ui.statusLabel.text
    args = json.loads(panel.scriptPath.with_suffix(".args.json").read_text())
    assert args[args.index("--progress") + 1] == "json" and "--t2" in args
    assert args[args.index("--t1") + 1].endswith("t1.nrrd")

    segmentationNode = w._parameterNode.outputSegmentation
    assert segmentationNode.GetNodeReference("referenceImageGeometryRef") is flair
    assert w.lesionTableNode.GetNumberOfRows() == 1
    assert w.ui.lesionTableView.tableNode is w.lesionTableNode

    w.ui.lesionTableView.emit("clicked(QModelIndex)", qt.QModelIndex(0, 2))
    r, a, s = slicer.modules.markups.logic().jumps[-1][:3]
    k, j, i = (n // 2 for n in flair.array.shape)
    assert np.allclose((r, a, s), (flair.ijkToRas @ [i, j, k, 1])[:3], atol=0.01)

    # Edit: paint a second lesion; the table follows after the debounce delay.
    segmentId = segmentationNode.GetSegmentation().GetNthSegmentID(0)
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, flair)
    mask[2:4, 2:4, 2:4] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentationNode, segmentId, flair)
    assert w.recomputeTimer.isActive() and w.lesionTableNode.GetNumberOfRows() == 1
    runEventLoopUntil(lambda: w.lesionTableNode.GetNumberOfRows() == 2, timeout=10)

    w.ui.exportDirectoryButton.directory = str(tmp_path / "export")
    w.ui.exportButton.emit("clicked(bool)", False)
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["lesion_mask.nii.gz", "lesions.csv", "lesions.seg.nrrd"]

    w.ui.show3DButton.emit("toggled(bool)", True)
    assert segmentationNode.closedSurface and segmentationNode.GetDisplayNode().visibility3D


def test_cancel_button_stops_the_run(panel, tmp_path):
    w = panel.panel
    loadCase(tmp_path)
    runEventLoopUntil(lambda: w._parameterNode.flairVolume is not None)
    w._parameterNode.tta = True  # the stand-in core then sleeps like a long run
    w.ui.applyButton.emit("clicked(bool)", False)
    runEventLoopUntil(lambda: w.ui.progressBar.value == 20)
    w.ui.applyButton.emit("clicked(bool)", False)  # now "Cancel"
    runEventLoopUntil(lambda: w.ui.applyButton.text == "Segment lesions", timeout=15)
    assert w.ui.statusLabel.text == "Cancelled."
    assert slicer.util.calls["errorDisplay"] == []


def test_core_error_reaches_the_user(panel, tmp_path, monkeypatch):
    w = panel.panel
    loadCase(tmp_path)
    runEventLoopUntil(lambda: w._parameterNode.flairVolume is not None)
    panel.scriptPath.write_text("import sys\nprint('ALLNET-ERROR {\"message\": \"t1.nrrd: image is constant\", \"exit_code\": 2}')\nsys.exit(2)\n")
    w.ui.applyButton.emit("clicked(bool)", False)
    runEventLoopUntil(lambda: w.ui.applyButton.text == "Segment lesions")
    assert slicer.util.calls["errorDisplay"] == ["t1.nrrd: image is constant"]


def test_load_sample_runs_allnet_demo_through_the_process_runner(panel):
    """Load sample runs `allnet demo --case-only` without blocking: the button becomes Cancel
    while the core builds the case, the GUI keeps running, then the inputs are filled."""
    w = panel.panel
    w.ui.loadSampleButton.emit("clicked(bool)", False)
    assert w.ui.applyButton.text == "Cancel" and w.logic.isRunning()  # returned at once
    args = w.logic.runner._proc.args
    assert args[1:5] == ["-m", "allnet", "demo", "--case-only"] and "--progress" in args
    runEventLoopUntil(lambda: w.ui.applyButton.text == "Segment lesions", timeout=120)
    p = w._parameterNode
    assert slicer.util.calls["errorDisplay"] == [], w.ui.logTextEdit.plainText
    assert [n.GetName() for n in (p.t1Volume, p.t2Volume, p.flairVolume)] == [
        "ALLNet sample T1", "ALLNet sample T2", "ALLNet sample FLAIR"]
    assert p.flairVolume.array.ndim == 3 and p.flairVolume.array.std() > 0
    assert w.ui.applyButton.enabled and w.ui.statusLabel.text.startswith("Sample case loaded")


def test_load_sample_failure_is_reported_and_its_folder_kept(panel, monkeypatch):
    w = panel.panel
    monkeypatch.setattr("ALLNetSegmentLib.SegmentationLogic.pythonSlicerExecutable",
                        lambda: str(panel.scriptPath.parent / "no-such-python"))
    with pytest.raises(FileNotFoundError):  # tryWithErrorDisplay shows it and re-raises, as in Slicer
        w.ui.loadSampleButton.emit("clicked(bool)", False)
    assert w.ui.applyButton.text == "Segment lesions" and not w.logic.isRunning()


def test_cmake_lists_every_module_file():
    from helpers_slicer import MODULE_DIR

    cmake = (MODULE_DIR / "CMakeLists.txt").read_text()
    for path in sorted((MODULE_DIR / "ALLNetSegmentLib").glob("*.py")):
        assert f"${{MODULE_NAME}}Lib/{path.name}" in cmake, path.name
    for path in sorted((MODULE_DIR / "Resources").rglob("*")):
        if path.is_file():
            relative = path.relative_to(MODULE_DIR).as_posix().replace("ALLNetSegment.", "${MODULE_NAME}.")
            assert relative in cmake, relative
