"""Progress reporting shared by the pipeline, the CLI and the Slicer subprocess protocol.

A :class:`Progress` receives ``(stage, fraction, message)`` updates. ``fraction`` is the
overall fraction of the run in [0, 1]; stages are weighted by their typical share of the
run time. A sink returning ``False`` cancels the run (raises ``CancelledError``).
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TextIO

from .contract import ERROR_PREFIX, PROGRESS_PREFIX, RESULT_PREFIX, STAGES
from .errors import CancelledError

__all__ = ["ERROR_PREFIX", "PROGRESS_PREFIX", "RESULT_PREFIX", "Progress", "json_line_sink",
           "parse_line", "terminal_sink"]

Sink = Callable[[str, float, str], "bool | None"]


class Progress:
    """Forwards stage updates to a sink and records per-stage wall times (seconds)."""

    def __init__(self, sink: Sink | None = None) -> None:
        self._sink = sink
        self.timings: dict[str, float] = {}
        self._stage: str | None = None
        self._stage_start = 0.0
        self._fraction = 0.0

    def stage(self, name: str, fraction: float | None = None, message: str = "") -> None:
        """Start stage ``name`` at overall ``fraction`` (default: where ``allnet.contract.STAGES``
        puts it); closes the previous stage's timer."""
        if fraction is None:
            fraction = STAGES[name]
        self._close_stage()
        self._stage, self._stage_start = name, time.perf_counter()
        self.update(fraction, message or name)

    def update(self, fraction: float, message: str = "") -> None:
        """Report progress inside the current stage; raises CancelledError if the sink says stop."""
        self._fraction = max(0.0, min(1.0, fraction))
        if self._sink is not None:
            if self._sink(self._stage or "", self._fraction, message) is False:
                raise CancelledError("cancelled by the user")

    def finish(self, message: str = "done") -> None:
        self._close_stage()
        self._stage = "done"
        self.update(1.0, message)

    def _close_stage(self) -> None:
        if self._stage is not None and self._stage != "done":
            elapsed = time.perf_counter() - self._stage_start
            self.timings[self._stage] = self.timings.get(self._stage, 0.0) + elapsed


def json_line_sink(stream: TextIO = sys.stdout) -> Sink:
    """Machine-readable lines for the Slicer module: ``ALLNET-PROGRESS {json}``."""

    def sink(stage: str, fraction: float, message: str) -> None:
        payload = {"stage": stage, "fraction": round(fraction, 4), "message": message}
        stream.write(PROGRESS_PREFIX + json.dumps(payload) + "\n")
        stream.flush()

    return sink


def terminal_sink(stream: TextIO = sys.stderr, width: int = 30) -> Sink:
    """A one-line progress bar with stage name and elapsed time, redrawn in place."""
    start = time.perf_counter()

    def sink(stage: str, fraction: float, message: str) -> None:
        filled = int(round(width * fraction))
        bar = "#" * filled + "-" * (width - filled)
        elapsed = time.perf_counter() - start
        line = f"\r[{bar}] {fraction * 100:5.1f}% {elapsed:6.1f}s  {stage}: {message}"
        stream.write(line[:150].ljust(150 if stream.isatty() else 0))
        if not stream.isatty() or fraction >= 1.0:
            stream.write("\n")
        stream.flush()

    return sink


def parse_line(line: str) -> tuple[str, dict] | None:
    """Parse one protocol line into ``(kind, payload)``, kind in progress/result/error."""
    for kind, prefix in (("progress", PROGRESS_PREFIX), ("result", RESULT_PREFIX),
                         ("error", ERROR_PREFIX)):
        if line.startswith(prefix):
            try:
                return kind, json.loads(line[len(prefix):])
            except json.JSONDecodeError:
                return None
    return None
