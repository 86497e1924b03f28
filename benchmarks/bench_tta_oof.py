"""Flip test-time augmentation on held-out predictions: re-predict every held-out case of a
finished cross-validation with and without the left-right flip pass (same fold models, same
precision), store both as cross-validations of their own and choose each one's plan.

    python benchmarks/bench_tta_oof.py --crossval runs/cv_synth50 --dev-data ../shared/data
        -> runs/cv_synth50_plain/, runs/cv_synth50_tta/ (fold_*/oof, plan.json) and
           benchmarks/results/tta_oof.json (default-plan and chosen-plan DSC / L-F1 of both)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "ALLNetTraining"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crossval", type=Path, required=True, help="finished cross-validation (fold_*/bundle.pt)")
    parser.add_argument("--dev-data", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tta_oof.json")
    args = parser.parse_args()

    import torch

    from allnet.atomic import write_json_atomic
    from allnet.model import load_model_file
    from allnet_training.cache import load_cached, prepare_cases
    from allnet_training.crossval import predict_cached
    from allnet_training.data import dev_cases
    from allnet_training.plan_tuning import OOF_DIR, save_oof, tune_plan

    torch.set_num_threads(1)
    cached = {c.case_id: c for c in (load_cached(p) for p in prepare_cases(dev_cases(args.dev_data), args.cache))}
    seconds = {"plain": [], "tta": []}
    for fold in sorted(args.crossval.glob("fold_*")):
        bundle = load_model_file(fold / "bundle.pt")
        for stored in sorted((fold / OOF_DIR).glob("*.npz")):
            case = cached[stored.stem]
            for name, tta in (("plain", False), ("tta", True)):
                started = time.perf_counter()
                p = predict_cached(bundle, case, tta=tta)
                seconds[name].append(time.perf_counter() - started)
                save_oof(Path(f"{args.crossval}_{name}") / fold.name, stored.stem, p.probability,
                         p.sphere_probability, case.mask)
    result = {"crossval": str(args.crossval), "precision": p.precision}
    for name in ("plain", "tta"):
        tuned = tune_plan(Path(f"{args.crossval}_{name}"))
        result[name] = {"default": {k: tuned["default"][k] for k in ("mean_dsc", "mean_lf1")},
                        "chosen": tuned["chosen"], "median_predict_seconds": sorted(seconds[name])[len(seconds[name]) // 2]}
        print(f"{name}: default plan DSC {tuned['default']['mean_dsc']:.3f} L-F1 {tuned['default']['mean_lf1']:.3f}; "
              f"chosen {tuned['plan']} DSC {tuned['chosen']['mean_dsc']:.3f} L-F1 {tuned['chosen']['mean_lf1']:.3f}")
    write_json_atomic(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
