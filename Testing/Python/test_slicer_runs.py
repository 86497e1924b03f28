"""What a run leaves behind and what it needs first, against the stand-in: temporary folders,
the device probe outside the GUI process, dependency installation honoured by scripted runs,
and the core's `allnet demo --case-only` that Load sample runs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_slicer import MODULE_DIR, loadCase, makePanel, resetSlicer, runEventLoopUntil

import slicer  # noqa: E402  (the stand-in)
from ALLNetSegmentLib.InstallLogic import InstallLogic  # noqa: E402


def runPanel(panel, tmp_path):
    w = panel.panel
    loadCase(tmp_path)
    runEventLoopUntil(lambda: w._parameterNode.flairVolume is not None and w._parameterNode.t1Volume is not None)
    w.ui.applyButton.emit("clicked(bool)", False)
    runEventLoopUntil(lambda: w.ui.applyButton.text == "Segment lesions")
    args = json.loads(panel.scriptPath.with_suffix(".args.json").read_text())
    return w, Path(args[args.index("-o") + 1]).parent  # the run's work folder


# -- 7. temporary folders ----------------------------------------------------------------------
def test_a_successful_run_removes_its_work_folder_and_keeps_what_the_table_needs(panel, tmp_path):
    w, workDir = runPanel(panel, tmp_path)
    assert w.ui.statusLabel.text.startswith("Done")
    assert not workDir.exists()
    assert w.rows[0]["mean_prob"] == pytest.approx(0.8, abs=1e-3)
    probability = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")[-1]
    assert probability.GetName().endswith("lesion probability") and probability.GetStorageNode() is None
    # An edit after the folder is gone: the recomputed table still has the run's probabilities.
    segmentation = w._parameterNode.outputSegmentation
    w.ui.recomputeButton.emit("clicked(bool)", False)
    assert w.lesionTableNode.GetNumberOfRows() == 1 and w.rows[0]["mean_prob"] == pytest.approx(0.8, abs=1e-3)
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1
    # The QC report is kept (in Slicer's temporary folder) and the log says where.
    (line,) = [x for x in w.ui.logTextEdit.plainText.splitlines() if x.startswith("QC report of this run: ")]
    report = Path(line.split(": ", 1)[1])
    assert report.read_text() == "<html>QC report</html>" and report.parent.parent == Path(slicer.app.temporaryPath)


def test_a_head_mismatch_let_through_reaches_the_log(panel, tmp_path):
    """"Allow input mismatch" sends --allow-mismatch; the run's summary warning is shown in the Log."""
    panel.panel._parameterNode.allowMismatch = True
    w, _ = runPanel(panel, tmp_path)
    assert w.ui.statusLabel.text.startswith("Done")
    warnings = [x for x in w.ui.logTextEdit.plainText.splitlines() if x.startswith("Warning: ")]
    assert len(warnings) == 1 and "same head" in warnings[0]


def test_a_failed_run_keeps_its_work_folder_and_says_where(panel, tmp_path):
    panel.scriptPath.write_text(
        "import json, sys\nfrom pathlib import Path\n"
        "Path(sys.argv[0]).with_suffix('.args.json').write_text(json.dumps(sys.argv[1:]))\n"
        "print('ALLNET-ERROR {\"message\": \"registration failed\", \"exit_code\": 3}')\nsys.exit(3)\n")
    w, workDir = runPanel(panel, tmp_path)
    assert workDir.is_dir() and (workDir / "t1.nrrd").is_file()
    assert f"kept in: {workDir}" in w.ui.logTextEdit.plainText
    assert slicer.util.calls["errorDisplay"] == ["registration failed"]


# -- 8. no torch in the GUI process --------------------------------------------------------------
class _Tripwire:
    def __getattr__(self, name):
        raise AssertionError(f"torch.{name} used in Slicer's GUI process")


def test_setting_up_the_panel_does_not_touch_torch_and_the_device_is_probed_in_a_child(module, tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", _Tripwire())
    panel = makePanel(module, tmp_path, monkeypatch)
    w = panel.panel
    assert "detected when this section is opened" in w.ui.deviceInfoLabel.text
    w.ui.advancedCollapsibleButton.emit("contentsCollapsed(bool)", False)  # the user opens Advanced
    assert w.ui.deviceInfoLabel.text == "Detecting the GPU..."
    runEventLoopUntil(lambda: w.ui.deviceInfoLabel.text != "Detecting the GPU...", timeout=60)
    assert w.ui.deviceInfoLabel.text.startswith(("No CUDA GPU found", "GPU: ", "PyTorch is not installed"))


def test_device_text_from_the_probe():
    from ALLNetSegmentLib.DeviceInfo import describeDevices

    assert describeDevices({"torch": None}).startswith("PyTorch is not installed")
    assert describeDevices({"torch": "2.13", "cuda": False}).startswith("No CUDA GPU")
    text = describeDevices({"torch": "2.13", "cuda": True, "name": "RTX 3050", "memoryBytes": 4 * 1024 ** 3})
    assert text == "GPU: RTX 3050 (4.0 GiB). Under 6 GiB: choose the fast ensemble."


# -- 9. scripted runs honour the installation ------------------------------------------------------
def test_scripted_segment_stops_when_the_installation_was_declined(module, monkeypatch, tmp_path):
    logic = module.ALLNetSegmentLogic()
    monkeypatch.setattr(logic.segmentationLogic.installLogic, "ensure", lambda askConfirmation=True: False)
    _, (t1, t2, flair) = loadCase(tmp_path)
    with pytest.raises(RuntimeError, match="declined"):
        logic.segment(t1, flair, t2)
    assert logic.segmentationLogic.runner.lastOutcome is None  # the core was never started


def test_scripted_segment_stops_when_slicer_must_restart(module, monkeypatch, tmp_path):
    logic = module.ALLNetSegmentLogic()
    installLogic = logic.segmentationLogic.installLogic

    def ensure(askConfirmation=True):
        installLogic.needsRestart = True
        return True

    monkeypatch.setattr(installLogic, "ensure", ensure)
    _, (t1, t2, flair) = loadCase(tmp_path)
    with pytest.raises(RuntimeError, match="Restart Slicer"):
        logic.segment(t1, flair, t2)
    assert logic.segmentationLogic.runner.lastOutcome is None


@pytest.fixture()
def requirements(tmp_path):
    resetSlicer()
    path = tmp_path / "requirements.txt"
    path.write_text("numpy>=99\n")  # numpy is imported in this process, so replacing it needs a restart
    return path


def test_replacing_an_imported_package_needs_a_restart(requirements):
    logic = InstallLogic(requirements, torchRequirement=">=2.0")
    assert logic.ensure() is True
    assert slicer.packaging.installs[0]["missing"] == ["numpy>=99"]
    assert logic.needsRestart


def test_a_failed_pip_run_is_a_readable_error(requirements):
    slicer.packaging.failNextInstall.append(subprocess.CalledProcessError(1, ["pip", "install"]))
    with pytest.raises(RuntimeError, match="failed \\(pip exit code 1\\)"):
        InstallLogic(requirements, torchRequirement=">=2.0").ensure()


def test_in_testing_mode_nothing_is_installed_and_the_logic_says_so(requirements):
    slicer.app.testing = True
    with pytest.raises(RuntimeError, match="testing mode"):
        InstallLogic(requirements, torchRequirement=">=2.0").ensure()
    assert slicer.packaging.installs == []


# -- 6. the core command behind Load sample ------------------------------------------------------
def test_allnet_demo_case_only_builds_the_case_and_reports_its_folder(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "allnet", "demo", "--case-only", "-o", str(tmp_path / "out"),
                                "--progress", "json"], cwd=MODULE_DIR, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    (line,) = [x for x in completed.stdout.splitlines() if x.startswith("ALLNET-RESULT ")]
    caseDir = Path(json.loads(line.split(" ", 1)[1])["output_dir"])
    assert caseDir == tmp_path / "out" / "case"
    names = {p.name for p in caseDir.iterdir()}
    assert {"T1W.nii.gz", "T2W.nii.gz", "FLAIR.nii.gz"} <= names
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["case"]  # nothing segmented


def test_load_sample_can_be_cancelled_like_a_segmentation(panel):
    w = panel.panel
    w.ui.loadSampleButton.emit("clicked(bool)", False)
    assert w.ui.applyButton.text == "Cancel" and not w.ui.inputsCollapsibleButton.enabled
    w.ui.applyButton.emit("clicked(bool)", False)  # Cancel
    runEventLoopUntil(lambda: w.ui.applyButton.text == "Segment lesions", timeout=30)
    assert w.ui.statusLabel.text == "Cancelled." and slicer.util.calls["errorDisplay"] == []
    assert w._parameterNode.t1Volume is None and slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode") == []
    assert w.ui.inputsCollapsibleButton.enabled
