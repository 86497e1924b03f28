"""InstallLogic: what would be installed, one confirmation, torch only through PyTorchUtils,
SimpleITK never."""
from __future__ import annotations

import sys
import types

import pytest
from packaging.requirements import Requirement

from helpers_slicer import MODULE_DIR, resetSlicer

import slicer  # noqa: E402
from ALLNetSegmentLib.InstallLogic import InstallLogic  # noqa: E402

MISSING = "allnet-package-that-does-not-exist>=1.0"


@pytest.fixture()
def requirements(tmp_path):
    resetSlicer()
    path = tmp_path / "requirements.txt"
    path.write_text(f"# comment\nnumpy>=1.0\nSimpleITK>=99\ntorch>=99\n{MISSING}\n--index-url https://example.org\n")
    return path


@pytest.fixture()
def fakePyTorchUtils(monkeypatch):
    calls = []

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                         torchvisionVersionRequirement=None):
            calls.append({"askConfirmation": askConfirmation, "torchVersionRequirement": torchVersionRequirement})
            return types.SimpleNamespace(__version__="99.0")

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    return calls


def test_plan_lists_missing_packages_but_never_simpleitk_or_torch_through_pip(requirements):
    plan = InstallLogic(requirements, torchRequirement=">=2.0").plan()
    assert plan.packages == [MISSING]
    assert plan.torch is None  # the test environment has torch >= 2
    assert "SimpleITK" not in plan.describe()


def test_plan_asks_for_torch_when_the_installed_one_is_too_old(requirements):
    plan = InstallLogic(requirements, torchRequirement=">=99").plan()
    assert plan.torch == "torch>=99"
    assert "PyTorch extension" in plan.describe()


def test_one_confirmation_lists_everything_then_installs(requirements, fakePyTorchUtils):
    logic = InstallLogic(requirements, torchRequirement=">=99")
    assert logic.ensure() is True
    dialogs = slicer.util.calls["confirmOkCancelDisplay"]
    assert len(dialogs) == 1
    assert "torch>=99" in dialogs[0]["detailedText"] and MISSING in dialogs[0]["detailedText"]
    assert fakePyTorchUtils == [{"askConfirmation": False, "torchVersionRequirement": ">=99"}]
    (install,) = slicer.packaging.installs
    assert install["missing"] == [MISSING]
    assert install["prompt_install"] is False and install["prompt_restart"] is True


def test_declining_installs_nothing(requirements, fakePyTorchUtils):
    slicer.util.answers["confirmOkCancelDisplay"] = False
    assert InstallLogic(requirements, torchRequirement=">=99").ensure() is False
    assert fakePyTorchUtils == [] and slicer.packaging.installs == []


def test_replacing_a_loaded_torch_asks_for_a_restart(requirements, fakePyTorchUtils):
    slicer.util.answers["confirmYesNoDisplay"] = True
    logic = InstallLogic(requirements, torchRequirement=">=99")
    logic.ensure()
    assert logic.needsRestart  # torch is imported in this test process
    assert slicer.util.calls["restart"] == [True]


def test_missing_pytorch_extension_is_a_readable_error(requirements, monkeypatch):
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)
    with pytest.raises(RuntimeError, match="PyTorch extension"):
        InstallLogic(requirements, torchRequirement=">=99").ensure()


def test_nothing_to_do_shows_no_dialog(tmp_path):
    resetSlicer()
    path = tmp_path / "requirements.txt"
    path.write_text("numpy>=1.0\n")
    assert InstallLogic(path, torchRequirement=">=2.0").ensure() is True
    assert slicer.util.calls["confirmOkCancelDisplay"] == []


def test_shipped_requirements_parse_and_exclude_simpleitk_and_torch():
    requirements = slicer.packaging.load_requirements(MODULE_DIR / "Resources" / "requirements.txt")
    names = {Requirement(str(r)).name.lower() for r in requirements}
    assert names and "simpleitk" not in names and "torch" not in names
    assert all(str(r.specifier).startswith(">=") for r in requirements)
