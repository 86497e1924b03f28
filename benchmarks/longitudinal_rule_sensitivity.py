"""How the longitudinal change rules' constants move lesion-wise F1 on the development pairs.

Runs `allnet longitudinal` once per pair (bundled model, full ensemble, T1W/T2W at both
visits), keeps both visits' lesions and the FLAIR change on the follow-up grid, then
re-classifies them under variants of the rules (``allnet.change`` constants) and under rule-free
alternatives, and scores each new/enlarging mask against the expert change mask in common space
(18-connectivity, as `bench_longitudinal.py`). Re-classification only: the constants of
``allnet.change`` were fixed before the first evaluation and are not chosen here (the
voxel-wise form of the rules was chosen on these pairs: docs/LONGITUDINAL.md).

    python benchmarks/longitudinal_rule_sensitivity.py
        -> benchmarks/results/longitudinal_rule_sensitivity.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_report  # noqa: E402
from bench_longitudinal import NATIVE, metrics, to_common  # noqa: E402

SUBTRACTION_MIN_MM3 = 10.0
SUBTRACTION_ERODE = 3  # voxels: brain-edge misregistration is not lesion change


def _image(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.CopyInformation(like)
    return image


def variants(base: np.ndarray, follow: np.ndarray, change: np.ndarray, voxel_mm3: float,
             brain: np.ndarray) -> dict[str, np.ndarray]:
    """New/enlarging masks (bool KJI, follow-up grid) of each variant."""
    from allnet import change as rules

    out = {}
    defaults = (rules.CHANGE_MIN_Z, rules.CHANGE_MIN_MM3)
    for name, z, floor in (("rules as shipped (CHANGE_MIN_Z 1.0, CHANGE_MIN_MM3 10)", *defaults),
                           ("CHANGE_MIN_Z 0.75", 0.75, defaults[1]),
                           ("CHANGE_MIN_Z 0.5", 0.5, defaults[1]),
                           ("CHANGE_MIN_Z 1.5", 1.5, defaults[1]),
                           ("CHANGE_MIN_MM3 5", defaults[0], 5.0),
                           ("CHANGE_MIN_MM3 20", defaults[0], 20.0)):
        rules.CHANGE_MIN_Z, rules.CHANGE_MIN_MM3 = z, floor
        try:
            out[name] = rules.classify_changes(base, follow, change, voxel_mm3).new_enlarged > 0
        finally:
            rules.CHANGE_MIN_Z, rules.CHANGE_MIN_MM3 = defaults
    labels, n = ndimage.label(follow > 0, ndimage.generate_binary_structure(3, 3))
    touched = np.unique(labels[(base > 0) & (labels > 0)])
    out["no rules: follow-up lesions touching no baseline lesion"] = (labels > 0) & ~np.isin(labels, touched)
    out["voxel-wise: follow-up lesion, not baseline lesion, FLAIR change >= 0.5"] = (
        (follow > 0) & (base == 0) & (change >= 0.5))
    inner = ndimage.binary_erosion(brain, iterations=SUBTRACTION_ERODE)
    min_voxels = SUBTRACTION_MIN_MM3 / voxel_mm3
    for level in (2.0, 3.0):
        found, n = ndimage.label((change >= level) & inner, ndimage.generate_binary_structure(3, 2))
        sizes = np.bincount(found.ravel())
        keep = np.flatnonzero(sizes >= min_voxels)
        out[f"subtraction only: FLAIR change >= {level:g} (>= 10 mm3, brain eroded by 3 voxels)"] = (
            np.isin(found, keep[keep > 0]))
    return out


def run_pair(patient: str) -> dict:
    from allnet.contract import RunSettings
    from allnet.longitudinal_pipeline import run_longitudinal

    folder = NATIVE / patient
    files = {f"{s}_{r}": folder / f"{s}_{r}.nii.gz" for s in ("study1", "study2") for r in ("FLAIR", "T1W", "T2W")}
    gt = sitk.ReadImage(str(folder / "gt.nii.gz"))
    ref = sitk.GetArrayFromImage(gt) > 0
    with tempfile.TemporaryDirectory() as tmp:
        result = run_longitudinal(files["study1_FLAIR"], files["study2_FLAIR"],
                                  baseline_t1=files["study1_T1W"], followup_t1=files["study2_T1W"],
                                  baseline_t2=files["study1_T2W"], followup_t2=files["study2_T2W"],
                                  output_dir=Path(tmp) / "out", options=RunSettings(device="cpu"))
    like = result.baseline_labels
    base = sitk.GetArrayFromImage(result.baseline_labels)
    follow = sitk.GetArrayFromImage(result.followup_labels)
    change = sitk.GetArrayFromImage(result.flair_change)
    brain = ((sitk.GetArrayFromImage(result.visit_flairs["baseline"]) != 0)
             & (sitk.GetArrayFromImage(result.visit_flairs["followup"]) != 0))
    voxel_mm3 = float(np.prod(like.GetSpacing()))
    transform = folder / "study2_FLAIR_to_common_space.txt"
    return {name: metrics(to_common(_image(mask, like), gt, transform), ref, gt.GetSpacing())
            for name, mask in variants(base, follow, change, voxel_mm3, brain).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", nargs="+", default=["patient01", "patient12"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not NATIVE.is_dir():
        print(f"no development data at {NATIVE}", file=sys.stderr)
        return 2
    results = {p: run_pair(p) for p in args.patients}
    for name in next(iter(results.values())):
        print(f"{name}: " + ", ".join(f"{p} L-F1 {r[name]['lesion_f1']:.3f} DSC {r[name]['dsc']:.3f}"
                                      for p, r in results.items()))
    write_report({"pairs": results, "model": "bundled (full ensemble, its inference plan)"},
                 args.out or Path(__file__).resolve().parent / "results" / "longitudinal_rule_sensitivity.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
