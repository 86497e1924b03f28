"""Benchmark of ``allnet evaluate`` on one MNI-grid case: per-stage wall time and peak RSS.

Prediction = mslesseg P14 visit-T2 mask, reference = visit-T3 mask (182 x 218 x 182, 1 mm); the
probability map for the curves is the prediction blurred (Gaussian, sigma 1.5 mm) plus fixed-seed
noise. Each run is a fresh Python process; the report gives the median per stage.

    python benchmarks/bench_evaluate.py [--runs 3] [--out benchmarks/results/evaluate.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import peak_rss_mib, write_report  # noqa: E402  (benchmarks/ is on sys.path)

HERE = Path(__file__).resolve().parent
CASE = HERE.parents[1] / "shared" / "data" / "mslesseg" / "P14"
PRED = CASE / "T2" / "P14_T2_MASK.nii.gz"
REF = CASE / "T3" / "P14_T3_MASK.nii.gz"


def run_once() -> dict:
    """One evaluation in this process, stage by stage; seconds and peak RSS (MiB)."""
    import numpy as np
    import SimpleITK as sitk
    from scipy import ndimage

    from allnet import evaluate, metrics

    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ref_img = sitk.ReadImage(str(REF))
        pred_arr = sitk.GetArrayFromImage(sitk.ReadImage(str(PRED))).astype(np.float32)
        noise = np.random.default_rng(0).random(pred_arr.shape, dtype=np.float32) ** 3
        prob = np.clip(1.2 * ndimage.gaussian_filter(pred_arr, 1.5) + 0.15 * noise, 0, 1).astype(np.float32)
        prob_img = sitk.GetImageFromArray(prob)
        prob_img.CopyInformation(ref_img)
        prob_path = Path(tmp) / "probability.nii.gz"
        sitk.WriteImage(prob_img, str(prob_path))

        start = t = time.perf_counter()
        cases = evaluate.find_cases(PRED, REF, prob_path)
        ref = evaluate.read_mask(cases[0].ref, "reference mask")
        pred = evaluate.read_mask(cases[0].pred, "predicted mask")
        p = evaluate.read_probability(prob_path)
        times["read"] = time.perf_counter() - t
        t = time.perf_counter()
        case = metrics.evaluate_case(pred, ref, case="P14")
        times["case_metrics"] = time.perf_counter() - t
        g, pa = sitk.GetArrayFromImage(ref), sitk.GetArrayFromImage(p)
        t = time.perf_counter()
        lesion = metrics.lesion_curve([pa], [g], [1.0])
        times["lesion_curve"] = time.perf_counter() - t
        t = time.perf_counter()
        pr = metrics.precision_recall([pa], [g])
        times["precision_recall"] = time.perf_counter() - t
        t = time.perf_counter()
        result = evaluate.EvaluationResult([case], metrics.summarise([case]), lesion, pr)
        evaluate.write_outputs(result, Path(tmp) / "out", {"benchmark": True})
        times["write_outputs"] = time.perf_counter() - t
        wall = time.perf_counter() - start
    return {"timings_s": times, "wall_s": wall,
            "peak_rss_mib": peak_rss_mib(),
            "dsc": case.dsc, "average_precision": pr.average_precision}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(HERE / "results" / "evaluate.json"))
    args = parser.parse_args()
    if args.once:
        print("BENCH " + json.dumps(run_once()), flush=True)
        return 0
    if not (PRED.is_file() and REF.is_file()):
        print(f"input not found: {PRED} / {REF} (the development data lives in ../shared/data)", file=sys.stderr)
        return 2
    runs = []
    for _ in range(args.runs):
        proc = subprocess.run([sys.executable, __file__, "--once"], capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH ")]
        if proc.returncode != 0 or not lines:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            return 1
        runs.append(json.loads(lines[-1][6:]))
    median = {s: statistics.median(r["timings_s"][s] for r in runs) for s in runs[0]["timings_s"]}
    report = {"case": {"pred": str(PRED), "ref": str(REF)}, "runs": args.runs, "median_stage_s": median,
              "median_wall_s": statistics.median(r["wall_s"] for r in runs),
              "median_peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs), "all_runs": runs}
    print(f"allnet evaluate, one MNI case, {args.runs} runs")
    for stage, seconds in median.items():
        print(f"{stage:<20}{seconds:>8.2f} s")
    print(f"{'wall':<20}{report['median_wall_s']:>8.2f} s\n{'peak RSS':<20}{report['median_peak_rss_mib']:>8.0f} MiB")
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
