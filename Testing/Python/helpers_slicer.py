"""Shared set-up of the Slicer-side tests: the Slicer stand-in on sys.path, a clean scene, and a
small ALLNet output folder written with SimpleITK and slicerio on an oblique FLAIR grid."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
STUB = Path(__file__).resolve().parent / "slicer_stub"
MODULE_DIR = REPO / "ALLNetSegment"
for path in (str(STUB), str(MODULE_DIR)):
    if path not in sys.path:
        sys.path.insert(0, path)

import qt  # noqa: E402  (the stand-in)
import slicer  # noqa: E402  (the stand-in)
import slicer.packaging  # noqa: E402,F401


FAKE_CORE = textwrap.dedent("""
    # Stand-in for `python -m allnet segment`: one 3x3x3 lesion at the FLAIR centre.
    import json, sys, time
    from pathlib import Path
    import numpy as np, SimpleITK as sitk
    from allnet import lesions
    args = sys.argv[1:]
    out = Path(args[args.index("-o") + 1])
    Path(sys.argv[0]).with_suffix(".args.json").write_text(json.dumps(args))
    print('ALLNET-PROGRESS {"stage": "preprocessing", "fraction": 0.2, "message": "reading"}', flush=True)
    if "--tta" in args:  # used by the cancel test: behave like a long run
        time.sleep(60)
    flair = sitk.ReadImage(args[args.index("--flair") + 1])
    mask = np.zeros(sitk.GetArrayViewFromImage(flair).shape, np.uint8)
    k, j, i = (s // 2 for s in mask.shape)
    mask[k-1:k+2, j-1:j+2, i-1:i+2] = 1
    out.mkdir(parents=True)
    image = sitk.GetImageFromArray(mask); image.CopyInformation(flair)
    sitk.WriteImage(image, str(out / "lesion_mask.nii.gz"))
    prob = sitk.GetImageFromArray(mask.astype(np.float32) * 0.8); prob.CopyInformation(flair)
    sitk.WriteImage(prob, str(out / "lesion_probability.nii.gz"))
    labels = lesions.label_lesions(image, 26, 0.0)
    lesions.write_lesions_csv(lesions.lesion_table(labels, prob, None), out / "lesions.csv")
    (out / "report.html").write_text("<html>QC report</html>")
    outputs = {"mask": "lesion_mask.nii.gz", "probability": "lesion_probability.nii.gz", "table": "lesions.csv",
               "report": "report.html"}
    warnings = ["T1W.nrrd does not look like the same head as FLAIR.nrrd (edge correlation 0.31 < 0.45); "
                "run continued because of --allow-mismatch"] if "--allow-mismatch" in args else []
    (out / "summary.json").write_text(json.dumps({"outputs": outputs, "warnings": warnings}))
    print("ALLNET-RESULT " + json.dumps({"output_dir": str(out), "summary": str(out / "summary.json")}), flush=True)
""")


def makePanel(module, tmp_path: Path, monkeypatch):
    """The module widget set up (Slicer 5.12, module shown), with the core's segment command
    replaced by FAKE_CORE and the dependencies taken as installed."""
    import types

    from ALLNetSegmentLib.SegmentationLogic import SegmentationLogic

    script = tmp_path / "fake_core.py"
    script.write_text(FAKE_CORE)
    original = SegmentationLogic.buildCommand

    def buildCommand(inputs, outputDir, settings, python=None):
        real = original(inputs, outputDir, settings, python=sys.executable)
        assert real[1:4] == ["-m", "allnet", "segment"]
        return [sys.executable, str(script), *real[4:]]

    monkeypatch.setattr(SegmentationLogic, "buildCommand", staticmethod(buildCommand))
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **kw: None)
    monkeypatch.setattr("ALLNetSegmentLib.InstallLogic.InstallLogic.ensure", lambda self, askConfirmation=True: True)
    widget = module.ALLNetSegmentWidget(types.SimpleNamespace(isEntered=True))
    widget.setup()
    widget.scriptPath = script
    return widget


def loadCase(tmp_path: Path):
    """T1W, T2W and FLAIR volumes named like a patient's (the FLAIR is the oblique test grid)."""
    written = writeOutputFolder(tmp_path / "case")
    flair = sitk.ReadImage(str(tmp_path / "case" / "FLAIR.nii.gz"))
    for name in ("patient07_T1W", "patient07_T2W"):
        sitk.WriteImage(flair, str(tmp_path / "case" / f"{name}.nii.gz"))
    nodes = [slicer.util.loadVolume(str(tmp_path / "case" / f"{n}.nii.gz"), {"name": n})
             for n in ("patient07_T1W", "patient07_T2W")]
    nodes.append(slicer.util.loadVolume(str(tmp_path / "case" / "FLAIR.nii.gz"), {"name": "patient07 FLAIR"}))
    return written, nodes


def resetSlicer() -> None:
    """Empty scene (singletons too), no recorded dialogs, no pending timers, default dialog
    answers, a Slicer 5.12 not in testing mode. Panels of earlier tests stop observing the scene."""
    slicer.mrmlScene.RemoveAllObservers()
    slicer.mrmlScene.Clear(1)
    for record in slicer.util.calls.values():
        record.clear()
    slicer.util.answers.update({"confirmOkCancelDisplay": True, "confirmYesNoDisplay": False})
    slicer.modules.markups.logic().jumps.clear()
    slicer.packaging.installs.clear()
    slicer.packaging.failNextInstall.clear()
    slicer.packaging.installedByStandIn.clear()
    slicer.app.testing = False
    slicer.app.majorVersion, slicer.app.minorVersion = 5, 12
    qt.QSettings.store.clear()
    qt._queue.clear()


def runEventLoopUntil(predicate, timeout: float = 30.0) -> None:
    import time

    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("condition not reached in the stand-in event loop")
        qt.processEvents()
        time.sleep(0.02)


def obliqueFlair(size=(40, 36, 24), spacing=(0.9, 1.1, 3.0)) -> sitk.Image:
    """A FLAIR-like image whose axes are rotated (not axis-aligned) and whose origin is off 0."""
    a, b = np.deg2rad(20.0), np.deg2rad(10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetDirection((rz @ rx).ravel().tolist())
    image.SetOrigin((12.5, -30.0, 41.0))
    rng = np.random.default_rng(0)
    array = rng.normal(100, 10, size[::-1]).astype(np.float32)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


LESIONS_KJI = {1: (slice(8, 11), slice(10, 14), slice(8, 13)),   # 3 x 4 x 5 voxels
               2: (slice(15, 17), slice(22, 25), slice(25, 28))}  # 2 x 3 x 3 voxels


def writeOutputFolder(folder: Path, withLesions: bool = True) -> dict:
    """The files of one ``allnet segment`` run on the oblique FLAIR grid, written by the
    core's own writers (``allnet.outputs``), so the Slicer glue is tested against exactly
    what the core produces (file names, columns and the summary's output list)."""
    from allnet import lesions as core_lesions
    from allnet import outputs
    from allnet.contract import RunSettings
    from allnet.pipeline import SegmentationResult

    folder.mkdir(parents=True, exist_ok=True)
    flair = obliqueFlair()
    sitk.WriteImage(flair, str(folder / "FLAIR.nii.gz"))
    shape = sitk.GetArrayViewFromImage(flair).shape
    labels = np.zeros(shape, np.uint16)
    if withLesions:
        for lesionId, region in LESIONS_KJI.items():
            labels[region] = lesionId
    probability = np.where(labels > 0, 0.9, 0.05).astype(np.float32)
    probability[labels == 2] = 0.7
    zones = np.where(labels > 0, 1, 0).astype(np.uint8)
    zones[labels == 1] = core_lesions.ZONE_PERIVENTRICULAR
    zones[labels == 2] = core_lesions.ZONE_JUXTACORTICAL

    def image(array):
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(flair)
        return out

    labelsImage, probabilityImage, zonesImage = image(labels), image(probability), image(zones)
    lesions = core_lesions.lesion_table(labelsImage, probabilityImage, zonesImage,
                                        {1: 0.8, 2: 0.6} if withLesions else {})
    totals = core_lesions.lesion_totals(lesions)
    result = SegmentationResult(mask=image((labels > 0).astype(np.uint8)), labels=labelsImage,
                                probability=probabilityImage, zones=zonesImage, lesions=lesions,
                                totals=totals, summary={})
    files = outputs.write_result_files(folder, result, RunSettings())
    summary = {"totals": totals, "inference_plan": {"connectivity": 26},
               "outputs": files | {"summary": outputs.SUMMARY_FILE}}
    outputs.write_summary(folder, summary)
    rows = core_lesions.table_rows(lesions)
    return {"flair": flair, "labels": labelsImage, "rows": rows, "folder": folder}
