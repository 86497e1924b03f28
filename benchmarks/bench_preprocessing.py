"""Benchmark of ``allnet.preprocessing.preprocess`` on native clinical scans (CPU).

Reads one native case (default: lesjak2018 patient01 study1 T1W/T2W/FLAIR from
../shared/data), then runs ``preprocess`` ``--runs`` times in this process after one
warm-up pass (which loads deepbet and the template). Reports the median total and per-stage
seconds, the reading time, QC numbers, peak RSS (MiB) and the load average (the machine is
shared; compare timings only at similar load).

    python benchmarks/bench_preprocessing.py [--case patient01/study1] [--runs 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "lesjak2018" / "native"
DEFAULT_OUT = HERE / "results" / "preprocessing_cpu.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="patient01/study1", help="patientNN/studyN")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch and ITK threads")
    parser.add_argument("--no-t2", action="store_true", help="T1W and FLAIR only")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    import SimpleITK as sitk
    import torch

    from allnet.io import read_image
    from allnet.preprocessing.pipeline import preprocess

    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    patient, study = args.case.split("/")
    folder = DATA / patient
    roles = [("t1", "T1W"), ("flair", "FLAIR")] + ([] if args.no_t2 else [("t2", "T2W")])
    start = time.perf_counter()
    images = {r: read_image(folder / f"{study}_{n}.nii.gz", r) for r, n in roles}
    read_s = time.perf_counter() - start

    def once() -> tuple[float, dict, dict]:
        t0 = time.perf_counter()
        case = preprocess(images["t1"], images["flair"], images.get("t2"))
        return time.perf_counter() - t0, case.timings, case.qc

    once()  # warm-up: deepbet weights, template, caches
    totals, stages, qc = [], {}, {}
    for _ in range(args.runs):
        total, timings, qc = once()
        totals.append(total)
        for key, value in timings.items():
            stages.setdefault(key, []).append(value)
    report = {
        "case": args.case, "modalities": [r for r, _ in roles], "runs": args.runs,
        "threads": args.threads, "read_s": round(read_s, 2),
        "total_s_median": round(statistics.median(totals), 2),
        "total_s_all": [round(t, 2) for t in totals],
        "stages_s_median": {k: round(statistics.median(v), 2) for k, v in stages.items()},
        "qc": {k: round(v, 3) for k, v in qc.items()},
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
