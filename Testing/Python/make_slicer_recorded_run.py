"""Regenerate ALLNetSegment/Resources/Testing/RecordedRun: a small recorded ``allnet demo``
output that the Slicer self-test (``ALLNetSegmentTest``) imports, tabulates, edits and exports
without running the network.

    python Testing/Python/make_slicer_recorded_run.py                 # runs `allnet demo` first
    python Testing/Python/make_slicer_recorded_run.py --demo-output D # reuse D (D/case, D/result)

To stay small (under 1 MB), the FLAIR and the run's maps are cropped to the brain (the zones
map) plus a margin and resampled in-plane to twice the spacing (labels nearest-neighbour,
probability linear, background below 0.02 set to 0), the FLAIR stored as uint8. The lesions are then tabulated again on that
grid by the core's own code (``allnet.lesions``, 26-connectivity, the run's minimum size), so
``lesions.csv``, the mask and the maps agree; ``summary.json`` lists the files as a run does.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "ALLNetSegment" / "Resources" / "Testing" / "RecordedRun"
MARGIN_MM = 6.0
IN_PLANE_FACTOR = 2.0
CONNECTIVITY = 26  # the self-test counts 26-connected components


def runDemo(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "allnet", "demo", "-o", str(folder)], cwd=REPO / "ALLNetSegment", check=True)
    return folder


def smallGrid(reference: sitk.Image, zones: sitk.Image) -> sitk.Image:
    """The brain's bounding box (+ margin) of ``reference``, in-plane spacing x IN_PLANE_FACTOR (LPS)."""
    inside = np.argwhere(sitk.GetArrayViewFromImage(zones) > 0)  # KJI
    spacing = np.array(reference.GetSpacing())
    margin = np.ceil(MARGIN_MM / spacing[::-1]).astype(int)
    low = np.maximum(inside.min(axis=0) - margin, 0)
    high = np.minimum(inside.max(axis=0) + margin + 1, np.array(reference.GetSize())[::-1])
    newSpacing = spacing * np.array([IN_PLANE_FACTOR, IN_PLANE_FACTOR, 1.0])
    extentMm = (high - low)[::-1] * spacing
    grid = sitk.Image([int(v) for v in np.ceil(extentMm / newSpacing)], sitk.sitkUInt8)
    grid.SetSpacing(newSpacing.tolist())
    grid.SetDirection(reference.GetDirection())
    # The new grid's first voxel centre: the old corner of the box, moved by half a new voxel.
    corner = np.array(reference.TransformContinuousIndexToPhysicalPoint((low[::-1] - 0.5).tolist()))
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    grid.SetOrigin((corner + direction @ (newSpacing / 2)).tolist())
    return grid


def resample(image: sitk.Image, grid: sitk.Image, interpolator, pixelType) -> sitk.Image:
    return sitk.Cast(sitk.Resample(image, grid, sitk.Transform(), interpolator, 0.0), pixelType)


def make(demoOutput: Path) -> None:
    from allnet import lesions
    from allnet.contract import (MASK_FILE, OUTPUT_FILES, PROBABILITY_FILE, SUMMARY_FILE, SUMMARY_OUTPUTS_KEY,
                                 SUMMARY_PLAN_KEY, TABLE_FILE, ZONES_FILE)

    result = demoOutput / "result"
    summary = json.loads((result / SUMMARY_FILE).read_text())
    flair = sitk.ReadImage(str(demoOutput / "case" / "FLAIR.nii.gz"))
    zones = sitk.ReadImage(str(result / ZONES_FILE))
    grid = smallGrid(flair, zones)

    flairArray = sitk.GetArrayFromImage(resample(flair, grid, sitk.sitkLinear, sitk.sitkFloat32))
    top = float(np.percentile(flairArray, 99.9)) or 1.0
    flairSmall = sitk.GetImageFromArray(np.clip(flairArray / top * 255.0, 0, 255).astype(np.uint8))
    flairSmall.CopyInformation(grid)
    probability = resample(sitk.ReadImage(str(result / PROBABILITY_FILE)), grid, sitk.sitkLinear, sitk.sitkFloat32)
    # Background noise below 0.02 set to 0 and values rounded to 0.001: the file then compresses
    # to a few kB; lesion probabilities (what the table reads) keep three decimals.
    values = sitk.GetArrayFromImage(probability)
    values = np.where(values < 0.02, 0.0, np.round(values, 3)).astype(np.float32)
    probability = sitk.GetImageFromArray(values)
    probability.CopyInformation(grid)
    zonesSmall = resample(zones, grid, sitk.sitkNearestNeighbor, sitk.sitkUInt8)
    mask = resample(sitk.ReadImage(str(result / MASK_FILE)), grid, sitk.sitkNearestNeighbor, sitk.sitkUInt8)

    plan = dict(summary.get(SUMMARY_PLAN_KEY) or {})
    minSize = float(plan.get("min_lesion_mm3", 10.0))
    labels = lesions.label_lesions(mask, connectivity=CONNECTIVITY, min_size_mm3=minSize)
    mask = sitk.Cast(labels > 0, sitk.sitkUInt8)  # what the table counts, nothing more
    table = lesions.lesion_table(labels, probability, zonesSmall)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        sitk.WriteImage(flairSmall, str(out / "FLAIR.nii.gz"), True)
        sitk.WriteImage(mask, str(out / MASK_FILE), True)
        sitk.WriteImage(probability, str(out / PROBABILITY_FILE), True)
        sitk.WriteImage(zonesSmall, str(out / ZONES_FILE), True)
        lesions.write_lesions_csv(table, out / TABLE_FILE)
        written = {key: name for key, name in OUTPUT_FILES.items() if (out / name).is_file() or key == "summary"}
        plan["connectivity"] = CONNECTIVITY
        recorded = {SUMMARY_OUTPUTS_KEY: written, SUMMARY_PLAN_KEY: plan,
                    "recorded": "allnet demo output, cropped and resampled by "
                                "Testing/Python/make_slicer_recorded_run.py; lesions tabulated again",
                    "allnet_version": summary.get("allnet_version") or summary.get("version")}
        (out / SUMMARY_FILE).write_text(json.dumps(recorded, indent=2) + "\n")
        if TARGET.exists():
            shutil.rmtree(TARGET)
        shutil.copytree(out, TARGET)
    total = sum(p.stat().st_size for p in TARGET.iterdir())
    print(f"{TARGET}: {len(table)} lesions, grid {grid.GetSize()}, {total / 1024:.0f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-output", type=Path, help="an existing `allnet demo -o` folder")
    args = parser.parse_args()
    if args.demo_output:
        make(args.demo_output)
        return
    with tempfile.TemporaryDirectory() as tmp:
        make(runDemo(Path(tmp) / "demo"))


if __name__ == "__main__":
    main()
