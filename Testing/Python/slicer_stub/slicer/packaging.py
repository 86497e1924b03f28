"""Stand-in for Base/Python/slicer/packaging.py (new in Slicer 5.12; absent in 5.10 and older).

Parsing and checking are real (``packaging``, ``importlib.metadata``). Installation is never
performed: ``pip_ensure`` records what it would install in ``installs`` (``pip_check`` then counts
it as installed), or raises the exception a
test put in ``failNextInstall`` (what a failed pip run raises in Slicer). As in Slicer, it does
nothing at all in testing mode unless ``skip_in_testing=False``.
"""
from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement

import slicer

installs: list[dict] = []
failNextInstall: list[BaseException] = []
installedByStandIn: set[str] = set()  # requirements a recorded install "satisfied"


# def load_requirements(path: str | Path) -> list[Requirement]:
def load_requirements(path: str | Path) -> list[Requirement]:
    reqs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and not line.startswith("-"):
                reqs.append(Requirement(line))
    return reqs


# def pip_check(req: str | Requirement | list[str | Requirement], _seen=None) -> bool:  (extras not followed here)
def pip_check(req, _seen=None) -> bool:
    reqs = [req] if not isinstance(req, list) else req
    for r in reqs:
        r = Requirement(r) if isinstance(r, str) else r
        if str(r) in installedByStandIn:
            continue
        if r.marker is not None and not r.marker.evaluate():
            continue
        try:
            installed = version(r.name)
        except PackageNotFoundError:
            return False
        if installed not in r.specifier:
            return False
    return True


# def pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True,
#                prompt_restart=True, requester=None, skip_in_testing=True, show_progress=True) -> list[str] | None:
# Raises RuntimeError when the user declines and subprocess.CalledProcessError when pip fails.
def pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,
               requester=None, skip_in_testing=True, show_progress=True):
    missing = [str(r) for r in requirements if not pip_check(r)]
    if not missing:
        return None
    if skip_in_testing and slicer.app.testingEnabled():
        logging.info(f"Testing mode is enabled: skipping pip_ensure for [{', '.join(missing)}]")
        return None
    if prompt_install and not slicer.util.confirmOkCancelDisplay(
            f"{len(missing)} Python packages need to be installed.", requester, detailedText="\n".join(missing)):
        raise RuntimeError("User declined package installation")
    if failNextInstall:
        raise failNextInstall.pop(0)
    installs.append({"missing": missing, "prompt_install": prompt_install, "prompt_restart": prompt_restart,
                     "requester": requester, "skip_packages": skip_packages})
    installedByStandIn.update(missing)
    return None
