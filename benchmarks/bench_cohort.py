"""Cohort throughput on Dask workers: cases per hour with 1 and 2 local workers, and the
peak memory of a worker process per case.

Runs ``allnet.cases.run_cohort`` (what ``allnet segment --cohort`` runs) over a cohort of
MNI-grid cases from ../shared/data with ``--preprocessed``, the bundled model and
``--ensemble fast``, once per worker count, each in a fresh output folder. The wall time
includes starting the local cluster (workers load the model and the template once).

    python benchmarks/bench_cohort.py                      # 4 cases, 1 and 2 workers
    python benchmarks/bench_cohort.py --workers 1 2 4 --cases 8

Writes benchmarks/results/cohort_cpu.json, with the machine's load average before and
after each run (other work on the machine slows the figures down; it is recorded, not
subtracted).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from _report import write_report  # noqa: E402  (benchmarks/ is on sys.path)

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
# MNI-grid cases (T1, T2, FLAIR; the file names tell the roles to allnet.cases.find_inputs).
CASES = [DATA / "lesjak2018" / "mni" / "patient07", DATA / "lesjak2018" / "mni" / "patient19",
         DATA / "mslesseg" / "P14" / "T2", DATA / "mslesseg" / "P14" / "T3"]


def folder_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def run(workers: int, cohort: Path, out: Path) -> dict:
    """One cohort run on a fresh local cluster of ``workers`` processes."""
    from allnet.cases import SegmentCase, run_cohort
    from allnet.cluster import case_executor, threads_per_worker
    from allnet.contract import RunSettings

    settings = RunSettings(preprocessed=True, ensemble="fast", device="cpu").validate()
    load_before = os.getloadavg()
    start = time.perf_counter()
    with case_executor(workers, models=settings.model) as executor:
        outcomes = run_cohort(cohort, out, SegmentCase(settings), executor=executor)
    wall = time.perf_counter() - start
    ok = [o for o in outcomes if o.status == "ok"]
    return {
        "workers": workers, "threads_per_worker": threads_per_worker(workers),
        "cases": len(outcomes), "succeeded": len(ok),
        "wall_s": round(wall, 1), "cases_per_hour": round(len(ok) / wall * 3600, 1),
        "case_seconds": {o.case_id: round(o.seconds, 1) for o in outcomes},
        "worker_peak_rss_mib": {o.case_id: round(o.peak_rss_mib or 0.0) for o in outcomes},
        "output_mib_per_case": round(sum(folder_mib(out / o.case_id) for o in ok) / max(1, len(ok)), 1),
        "errors": {o.case_id: o.error for o in outcomes if o.status != "ok"},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cases", type=int, default=len(CASES),
                        help="cases in the cohort (the MNI cases repeated as needed)")
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--out", default=str(HERE / "results" / "cohort_cpu.json"))
    args = parser.parse_args()
    missing = [c for c in CASES if not c.is_dir()]
    if missing:
        raise SystemExit(f"development data not found: {missing[0]}")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        cohort = Path(tmp) / "cohort"
        cohort.mkdir()
        for index in range(args.cases):
            source = CASES[index % len(CASES)]
            (cohort / f"case{index:02d}_{source.parent.name}_{source.name}").symlink_to(source)
        for workers in args.workers:
            result = run(workers, cohort, Path(tmp) / f"out{workers}")
            print(f"{workers} worker(s): {result['succeeded']}/{result['cases']} cases in "
                  f"{result['wall_s']} s = {result['cases_per_hour']} cases/hour; worker peak RSS "
                  f"{max(result['worker_peak_rss_mib'].values())} MiB", flush=True)
            runs.append(result)
    write_report({
        "what": "allnet segment --cohort on a local Dask cluster: MNI-grid cases, --preprocessed, "
                "bundled model, --ensemble fast, CPU",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
        "note": args.note,
        "runs": runs,
    }, args.out)


if __name__ == "__main__":
    main()
