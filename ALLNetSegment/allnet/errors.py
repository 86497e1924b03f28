"""Error types of the ALLNet core and the process exit codes they map to.

Every error a user can cause carries a message that names the file (or setting)
and the problem, so the CLI and the Slicer module can show it without a traceback.
"""
from __future__ import annotations

from pathlib import Path

# Process exit codes of the `allnet` command (documented in the README).
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_REGISTRATION = 3
EXIT_MODEL = 4
EXIT_RESOURCES = 5
EXIT_BATCH_FAILURES = 6
EXIT_CANCELLED = 130


class AllnetError(Exception):
    """Base class of expected failures; ``exit_code`` is the CLI's exit status."""

    exit_code: int = EXIT_INTERNAL


class InputError(AllnetError):
    """A user-supplied file (or value) is missing, unreadable or unsuitable."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class RegistrationError(AllnetError):
    """A registration produced an implausible result (see preprocessing.registration)."""

    exit_code = EXIT_REGISTRATION


class ModelError(AllnetError):
    """No usable model file: missing, malformed, incompatible, or none bundled."""

    exit_code = EXIT_MODEL


class ResourceError(AllnetError):
    """The job would exceed the memory guard or another resource limit."""

    exit_code = EXIT_RESOURCES


class CancelledError(AllnetError):
    """The run was cancelled by the caller (progress callback returned False)."""

    exit_code = EXIT_CANCELLED
