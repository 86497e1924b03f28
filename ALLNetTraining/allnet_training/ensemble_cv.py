"""Leave-one-subject-out estimate of an ensemble whose members come from several
cross-validations run on the same folds (different seeds or recipes).

A shipped model is an ensemble; cross-validation trains one member per fold. When the
members of the shipped ensemble were each cross-validated (``allnet-train crossval`` with
their own seed and recipe, same development data and therefore the same folds), combining
the held-out predictions of the same fold's models (strict majority vote of their masks, as
``allnet.inference`` votes; mean lesion score) is exactly the ensemble that fold would have
shipped: no held-out subject reaches any member. :func:`combine_crossvals` writes those
combined predictions as a cross-validation folder of their own (``fold_<subject>/oof/``), so
that ``allnet-train plan`` chooses the ensemble's inference plan on them, and scores every
held-out case with the product's post-processing at the default and at the chosen plan
(``crossval.json`` in the layout ``allnet-train sidecar`` reads). Where every member's fold
model is there with one architecture, the fold's ensemble is written as ``fold_<subject>/
bundle.pt`` too, so ``allnet-train stress`` perturbs and scores the ensemble (majority vote)
as it would ship.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from allnet.atomic import atomic_file, write_json_atomic, write_text_atomic
from allnet.metrics import CaseMetrics, summarise
from allnet.plan import DEFAULT_PLAN, InferencePlan

from .crossval import TABLE_METRICS, load_case_metrics
from .ensemble import export_bundle, state_dicts_from_model_files
from .plan_tuning import CONTRAST_KEY, OOF_DIR, case_metrics, save_oof, tune_plan

SOURCES_FILE = "sources.json"


def _fold_cases(crossval_dir: Path) -> dict[tuple[str, str], Path]:
    """(fold folder name, case id) -> stored held-out prediction of one cross-validation."""
    return {(p.parent.parent.name, p.stem): p for p in sorted(crossval_dir.glob(f"fold_*/{OOF_DIR}/*.npz"))}


def combine_crossvals(sources: list[str | Path], out_dir: str | Path) -> dict:
    """Combine the held-out predictions of ``sources`` (cross-validation folders of the same
    folds) per case into ``out_dir`` (every member's probability, scored by strict majority
    vote; mean probability; mean lesion-score map when every source has one), choose the ensemble's plan on them (:func:`plan_tuning.tune_plan`) and
    write ``crossval.json``/``crossval.csv``/``crossval.md``. ValueError naming the folder when
    the sources do not hold the same folds and cases or disagree on a reference mask."""
    sources = [Path(s) for s in sources]
    out = Path(out_dir)
    if len(sources) < 2:
        raise ValueError("an ensemble cross-validation needs at least two cross-validation folders")
    found = [_fold_cases(s) for s in sources]
    if not found[0]:
        raise ValueError(f"{sources[0]}: no held-out predictions (fold_*/{OOF_DIR}/*.npz)")
    for source, cases in zip(sources[1:], found[1:]):
        if set(cases) != set(found[0]):
            raise ValueError(f"{source}: holds other folds or cases than {sources[0]} "
                             f"({sorted(c for _, c in cases)} vs {sorted(c for _, c in found[0])})")
    for key in sorted(found[0]):
        arrays = []
        for source, cases in zip(sources, found):
            with np.load(cases[key]) as data:
                arrays.append({k: data[k] for k in data.files})
        reference = arrays[0]["reference"]
        for source, a in zip(sources[1:], arrays[1:]):
            if not np.array_equal(a["reference"], reference):
                raise ValueError(f"{source}: the reference mask of {key[1]} differs from {sources[0]}'s")
        members = np.concatenate([a["members"] if "members" in a else a["probability"][None] for a in arrays])
        probability = members.astype(np.float32).mean(axis=0)
        sphere = (np.mean([a["sphere"].astype(np.float32) for a in arrays], axis=0)
                  if all("sphere" in a for a in arrays) else None)
        # every member was given the same inputs (same fold, same model input plan)
        contrast = arrays[0].get(CONTRAST_KEY)
        save_oof(out / key[0], key[1], probability, sphere, reference, members=members, contrast=contrast)
    bundles = {}
    for fold in sorted({f for f, _ in found[0]}):
        members = [s / fold / "bundle.pt" for s in sources]
        if not all(p.is_file() for p in members):
            continue
        try:
            config, states = state_dicts_from_model_files(members)
        except ValueError as exc:  # members of different architectures vote but cannot share a file
            bundles[fold] = f"not written: {exc}"
            continue
        export_bundle(out / fold / "bundle.pt", config, states,
                      {"fold": fold.removeprefix("fold_"), "ensemble_of": [str(p) for p in members]})
        bundles[fold] = f"{fold}/bundle.pt"
    write_json_atomic(out / SOURCES_FILE, {"sources": [str(s) for s in sources], "members": len(sources),
                                           "combination": "strict majority vote of the members' masks "
                                                          "(as allnet.inference); mean lesion score",
                                           "fold_bundles": bundles})
    tuned = tune_plan(out)
    plan = InferencePlan.from_dict(tuned["plan"])
    default = dataclasses.replace(DEFAULT_PLAN, normalisation=plan.normalisation, noise_target=plan.noise_target)
    write_scores(out, default, plan, load_case_metrics(sources[0], "baseline"))
    return tuned


def score_oof(path: Path, plan: InferencePlan) -> CaseMetrics:
    """Metrics of one stored held-out prediction post-processed with ``plan`` (as
    ``allnet segment`` does; counted at 18-connectivity; 1 mm working grid)."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    return case_metrics(arrays, plan, case=path.stem)


def write_scores(out: Path, default: InferencePlan, chosen: InferencePlan,
                 baseline: list[CaseMetrics] | None) -> dict:
    """Per-case metrics of the combined predictions at the default and the chosen plan."""
    paths = sorted(out.glob(f"fold_*/{OOF_DIR}/*.npz"))
    model = [score_oof(p, default) for p in paths]
    calibrated = [score_oof(p, chosen) for p in paths]
    base = {m.case: m for m in (baseline or [])}
    rows = []
    for path, m, c in zip(paths, model, calibrated):
        row = {"subject": path.parent.parent.name.removeprefix("fold_"), "case": m.case}
        row.update({f"model_{k}": getattr(m, k) for k in TABLE_METRICS})
        row.update({f"calibrated_{k}": getattr(c, k) for k in TABLE_METRICS})
        if m.case in base:
            row.update({f"baseline_{k}": getattr(base[m.case], k) for k in TABLE_METRICS})
        row.update({"ref_volume_ml": m.ref_volume_ml, "model_volume_ml": m.pred_volume_ml,
                    "calibrated_volume_ml": c.pred_volume_ml})
        rows.append(row)
    with atomic_file(out / "crossval.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    base_all = [base[m.case] for m in model if m.case in base]
    summary = {"model": summarise(model), "model_calibrated": summarise(calibrated),
               "baseline": summarise(base_all) if base_all else None,
               "plans": {"model": default.to_dict(), "model_calibrated": chosen.to_dict()},
               "cases": rows,
               "metrics": {"model": [asdict(m) for m in model],
                           "model_calibrated": [asdict(m) for m in calibrated],
                           "baseline": [asdict(m) for m in base_all]}}
    write_text_atomic(out / "crossval.json", json.dumps(summary, indent=2, default=float))
    lines = ["| held-out case | DSC (default plan) | L-F1 | DSC (chosen plan) | L-F1 | predicted / reference mL |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['model_dsc']:.3f} | {r['model_lf1']:.3f} | {r['calibrated_dsc']:.3f} | "
                     f"{r['calibrated_lf1']:.3f} | {r['calibrated_volume_ml']:.1f} / {r['ref_volume_ml']:.1f} |")
    means = [float(np.mean([r[k] for r in rows])) for k in ("model_dsc", "model_lf1", "calibrated_dsc", "calibrated_lf1")]
    lines.append(f"| **mean ({len(rows)} cases)** | " + " | ".join(f"**{v:.3f}**" for v in means) + " | |")
    write_text_atomic(out / "crossval.md", "\n".join(lines) + "\n")
    return summary
