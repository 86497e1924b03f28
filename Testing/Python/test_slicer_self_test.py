"""ALLNetSegmentTest, the self-test that ctest runs in Slicer's testing mode, run here against
the stand-in: skipped with a message when the core's packages are missing (testing mode installs
nothing), and the recorded-output path (import, tables, edit, recomputed table, export) when
they are present."""
from __future__ import annotations

import importlib
import json
import types

import pytest

from helpers_slicer import MODULE_DIR, resetSlicer

import slicer  # noqa: E402  (the stand-in)
from ALLNetSegmentLib.InstallLogic import InstallLogic, InstallPlan  # noqa: E402

RECORDED = MODULE_DIR / "Resources" / "Testing" / "RecordedRun"


@pytest.fixture()
def selfTest(monkeypatch):
    resetSlicer()
    slicer.app.testing = True  # Slicer --testing, as the registered ctest runs
    monkeypatch.delenv("ALLNET_SELFTEST_FULL", raising=False)
    module = importlib.import_module("ALLNetSegment")
    module.ALLNetSegment(types.SimpleNamespace())
    return slicer.selfTests["ALLNetSegment"]


def test_without_the_core_packages_the_self_test_is_skipped_with_a_message(selfTest, monkeypatch):
    monkeypatch.setattr(InstallLogic, "plan", lambda self: InstallPlan("torch>=2.2", ["deepbet>=1.0.2"]))
    selfTest()
    (message,) = slicer.util.calls["delayDisplay"]
    assert message.startswith("ALLNetSegmentTest skipped") and "deepbet>=1.0.2" in message and "torch" in message
    assert slicer.packaging.installs == [] and slicer.util.calls["confirmOkCancelDisplay"] == []
    assert slicer.util.getNodesByClass("vtkMRMLVolumeNode") == []


def test_with_the_core_packages_the_recorded_output_is_imported_edited_and_exported(selfTest, monkeypatch):
    monkeypatch.setattr(InstallLogic, "plan", lambda self: InstallPlan())
    selfTest()
    messages = slicer.util.calls["delayDisplay"]
    assert "Recorded-output test passed" in messages
    assert not any("Sample-case" in m for m in messages)  # the network run is opt-in
    assert slicer.util.getNodesByClass("vtkMRMLSegmentationNode")


def test_the_recorded_output_is_small_and_lists_its_files():
    files = {p.name: p.stat().st_size for p in RECORDED.iterdir()}
    assert sum(files.values()) < 1024 ** 2
    summary = json.loads((RECORDED / "summary.json").read_text())
    assert set(summary["outputs"].values()) <= set(files)
    assert {"lesion_mask.nii.gz", "lesion_probability.nii.gz", "lesion_zones.nii.gz", "lesions.csv",
            "FLAIR.nii.gz"} <= set(files)
