"""Runs the ALLNet core in a separate process and turns its output into progress and a result.

The child is started with ``slicer.util.launchConsoleProcess`` (stderr is merged into stdout).
Machine-readable lines (``ALLNET-PROGRESS``/``ALLNET-RESULT``/``ALLNET-ERROR``, see
``allnet.progress``) drive the progress signal; every other line goes to the log and the last
ones are kept so that a crash without an error line still reaches the user with its context.
"""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass

import slicer

from allnet.contract import EXIT_CANCELLED, EXIT_CODES, EXIT_OK

from .Signal import Signal

# Meaning of the core's exit codes, for messages when no ALLNET-ERROR line came.
EXIT_CODE_MEANINGS = {code: meaning for code, meaning in EXIT_CODES.items() if code != EXIT_OK}
TAIL_LINES = 20


@dataclass
class RunOutcome:
    """How a run ended. ``errorMessage`` is readable text for the user when ``ok`` is False."""

    returnCode: int
    cancelled: bool = False
    outputDir: str | None = None
    summaryPath: str | None = None
    errorMessage: str | None = None
    keptFolder: str | None = None  # a failed run's work folder, kept for diagnosis

    @property
    def ok(self) -> bool:
        return self.returnCode == 0 and not self.cancelled and self.errorMessage is None


def parseLine(line: str) -> tuple[str, dict] | None:
    """``(kind, payload)`` of a protocol line (kind: progress/result/error), else None.

    The parser of the core itself is used, so the module and the core cannot drift apart;
    ``allnet.progress`` only needs the standard library, so importing it in Slicer's GUI
    process costs nothing even before the core's dependencies are installed.
    """
    from allnet.progress import parse_line

    return parse_line(line)


class ProcessRunner:
    """One core process at a time; emits ``progress(stage, fraction, message)``, ``log(line)``
    and ``finished(RunOutcome)``."""

    def __init__(self) -> None:
        self.progress = Signal("str", "float", "str")
        self.log = Signal("str")
        self.finished = Signal("RunOutcome")
        self._proc = None
        self._cancelRequested = False
        self._reset()

    def _reset(self) -> None:
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._errorPayload: dict | None = None
        self._resultPayload: dict | None = None
        self._cancelRequested = False
        self.lastOutcome: RunOutcome | None = None

    # -- starting ---------------------------------------------------------------------------
    def start(self, args: list[str], cwd: str | None = None,
              updateEnvironment: dict[str, str] | None = None) -> None:
        """Start ``args`` without blocking; output is handled on the main thread via Qt timers."""
        if self.isRunning():
            raise RuntimeError("a segmentation is already running")
        self._reset()
        logging.info("ALLNet: launching %s", " ".join(args))
        self._proc = slicer.util.launchConsoleProcess(
            args, updateEnvironment=updateEnvironment, cwd=cwd, blocking=False,
            logCallback=self.handleLine, completedCallback=self.handleCompleted)

    def runBlocking(self, args: list[str], cwd: str | None = None,
                    updateEnvironment: dict[str, str] | None = None) -> RunOutcome:
        """Run ``args`` to the end (for scripts and self-tests); returns the outcome."""
        if self.isRunning():
            raise RuntimeError("a segmentation is already running")
        self._reset()
        self._proc = slicer.util.launchConsoleProcess(
            args, updateEnvironment=updateEnvironment, cwd=cwd, blocking=True)
        while True:
            try:
                line = self._proc.stdout.readline()
            except UnicodeDecodeError:  # non-UTF-8 locale; the protocol lines are ASCII
                continue
            if not line:
                break
            self.handleLine(line.rstrip())
        self._proc.wait()
        self.handleCompleted(self._proc.returncode)
        return self.lastOutcome

    def isRunning(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    # -- cancelling -------------------------------------------------------------------------
    def cancel(self) -> None:
        """Kill the whole process tree: the PythonSlicer launcher is not the Python worker."""
        if self._proc is None:
            return
        self._cancelRequested = True
        killProcessTree(self._proc.pid)

    # -- output handling --------------------------------------------------------------------
    def handleLine(self, line: str) -> None:
        parsed = parseLine(line)
        if parsed is None:
            if line.strip():
                self._tail.append(line)
            self.log(line)
            return
        kind, payload = parsed
        if kind == "progress":
            self.progress(str(payload.get("stage", "")), float(payload.get("fraction", 0.0)),
                          str(payload.get("message", "")))
        elif kind == "result":
            self._resultPayload = payload
            self.log(f"Result written to {payload.get('output_dir', '?')}")
        elif kind == "error":
            self._errorPayload = payload
            self.log(f"Error: {payload.get('message', '')}")

    def handleCompleted(self, returnCode: int) -> None:
        outcome = RunOutcome(returnCode=int(returnCode))
        if self._cancelRequested:
            outcome.cancelled = True
        elif self._errorPayload is not None:
            outcome.errorMessage = str(self._errorPayload.get("message") or "unknown error")
        elif returnCode == EXIT_CANCELLED:
            outcome.cancelled = True
        elif returnCode != 0:
            outcome.errorMessage = crashMessage(returnCode, list(self._tail))
        elif self._resultPayload is None:
            outcome.errorMessage = ("The segmentation process ended without reporting a result."
                                    + tailText(list(self._tail)))
        if self._resultPayload is not None and not outcome.cancelled:
            outcome.outputDir = self._resultPayload.get("output_dir")
            outcome.summaryPath = self._resultPayload.get("summary")
        self._proc = None
        self.lastOutcome = outcome
        self.finished(outcome)


def tailText(lines: list[str]) -> str:
    return ("\n\nLast output of the process:\n" + "\n".join(lines)) if lines else ""


def crashMessage(returnCode: int, tail: list[str]) -> str:
    """Readable text for a process that failed without an ``ALLNET-ERROR`` line."""
    meaning = EXIT_CODE_MEANINGS.get(returnCode)
    if returnCode < 0:
        what = f"was stopped by signal {-returnCode}"
        if -returnCode == 9:
            what += " (often: the system ran out of memory)"
    else:
        what = f"failed with exit code {returnCode}" + (f" ({meaning})" if meaning else "")
    return f"The segmentation process {what}." + tailText(tail)


def killProcessTree(pid: int, timeout: float = 5.0) -> list[int]:
    """Kill ``pid`` and all its descendants; returns the pids that were signalled."""
    import psutil

    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    try:
        children = parent.children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    # Children first: killing the launcher first could leave the worker re-parented and running.
    victims = [*children, parent]
    for process in victims:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    # The direct child is left for its Popen object to reap (reaping it here would make
    # Popen.wait report exit code 0); descendants are ours to wait for.
    psutil.wait_procs(children, timeout=timeout)
    return [p.pid for p in victims]
