"""The "Longitudinal (two visits)" section of the panel: the volumes of both visits, one button
that runs ``allnet longitudinal`` (and cancels it), the change table and the counts per class.

The section shares the single-visit panel's parameter node (its volume selectors are bound
through ``SlicerParameterName``), run settings (Advanced), progress bar, status line and Log.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import slicer

from . import LesionTable
from .LongitudinalImport import ChangeResult
from .LongitudinalLogic import LongitudinalLogic, longitudinalInputProblem
from .Parameter import VISIT_VOLUMES, SegmentationSettings
from .ProcessRunner import RunOutcome

APPLY_TEXT = "Find lesion changes"
CANCEL_TEXT = "Cancel"
TITLE = "ALLNet Segment: longitudinal"


class LongitudinalPanel:
    """Drives the longitudinal widgets of ``ui``.

    ``parameterNode()`` returns the panel's current parameter node (or None); ``log(line)``
    appends to the Log; ``setRunning(running)`` locks or unlocks the single-visit controls
    and resets the shared progress bar.
    """

    def __init__(self, ui, logic: LongitudinalLogic, parameterNode: Callable, log: Callable[[str], None],
                 setRunning: Callable[[bool], None]) -> None:
        self.ui = ui
        self.logic = logic
        self.parameterNode = parameterNode
        self.log = log
        self.setRunning = setRunning
        self.tableNode = None
        self.result: ChangeResult | None = None
        self._running = False
        self._startTime = 0.0
        ui.longitudinalApplyButton.connect("clicked(bool)", self.onApply)
        ui.changeTableView.connect("clicked(QModelIndex)", self.onRowClicked)
        logic.finished.connect(self.onFinished)

    # -- inputs ----------------------------------------------------------------------------
    def volumes(self) -> dict:
        """{(visit, modality): selected volume or None} from the parameter node."""
        p = self.parameterNode()
        return {key: (getattr(p, name) if p is not None else None) for key, name in VISIT_VOLUMES.items()}

    def settings(self) -> SegmentationSettings:
        return SegmentationSettings.fromParameterNode(self.parameterNode())

    def inputProblem(self) -> str | None:
        if self.parameterNode() is None:
            return "No parameter node."
        return longitudinalInputProblem(self.volumes(), self.settings())

    def updateButton(self) -> None:
        """Enable the button when the inputs can run (called when the parameter node changes)."""
        if self._running:
            return
        problem = self.inputProblem() if not self.logic.isRunning() else "Another ALLNet run is in progress."
        self.ui.longitudinalApplyButton.enabled = problem is None
        self.ui.longitudinalApplyButton.toolTip = problem or "Compare the two visits with allnet longitudinal"
        self.ui.longitudinalMessageLabel.text = problem or ""

    # -- running ---------------------------------------------------------------------------
    def onApply(self) -> None:
        if self._running:
            self.log("Cancelling...")
            self.logic.cancel()
            return
        with slicer.util.tryWithErrorDisplay("ALLNet could not start the longitudinal run.", waitCursor=True):
            problem = self.inputProblem()
            if problem:
                self.ui.longitudinalMessageLabel.text = problem
                raise ValueError(problem)
            if not self.logic.installLogic.ensure():
                return
            if self.logic.installLogic.needsRestart:
                self.log("Restart Slicer to finish the installation, then run again.")
                return
            self.ui.logTextEdit.clear()
            self._startTime = time.time()
            self.logic.start(self.volumes(), self.settings(), self.tableNode)
            self._setRunning(True)

    def _setRunning(self, running: bool) -> None:
        self._running = running
        self.ui.longitudinalApplyButton.text = CANCEL_TEXT if running else APPLY_TEXT
        self.ui.longitudinalApplyButton.enabled = True
        self.ui.longitudinalInputsFrame.enabled = not running
        self.setRunning(running)
        if not running:
            self.updateButton()

    def onFinished(self, result: ChangeResult | None, outcome: RunOutcome) -> None:
        self._setRunning(False)
        if outcome.keptFolder:
            self.log(f"Files of this run are kept in: {outcome.keptFolder}")
        if outcome.cancelled:
            self.ui.statusLabel.text = "Cancelled."
            return
        if not outcome.ok or result is None:
            self.ui.statusLabel.text = "Failed (see the message and the log)."
            slicer.util.errorDisplay(outcome.errorMessage, windowTitle=TITLE)
            return
        self.result = result
        self.tableNode = result.tableNode
        self.ui.changeTableView.setMRMLTableNode(result.tableNode)
        p = self.parameterNode()
        if p is not None:
            p.changeSegmentation = result.segmentationNode
        self.ui.progressBar.value = 100
        if result.reportPath is not None:
            self.log(f"QC report of this run: {result.reportPath}")
        for warning in result.warnings:
            self.log(f"Warning: {warning}")
        line = f"Lesion changes: {result.countsText()}."
        self.log(line)
        self.ui.statusLabel.text = f"Done in {time.time() - self._startTime:.0f} s. {line}"
        followup = result.segmentationNode.GetNodeReference(
            slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
        slicer.util.setSliceViewerLayers(background=followup)

    def onRowClicked(self, index) -> None:
        if self.tableNode is not None:
            LesionTable.jumpToRow(self.tableNode, index.row())

    # -- scene -----------------------------------------------------------------------------
    def onSceneStartClose(self) -> None:
        """The table and result leave with the scene; the next run makes new ones."""
        self.tableNode = None
        self.result = None
        self.ui.changeTableView.setMRMLTableNode(None)
