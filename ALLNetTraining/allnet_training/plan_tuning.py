"""The inference plan of a model, chosen on out-of-fold predictions.

Cross-validation keeps, for every held-out case, the ensemble's vote, mean probability
and sphere-head (lesion-score) map on the working grid (``fold_<subject>/oof/<case>.npz``).
:func:`tune_plan` then searches the probability threshold and the lesion-score threshold
that maximise the mean of DSC and lesion-wise F1 over all held-out cases, scoring exactly
as ``allnet segment`` post-processes (``allnet.postprocess``) and as the evaluation counts
(``allnet.metrics.evaluate_case``, 18-connectivity). Nothing is tuned on a case whose
predictions came from a model that saw it.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from allnet.atomic import atomic_file, write_json_atomic
from allnet.metrics import evaluate_case
from allnet.plan import DEFAULT_PLAN, InferencePlan
from allnet.postprocess import postprocess_array

OOF_DIR = "oof"
PLAN_FILE = "plan.json"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
SCORE_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)


def save_oof(fold_dir: Path, case_id: str, probability: np.ndarray, sphere: np.ndarray | None,
             reference: np.ndarray) -> Path:
    """Store one held-out case's mean probability, lesion-score map (float16, KJI working
    grid) and reference mask (uint8) for plan tuning."""
    path = Path(fold_dir) / OOF_DIR / f"{case_id}.npz"
    arrays = {"probability": probability.astype(np.float16), "reference": (reference > 0).astype(np.uint8)}
    if sphere is not None:
        arrays["sphere"] = sphere.astype(np.float16)
    with atomic_file(path) as tmp:
        with tmp.open("wb") as fh:
            np.savez_compressed(fh, **arrays)
    return path


def load_oof(out_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every stored held-out case under ``out_dir/fold_*/oof/`` (case id -> arrays)."""
    found = {}
    for path in sorted(Path(out_dir).glob(f"fold_*/{OOF_DIR}/*.npz")):
        with np.load(path) as data:
            found[path.stem] = {k: data[k] for k in data.files}
    return found


def score_case(arrays: dict[str, np.ndarray], plan: InferencePlan) -> tuple[float, float]:
    """(DSC, L-F1) of one held-out case post-processed with ``plan``. The vote is
    approximated by the mean probability above the threshold (majority vote and mean agree
    for one member; for ensembles the mean is the smoother, slightly optimistic choice)."""
    vote = (arrays["probability"].astype(np.float32) > plan.threshold).astype(np.float32)
    sphere = arrays.get("sphere")
    labels, _ = postprocess_array(vote, plan, None if sphere is None else sphere.astype(np.float32))
    metrics = evaluate_case(labels > 0, arrays["reference"], spacing=(1.0, 1.0, 1.0))
    return metrics.dsc, metrics.lf1


def tune_plan(out_dir: str | Path, base: InferencePlan = DEFAULT_PLAN) -> dict | None:
    """Choose threshold and lesion-score threshold on the stored out-of-fold predictions;
    writes ``plan.json`` in ``out_dir`` (grid of values, scores, the choice) and returns it.
    None when no predictions are stored."""
    cases = load_oof(Path(out_dir))
    if not cases:
        return None
    has_scores = all("sphere" in a for a in cases.values())
    grid = []
    for threshold in THRESHOLDS:
        for score_threshold in (SCORE_THRESHOLDS if has_scores else (0.0,)):
            plan = dataclasses.replace(base, threshold=threshold, lesion_score_threshold=score_threshold)
            per_case = [score_case(a, plan) for a in cases.values()]
            dsc, lf1 = (float(np.mean([p[i] for p in per_case])) for i in (0, 1))
            grid.append({"threshold": threshold, "lesion_score_threshold": score_threshold,
                         "mean_dsc": dsc, "mean_lf1": lf1, "objective": (dsc + lf1) / 2})
    best = max(grid, key=lambda g: (g["objective"], -g["lesion_score_threshold"], -abs(g["threshold"] - 0.5)))
    chosen = dataclasses.replace(base, threshold=best["threshold"],
                                 lesion_score_threshold=best["lesion_score_threshold"])
    default = next(g for g in grid if g["threshold"] == base.threshold and g["lesion_score_threshold"] == 0.0)
    result = {"plan": {k: v for k, v in chosen.to_dict().items() if k not in ("grid", "normalisation")},
              "cases": sorted(cases), "objective": "mean of DSC and lesion-wise F1 over held-out cases",
              "chosen": best, "default": default, "grid": grid}
    write_json_atomic(Path(out_dir) / PLAN_FILE, result)
    return result


def read_plan(path: str | Path) -> dict:
    """The ``plan`` entry of a ``plan.json`` written by :func:`tune_plan` (or a bare plan)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    plan = data.get("plan", data)
    InferencePlan.from_dict(plan)  # refuse what the core could not apply
    return plan
