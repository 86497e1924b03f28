"""The ALLNet Segment panel: inputs, run/cancel with progress, lesion table, correction, export."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import qt
import slicer
import vtk
from slicer.util import VTKObservationMixin

from allnet.plan import DEFAULT_PLAN

from . import LesionTable
from .Correction import Correction
from .DeviceInfo import NOT_PROBED_TEXT, PROBING_TEXT, probeDevices
from .Export import exportResults
from .InputMatching import assignByName, inputProblem
from .LongitudinalLogic import LongitudinalLogic
from .LongitudinalPanel import LongitudinalPanel
from .Parameter import ALLNetSegmentParameterNode, SegmentationSettings
from .ResultImporter import CONNECTIVITY_ATTRIBUTE
from .SegmentationLogic import SegmentationLogic, pythonSlicerExecutable

SETTINGS_PREFIX = "ALLNet/"
MACHINE_SETTINGS = ("device", "ensemble", "tta")  # depend on the computer, not on the case
RECOMPUTE_DELAY_MS = 1500
APPLY_TEXT = "Segment lesions"
CANCEL_TEXT = "Cancel"
TEMPORARY_NODE_NAME = "__temp__"  # slicer.util's helpers add and remove such labelmaps


class Widget(VTKObservationMixin):
    """Builds the panel from Resources/UI/ALLNetSegment.ui; ``uiWidget`` goes into the module layout.

    ``parameterNodeLogic`` provides ``getParameterNode() -> ALLNetSegmentParameterNode``. The
    module widget calls ``enter``/``exit``; ``isEntered`` tells whether the module is shown.
    """

    def __init__(self, moduleDir: str | Path, parameterNodeLogic, logic: SegmentationLogic | None = None,
                 isEntered=lambda: True) -> None:
        VTKObservationMixin.__init__(self)
        self.moduleDir = Path(moduleDir)
        self.parameterNodeLogic = parameterNodeLogic
        self.logic = logic if logic is not None else SegmentationLogic(self.moduleDir)
        self.isEntered = isEntered
        self._parameterNode: ALLNetSegmentParameterNode | None = None
        self._guiTag = None
        self._observedSegmentation = None
        self._startTime = 0.0
        self._devicesProbed = False
        self._resetResults()

        self.uiWidget = slicer.util.loadUI(str(self.moduleDir / "Resources" / "UI" / "ALLNetSegment.ui"))
        self.ui = slicer.util.childWidgetVariables(self.uiWidget)
        self.uiWidget.setMRMLScene(slicer.mrmlScene)
        self.correction = Correction(self.ui.segmentEditorFrame.layout())
        self.segmentEditorWidget = self.correction.editor

        self.recomputeTimer = qt.QTimer()
        self.recomputeTimer.setSingleShot(True)
        self.recomputeTimer.setInterval(RECOMPUTE_DELAY_MS)
        self.recomputeTimer.connect("timeout()", self.onRecomputeTable)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.loadSampleButton.connect("clicked(bool)", self.onLoadSample)
        self.ui.recomputeButton.connect("clicked(bool)", self.onRecomputeTable)
        self.ui.show3DButton.connect("toggled(bool)", self.onShow3D)
        self.ui.exportButton.connect("clicked(bool)", self.onExport)
        self.ui.lesionTableView.connect("clicked(QModelIndex)", self.onLesionRowClicked)
        self.ui.advancedCollapsibleButton.connect("contentsCollapsed(bool)", self.onAdvancedCollapsed)
        self.logic.progress.connect(self.onProgress)
        self.logic.log.connect(self.onLog)
        self.logic.finished.connect(self.onFinished)
        self.logic.sampleFinished.connect(self.onSampleFinished)
        self.logic.installLogic.progressInfo.connect(self.onLog)
        # One core process at a time: the longitudinal mode shares the runner and the installer.
        self.longitudinal = LongitudinalPanel(
            self.ui, LongitudinalLogic(self.moduleDir, self.logic.runner, installLogic=self.logic.installLogic),
            lambda: self._parameterNode, self.onLog, lambda running: self._setRunning(running, longitudinal=True))
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.deviceInfoLabel.text = NOT_PROBED_TEXT
        if not self.ui.advancedCollapsibleButton.collapsed:  # shown open: ask once the panel is up
            qt.QTimer.singleShot(0, lambda: self.onAdvancedCollapsed(False))
        self._setRunning(False)
        self.initializeParameterNode()

    def _resetResults(self) -> None:
        """Forget the shown result (rows, table nodes, the run's maps)."""
        self.rows: list[dict] = []
        self.runMaps: dict = {}  # {"probability": sitk.Image, "zones": sitk.Image} of the last run
        self.lesionTableNode = None
        self.totalsTableNode = None

    # -- module life cycle -----------------------------------------------------------------
    def enter(self) -> None:
        self.initializeParameterNode()
        self.correction.enter()

    def exit(self) -> None:
        self.correction.exit()
        # Like the template: no GUI updates while another module is shown.
        if self._parameterNode is not None and self._guiTag is not None:
            self._parameterNode.disconnectGui(self._guiTag)
            self._guiTag = None

    def onSceneStartClose(self, caller=None, event=None) -> None:
        if self.logic.isRunning():  # its result would go into nodes that are leaving the scene
            self.onLog("Scene closed: the running task was cancelled.")
            self.logic.cancel()
        self.recomputeTimer.stop()
        self.setParameterNode(None)
        self._observeSegmentation(None)
        self.correction.onSceneStartClose()
        self._resetResults()
        self.longitudinal.onSceneStartClose()
        self.ui.lesionTableView.setMRMLTableNode(None)
        self.ui.totalsTableView.setMRMLTableNode(None)
        self.ui.statusLabel.text = ""

    def onSceneEndClose(self, caller=None, event=None) -> None:
        self.correction.onSceneEndClose(self.isEntered())
        if self.isEntered():
            self.initializeParameterNode()

    def cleanup(self) -> None:
        if self.logic.isRunning():
            self.logic.cancel()
        self.setParameterNode(None)
        self.removeObservers()

    # -- parameter node --------------------------------------------------------------------
    def initializeParameterNode(self) -> None:
        parameterNode = self.parameterNodeLogic.getParameterNode()
        if self._parameterNode is None or self._parameterNode.parameterNode is not parameterNode.parameterNode:
            self._restoreMachineSettings(parameterNode)
        self.setParameterNode(parameterNode)
        self.autoAssignInputs()

    def setParameterNode(self, parameterNode: ALLNetSegmentParameterNode | None) -> None:
        if self._parameterNode is not None:
            if self._guiTag is not None:
                self._parameterNode.disconnectGui(self._guiTag)
                self._guiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
        self._parameterNode = parameterNode
        if parameterNode is not None:
            self._guiTag = parameterNode.connectGui(self.ui)
            self.addObserver(parameterNode, vtk.vtkCommand.ModifiedEvent, self.onParameterNodeModified)
            self.onParameterNodeModified()

    @staticmethod
    def _restoreMachineSettings(parameterNode) -> None:
        settings = qt.QSettings()
        for name in MACHINE_SETTINGS:
            value = settings.value(SETTINGS_PREFIX + name)
            if value is None or value == "":
                continue
            try:
                if name == "tta":
                    value = str(value).lower() == "true"
                setattr(parameterNode, name, value)
            except (TypeError, ValueError):  # a stale or hand-edited setting; keep the default
                logging.warning("ALLNet: ignoring setting %s=%r", name, value)

    def _saveMachineSettings(self) -> None:
        settings = qt.QSettings()
        for name in MACHINE_SETTINGS:
            settings.setValue(SETTINGS_PREFIX + name, str(getattr(self._parameterNode, name)))

    def inputProblem(self) -> str | None:
        p = self._parameterNode
        if p is None:
            return "No parameter node."
        return inputProblem(p.t1Volume, p.flairVolume, p.t2Volume)

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p is None:
            return
        self._saveMachineSettings()
        if not self.logic.isRunning():
            self._updateApplyButton()
            self.longitudinal.updateButton()
        self._observeSegmentation(p.outputSegmentation)

    def _updateApplyButton(self) -> None:
        problem = self.inputProblem()
        self.ui.applyButton.enabled = problem is None
        self.ui.applyButton.toolTip = problem or "Run ALLNet on the selected volumes"
        self.ui.inputsMessageLabel.text = problem or ""

    def autoAssignInputs(self) -> None:
        """Fill empty input selectors from volume names (t1/t2/flair patterns); a volume fills one role."""
        p = self._parameterNode
        if p is None:
            return
        volumes = [n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                   if not n.IsA("vtkMRMLLabelMapVolumeNode") and n.GetName() != TEMPORARY_NODE_NAME]
        assigned = assignByName([n.GetName() for n in volumes])
        taken = {p.t1Volume, p.t2Volume, p.flairVolume}
        for role, attribute in (("t1", "t1Volume"), ("t2", "t2Volume"), ("flair", "flairVolume")):
            if role in assigned and getattr(p, attribute) is None and volumes[assigned[role]] not in taken:
                setattr(p, attribute, volumes[assigned[role]])
                taken.add(volumes[assigned[role]])

    def onNodeAdded(self, caller, event) -> None:
        # Deferred: the node's name is set after NodeAddedEvent when loading from file.
        qt.QTimer.singleShot(0, self.autoAssignInputs)

    # -- running ---------------------------------------------------------------------------
    def onApplyButton(self) -> None:
        if self.logic.isRunning():
            self.onLog("Cancelling...")
            self.logic.cancel()
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("ALLNet could not start.", waitCursor=True):
            problem = self.inputProblem()
            if problem:
                raise ValueError(problem)
            if not self.logic.installLogic.ensure():
                return
            if self.logic.installLogic.needsRestart:
                self.onLog("Restart Slicer to finish the installation, then run again.")
                return
            if p.outputSegmentation is None:
                p.outputSegmentation = slicer.mrmlScene.AddNewNodeByClass(
                    "vtkMRMLSegmentationNode", f"{p.flairVolume.GetName()} MS lesions")
            self.ui.logTextEdit.clear()
            self._startTime = time.time()
            self.logic.start(p.t1Volume, p.flairVolume, p.t2Volume, p.outputSegmentation,
                             SegmentationSettings.fromParameterNode(p))
            self._setRunning(True)

    def onLoadSample(self) -> None:
        if self.logic.isRunning():
            return
        with slicer.util.tryWithErrorDisplay("The sample case could not be built.", waitCursor=True):
            self.ui.logTextEdit.clear()
            self._startTime = time.time()
            self.logic.startSample()
            self._setRunning(True)

    def _setRunning(self, running: bool, longitudinal: bool = False) -> None:
        """Lock the controls during a run; ``longitudinal``: the run is the longitudinal section's,
        which keeps its own Cancel button."""
        self.ui.applyButton.text = CANCEL_TEXT if running and not longitudinal else APPLY_TEXT
        if running:
            self.ui.applyButton.enabled = not longitudinal
        else:
            self._updateApplyButton()
            self.longitudinal.updateButton()
        sections = ["inputsCollapsibleButton", "outputsCollapsibleButton", "advancedCollapsibleButton"]
        for name in sections if longitudinal else [*sections, "longitudinalCollapsibleButton"]:
            getattr(self.ui, name).enabled = not running
        if running:
            self._startTime = time.time()
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = "Starting..."

    def onProgress(self, stage: str, fraction: float, message: str) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        elapsed = time.time() - self._startTime
        self.ui.statusLabel.text = f"{stage}: {message} ({elapsed:.0f} s)"

    def onLog(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    def _reportFailure(self, outcome) -> bool:
        """Show how a run ended when it did not succeed; True if it did not."""
        if outcome.keptFolder:
            self.onLog(f"Files of this run are kept in: {outcome.keptFolder}")
        if outcome.cancelled:
            self.ui.statusLabel.text = "Cancelled."
            return True
        if not outcome.ok:
            self.ui.statusLabel.text = "Failed (see the message and the log)."
            slicer.util.errorDisplay(outcome.errorMessage, windowTitle="ALLNet Segment")
            return True
        return False

    def onFinished(self, result, outcome) -> None:
        self._setRunning(False)
        elapsed = time.time() - self._startTime
        if self._reportFailure(outcome) or self._parameterNode is None:
            return
        self.ui.progressBar.value = 100
        if result.reportPath is not None:
            self.onLog(f"QC report of this run: {result.reportPath}")
        for warning in result.warnings:  # e.g. a head or role mismatch let through by "Allow input mismatch"
            self.onLog(f"Warning: {warning}")
        self.runMaps = dict(result.maps)
        self.rows = list(result.rows) if result.rows else self._recomputedRows()
        self._showTables()
        self.recomputeTimer.stop()  # the import itself fired segmentation events; the table is fresh
        slicer.util.setSliceViewerLayers(background=self._parameterNode.flairVolume)
        totalMl = sum(r["volume_mm3"] for r in self.rows) / 1000.0
        self.ui.statusLabel.text = f"Done in {elapsed:.0f} s: {len(self.rows)} lesions, {totalMl:.2f} mL."

    def onSampleFinished(self, nodes, outcome) -> None:
        self._setRunning(False)
        if self._reportFailure(outcome) or self._parameterNode is None:
            return
        p = self._parameterNode
        p.t1Volume, p.flairVolume = nodes["t1"], nodes["flair"]
        p.t2Volume = nodes.get("t2")
        self.ui.progressBar.value = 100
        self.ui.statusLabel.text = f"Sample case loaded ({time.time() - self._startTime:.0f} s)."
        slicer.util.setSliceViewerLayers(background=nodes["flair"], fit=True)

    # -- table -----------------------------------------------------------------------------
    def _showTables(self) -> None:
        self.lesionTableNode, self.totalsTableNode = LesionTable.updateTables(
            self.rows, self.lesionTableNode, self.totalsTableNode, self._parameterNode.flairVolume)
        self.ui.lesionTableView.setMRMLTableNode(self.lesionTableNode)
        self.ui.totalsTableView.setMRMLTableNode(self.totalsTableNode)

    def _referenceVolume(self, segmentationNode):
        reference = segmentationNode.GetNodeReference(
            slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
        return reference if reference is not None else self._parameterNode.flairVolume

    def _recomputedRows(self) -> list[dict]:
        segmentationNode = self._parameterNode.outputSegmentation
        # Minimum size 0: a lesion the user painted on purpose must appear in the table.
        # Connectivity: the run's own (from its summary), so edits do not regroup lesions.
        connectivity = int(segmentationNode.GetAttribute(CONNECTIVITY_ATTRIBUTE) or DEFAULT_PLAN.connectivity)
        return LesionTable.recomputeRows(segmentationNode, self._referenceVolume(segmentationNode),
                                         probability=self.runMaps.get("probability"),
                                         zones=self.runMaps.get("zones"), minSizeMm3=0.0,
                                         connectivity=connectivity)

    def onRecomputeTable(self) -> None:
        p = self._parameterNode
        if p is None or p.outputSegmentation is None or self.logic.isRunning():
            return
        with slicer.util.tryWithErrorDisplay("The lesion table could not be recomputed.", waitCursor=True):
            self.rows = self._recomputedRows()
            self._showTables()

    def _observeSegmentation(self, segmentationNode) -> None:
        if segmentationNode is self._observedSegmentation:
            return
        events = (slicer.vtkSegmentation.SourceRepresentationModified, slicer.vtkSegmentation.SegmentAdded,
                  slicer.vtkSegmentation.SegmentRemoved)
        if self._observedSegmentation is not None:
            for event in events:
                self.removeObserver(self._observedSegmentation, event, self.onSegmentationEdited)
        self._observedSegmentation = segmentationNode
        if segmentationNode is not None:
            for event in events:
                self.addObserver(segmentationNode, event, self.onSegmentationEdited)
        flair = self._parameterNode.flairVolume if self._parameterNode is not None else None
        self.correction.show(segmentationNode, flair)

    def onSegmentationEdited(self, caller=None, event=None) -> None:
        # Debounced: a brush stroke fires many events; recompute once the user pauses.
        if self.ui.autoRecomputeCheckBox.checked and self.lesionTableNode is not None and not self.logic.isRunning():
            self.recomputeTimer.start()

    def onLesionRowClicked(self, index) -> None:
        if self.lesionTableNode is not None:
            LesionTable.jumpToRow(self.lesionTableNode, index.row())

    # -- 3D, export, device ----------------------------------------------------------------
    def onShow3D(self, show: bool) -> None:
        segmentationNode = self._parameterNode.outputSegmentation if self._parameterNode else None
        if segmentationNode is None:
            return
        # A segmentation made by the selector (or before any run) has no display node yet.
        segmentationNode.CreateDefaultDisplayNodes()
        if show:
            segmentationNode.CreateClosedSurfaceRepresentation()
        segmentationNode.GetDisplayNode().SetVisibility3D(show)

    def onExport(self) -> None:
        p = self._parameterNode
        if p is None or p.outputSegmentation is None:
            slicer.util.errorDisplay("Nothing to export: run the segmentation first.")
            return
        folder = self.ui.exportDirectoryButton.directory
        with slicer.util.tryWithErrorDisplay("Export failed.", waitCursor=True):
            if not self.rows:
                self.rows = self._recomputedRows()
            written = exportResults(p.outputSegmentation, self._referenceVolume(p.outputSegmentation), self.rows, folder)
            self.onLog("Exported: " + ", ".join(str(path) for path in written.values()))
            self.ui.statusLabel.text = f"Exported to {folder}"

    def onAdvancedCollapsed(self, collapsed: bool) -> None:
        if collapsed or self._devicesProbed:
            return
        self._devicesProbed = True
        self.ui.deviceInfoLabel.text = PROBING_TEXT

        def show(text: str) -> None:
            self.ui.deviceInfoLabel.text = text

        probeDevices(pythonSlicerExecutable(), show)
