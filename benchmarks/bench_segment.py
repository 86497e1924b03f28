"""End-to-end benchmark of ``allnet segment``: per-stage wall time and peak RSS.

Runs the whole pipeline N times (default 3), each in a fresh Python process so that peak RSS
and start-up costs are those of a real run, and reports the median per stage.

    python benchmarks/bench_segment.py                       # lesjak2018 native patient01 study1
    python benchmarks/bench_segment.py --t1 T1 --flair F --t2 T2 --runs 3 --device cpu

Writes a table to stdout and JSON to benchmarks/results/segment_<device>.json. The QC report's
cost is its own stage, ``report``; ``--no-report`` times a run without it.
Without a bundled trained model it times a randomly initialised model of the default
architecture (same cost as a trained one) and says so in the output.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import peak_rss_mib, write_report  # noqa: E402  (benchmarks/ is on sys.path)

HERE = Path(__file__).resolve().parent
DEFAULT_CASE = HERE.parents[1] / "shared" / "data" / "lesjak2018" / "native" / "patient01"


def run_once(args: argparse.Namespace) -> dict:
    """One pipeline run in this process; returns timings (s) and peak RSS (MiB)."""
    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    from allnet.model import ModelConfig, bundled_model_path, random_bundle, save_model_file
    from allnet.pipeline import SegmentOptions, run_pipeline

    model, note = args.model, "given model file"
    with tempfile.TemporaryDirectory() as tmp:
        if model is None and bundled_model_path() is None:
            bundle = random_bundle(ModelConfig(), 1)
            model = str(Path(tmp) / "random.pt")
            save_model_file(model, bundle.config, [m.state_dict() for m in bundle.members],
                            {"name": "random", "trained": False})
            note = "randomly initialised model of the default architecture (no trained model bundled)"
        elif model is None:
            note = "bundled model"
        start = time.perf_counter()
        result = run_pipeline(args.t1, args.flair, args.t2, Path(tmp) / "out",
                              SegmentOptions(model=model, device=args.device, ensemble=args.ensemble,
                                             report=not args.no_report))
        wall = time.perf_counter() - start
    peak_mib = peak_rss_mib()
    return {"timings_s": result.summary["timings_s"], "wall_s": wall, "peak_rss_mib": peak_mib,
            "device": result.summary["device"], "model_note": note,
            "lesions": result.totals["count"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t1", default=str(DEFAULT_CASE / "study1_T1W.nii.gz"))
    parser.add_argument("--t2", default=str(DEFAULT_CASE / "study1_T2W.nii.gz"))
    parser.add_argument("--flair", default=str(DEFAULT_CASE / "study1_FLAIR.nii.gz"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--ensemble", default="fast", choices=("fast", "full"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    parser.add_argument("--no-report", action="store_true",
                        help="skip report.html (its cost is the 'report' stage otherwise)")
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/segment_<device>.json)")
    args = parser.parse_args()
    if args.once:
        print("BENCH " + json.dumps(run_once(args)), flush=True)
        return 0
    if not Path(args.flair).exists():
        print(f"input not found: {args.flair} (the development data lives in ../shared/data)",
              file=sys.stderr)
        return 2
    runs = []
    for index in range(args.runs):
        child = [sys.executable, __file__, "--once"] + [
            a for a in sys.argv[1:] if a not in ("--once",)]
        proc = subprocess.run(child, capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("BENCH ")]
        if proc.returncode != 0 or not lines:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return 1
        runs.append(json.loads(lines[-1][6:]))
        print(f"run {index + 1}/{args.runs}: {runs[-1]['wall_s']:.1f} s, "
              f"peak RSS {runs[-1]['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    stages = list(runs[0]["timings_s"])
    median = {s: statistics.median(r["timings_s"].get(s, 0.0) for r in runs) for s in stages}
    report = {
        "case": {"t1": args.t1, "t2": args.t2, "flair": args.flair},
        "device": runs[0]["device"], "ensemble": args.ensemble, "model": runs[0]["model_note"],
        "runs": args.runs, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                       "python": platform.python_version()},
        "load_average_1_5_15": os.getloadavg(),
        "median_stage_s": median,
        "median_wall_s": statistics.median(r["wall_s"] for r in runs),
        "median_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
        "all_runs": runs,
    }
    print(f"\nallnet segment, {args.runs} runs, device {report['device']}, {report['model']}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'stage':<22}{'median s':>10}")
    for stage, seconds in median.items():
        print(f"{stage:<22}{seconds:>10.2f}")
    print(f"{'wall (in process)':<22}{report['median_wall_s']:>10.2f}")
    print(f"{'peak RSS MiB':<22}{report['median_peak_rss_mib']:>10.0f}")
    write_report(report, args.out or HERE / "results" / f"segment_{report['device']}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
