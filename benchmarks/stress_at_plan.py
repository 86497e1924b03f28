"""The stress set of a finished cross-validation scored at inference plans instead of the default.

``allnet-train stress`` scores each held-out scan, as given and perturbed (bright grey matter,
5 mm slices, 8-bit, T2W removed: ``allnet_training.stress.perturb``), at the default
post-processing. This script predicts the same perturbed scans once per fold model and
post-processes each prediction with every plan given (``plan.json`` files of ``allnet-train
plan``, or bare plans), as ``allnet segment`` would with that plan
(``allnet_training.crossval.plan_labels``).

    python benchmarks/stress_at_plan.py --crossval runs/cv_stage7_avg_t2 \\
        --plan 7b=docs/model_card/plan_stage7b_average_t2.json \\
        --plan 7c=docs/model_card/plan_stage7c_grey_matter.json \\
        --out docs/model_card/stress_plan_stage7c.json

Needs ``../shared/data`` (the cached development cases).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import write_report  # noqa: E402

DEV_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crossval", type=Path, required=True, help="finished cross-validation (fold_*/bundle.pt)")
    parser.add_argument("--plan", action="append", required=True, metavar="NAME=PLAN.json",
                        help="a plan to score at (repeat); NAME labels its rows")
    parser.add_argument("--dev-data", type=Path, default=DEV_DATA)
    parser.add_argument("--cache", type=Path, default=Path("runs/cache"))
    parser.add_argument("--out", type=Path, required=True, help="JSON rows, one per case, perturbation and plan")
    args = parser.parse_args()
    if not args.dev_data.is_dir():
        print(f"no development data at {args.dev_data}", file=sys.stderr)
        return 2

    from allnet.metrics import evaluate_case
    from allnet.model import load_model_file
    from allnet.plan import InferencePlan
    from allnet_training.cache import load_cached, prepare_cases
    from allnet_training.crossval import plan_labels, predict_cached
    from allnet_training.data import dev_cases
    from allnet_training.plan_tuning import read_plan
    from allnet_training.stress import PERTURBATIONS, perturb

    plans = {}
    for item in args.plan:
        name, _, path = item.partition("=")
        if not path:
            parser.error(f"--plan {item!r}: expected NAME=PLAN.json")
        plans[name] = InferencePlan.from_dict(read_plan(path))
    cases = [load_cached(p) for p in prepare_cases(dev_cases(args.dev_data), args.cache)]
    thresholds = sorted({plan.threshold for plan in plans.values()})
    rows = []
    for subject in dict.fromkeys(c.subject_id for c in cases):
        bundle_path = args.crossval / f"fold_{subject}" / "bundle.pt"
        if not bundle_path.is_file():
            print(f"no finished fold for {subject} in {args.crossval}", file=sys.stderr)
            return 2
        bundle = load_model_file(bundle_path)
        for case in (c for c in cases if c.subject_id == subject):
            for perturbation in PERTURBATIONS:
                variant = perturb(case, perturbation)
                votes = {t: predict_cached(bundle, variant, threshold=t) for t in thresholds}
                for name, plan in plans.items():
                    labels = plan_labels(votes[plan.threshold], variant, bundle.config, plan)
                    m = evaluate_case(labels > 0, case.mask, spacing=(1.0, 1.0, 1.0))
                    rows.append({"case": case.case_id, "perturbation": perturbation, "plan": name,
                                 "dsc": m.dsc, "lf1": m.lf1, "pred_ml": m.pred_volume_ml, "ref_ml": m.ref_volume_ml})
                    print(f"{case.case_id} {perturbation} {name}: DSC {m.dsc:.3f} L-F1 {m.lf1:.3f} "
                          f"({m.pred_volume_ml:.1f} mL)", flush=True)
    for name in plans:
        means = []
        for perturbation in PERTURBATIONS:
            picked = [r for r in rows if r["plan"] == name and r["perturbation"] == perturbation]
            means.append(f"{perturbation} {np.mean([r['dsc'] for r in picked]):.3f} / "
                         f"{np.mean([r['lf1'] for r in picked]):.3f}")
        print(f"{name}: " + " | ".join(means))
    write_report({"crossval": str(args.crossval), "plans": {k: v.to_dict() for k, v in plans.items()},
                  "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
