"""Timing summary of a finished training run (from its own logs; no re-run).

    python benchmarks/bench_training_run.py --final /work/runs/final --cv /work/runs/cv \
        [--prepare-log /work/runs/prepare.log] --out benchmarks/results/training_run.json

Per-step seconds (median, 10th/90th percentile over all logged steps), training wall time
per run, prediction seconds per held-out fold, and the preprocessing stage times per case.
"""
from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
from pathlib import Path


def _steps(log_csv: Path) -> list[float]:
    with open(log_csv, newline="") as fh:
        return [float(r["seconds"]) for r in csv.DictReader(fh)]


def _summary(values: list[float]) -> dict:
    values = sorted(values)
    q = lambda f: values[min(len(values) - 1, int(f * len(values)))]  # noqa: E731
    return {"n": len(values), "median": statistics.median(values), "p10": q(0.1), "p90": q(0.9),
            "total": sum(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--final", type=Path, required=True)
    ap.add_argument("--cv", type=Path, default=None)
    ap.add_argument("--prepare-log", type=Path, default=None)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    result: dict = {"benchmark": "training_run", "runs": {}}
    for log in sorted(args.final.glob("seed*/log.json")) + (sorted(args.cv.glob("fold_*/seed*/log.json")) if args.cv else []):
        info = json.loads(log.read_text())
        result["runs"][str(log.parent.relative_to(log.parent.parent.parent))] = {
            "seconds_per_step": _summary(_steps(log.parent / "log.csv")),
            "wall_seconds": info["seconds"], "hardware": info["hardware"],
            "final_epoch_loss": info["epochs"][-1] if info["epochs"] else None,
        }
    if args.cv and (args.cv / "crossval.json").is_file():
        cv = json.loads((args.cv / "crossval.json").read_text())
        result["crossval_folds"] = cv["folds"]
    if args.prepare_log and args.prepare_log.is_file():
        pat = re.compile(r"cached (\S+) in ([\d.]+) s \((.*)\)")
        stages = {}
        for line in args.prepare_log.read_text().splitlines():
            m = pat.search(line)
            if m:
                stages[m.group(1)] = {"total": float(m.group(2)), **{
                    k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+) s", m.group(3))}}
        result["prepare_seconds_per_case"] = stages
    text = json.dumps(result, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
