"""Stand-in for Base/Python/slicer/packaging.py: the parsing and checking are real (packaging,
importlib.metadata); installation is recorded, never performed."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement

installs: list[dict] = []


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
def pip_ensure(requirements, constraints=None, skip_packages=None, prompt_install=True, prompt_restart=True,
               requester=None, skip_in_testing=True, show_progress=True):
    missing = [str(r) for r in requirements if not pip_check(r)]
    if missing:
        installs.append({"missing": missing, "prompt_install": prompt_install, "prompt_restart": prompt_restart,
                         "requester": requester, "skip_packages": skip_packages})
    return None
