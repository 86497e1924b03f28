"""ALLNet Segment: multiple-sclerosis lesion segmentation and per-lesion measurement in 3D Slicer.

The work is in ALLNetSegmentLib (panel, run logic, installation, import, table, export) and in
the Slicer-free core package ``allnet``, which runs in a PythonSlicer subprocess.
"""
import os
from pathlib import Path

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)

MODULE_DIR = Path(__file__).resolve().parent
# slicer.packaging, launchConsoleProcess(blocking=False, ...) and colour tables with terminology
# columns are used; the first two appear in Slicer 5.12.
MINIMUM_SLICER = (5, 12)


class ALLNetSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("ALLNet Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["ALLNet developers"]
        self.parent.helpText = _(
            "Segments multiple-sclerosis lesions on brain MRI (T1W and FLAIR, T2W optional) and "
            "measures each lesion (volume, location class, centre, probability). The result is an "
            "editable segmentation with a per-lesion table that is recomputed after corrections. "
            "Research use only; not a medical device. "
            '<a href="https://github.com/allnet-project/SlicerALLNet#3d-slicer">Documentation</a>.')
        self.parent.acknowledgementText = _(
            "Method after Zhang H. et al., \"ALL-Net: Anatomical information lesion-wise loss "
            "function integrated into neural network for multiple sclerosis lesion segmentation\", "
            "NeuroImage: Clinical 32:102854 (2021). Development data: Lesjak Z. et al., "
            "Neuroinformatics 16:51-63 (2018), CC-BY; MSLesSeg, Guarnera F. et al., Scientific "
            "Data 12:920 (2025), CC BY 4.0.")


class ALLNetSegmentWidget(ScriptedLoadableModuleWidget):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.panel = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        problem = slicerVersionProblem()
        if problem:  # the panel still loads and says what is needed instead of failing on import
            import qt

            label = qt.QLabel()
            label.text = problem
            label.wordWrap = True
            self.layout.addWidget(label)
            self.layout.addStretch(1)
            return
        from ALLNetSegmentLib.Widget import Widget

        self.logic = ALLNetSegmentLogic()
        self.panel = Widget(MODULE_DIR, self.logic, self.logic.segmentationLogic,
                            isEntered=lambda: bool(getattr(self.parent, "isEntered", False)))
        self.layout.addWidget(self.panel.uiWidget)
        self.layout.addStretch(1)

    def enter(self) -> None:
        if self.panel is not None:
            self.panel.enter()

    def exit(self) -> None:
        if self.panel is not None:
            self.panel.exit()

    def cleanup(self) -> None:
        if self.panel is not None:
            self.panel.cleanup()


def slicerVersionProblem() -> str | None:
    """Why this Slicer cannot run the module (too old), or None."""
    version = (int(slicer.app.majorVersion), int(slicer.app.minorVersion))
    if version >= MINIMUM_SLICER:
        return None
    return (f"ALLNet Segment needs 3D Slicer {MINIMUM_SLICER[0]}.{MINIMUM_SLICER[1]} or newer; this is "
            f"Slicer {version[0]}.{version[1]}. Install the current Slicer release from "
            "https://download.slicer.org and the ALLNet extension for it.")


class ALLNetSegmentLogic(ScriptedLoadableModuleLogic):
    """Facade for scripts: ``segment(t1, flair, t2=None, ...)`` blocks and returns the result."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        from ALLNetSegmentLib.SegmentationLogic import SegmentationLogic

        self.segmentationLogic = SegmentationLogic(MODULE_DIR)

    def getParameterNode(self):
        from ALLNetSegmentLib.Parameter import ALLNetSegmentParameterNode

        return ALLNetSegmentParameterNode(super().getParameterNode())

    def ensureDependencies(self) -> None:
        """Install what the core needs (one confirmation); raises RuntimeError when it cannot run now."""
        problem = slicerVersionProblem()
        if problem:
            raise RuntimeError(problem)
        installLogic = self.segmentationLogic.installLogic
        if not installLogic.ensure():
            raise RuntimeError("ALLNet cannot run: the installation of its Python packages was declined.")
        if installLogic.needsRestart:
            raise RuntimeError("Restart Slicer to finish the installation of ALLNet's Python packages, "
                               "then run again.")

    def segment(self, t1Node, flairNode, t2Node=None, segmentationNode=None, keepOutputs=False, **options):
        """Run ALLNet and load the result; ``options`` are ``allnet.contract.RunSettings`` fields
        (device, ensemble, tta, threshold, min_lesion_mm3, ...) plus keepProbability.
        The run's temporary folder is deleted after the import unless ``keepOutputs``."""
        from ALLNetSegmentLib.Parameter import SegmentationSettings

        self.ensureDependencies()
        return self.segmentationLogic.segment(t1Node, flairNode, t2Node, segmentationNode,
                                              SegmentationSettings.fromOptions(**options), keepOutputs=keepOutputs)

    def longitudinal(self, baselineFlairNode, followupFlairNode, baselineT1Node=None, followupT1Node=None,
                     baselineT2Node=None, followupT2Node=None, keepOutputs=False, **options):
        """Compare two visits with ``allnet longitudinal`` and load the lesion changes (blocking).
        A FLAIR at both visits and a T1W at one visit at least; ``options`` are
        ``allnet.contract.RunSettings`` fields. Returns a ``LongitudinalImport.ChangeResult``
        (segmentationNode, tableNode, counts per class)."""
        from allnet.contract import VISITS
        from ALLNetSegmentLib.LongitudinalLogic import LongitudinalLogic
        from ALLNetSegmentLib.Parameter import SegmentationSettings

        self.ensureDependencies()
        baseline, followup = VISITS
        volumes = {(baseline, "flair"): baselineFlairNode, (baseline, "t1"): baselineT1Node,
                   (baseline, "t2"): baselineT2Node, (followup, "flair"): followupFlairNode,
                   (followup, "t1"): followupT1Node, (followup, "t2"): followupT2Node}
        logic = LongitudinalLogic(MODULE_DIR, self.segmentationLogic.runner,
                                  installLogic=self.segmentationLogic.installLogic)
        return logic.run(volumes, SegmentationSettings.fromOptions(**options), keepOutputs=keepOutputs)


RECORDED_RUN_DIR = MODULE_DIR / "Resources" / "Testing" / "RecordedRun"
FULL_TEST_VARIABLE = "ALLNET_SELFTEST_FULL"  # "1": also build the sample case and run the network


def missingDependencies() -> str:
    """What the core needs and this Slicer lacks ("" when nothing), without installing anything."""
    problem = slicerVersionProblem()
    if problem:
        return problem
    from ALLNetSegmentLib.InstallLogic import InstallLogic

    plan = InstallLogic(MODULE_DIR / "Resources" / "requirements.txt").plan()
    return "" if plan.empty else "Python packages missing:\n" + plan.describe()


class ALLNetSegmentTest(ScriptedLoadableModuleTest):
    """Self-test in real Slicer (ctest ``--testing``, or Reload and Test).

    Without the core's Python packages it is skipped with a message (Slicer's testing mode
    installs nothing). With them: a recorded core output (Resources/Testing/RecordedRun, made
    by Testing/Python/make_slicer_recorded_run.py) -> import -> tables -> edit -> recomputed
    table -> export, without running the network; with ALLNET_SELFTEST_FULL=1 also
    Load sample's case -> segment with the bundled model.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        missing = missingDependencies()
        if missing:
            self.delayDisplay(f"ALLNetSegmentTest skipped: {missing}")
            return
        self.setUp()
        self.test_RecordedRunImportEditExport()
        if os.environ.get(FULL_TEST_VARIABLE) == "1":
            self.setUp()
            self.test_SampleCaseSegment()

    def test_RecordedRunImportEditExport(self):
        import tempfile

        import numpy as np
        from ALLNetSegmentLib import LesionTable
        from ALLNetSegmentLib.Export import exportResults
        from ALLNetSegmentLib.ResultImporter import ResultImporter

        self.delayDisplay("Importing the recorded ALLNet output")
        flair = slicer.util.loadVolume(str(RECORDED_RUN_DIR / "FLAIR.nii.gz"), {"name": "recorded FLAIR"})
        result = ResultImporter(MODULE_DIR / "Resources").importResult(RECORDED_RUN_DIR, flair)
        segmentationNode = result.segmentationNode
        reference = segmentationNode.GetNodeReference(
            slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
        self.assertEqual(reference.GetID(), flair.GetID())
        segmentId = segmentationNode.GetSegmentation().GetNthSegmentID(0)
        self.assertIn("52988006", segmentationNode.GetSegmentation().GetSegment(segmentId).GetTerminology())
        self.assertGreater(len(result.rows), 1, "the recorded run has several lesions")
        tableNode, totalsNode = LesionTable.updateTables(result.rows, referenceNode=flair)
        self.assertEqual(tableNode.GetNumberOfRows(), len(result.rows))

        self.delayDisplay("Erasing the largest lesion and recomputing the table")
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, flair)
        from scipy import ndimage

        components, count = ndimage.label(mask > 0, structure=np.ones((3, 3, 3)))  # 26-connectivity
        self.assertEqual(count, len(result.rows))
        largest = int(np.argmax(np.bincount(components.ravel())[1:])) + 1
        mask[components == largest] = 0
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentationNode, segmentId, flair)
        rows = LesionTable.recomputeRows(segmentationNode, flair, probability=result.maps.get("probability"),
                                         zones=result.maps.get("zones"))
        self.assertEqual(len(rows), len(result.rows) - 1)
        self.assertTrue(all(0.0 < row["max_prob"] <= 1.0 for row in rows), "probabilities kept after the edit")
        LesionTable.updateTables(rows, tableNode, totalsNode)
        self.assertEqual(tableNode.GetNumberOfRows(), len(rows))

        self.delayDisplay("Exporting")
        written = exportResults(segmentationNode, flair, rows, Path(tempfile.mkdtemp(prefix="ALLNetTest")))
        for path in written.values():
            self.assertTrue(os.path.isfile(path), path)
        import SimpleITK as sitk

        exported = sitk.GetArrayFromImage(sitk.ReadImage(str(written["mask"])))
        self.assertEqual(int(exported.sum()), int((mask > 0).sum()))
        self.delayDisplay("Recorded-output test passed")

    def test_SampleCaseSegment(self):
        import subprocess
        import tempfile

        from ALLNetSegmentLib.SegmentationLogic import loadCaseVolumes, pythonSlicerExecutable

        self.delayDisplay("Building the synthetic sample case and segmenting it (fast ensemble, CPU)")
        folder = Path(tempfile.mkdtemp(prefix="ALLNetTest"))
        subprocess.run([pythonSlicerExecutable(), "-m", "allnet", "demo", "--case-only", "-o", str(folder)],
                       cwd=str(MODULE_DIR), check=True)
        nodes = loadCaseVolumes(folder / "case")
        result = ALLNetSegmentLogic().segment(nodes["t1"], nodes["flair"], nodes.get("t2"),
                                              ensemble="fast", device="cpu")
        self.assertGreater(result.segmentationNode.GetSegmentation().GetNumberOfSegments(), 0)
        self.assertEqual(len(result.rows), len({row["id"] for row in result.rows}))
        self.delayDisplay("Sample-case test passed")
