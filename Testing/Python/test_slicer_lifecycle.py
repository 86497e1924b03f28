"""The module's life in Slicer, against the stand-in: version floor, leaving and re-entering the
module, File > Close Scene, Show 3D on a fresh segmentation, and the input selectors."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from helpers_slicer import loadCase, runEventLoopUntil

import slicer  # noqa: E402  (the stand-in)


def segmentCase(panel, tmp_path):
    """Load the patient07 case, run the stand-in core, wait for the table."""
    w = panel.panel
    loadCase(tmp_path)
    runEventLoopUntil(lambda: w._parameterNode.flairVolume is not None and w._parameterNode.t1Volume is not None)
    w.ui.applyButton.emit("clicked(bool)", False)
    runEventLoopUntil(lambda: w.ui.applyButton.text == "Segment lesions")
    assert w.ui.statusLabel.text.startswith("Done"), w.ui.logTextEdit.plainText
    return w


# -- 1. version floor -----------------------------------------------------------------------
def test_on_slicer_5_10_the_panel_loads_and_names_the_version_it_needs(module, monkeypatch):
    slicer.app.majorVersion, slicer.app.minorVersion = 5, 10
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)  # absent before 5.12: import fails
    # The module's own code is imported afresh, as a Slicer 5.10 would; restored afterwards.
    saved = {name: m for name, m in sys.modules.items() if name.startswith("ALLNetSegmentLib")}
    for name in saved:
        del sys.modules[name]
    try:
        widget = module.ALLNetSegmentWidget(types.SimpleNamespace(isEntered=True))
        widget.setup()
        (label,) = widget.layout.widgets
        assert "needs 3D Slicer 5.12 or newer" in label.text and "Slicer 5.10" in label.text
        widget.enter()
        widget.exit()
        with pytest.raises(RuntimeError, match="needs 3D Slicer 5.12"):
            module.ALLNetSegmentLogic().segment(None, None)
    finally:
        for name in [n for n in sys.modules if n.startswith("ALLNetSegmentLib")]:
            del sys.modules[name]
        sys.modules.update(saved)


def test_on_slicer_5_12_the_full_panel_is_built(panel):
    assert panel.panel is not None and panel.panel.uiWidget in panel.layout.widgets


# -- 2. leaving the module -------------------------------------------------------------------
def test_leaving_the_module_releases_the_segment_editor_and_entering_restores_it(panel):
    editor = panel.panel.segmentEditorWidget
    panel.enter()
    assert editor.shortcutsInstalled
    editor.setActiveEffectByName("Paint")
    assert editor.viewsObserved
    panel.exit()
    assert editor.activeEffect() is None and not editor.viewsObserved and not editor.shortcutsInstalled
    panel.enter()
    assert editor.shortcutsInstalled


def test_parameter_changes_while_away_reach_the_panel_on_return(panel):
    w = panel.panel
    panel.exit()
    w._parameterNode.ensemble = "fast"
    panel.enter()
    assert w.ui.ensembleComboBox.currentIndex == w.ui.ensembleComboBox._items.index("fast")


# -- 3. File > Close Scene -------------------------------------------------------------------
def test_close_scene_clears_the_result_and_a_new_run_fills_new_tables(panel, tmp_path):
    w = segmentCase(panel, tmp_path)
    oldTable = w.lesionTableNode
    editorNode = w.correction.editorNode
    slicer.mrmlScene.Clear()  # File > Close Scene: Clear(0), singletons stay
    assert w.rows == [] and w.lesionTableNode is None and w.ui.lesionTableView.tableNode is None
    assert not slicer.mrmlScene.IsNodePresent(oldTable)
    # The editor node is a singleton, like Slicer's Segment Editor's: same node, still in the scene.
    assert w.correction.editorNode is editorNode and slicer.mrmlScene.IsNodePresent(editorNode)
    assert w.segmentEditorWidget.mrmlSegmentEditorNode() is editorNode
    p = w._parameterNode
    assert p is not None and p.flairVolume is None and p.outputSegmentation is None  # re-made after EndClose

    segmentCase(panel, tmp_path / "again")
    assert w.lesionTableNode is not oldTable and slicer.mrmlScene.IsNodePresent(w.lesionTableNode)
    assert w.lesionTableNode.GetNumberOfRows() == 1 and w.ui.lesionTableView.tableNode is w.lesionTableNode


def test_close_scene_while_away_waits_for_enter(panel, tmp_path):
    w = segmentCase(panel, tmp_path)
    panel.exit()
    panel.parent.isEntered = False
    slicer.mrmlScene.Clear()
    assert w._parameterNode is None and w.correction.editorNode is None
    panel.parent.isEntered = True
    panel.enter()
    assert w._parameterNode is not None and w.correction.editorNode is not None


def test_close_scene_during_a_run_cancels_it(panel, tmp_path):
    w = panel.panel
    loadCase(tmp_path)
    runEventLoopUntil(lambda: w._parameterNode.flairVolume is not None and w._parameterNode.t1Volume is not None)
    w._parameterNode.tta = True  # the stand-in core then sleeps like a long run
    w.ui.applyButton.emit("clicked(bool)", False)
    runEventLoopUntil(lambda: w.ui.progressBar.value == 20)
    slicer.mrmlScene.Clear()
    runEventLoopUntil(lambda: not w.logic.isRunning() and w.ui.applyButton.text == "Segment lesions", timeout=15)
    assert w.ui.statusLabel.text == "Cancelled." and w.lesionTableNode is None
    assert slicer.util.getNodesByClass("vtkMRMLSegmentationNode") == []
    args = json.loads(panel.scriptPath.with_suffix(".args.json").read_text())
    assert not Path(args[args.index("-o") + 1]).parent.exists()  # a cancelled run leaves no folder


# -- 4. Show 3D --------------------------------------------------------------------------------
def test_show_3d_on_a_segmentation_without_display_node(panel):
    w = panel.panel
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "made by the selector")
    assert segmentation.GetDisplayNode() is None
    w._parameterNode.outputSegmentation = segmentation
    w.ui.show3DButton.emit("toggled(bool)", True)
    assert segmentation.closedSurface and segmentation.GetDisplayNode().GetVisibility3D() == 1
    w.ui.show3DButton.emit("toggled(bool)", False)
    assert segmentation.GetDisplayNode().GetVisibility3D() == 0


# -- 5. input selectors ------------------------------------------------------------------------
def test_an_unrecognised_volume_fills_no_role_and_segment_stays_disabled(panel, tmp_path):
    import SimpleITK as sitk

    from helpers_slicer import obliqueFlair

    w = panel.panel
    sitk.WriteImage(obliqueFlair(), str(tmp_path / "scan.nii.gz"))
    slicer.util.loadVolume(str(tmp_path / "scan.nii.gz"), {"name": "DWI b1000"})
    slicer.app.processEvents()
    p = w._parameterNode
    assert p.t1Volume is None and p.flairVolume is None
    assert not w.ui.applyButton.enabled and "Select a T1W and a FLAIR" in w.ui.inputsMessageLabel.text


def test_segment_needs_two_different_volumes_and_says_why(panel, tmp_path):
    w = panel.panel
    _, (t1, t2, flair) = loadCase(tmp_path)
    runEventLoopUntil(lambda: w._parameterNode.flairVolume is not None and w._parameterNode.t1Volume is not None)
    assert w.ui.applyButton.enabled and w.ui.inputsMessageLabel.text == ""
    w.ui.flairSelector.setCurrentNode(t1)  # the user picks the T1W in the FLAIR selector
    assert w._parameterNode.flairVolume is t1
    assert not w.ui.applyButton.enabled
    assert "same volume" in w.ui.inputsMessageLabel.text and "same volume" in w.ui.applyButton.toolTip
    w.ui.flairSelector.setCurrentNode(None)
    assert w.ui.inputsMessageLabel.text == "Select a FLAIR volume."
    w.ui.flairSelector.setCurrentNode(flair)
    assert w.ui.applyButton.enabled


def test_a_volume_fills_only_one_role():
    from ALLNetSegmentLib.InputMatching import inputProblem

    a, b, c = object(), object(), object()
    assert inputProblem(a, b, None) is None and inputProblem(a, b, c) is None
    assert "same volume as the FLAIR" in inputProblem(a, b, b)
    assert "same volume" in inputProblem(a, a)
    assert inputProblem(None, b) == "Select a T1W volume."
