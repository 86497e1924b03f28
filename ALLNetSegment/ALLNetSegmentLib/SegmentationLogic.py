"""One ALLNet run from Slicer: inputs to a temporary folder, the core in a PythonSlicer
subprocess, the results back into the scene. Non-blocking for the GUI, blocking for scripts."""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Protocol

import slicer
from allnet.contract import strip_image_suffix

from .InputMatching import inputProblem
from .InstallLogic import InstallLogic
from .Parameter import SegmentationSettings
from .ProcessRunner import ProcessRunner, RunOutcome
from .ResultImporter import ImportedResult, ResultImporter
from .Signal import Signal


# Environment of every core process: progress lines must arrive as they are printed, not
# when a buffer fills.
CORE_PROCESS_ENVIRONMENT = {"PYTHONUNBUFFERED": "1"}


class RunnerProtocol(Protocol):
    """What the logic needs from a process runner (tests may pass their own)."""

    progress: Signal
    log: Signal
    finished: Signal

    def start(self, args: list[str], cwd: str | None = None, updateEnvironment: dict | None = None) -> None: ...
    def runBlocking(self, args: list[str], cwd: str | None = None, updateEnvironment: dict | None = None) -> RunOutcome: ...
    def cancel(self) -> None: ...
    def isRunning(self) -> bool: ...


def pythonSlicerExecutable() -> str:
    """PythonSlicer (Slicer's Python with Slicer's environment); the current Python outside Slicer."""
    found = shutil.which("PythonSlicer")
    return found if found else sys.executable


class SegmentationLogic:
    """Runs the core; ``finished(ImportedResult | None, RunOutcome)`` after a non-blocking run."""

    def __init__(self, moduleDir: str | Path, runner: RunnerProtocol | None = None,
                 importer: ResultImporter | None = None, installLogic: InstallLogic | None = None) -> None:
        self.moduleDir = Path(moduleDir)
        resources = self.moduleDir / "Resources"
        self.runner = runner if runner is not None else ProcessRunner()
        self.importer = importer if importer is not None else ResultImporter(resources)
        self.installLogic = installLogic if installLogic is not None else InstallLogic(resources / "requirements.txt")
        self.progress = self.runner.progress
        self.log = self.runner.log
        self.finished = Signal("ImportedResult", "RunOutcome")
        self.sampleFinished = Signal("dict", "RunOutcome")  # {"t1": node, ...} or None
        self.runner.finished.connect(self._onRunnerFinished)
        self._pending: dict | None = None

    # -- building the command --------------------------------------------------------------
    @staticmethod
    def writeInputs(folder: Path, t1Node, flairNode, t2Node=None) -> dict[str, str]:
        """Write the input volumes as uncompressed NRRD (fast; read back by the core)."""
        paths = {}
        for role, node in (("t1", t1Node), ("flair", flairNode), ("t2", t2Node)):
            if node is None:
                continue
            path = Path(folder) / f"{role}.nrrd"
            # A separate storage node: saveNode would re-point the input's own storage node here.
            storageNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
            try:
                storageNode.SetFileName(str(path))
                storageNode.UseCompressionOff()
                if not storageNode.WriteData(node):
                    raise RuntimeError(f"{path}: could not write the {role.upper()} input volume")
            finally:
                slicer.mrmlScene.RemoveNode(storageNode)
            paths[role] = str(path)
        return paths

    @staticmethod
    def buildCommand(inputs: dict[str, str], outputDir: str | Path, settings: SegmentationSettings,
                     python: str | None = None) -> list[str]:
        args = [python or pythonSlicerExecutable(), "-m", "allnet", "segment",
                "--t1", inputs["t1"], "--flair", inputs["flair"]]
        if "t2" in inputs:
            args += ["--t2", inputs["t2"]]
        return args + ["-o", str(outputDir), "--progress", "json", *settings.cliArgs()]

    def _prepare(self, t1Node, flairNode, t2Node, settings) -> tuple[list[str], Path]:
        """The core command and the run's output folder, inside a new temporary work folder."""
        problem = inputProblem(t1Node, flairNode, t2Node)
        if problem:
            raise ValueError(problem)
        workDir = Path(slicer.util.tempDirectory("ALLNet"))
        inputs = self.writeInputs(workDir, t1Node, flairNode, t2Node)
        outputDir = workDir / "output"
        return self.buildCommand(inputs, outputDir, settings), outputDir

    # -- running ---------------------------------------------------------------------------
    def start(self, t1Node, flairNode, t2Node=None, segmentationNode=None,
              settings: SegmentationSettings | None = None) -> None:
        """Start a run and return at once; ``finished`` is emitted on the main thread."""
        settings = settings or SegmentationSettings()
        args, outputDir = self._prepare(t1Node, flairNode, t2Node, settings)
        self._pending = {"kind": "segment", "flair": flairNode, "segmentation": segmentationNode,
                         "settings": settings, "outputDir": outputDir}
        # cwd = module folder: `python -m allnet` then finds the bundled core package.
        self.runner.start(args, cwd=str(self.moduleDir), updateEnvironment=CORE_PROCESS_ENVIRONMENT)

    def startSample(self) -> None:
        """Build the synthetic demo case in the core process; ``sampleFinished`` follows."""
        caseParent = Path(slicer.util.tempDirectory("ALLNetSample"))
        args = [pythonSlicerExecutable(), "-m", "allnet", "demo", "--case-only", "-o", str(caseParent),
                "--progress", "json"]
        self._pending = {"kind": "sample", "caseParent": caseParent}
        self.runner.start(args, cwd=str(self.moduleDir), updateEnvironment=CORE_PROCESS_ENVIRONMENT)

    def segment(self, t1Node, flairNode, t2Node=None, segmentationNode=None,
                settings: SegmentationSettings | None = None, keepOutputs: bool = False) -> ImportedResult:
        """Blocking run for scripts and tests; raises RuntimeError with the core's message on failure.

        The work folder is removed after a successful import unless ``keepOutputs``; after a
        failure it is kept and named in the error message.
        """
        settings = settings or SegmentationSettings()
        args, outputDir = self._prepare(t1Node, flairNode, t2Node, settings)
        self._pending = None
        outcome = self.runner.runBlocking(args, cwd=str(self.moduleDir), updateEnvironment=CORE_PROCESS_ENVIRONMENT)
        if not outcome.ok:
            message = "Segmentation cancelled." if outcome.cancelled else outcome.errorMessage
            raise RuntimeError(f"{message}\n\nFiles of the run: {outputDir.parent}")
        result = self.importer.importResult(outcome.outputDir or outputDir, flairNode, segmentationNode,
                                            keepProbability=settings.keepProbability)
        if not keepOutputs:
            result.reportPath = self.finishWorkFolder(outcome.outputDir or outputDir, flairNode.GetName())
        return result

    def cancel(self) -> None:
        self.runner.cancel()

    def isRunning(self) -> bool:
        return self.runner.isRunning()

    def _onRunnerFinished(self, outcome: RunOutcome) -> None:
        pending, self._pending = self._pending, None
        if pending is None:  # a blocking run: segment() imports itself
            return
        if pending["kind"] == "sample":
            self._sampleFinished(pending, outcome)
            return
        result = None
        if outcome.ok:
            try:
                result = self.importer.importResult(outcome.outputDir or pending["outputDir"], pending["flair"],
                                                    pending["segmentation"],
                                                    keepProbability=pending["settings"].keepProbability)
            except Exception as error:  # reported to the user, not raised into the Qt timer
                logging.exception("ALLNet: importing the results failed")
                outcome.errorMessage = f"The results could not be loaded: {error}"
        if result is not None:
            result.reportPath = self.finishWorkFolder(outcome.outputDir or pending["outputDir"],
                                                      pending["flair"].GetName())
        elif outcome.cancelled:  # nothing to diagnose
            self.removeWorkFolder(pending["outputDir"])
        else:  # kept for diagnosis; the panel prints where
            outcome.keptFolder = str(Path(pending["outputDir"]).parent)
        self.finished(result, outcome)

    def _sampleFinished(self, pending: dict, outcome: RunOutcome) -> None:
        nodes = None
        if outcome.ok:
            try:
                # The case files stay: they are the data behind the loaded volumes.
                nodes = loadCaseVolumes(outcome.outputDir or Path(pending["caseParent"]) / "case")
            except Exception as error:
                logging.exception("ALLNet: loading the sample case failed")
                outcome.errorMessage = f"The sample case could not be loaded: {error}"
        if nodes is None and outcome.cancelled:
            shutil.rmtree(pending["caseParent"], ignore_errors=True)
        elif nodes is None:
            outcome.keptFolder = str(pending["caseParent"])
        self.sampleFinished(nodes, outcome)

    @classmethod
    def finishWorkFolder(cls, outputDir: str | Path, caseName: str) -> Path | None:
        """After a successful import: keep the run's QC report (a self-contained HTML file) in
        Slicer's temporary folder, delete the rest of the work folder; returns the report's path."""
        import re
        import time

        from .ResultImporter import runOutputs

        report = runOutputs(outputDir).get("report")
        kept = None
        if report is not None and report.is_file():
            folder = Path(slicer.app.temporaryPath) / "ALLNetReports"
            folder.mkdir(parents=True, exist_ok=True)
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", caseName).strip("_") or "case"
            kept = folder / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-report.html"
            shutil.move(str(report), kept)
        cls.removeWorkFolder(outputDir)
        return kept

    @staticmethod
    def removeWorkFolder(outputDir: str | Path) -> None:
        """Delete a run's temporary work folder (inputs and outputs; ``outputDir`` is inside it)."""
        shutil.rmtree(Path(outputDir).parent, ignore_errors=True)


def loadCaseVolumes(caseDir: str | Path) -> dict:
    """Load the T1W/T2W/FLAIR files of a case folder: ``{"t1": node, "t2": node, "flair": node}``."""
    files = findCaseFiles(caseDir)
    return {role: slicer.util.loadVolume(str(path), {"name": f"ALLNet sample {role.upper()}"})
            for role, path in files.items()}


def findCaseFiles(folder: str | Path) -> dict[str, Path]:
    """T1W/T2W/FLAIR image files under ``folder`` matched by name (case-insensitive)."""
    from .InputMatching import roleOfName

    found: dict[str, Path] = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and strip_image_suffix(path.name):
            role = roleOfName(path.name)
            if role and role not in found:
                found[role] = path
    if "t1" not in found or "flair" not in found:
        raise RuntimeError(f"{folder}: no T1W and FLAIR image files found in the sample case")
    return found
