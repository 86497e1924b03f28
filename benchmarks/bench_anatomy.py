"""Benchmark of tissue segmentation, anatomy channels/zones and the lesion table.

Case: lesjak2018 patient07 (MNI grid, T1 + consensus lesion mask) from ../shared/data, or the
template T1 when the data is absent. Stages, each repeated ``--runs`` times in one process
after a cold setup (template, smoothed priors, template ventricles; cached per process):
``tissue`` (segment_tissue), ``anatomy_given_tissue`` (compute_anatomy with that tissue),
``anatomy_total`` (compute_anatomy from scratch), ``lesions_case`` (label_lesions +
lesion_table + lesion_totals of the case mask with zones) and ``lesions_stress`` (the same on
a native-like 512 x 512 x 60 grid holding thousands of lesions). Reports median wall and CPU
seconds per stage, the load average (the machine is shared) and peak RSS.

    python benchmarks/bench_anatomy.py [--runs 3] [--out benchmarks/results/anatomy.json]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from _report import peak_rss_mib, write_report  # noqa: E402  (benchmarks/ is on sys.path)

HERE = Path(__file__).resolve().parent
CASE = HERE.parents[1] / "shared" / "data" / "lesjak2018" / "mni" / "patient07"


def _timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _stress_mask() -> sitk.Image:
    """512 x 512 x 60 native-like grid (0.45 x 0.45 x 3 mm, oblique) with thousands of blobs."""
    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.random((60, 512, 512), dtype=np.float32), (0.5, 2.0, 2.0))
    image = sitk.GetImageFromArray((field > 0.525).astype(np.uint8))
    image.SetSpacing((0.45, 0.45, 3.0))
    c, s = np.cos(0.2), np.sin(0.2)
    image.SetDirection((1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c))
    return image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "anatomy.json"))
    args = parser.parse_args()

    from allnet.anatomy import compute_anatomy, template_ventricles
    from allnet.lesions import label_lesions, lesion_table, lesion_totals
    from allnet.templates import load_template
    from allnet.tissue import segment_tissue, template_priors

    load_before = os.getloadavg()[0]
    _, setup_wall, setup_cpu = _timed(lambda: (load_template(), template_priors(), template_ventricles()))
    if (CASE / "T1.nii.gz").is_file():
        case_name = str(CASE)
        t1_image = sitk.ReadImage(str(CASE / "T1.nii.gz"), sitk.sitkFloat32)
        lesion_image = sitk.ReadImage(str(CASE / "lesions.nii.gz"))
        t1 = sitk.GetArrayFromImage(t1_image)
        brain = (t1 > 0).astype(np.uint8)
    else:
        case_name = "template T1 (development data absent)"
        template = load_template()
        t1, brain = sitk.GetArrayFromImage(template.t1), sitk.GetArrayFromImage(template.brain_mask)
        lesion_image = sitk.Cast(template.wm > 2.0, sitk.sitkUInt8)  # empty
    stress = _stress_mask()

    stages: dict[str, list[tuple[float, float]]] = {}
    counts = {}
    for _ in range(args.runs):
        tissue, wall, cpu = _timed(segment_tissue, t1, brain)
        stages.setdefault("tissue", []).append((wall, cpu))
        anatomy, wall, cpu = _timed(compute_anatomy, t1, brain, tissue=tissue)
        stages.setdefault("anatomy_given_tissue", []).append((wall, cpu))
        anatomy, wall, cpu = _timed(compute_anatomy, t1, brain)
        stages.setdefault("anatomy_total", []).append((wall, cpu))
        zones = sitk.GetImageFromArray(anatomy.zones)
        zones.CopyInformation(lesion_image)

        def lesions(mask, zones_image=None):
            table = lesion_table(label_lesions(mask, 26, 0.0), None, zones_image)
            return table, lesion_totals(table)

        (_, totals), wall, cpu = _timed(lesions, lesion_image, zones)
        stages.setdefault("lesions_case", []).append((wall, cpu))
        counts["case_lesions"] = totals["count"]
        (_, totals), wall, cpu = _timed(lesions, stress)
        stages.setdefault("lesions_stress", []).append((wall, cpu))
        counts["stress_lesions"] = totals["count"]

    report = {
        "case": case_name, "runs": args.runs, "cpu_count": os.cpu_count(),
        "load_average_before_after": [load_before, os.getloadavg()[0]],
        "cold_setup_s": {"wall": setup_wall, "cpu": setup_cpu},
        "median_stage_s": {name: {"wall": statistics.median(w for w, _ in v), "cpu": statistics.median(c for _, c in v)}
                           for name, v in stages.items()},
        "peak_rss_mib": peak_rss_mib(),
        "lesion_counts": counts,
    }
    print(f"anatomy benchmark: {case_name}, {args.runs} runs, load {load_before:.1f} on {os.cpu_count()} cores")
    print(f"{'cold setup':<24}{setup_wall:>8.2f} s wall {setup_cpu:>8.2f} s cpu")
    for name, value in report["median_stage_s"].items():
        print(f"{name:<24}{value['wall']:>8.2f} s wall {value['cpu']:>8.2f} s cpu")
    print(f"{'peak RSS':<24}{report['peak_rss_mib']:>8.0f} MiB; lesions: {counts}")
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
