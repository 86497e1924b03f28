"""The ALLNet Segment panel: inputs, run/cancel with progress, lesion table, correction, export."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import qt
import slicer
import vtk
from slicer.util import VTKObservationMixin

from . import LesionTable
from .DeviceInfo import describeDevices
from .Export import exportResults
from .InputMatching import assignByName
from .Parameter import ALLNetSegmentParameterNode, SegmentationSettings
from .ResultImporter import OUTPUT_DIR_ATTRIBUTE, PROBABILITY_FILE, TABLE_FILE, ZONES_FILE
from .SegmentationLogic import SegmentationLogic, loadSampleCase

SETTINGS_PREFIX = "ALLNet/"
MACHINE_SETTINGS = ("device", "ensemble", "tta")  # depend on the computer, not on the case
RECOMPUTE_DELAY_MS = 1500
APPLY_TEXT = "Segment lesions"
CANCEL_TEXT = "Cancel"


class Widget(VTKObservationMixin):
    """Builds the panel from Resources/UI/ALLNetSegment.ui; ``uiWidget`` goes into the module layout.

    ``parameterNodeLogic`` provides ``getParameterNode() -> ALLNetSegmentParameterNode``.
    """

    def __init__(self, moduleDir: str | Path, parameterNodeLogic, logic: SegmentationLogic | None = None) -> None:
        VTKObservationMixin.__init__(self)
        self.moduleDir = Path(moduleDir)
        self.parameterNodeLogic = parameterNodeLogic
        self.logic = logic if logic is not None else SegmentationLogic(self.moduleDir)
        self._parameterNode: ALLNetSegmentParameterNode | None = None
        self._guiTag = None
        self._observedSegmentation = None
        self._startTime = 0.0
        self.rows: list[dict] = []
        self.lesionTableNode = None
        self.totalsTableNode = None

        self.uiWidget = slicer.util.loadUI(str(self.moduleDir / "Resources" / "UI" / "ALLNetSegment.ui"))
        self.ui = slicer.util.childWidgetVariables(self.uiWidget)
        self.uiWidget.setMRMLScene(slicer.mrmlScene)
        self._setupSegmentEditor()

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
        self.logic.progress.connect(self.onProgress)
        self.logic.log.connect(self.onLog)
        self.logic.finished.connect(self.onFinished)
        self.logic.installLogic.progressInfo.connect(self.onLog)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self.onNodeAdded)
        self.ui.deviceInfoLabel.text = describeDevices()
        self._setRunning(False)
        self.initializeParameterNode()

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

    def cleanup(self) -> None:
        if self.logic.isRunning():
            self.logic.cancel()
        self.setParameterNode(None)
        self.removeObservers()

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
            except ValueError:  # a stale or hand-edited setting; keep the default
                logging.warning("ALLNet: ignoring setting %s=%r", name, value)

    def _saveMachineSettings(self) -> None:
        settings = qt.QSettings()
        for name in MACHINE_SETTINGS:
            settings.setValue(SETTINGS_PREFIX + name, str(getattr(self._parameterNode, name)))

    def onParameterNodeModified(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p is None:
            return
        self._saveMachineSettings()
        ready = p.t1Volume is not None and p.flairVolume is not None
        if not self.logic.isRunning():
            self.ui.applyButton.enabled = ready
            self.ui.applyButton.toolTip = ("Run ALLNet on the selected volumes" if ready
                                           else "Select a T1W and a FLAIR volume (T2W is optional)")
        self._observeSegmentation(p.outputSegmentation)

    def autoAssignInputs(self) -> None:
        """Fill empty input selectors from volume names (t1/t2/flair patterns)."""
        p = self._parameterNode
        if p is None:
            return
        volumes = [n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                   if not n.IsA("vtkMRMLLabelMapVolumeNode")]
        assigned = assignByName([n.GetName() for n in volumes])
        for role, attribute in (("t1", "t1Volume"), ("t2", "t2Volume"), ("flair", "flairVolume")):
            if role in assigned and getattr(p, attribute) is None:
                setattr(p, attribute, volumes[assigned[role]])

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

    def _setRunning(self, running: bool) -> None:
        self.ui.applyButton.text = CANCEL_TEXT if running else APPLY_TEXT
        self.ui.applyButton.enabled = running or (
            self._parameterNode is not None and self._parameterNode.t1Volume is not None
            and self._parameterNode.flairVolume is not None)
        for name in ("inputsCollapsibleButton", "outputsCollapsibleButton", "advancedCollapsibleButton"):
            getattr(self.ui, name).enabled = not running
        if running:
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = "Starting..."

    def onProgress(self, stage: str, fraction: float, message: str) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        elapsed = time.time() - self._startTime
        self.ui.statusLabel.text = f"{stage}: {message} ({elapsed:.0f} s)"

    def onLog(self, line: str) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    def onFinished(self, result, outcome) -> None:
        self._setRunning(False)
        elapsed = time.time() - self._startTime
        if outcome.cancelled:
            self.ui.statusLabel.text = "Cancelled."
            return
        if not outcome.ok:
            self.ui.statusLabel.text = "Failed (see the message and the log)."
            slicer.util.errorDisplay(outcome.errorMessage, windowTitle="ALLNet Segment")
            return
        self.ui.progressBar.value = 100
        tablePath = Path(result.outputDir) / TABLE_FILE
        self.rows = LesionTable.rowsFromCsv(tablePath) if tablePath.is_file() else self._recomputedRows()
        self._showTables()
        self.recomputeTimer.stop()  # the import itself fired segmentation events; the table is fresh
        slicer.util.setSliceViewerLayers(background=self._parameterNode.flairVolume)
        totalMl = sum(r["volume_mm3"] for r in self.rows) / 1000.0
        self.ui.statusLabel.text = f"Done in {elapsed:.0f} s: {len(self.rows)} lesions, {totalMl:.2f} mL."

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
        outputDir = segmentationNode.GetAttribute(OUTPUT_DIR_ATTRIBUTE)
        maps = {}
        if outputDir:
            maps = {"probabilityPath": Path(outputDir) / PROBABILITY_FILE, "zonesPath": Path(outputDir) / ZONES_FILE}
        # Minimum size 0: a lesion the user painted on purpose must appear in the table.
        return LesionTable.recomputeRows(segmentationNode, self._referenceVolume(segmentationNode),
                                         minSizeMm3=0.0, **maps)

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
        self.segmentEditorWidget.setSegmentationNode(segmentationNode)
        if self._parameterNode is not None and self._parameterNode.flairVolume is not None:
            self.segmentEditorWidget.setSourceVolumeNode(self._parameterNode.flairVolume)

    def onSegmentationEdited(self, caller=None, event=None) -> None:
        # Debounced: a brush stroke fires many events; recompute once the user pauses.
        if self.ui.autoRecomputeCheckBox.checked and self.lesionTableNode is not None and not self.logic.isRunning():
            self.recomputeTimer.start()

    def onLesionRowClicked(self, index) -> None:
        if self.lesionTableNode is not None:
            LesionTable.jumpToRow(self.lesionTableNode, index.row())

    # -- correction, 3D, export, sample ----------------------------------------------------
    def _setupSegmentEditor(self) -> None:
        self.segmentEditorWidget = slicer.qMRMLSegmentEditorWidget()
        self.segmentEditorWidget.setMRMLScene(slicer.mrmlScene)
        self.segmentEditorNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", "ALLNet segment editor")
        self.segmentEditorWidget.setMRMLSegmentEditorNode(self.segmentEditorNode)
        self.ui.segmentEditorFrame.layout().addWidget(self.segmentEditorWidget)

    def onShow3D(self, show: bool) -> None:
        segmentationNode = self._parameterNode.outputSegmentation if self._parameterNode else None
        if segmentationNode is None:
            return
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

    def onLoadSample(self) -> None:
        with slicer.util.tryWithErrorDisplay("The sample case could not be loaded.", waitCursor=True):
            nodes = loadSampleCase(slicer.util.tempDirectory("ALLNetSample"))
            p = self._parameterNode
            p.t1Volume, p.flairVolume = nodes["t1"], nodes["flair"]
            p.t2Volume = nodes.get("t2")
            slicer.util.setSliceViewerLayers(background=nodes["flair"], fit=True)
