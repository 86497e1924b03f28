"""Error types of the ALLNet core and the process exit codes they map to.

Every error a user can cause carries a message that names the file (or setting)
and the problem, so the CLI and the Slicer module can show it without a traceback.
"""
from __future__ import annotations

from pathlib import Path

# Process exit codes of the `allnet` command: defined once in allnet.contract.
from .contract import (EXIT_BAD_INPUT, EXIT_BATCH_FAILURES, EXIT_CANCELLED,  # noqa: F401
                       EXIT_INTERNAL, EXIT_MODEL, EXIT_OK, EXIT_REGISTRATION, EXIT_RESOURCES,
                       SettingError)


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
