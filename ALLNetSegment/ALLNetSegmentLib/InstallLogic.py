"""Installs the core's Python dependencies into Slicer on first use (never at import).

PyTorch comes only through the PyTorch extension (``PyTorchUtils``), which picks the build
that matches the machine's GPU driver; the rest comes from ``Resources/requirements.txt``
through ``slicer.packaging``. SimpleITK is never installed or upgraded: Slicer ships its own
build with Slicer-specific IO, and replacing it breaks Slicer.

``slicer.packaging`` first appears in Slicer 5.12; it is imported where it is used, so that the
module still loads (and says which Slicer it needs) on an older one.
"""
from __future__ import annotations

import importlib.metadata
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import slicer

from .Signal import Signal

TORCH_REQUIREMENT = ">=2.2"
# Never handled by pip here: torch comes from the PyTorch extension, SimpleITK with Slicer.
NEVER_PIP = {"simpleitk", "torch"}
REQUESTER = "ALLNet"


@dataclass
class InstallPlan:
    """What would be installed: ``torch`` (a requirement string) and pip ``packages``."""

    torch: str | None = None
    packages: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.torch is None and not self.packages

    def describe(self) -> str:
        lines = []
        if self.torch:
            lines.append(f"- {self.torch} (through the PyTorch extension, matching your GPU driver)")
        lines += [f"- {package}" for package in self.packages]
        return "\n".join(lines)


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def importedDistributions(requirements: list[str]) -> list[str]:
    """Those of ``requirements`` whose package is already imported in this process."""
    from packaging.requirements import Requirement

    imported = {name.split(".")[0] for name in sys.modules}
    owners = importlib.metadata.packages_distributions()  # import name -> distributions
    loadedDistributions = {_canonical(d) for name in imported for d in owners.get(name, [])}
    return [r for r in requirements if _canonical(Requirement(r).name) in loadedDistributions]


def installedVersion(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


class InstallLogic:
    """Checks and installs dependencies; ``progressInfo(text)`` reports what it does."""

    def __init__(self, requirementsPath: str | Path, torchRequirement: str = TORCH_REQUIREMENT) -> None:
        self.requirementsPath = Path(requirementsPath)
        self.torchRequirement = torchRequirement
        self.progressInfo = Signal("str")
        self.needsRestart = False

    def requirements(self) -> list:
        """Requirements of requirements.txt, without SimpleITK and torch (see module docstring)."""
        import slicer.packaging

        requirements = slicer.packaging.load_requirements(self.requirementsPath)
        return [req for req in requirements if _canonical(req.name) not in NEVER_PIP]

    def plan(self) -> InstallPlan:
        """What is missing now (nothing is installed by this call)."""
        import slicer.packaging
        from packaging.specifiers import SpecifierSet

        plan = InstallPlan()
        torchVersion = installedVersion("torch")
        if torchVersion is None or torchVersion.split("+")[0] not in SpecifierSet(self.torchRequirement):
            plan.torch = f"torch{self.torchRequirement}"
        plan.packages = [str(req) for req in self.requirements() if not slicer.packaging.pip_check(req)]
        return plan

    def ensure(self, askConfirmation: bool = True) -> bool:
        """Install what is missing after one confirmation; returns False if the user declined.

        Raises RuntimeError when an installation failed or left a package missing (Slicer's
        testing mode installs nothing). Sets ``needsRestart`` when a package that was already
        imported was replaced: the old version stays in memory until Slicer restarts.
        """
        import slicer.packaging

        plan = self.plan()
        if plan.empty:
            return True
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                "ALLNet needs to install Python packages into Slicer before its first run "
                "(a few minutes; internet access is needed once).\n\nContinue?",
                f"{REQUESTER} - Install Python packages", detailedText=plan.describe()):
            self._log("Installation declined by the user.")
            return False
        if plan.torch:
            self._installTorch()
        if plan.packages:
            self._log("Installing: " + ", ".join(plan.packages))
            loaded = importedDistributions(plan.packages)
            try:
                # The confirmation above already listed everything; pip_ensure's own prompt would
                # be a second dialog. Its restart prompt stays on for packages already imported.
                slicer.packaging.pip_ensure(self.requirements(), prompt_install=False, prompt_restart=True,
                                            requester=REQUESTER)
            except subprocess.CalledProcessError as error:
                raise RuntimeError(f"Installing {', '.join(plan.packages)} failed (pip exit code "
                                   f"{error.returncode}); see the Python console for pip's output.") from error
            if loaded:
                self.needsRestart = True
        # torch was checked by the PyTorch extension's own return value (_installTorch).
        missing = [str(req) for req in self.requirements() if not slicer.packaging.pip_check(req)]
        if missing:
            why = ("\nSlicer is in testing mode, where slicer.packaging installs nothing."
                   if slicer.app.testingEnabled() else "")
            raise RuntimeError("These Python packages are still missing after the installation: "
                               + ", ".join(missing) + why)
        self._log("Dependencies are installed.")
        return True

    def _installTorch(self) -> None:
        torchWasImported = "torch" in sys.modules
        try:
            import PyTorchUtils
        except ImportError as error:
            raise RuntimeError(
                "ALLNet needs the PyTorch extension to install PyTorch. Install 'PyTorch' from the "
                "Extensions Manager, restart Slicer and try again.") from error
        self._log(f"Installing PyTorch ({self.torchRequirement}) through the PyTorch extension...")
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False, torchVersionRequirement=self.torchRequirement)
        if torch is None:
            raise RuntimeError("PyTorch could not be installed; see the Python console for details.")
        if torchWasImported:
            self.needsRestart = True
            self.promptRestart()

    def promptRestart(self) -> None:
        if slicer.app.testingEnabled():
            return
        if slicer.util.confirmYesNoDisplay(
                "PyTorch was replaced while an older version was loaded. Restart Slicer now?",
                f"{REQUESTER} - Restart recommended"):
            slicer.util.restart()

    def _log(self, text: str) -> None:
        logging.info(text)
        self.progressInfo(text)
