"""Benchmark of the synthetic demo case and of lesion insertion for training.

Stages, each repeated ``--runs`` times in one process after a cold first demo run (the
template load is cached per process): ``demo_total`` (make_demo_case, wall and CPU) with its
own per-stage wall times (no CPU time per stage) (``contrasts``, ``lesions``, ``native_resample_write``);
``shape_bank`` (LesionShapeBank of the 29 lesjak2018 MNI lesion masks) and
``training_insert`` (place 15 bank lesions + insert_lesions into a real MNI case,
lesjak2018 patient19), both skipped when ../shared/data is absent. Reports medians, the load
average (the machine is shared) and peak RSS.

    python benchmarks/bench_synthesis.py [--runs 3] [--out benchmarks/results/synthesis.json]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from _report import peak_rss_mib, write_report  # noqa: E402  (benchmarks/ is on sys.path)

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "lesjak2018"


def _timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _kji(path: Path) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(path).dataobj, dtype=np.float32).transpose(2, 1, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "synthesis.json"))
    args = parser.parse_args()

    from allnet.demo import make_demo_case
    from allnet.synthesis import LesionShapeBank, insert_lesions
    from allnet.templates import load_template

    load_before = os.getloadavg()[0]
    stages: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        case, cold_wall, cold_cpu = _timed(make_demo_case, Path(tmp) / "cold", 0)
        for run in range(args.runs):
            case, wall, cpu = _timed(make_demo_case, Path(tmp) / f"run{run}", 0)
            stages.setdefault("demo_total", []).append((wall, cpu))
            for name, seconds in case.timings.items():
                if name != "template":
                    stages.setdefault(f"demo.{name}", []).append((seconds, None))

    if (DATA / "lesion_masks_mni").is_dir():
        masks = [_kji(p) > 0 for p in sorted((DATA / "lesion_masks_mni").glob("*.nii.gz"))]
        case_dir = DATA / "mni" / "patient19"
        images = {name: _kji(case_dir / f"{file}.nii.gz")
                  for name, file in (("flair", "FLAIR"), ("t1", "T1"), ("t2", "T2"))}
        real = _kji(case_dir / "lesions.nii.gz") > 0
        wm = sitk.GetArrayFromImage(load_template().wm)
        for run in range(args.runs):
            bank, wall, cpu = _timed(LesionShapeBank, masks)
            stages.setdefault("shape_bank", []).append((wall, cpu))
            rng = np.random.default_rng(run)

            def insert():
                new = bank.place(wm, 15, rng, existing=real)
                return insert_lesions(images, new, wm, rng, base_mask=real)

            _, wall, cpu = _timed(insert)
            stages.setdefault("training_insert", []).append((wall, cpu))
        bank_size = len(bank)
    else:
        bank_size = None

    report = {
        "runs": args.runs, "cpu_count": os.cpu_count(),
        "load_average_before_after": [load_before, os.getloadavg()[0]],
        "cold_demo_s": {"wall": cold_wall, "cpu": cold_cpu},
        "median_stage_s": {name: {"wall": statistics.median(w for w, _ in v),
                                  "cpu": None if v[0][1] is None else statistics.median(c for _, c in v)}
                           for name, v in stages.items()},
        "peak_rss_mib": peak_rss_mib(),
        "demo_lesion_count": case.lesion_count, "bank_shapes": bank_size,
    }
    print(f"synthesis benchmark: {args.runs} runs, load {load_before:.1f} on {os.cpu_count()} cores")
    print(f"{'cold demo (+template)':<26}{cold_wall:>8.2f} s wall {cold_cpu:>8.2f} s cpu")
    for name, value in report["median_stage_s"].items():
        cpu = "" if value["cpu"] is None else f"{value['cpu']:>8.2f} s cpu"
        print(f"{name:<26}{value['wall']:>8.2f} s wall {cpu}")
    print(f"{'peak RSS':<26}{report['peak_rss_mib']:>8.0f} MiB")
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
