"""One longitudinal ALLNet run from Slicer: the volumes of two visits to a temporary folder,
``allnet longitudinal`` in a PythonSlicer subprocess (the process runner of the single-visit
mode), the lesion changes back into the scene (``LongitudinalImport``).

The command line is built from ``allnet.contract`` (sub-command, one option per visit and
modality, output and progress options); nothing of the core beyond that standard-library
module is imported in Slicer's GUI process.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import slicer
from allnet.contract import (EXIT_CODES, LONGITUDINAL_COMMAND, LONGITUDINAL_INPUT_OPTIONS, OUTPUT_OPTION,
                             PROGRESS_JSON_OPTIONS, VISITS)

from .InstallLogic import InstallLogic
from .LongitudinalImport import ChangeImporter, ChangeResult
from .Parameter import SegmentationSettings
from .ProcessRunner import ProcessRunner, RunOutcome
from .SegmentationLogic import (CORE_PROCESS_ENVIRONMENT, RunnerProtocol, SegmentationLogic,
                                pythonSlicerExecutable)
from .Signal import Signal

VISIT_NAMES = {"baseline": "baseline", "followup": "follow-up"}
MODALITY_NAMES = {"flair": "FLAIR", "t1": "T1W", "t2": "T2W"}

# {(visit, modality): volume node or None}; keys are those of LONGITUDINAL_INPUT_OPTIONS.
VisitVolumes = dict


def inputLabel(key: tuple[str, str]) -> str:
    """"baseline FLAIR", "follow-up T1W", ... for messages."""
    visit, modality = key
    return f"{VISIT_NAMES[visit]} {MODALITY_NAMES[modality]}"


def _fileOf(node) -> str | None:
    """The file a volume was read from (its storage node), or None."""
    storageNode = node.GetStorageNode()
    fileName = storageNode.GetFileName() if storageNode is not None else None
    return os.path.realpath(fileName) if fileName else None


def longitudinalInputProblem(volumes: VisitVolumes, settings: SegmentationSettings | None = None) -> str | None:
    """Why these volumes cannot be compared, or None when they can.

    A FLAIR at both visits and a T1W at one visit at least (the other visit borrows it); T2W
    optional. No volume, and no file, may stand for two inputs: the same scan given for both
    visits would look like a patient without change.
    """
    flairs = [(visit, "flair") for visit in VISITS]
    missing = [key for key in flairs if volumes.get(key) is None]
    if len(missing) == len(flairs):
        return "Select the baseline and the follow-up FLAIR (a T1W at one visit at least; T2W is optional)."
    if missing:
        return f"Select the {inputLabel(missing[0])} volume."
    if all(volumes.get((visit, "t1")) is None for visit in VISITS):
        return "Select a T1W at one visit at least (baseline or follow-up): the other visit borrows it."
    given = [(key, node) for key, node in volumes.items() if node is not None]
    for index, (key, node) in enumerate(given):
        for otherKey, other in given[index + 1:]:
            if other is node:
                return (f"The {inputLabel(key)} and the {inputLabel(otherKey)} are the same volume: "
                        "each input needs its own scan.")
            fileName = _fileOf(node)
            if fileName is not None and fileName == _fileOf(other):
                return (f"The {inputLabel(key)} and the {inputLabel(otherKey)} were loaded from the same file "
                        f"({fileName}): each input needs its own scan.")
    if settings is not None and settings.run.preprocessed:
        return ("Longitudinal mode needs the native scans of both visits: untick 'Already preprocessed' "
                "under Advanced.")
    return None


def withExitMeaning(outcome: RunOutcome) -> str | None:
    """The outcome's error message, followed by what its exit code means (``allnet.contract``)."""
    message = outcome.errorMessage
    meaning = EXIT_CODES.get(outcome.returnCode)
    if message is None or outcome.returnCode == 0 or meaning is None or "exit code" in message:
        return message
    return f"{message}\n\n(exit code {outcome.returnCode}: {meaning})"


class LongitudinalLogic:
    """Runs ``allnet longitudinal``; ``finished(ChangeResult | None, RunOutcome)`` after a
    non-blocking run. ``runner`` is shared with the single-visit mode: one core process at a time."""

    def __init__(self, moduleDir: str | Path, runner: RunnerProtocol | None = None,
                 importer: ChangeImporter | None = None, installLogic: InstallLogic | None = None) -> None:
        self.moduleDir = Path(moduleDir)
        self.runner = runner if runner is not None else ProcessRunner()
        self.importer = importer if importer is not None else ChangeImporter()
        self.installLogic = (installLogic if installLogic is not None
                             else InstallLogic(self.moduleDir / "Resources" / "requirements.txt"))
        self.finished = Signal("ChangeResult", "RunOutcome")
        self.runner.finished.connect(self._onRunnerFinished)
        self._pending: dict | None = None

    # -- building the command --------------------------------------------------------------
    @staticmethod
    def writeInputs(workDir: Path, volumes: VisitVolumes) -> dict[tuple[str, str], str]:
        """Each visit's volumes as NRRD in ``workDir/<visit>/``; {(visit, modality): path}."""
        paths: dict[tuple[str, str], str] = {}
        for visit in VISITS:
            folder = Path(workDir) / visit
            folder.mkdir(parents=True, exist_ok=True)
            written = SegmentationLogic.writeInputs(folder, volumes.get((visit, "t1")),
                                                    volumes.get((visit, "flair")), volumes.get((visit, "t2")))
            paths.update({(visit, modality): path for modality, path in written.items()})
        return paths

    @staticmethod
    def buildCommand(inputs: dict[tuple[str, str], str], outputDir: str | Path, settings: SegmentationSettings,
                     python: str | None = None) -> list[str]:
        """``python -m allnet longitudinal`` with one option per given input, in the contract's order."""
        args = [python or pythonSlicerExecutable(), "-m", "allnet", LONGITUDINAL_COMMAND]
        for key, option in LONGITUDINAL_INPUT_OPTIONS.items():
            if key in inputs:
                args += [option, str(inputs[key])]
        return args + [OUTPUT_OPTION, str(outputDir), *PROGRESS_JSON_OPTIONS, *settings.cliArgs()]

    def _prepare(self, volumes: VisitVolumes, settings: SegmentationSettings) -> tuple[list[str], Path]:
        """The core command and the run's output folder, inside a new temporary work folder;
        ValueError with a readable message (and nothing written) for inputs that cannot run."""
        problem = longitudinalInputProblem(volumes, settings)
        if problem:
            raise ValueError(problem)
        workDir = Path(slicer.util.tempDirectory("ALLNetLongitudinal"))
        outputDir = workDir / "output"
        return self.buildCommand(self.writeInputs(workDir, volumes), outputDir, settings), outputDir

    # -- running ---------------------------------------------------------------------------
    def start(self, volumes: VisitVolumes, settings: SegmentationSettings | None = None, tableNode=None) -> None:
        """Start a run and return at once; ``finished`` is emitted on the main thread. The change
        table goes into ``tableNode`` (a new table node when None)."""
        settings = settings or SegmentationSettings()
        args, outputDir = self._prepare(volumes, settings)
        self._pending = {"flair": volumes[(VISITS[-1], "flair")], "outputDir": outputDir, "table": tableNode}
        # cwd = module folder: `python -m allnet` then finds the bundled core package.
        self.runner.start(args, cwd=str(self.moduleDir), updateEnvironment=CORE_PROCESS_ENVIRONMENT)

    def run(self, volumes: VisitVolumes, settings: SegmentationSettings | None = None,
            keepOutputs: bool = False) -> ChangeResult:
        """Blocking run for scripts; raises RuntimeError with the core's message on failure."""
        settings = settings or SegmentationSettings()
        args, outputDir = self._prepare(volumes, settings)
        self._pending = None
        outcome = self.runner.runBlocking(args, cwd=str(self.moduleDir), updateEnvironment=CORE_PROCESS_ENVIRONMENT)
        if not outcome.ok:
            message = "Longitudinal run cancelled." if outcome.cancelled else withExitMeaning(outcome)
            raise RuntimeError(f"{message}\n\nFiles of the run: {outputDir.parent}")
        flair = volumes[(VISITS[-1], "flair")]
        result = self.importer.importResult(outcome.outputDir or outputDir, flair)
        if not keepOutputs:
            result.reportPath = SegmentationLogic.finishWorkFolder(outcome.outputDir or outputDir, flair.GetName())
        return result

    def cancel(self) -> None:
        self.runner.cancel()

    def isRunning(self) -> bool:
        return self.runner.isRunning()

    def _onRunnerFinished(self, outcome: RunOutcome) -> None:
        pending, self._pending = self._pending, None
        if pending is None:  # a single-visit run, or a blocking run that imports itself
            return
        outputDir = outcome.outputDir or pending["outputDir"]
        result = None
        if outcome.ok:
            try:
                result = self.importer.importResult(outputDir, pending["flair"], pending["table"])
            except Exception as error:  # reported to the user, not raised into the Qt timer
                logging.exception("ALLNet: importing the longitudinal results failed")
                outcome.errorMessage = f"The results could not be loaded: {error}"
        if result is not None:
            result.reportPath = SegmentationLogic.finishWorkFolder(outputDir, pending["flair"].GetName())
        elif outcome.cancelled:
            SegmentationLogic.removeWorkFolder(pending["outputDir"])
        else:  # kept for diagnosis; the panel prints where
            outcome.errorMessage = withExitMeaning(outcome)
            outcome.keptFolder = str(Path(pending["outputDir"]).parent)
        self.finished(result, outcome)
