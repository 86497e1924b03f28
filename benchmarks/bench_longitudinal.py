"""Validation and timing of ``allnet longitudinal`` on the development pairs (lesjak2018 native
patient01 and patient12), against the expert change masks, with the naive baseline.

    python benchmarks/bench_longitudinal.py                      # both patients, method + naive
    python benchmarks/bench_longitudinal.py --patients patient01 --skip-naive
    python benchmarks/bench_longitudinal.py --same-person        # calibration of the visit check
    python benchmarks/bench_longitudinal.py --t1 baseline --skip-naive   # follow-up without T1W

Per patient (study1 = baseline, study2 = follow-up, T1W, T2W and FLAIR at both visits):

- method: ``run_longitudinal``; its ``new_enlarged_mask`` (follow-up FLAIR grid) is carried
  into the database's common space with ``study2_FLAIR_to_common_space.txt`` (an ITK
  transform mapping common-space points to FLAIR points: it resamples the FLAIR onto
  ``gt.nii.gz``'s grid; linear interpolation of the 0/1 mask, cut at 0.5);
- naive baseline: ``run_pipeline`` (``allnet segment``) on each visit independently; both
  masks carried into common space with their own study transforms; change = follow-up lesion
  and not baseline lesion; components under the model plan's minimum lesion size dropped;
- metrics (``allnet.metrics.evaluate_case``, 18-connectivity, any-overlap detection): voxel
  DSC, lesion-wise TPR, FPR and F1 of the change mask against ``gt.nii.gz``.

Secondary numbers (labelled as such in the JSON): the expert mask split by the sign of the
FLAIR change inside each of its components (the mask holds lesions that darkened too), and
the masks of all changes (method: new, enlarging, shrinking, resolved; naive: symmetric
difference) against the whole expert mask.

Writes benchmarks/results/longitudinal_validation.json (or, with --same-person,
benchmarks/results/longitudinal_same_person.json).
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from _report import peak_rss_mib, write_report  # noqa: E402  (benchmarks/ is on sys.path)

HERE = Path(__file__).resolve().parent
NATIVE = HERE.parents[1] / "shared" / "data" / "lesjak2018" / "native"
CONNECTIVITY = 18


def to_common(mask: sitk.Image, gt: sitk.Image, transform_file: Path) -> np.ndarray:
    """A 0/1 mask on a study's FLAIR grid -> bool KJI array on the expert mask's grid."""
    transform = sitk.ReadTransform(str(transform_file))
    moved = sitk.Resample(sitk.Cast(mask > 0, sitk.sitkFloat32), gt, transform, sitk.sitkLinear, 0.0)
    return sitk.GetArrayFromImage(moved) >= 0.5


def metrics(pred: np.ndarray, ref: np.ndarray, spacing) -> dict:
    from allnet.metrics import evaluate_case

    m = evaluate_case(pred, ref, spacing=spacing, connectivity=CONNECTIVITY)
    return {"dsc": round(m.dsc, 4), "lesion_tpr": round(m.ltpr, 4), "lesion_fpr": round(m.lfpr, 4),
            "lesion_f1": round(m.lf1, 4), "n_pred_lesions": m.n_pred_lesions,
            "n_ref_lesions": m.n_ref_lesions, "n_ref_detected": m.n_ref_detected,
            "pred_volume_mm3": round(m.pred_volume_mm3, 1), "ref_volume_mm3": round(m.ref_volume_mm3, 1)}


def reference_split(folder: Path, gt: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """The expert mask's components whose mean FLAIR rose / fell from study1 to study2 (each
    FLAIR in common space, divided by the median of its brighter half: a crude scale)."""
    arrays = []
    for study in ("study1", "study2"):
        flair = sitk.ReadImage(str(folder / f"{study}_FLAIR.nii.gz"), sitk.sitkFloat32)
        transform = sitk.ReadTransform(str(folder / f"{study}_FLAIR_to_common_space.txt"))
        a = sitk.GetArrayFromImage(sitk.Resample(flair, gt, transform, sitk.sitkLinear, 0.0))
        arrays.append(a / np.median(a[a > np.percentile(a[a > 0], 50)]))
    labels, n = ndimage.label(sitk.GetArrayViewFromImage(gt) > 0,
                              ndimage.generate_binary_structure(3, 2))
    diff = arrays[1] - arrays[0]
    means = ndimage.mean(diff, labels, index=np.arange(1, n + 1))
    rose = np.concatenate([[False], np.asarray(means) > 0])
    return rose[labels], (~rose)[labels] & (labels > 0)


def run_patient(patient: str, args: argparse.Namespace) -> dict:
    import torch

    from allnet.contract import RunSettings
    from allnet.longitudinal_pipeline import run_longitudinal
    from allnet.pipeline import run_pipeline

    torch.set_num_threads(os.cpu_count() or 1)
    folder = NATIVE / patient
    files = {f"{study}_{role}": folder / f"{study}_{role}.nii.gz"
             for study in ("study1", "study2") for role in ("FLAIR", "T1W", "T2W")}
    gt = sitk.ReadImage(str(folder / "gt.nii.gz"))
    ref = sitk.GetArrayFromImage(gt) > 0
    spacing = gt.GetSpacing()
    settings = RunSettings(device="cpu", ensemble=args.ensemble)
    out: dict = {"patient": patient, "inputs": {k: str(v) for k, v in files.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        load_before = os.getloadavg()
        wall, cpu = time.perf_counter(), time.process_time()
        followup_t1 = files["study2_T1W"] if args.t1 == "both" else None
        out["followup_t1_given"] = followup_t1 is not None
        result = run_longitudinal(files["study1_FLAIR"], files["study2_FLAIR"],
                                  baseline_t1=files["study1_T1W"], followup_t1=followup_t1,
                                  baseline_t2=files["study1_T2W"], followup_t2=files["study2_T2W"],
                                  output_dir=Path(tmp) / "out", options=settings)
        out["method_time"] = {"wall_s": round(time.perf_counter() - wall, 1),
                              "cpu_s": round(time.process_time() - cpu, 1),
                              "load_average_before": load_before, "load_average_after": os.getloadavg(),
                              "stages_s": result.summary["timings_s"],
                              "preprocessing_s": result.summary["preprocessing_timings_s"]}
        out["method_counts"] = result.summary["counts"]
        out["method_totals"] = result.summary["totals"]
        transform2 = folder / "study2_FLAIR_to_common_space.txt"
        method = to_common(result.new_enlarged, gt, transform2)
        decreases = np.zeros(sitk.GetArrayViewFromImage(result.new_enlarged).shape, np.uint8)
        for item in result.changes:
            if item.change_class in ("shrinking", "resolved"):
                decreases[item.box][item.changed] = 1
        all_changes = sitk.GetImageFromArray(np.maximum(decreases, sitk.GetArrayFromImage(result.new_enlarged)))
        all_changes.CopyInformation(result.new_enlarged)
        method_all = to_common(all_changes, gt, transform2)
        del result
        rose, fell = reference_split(folder, gt)
        out["reference"] = {"components": int(ndimage.label(ref, ndimage.generate_binary_structure(3, 2))[1]),
                            "components_flair_rose": int(ndimage.label(rose, ndimage.generate_binary_structure(3, 2))[1]),
                            "components_flair_fell": int(ndimage.label(fell, ndimage.generate_binary_structure(3, 2))[1])}
        out["method"] = metrics(method, ref, spacing)
        out["secondary"] = {"method_vs_reference_rose": metrics(method, rose, spacing),
                            "method_all_changes_vs_reference": metrics(method_all, ref, spacing)}
        if not args.skip_naive:
            wall = time.perf_counter()
            masks = {}
            for study in ("study1", "study2"):
                seg = run_pipeline(files[f"{study}_T1W"], files[f"{study}_FLAIR"], files[f"{study}_T2W"],
                                   None, settings)
                masks[study] = to_common(seg.mask, gt, folder / f"{study}_FLAIR_to_common_space.txt")
                min_mm3 = seg.summary["inference_plan"]["min_lesion_mm3"]
            from allnet.metrics import remove_small_lesions

            voxel = float(np.prod(spacing))
            naive = remove_small_lesions(masks["study2"] & ~masks["study1"], voxel, CONNECTIVITY, min_mm3)
            naive_all = naive | remove_small_lesions(masks["study1"] & ~masks["study2"], voxel,
                                                     CONNECTIVITY, min_mm3)
            out["naive_time_s"] = round(time.perf_counter() - wall, 1)
            out["naive"] = metrics(naive, ref, spacing)
            out["secondary"]["naive_vs_reference_rose"] = metrics(naive, rose, spacing)
            out["secondary"]["naive_all_changes_vs_reference"] = metrics(naive_all, ref, spacing)
            # The naive mask is filtered after resampling to common space; the same filter on
            # the method's mask compares the two on equal terms (resampling leaves specks).
            out["secondary"]["method_filtered_as_naive"] = metrics(
                remove_small_lesions(method, voxel, CONNECTIVITY, min_mm3), ref, spacing)
    return out


def same_person(args: argparse.Namespace) -> int:
    """FLAIR-FLAIR edge correlation after registration for every pair of development FLAIRs."""
    from allnet.io import read_image
    from allnet.preprocessing import headcheck, pair, registration

    scans = {f"{p}/{s}": NATIVE / p / f"{s}_FLAIR.nii.gz"
             for p in ("patient01", "patient12") for s in ("study1", "study2")}
    scans["patient04/study1"] = NATIVE / "patient04" / "study1_FLAIR.nii.gz"
    images = {k: read_image(v, "flair") for k, v in scans.items()}
    rows = []
    for a, b in itertools.combinations(sorted(scans), 2):
        transform = registration.register_to_flair(images[a], images[b], moving_name="FLAIR")
        match = headcheck.measure_native(images[a], images[b], transform, pair._head_mask(images[a]),
                                         sitk.Euler3DTransform(), "flair")
        rows.append({"fixed": a, "moving": b, "same_person": a.split("/")[0] == b.split("/")[0],
                     "edge_correlation": match.edge_correlation, "nmi": match.nmi,
                     "rotation_deg": round(pair.rotation_deg(transform), 2)})
        print(rows[-1], flush=True)
    write_report({"limit": pair.SAME_PERSON_MIN, "pairs": rows},
                 args.out or HERE / "results" / "longitudinal_same_person.json")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", nargs="+", default=["patient01", "patient12"])
    parser.add_argument("--ensemble", default="full", choices=("fast", "full"))
    parser.add_argument("--skip-naive", action="store_true", help="only the method")
    parser.add_argument("--t1", choices=("both", "baseline"), default="both",
                        help="baseline: the follow-up visit is given without its T1W (it borrows the "
                             "baseline's); results go to longitudinal_validation_baseline_t1.json")
    parser.add_argument("--same-person", action="store_true", help="calibrate the same-person check")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not NATIVE.is_dir():
        print(f"development data not found at {NATIVE}", file=sys.stderr)
        return 2
    if args.same_person:
        return same_person(args)
    results = []
    for patient in args.patients:
        results.append(run_patient(patient, args))
        r = results[-1]
        print(f"{patient}: method DSC {r['method']['dsc']:.3f} L-F1 {r['method']['lesion_f1']:.3f} "
              f"(TPR {r['method']['lesion_tpr']:.3f}, FPR {r['method']['lesion_fpr']:.3f}), "
              f"{r['method_time']['wall_s']:.0f} s wall"
              + (f"; naive DSC {r['naive']['dsc']:.3f} L-F1 {r['naive']['lesion_f1']:.3f} "
                 f"(TPR {r['naive']['lesion_tpr']:.3f}, FPR {r['naive']['lesion_fpr']:.3f})"
                 if "naive" in r else ""), flush=True)
    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "ensemble": args.ensemble, "connectivity": CONNECTIVITY,
              "peak_rss_mib": round(peak_rss_mib(), 0), "patients": results}
    name = "longitudinal_validation.json" if args.t1 == "both" else "longitudinal_validation_baseline_t1.json"
    report["t1"] = args.t1
    write_report(report, args.out or HERE / "results" / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
