"""The inference plan of a model, chosen on out-of-fold predictions.

Cross-validation keeps, for every held-out case, the ensemble's vote, mean probability
sphere-head (lesion-score) map, FLAIR-contrast map and grey-matter map on the working grid
(``fold_<subject>/oof/<case>.npz``). :func:`tune_plan` then searches the probability
threshold, the lesion-score threshold, the FLAIR-contrast floor, the grey-matter fraction
and the minimum lesion size
that maximise the mean of DSC and lesion-wise F1 over all held-out cases, scoring exactly
as ``allnet segment`` post-processes (``allnet.postprocess``) and as the evaluation counts
(``allnet.metrics.evaluate_case``, 18-connectivity). Nothing is tuned on a case whose
predictions came from a model that saw it.
"""
from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import numpy as np

from allnet.atomic import atomic_file, write_json_atomic
from allnet.errors import InputError
from allnet.metrics import evaluate_case
from allnet.plan import DEFAULT_PLAN, MODEL_INPUT_KEYS, InferencePlan
from allnet.postprocess import postprocess_array

OOF_DIR = "oof"
PLAN_FILE = "plan.json"
CONTRAST_KEY = "flair_contrast"
GREY_MATTER_KEY = "grey_matter"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
SCORE_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
# FLAIR-contrast floors (fractions of the WM-CSF contrast above WM, allnet.plan): lesions are
# FLAIR-hyperintense by definition; on the development scans true lesions sit at 0.5-1.0.
FLAIR_CONTRASTS = (0.0, 0.2, 0.3, 0.4)
# Largest share of a lesion's voxels in the T1W segmentation's grey matter (1 keeps all). T1W-
# hypointense white-matter lesions are partly classed GM by the tissue segmentation, so only
# shares near 1 mean "lies in grey matter".
GREY_MATTER_FRACTIONS = (1.0, 0.99, 0.95, 0.9, 0.8)
# mm3 (1 mm working grid). 10 mm3 is the floor (MAGNIMS' 3 mm long axis, see allnet.plan);
# a larger floor trades the smallest true lesions for fewer false ones.
MIN_LESION_MM3 = (10.0, 20.0, 30.0)
# Plans whose objective lies within this of the best count as equal: on a handful of held-out
# scans such differences are noise (one lesion more or less). Among them the smallest size
# floor wins, then the smallest lesion-score floor, then the higher objective, so a floor
# above the 3 mm convention needs a clear gain on the held-out scans.
OBJECTIVE_TOLERANCE = 0.005


def save_oof(fold_dir: Path, case_id: str, probability: np.ndarray, sphere: np.ndarray | None,
             reference: np.ndarray, members: np.ndarray | None = None,
             contrast: np.ndarray | None = None, grey_matter: np.ndarray | None = None) -> Path:
    """Store one held-out case's mean probability, lesion-score map (float16, KJI working
    grid) and reference mask (uint8) for plan tuning; ``members``: each member's probability
    (M, K, J, I) when the prediction is an ensemble's, so scoring votes as the product does;
    ``contrast``: the FLAIR-contrast map of the case as the model saw it
    (``allnet.preprocessing.intensity.flair_contrast``), for the contrast floor;
    ``grey_matter``: 1 in the case's T1W grey matter (``allnet.tissue.grey_matter_indicator``),
    for the grey-matter fraction."""
    path = Path(fold_dir) / OOF_DIR / f"{case_id}.npz"
    arrays = {"probability": probability.astype(np.float16), "reference": (reference > 0).astype(np.uint8)}
    if sphere is not None:
        arrays["sphere"] = sphere.astype(np.float16)
    if members is not None:
        arrays["members"] = members.astype(np.float16)
    if contrast is not None:
        arrays[CONTRAST_KEY] = contrast.astype(np.float16)
    if grey_matter is not None:
        arrays[GREY_MATTER_KEY] = (grey_matter > 0).astype(np.uint8)
    return write_oof(path, arrays)


def write_oof(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write one held-out case's arrays (``save_oof`` keys) atomically."""
    with atomic_file(path) as tmp:
        with tmp.open("wb") as fh:
            np.savez_compressed(fh, **arrays)
    return path


def load_oof(out_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every stored held-out case under ``out_dir/fold_*/oof/`` (case id -> arrays)."""
    found = {}
    for path in sorted(Path(out_dir).glob(f"fold_*/{OOF_DIR}/*.npz")):
        try:
            with np.load(path, allow_pickle=False) as data:
                found[path.stem] = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(path, f"unreadable held-out prediction ({type(exc).__name__}: corrupt, or "
                                   "not written by allnet-train crossval); run that fold again") from None
    return found


def oof_folds(out_dir: Path) -> dict[str, str]:
    """Case id -> the fold folder (``fold_<subject>``) that holds its held-out prediction."""
    return {path.stem: path.parent.parent.name for path in sorted(Path(out_dir).glob(f"fold_*/{OOF_DIR}/*.npz"))}


def vote(arrays: dict[str, np.ndarray], threshold: float) -> np.ndarray:
    """The ensemble's binary vote (float32 0/1, KJI) as ``allnet.inference.predict`` makes it:
    a strict majority of the members' probabilities above ``threshold`` (stored members), or
    the one member's probability above it."""
    if "members" in arrays:
        members = arrays["members"].astype(np.float32)
        return (2 * (members > threshold).sum(axis=0) > members.shape[0]).astype(np.float32)
    return (arrays["probability"].astype(np.float32) > threshold).astype(np.float32)


def case_metrics(arrays: dict[str, np.ndarray], plan: InferencePlan, case: str = ""):
    """``allnet.metrics.CaseMetrics`` of one held-out case post-processed with ``plan`` as
    ``allnet segment`` does (:func:`vote`, then ``allnet.postprocess``), counted at
    18-connectivity on the 1 mm working grid."""
    sphere, contrast, grey = arrays.get("sphere"), arrays.get(CONTRAST_KEY), arrays.get(GREY_MATTER_KEY)
    labels, _ = postprocess_array(vote(arrays, plan.threshold), plan,
                                  None if sphere is None else sphere.astype(np.float32),
                                  contrast_map=None if contrast is None else contrast.astype(np.float32),
                                  grey_matter_map=None if grey is None else grey.astype(np.float32))
    return evaluate_case(labels > 0, arrays["reference"], spacing=(1.0, 1.0, 1.0), case=case)


def score_case(arrays: dict[str, np.ndarray], plan: InferencePlan) -> tuple[float, float]:
    """(DSC, L-F1) of one held-out case post-processed with ``plan`` (:func:`case_metrics`)."""
    metrics = case_metrics(arrays, plan)
    return metrics.dsc, metrics.lf1


def _floor_scores(arrays: dict[str, np.ndarray], plan: InferencePlan,
                  floors: list[tuple[float, float, float]]) -> list[tuple[float, float]]:
    """(DSC, L-F1) of one held-out case for each (lesion-score, FLAIR-contrast, grey-matter
    fraction) floor on top of ``plan``: exactly :func:`score_case` of the plan with those
    values (they keep or drop whole components of ``allnet.postprocess``), labelling the vote
    once."""
    from allnet.postprocess import component_means, component_peaks

    unfiltered = dataclasses.replace(plan, lesion_score_threshold=0.0, min_flair_contrast=0.0,
                                     max_grey_matter_fraction=1.0)
    labels, _ = postprocess_array(vote(arrays, plan.threshold), unfiltered)
    sphere, contrast, grey = arrays.get("sphere"), arrays.get(CONTRAST_KEY), arrays.get(GREY_MATTER_KEY)
    n = int(labels.max())
    peaks = component_peaks(labels, sphere.astype(np.float32)) if sphere is not None else np.zeros(n + 1)
    means = component_means(labels, contrast.astype(np.float32)) if contrast is not None else np.zeros(n + 1)
    shares = component_means(labels, grey.astype(np.float32)) if grey is not None else np.zeros(n + 1)
    reference = arrays["reference"]
    # metrics on the box that holds every predicted and reference voxel (1 voxel margin)
    box = _bounding_box((labels > 0) | (reference > 0))
    labels, reference = labels[box], reference[box]
    out = []
    for score_threshold, floor, fraction in floors:
        keep = np.ones(n + 1, dtype=bool) if sphere is None else peaks >= score_threshold
        if contrast is not None and floor > 0:
            keep &= means >= floor
        if grey is not None and fraction < 1:
            keep &= shares <= fraction
        keep[0] = False
        metrics = evaluate_case(keep[labels], reference, spacing=(1.0, 1.0, 1.0))
        out.append((metrics.dsc, metrics.lf1))
    return out


def _bounding_box(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    """Slices of the box around ``mask``'s voxels grown by ``margin`` (whole array if empty)."""
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    out = []
    for axis, n in enumerate(mask.shape):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        out.append(slice(max(0, int(hits[0]) - margin), min(n, int(hits[-1]) + margin + 1)))
    return tuple(out)


def tune_plan(out_dir: str | Path, base: InferencePlan = DEFAULT_PLAN,
              flair_contrasts: tuple[float, ...] | None = None,
              grey_matter_fractions: tuple[float, ...] | None = None) -> dict | None:
    """Choose threshold, lesion-score threshold, FLAIR-contrast floor, grey-matter fraction and
    minimum lesion size on the stored out-of-fold predictions; writes ``plan.json`` in
    ``out_dir`` (grid of values, scores, the choice) and returns it. Plans within
    OBJECTIVE_TOLERANCE of the best objective count as ties; ties go to the smaller size,
    score and contrast floors, the larger (less strict) grey-matter fraction and the threshold
    nearest 0.5. The score floor, contrast floor and grey-matter fraction are searched only
    when every case carries its map. ``nested``: the same choice made without each fold in
    turn and scored on it (an estimate free of choosing the plan on the cases it is scored
    on). ``flair_contrasts``/``grey_matter_fractions``: the values to search (default
    FLAIR_CONTRASTS / GREY_MATTER_FRACTIONS; one value fixes it as a rule). None when no
    predictions are stored."""
    cases = load_oof(Path(out_dir))
    if not cases:
        return None
    has_scores = all("sphere" in a for a in cases.values())
    has_contrast = all(CONTRAST_KEY in a for a in cases.values())
    has_grey = all(GREY_MATTER_KEY in a for a in cases.values())
    searched = tuple(flair_contrasts or FLAIR_CONTRASTS) if has_contrast else (0.0,)
    fractions = tuple(grey_matter_fractions or GREY_MATTER_FRACTIONS) if has_grey else (1.0,)
    # floor 0 / fraction 1 are always scored: the default plan is reported next to the choice
    floors = [(score_threshold, contrast, fraction)
              for score_threshold in (SCORE_THRESHOLDS if has_scores else (0.0,))
              for contrast in sorted(set(searched) | {0.0})
              for fraction in sorted(set(fractions) | {1.0})]
    # per case and plan (threshold, score floor, contrast floor, grey-matter fraction, size) its
    # (DSC, L-F1); the floors only remove whole components, so each case is labelled once per
    # threshold and size
    per_case: dict[str, dict[tuple, tuple[float, float]]] = {}
    for case, arrays in cases.items():
        for threshold in THRESHOLDS:
            for min_mm3 in MIN_LESION_MM3:
                plan = dataclasses.replace(base, threshold=threshold, min_lesion_mm3=min_mm3)
                for floor, scores in zip(floors, _floor_scores(arrays, plan, floors)):
                    per_case.setdefault(case, {})[(threshold, *floor, min_mm3)] = scores
    grid = _grid(per_case, list(cases))
    best = _choose(grid, searched, fractions)
    chosen = dataclasses.replace(base, **{k: best[k] for k in _PLAN_FIELDS})
    default = next(g for g in grid if g["threshold"] == base.threshold and g["lesion_score_threshold"] == 0.0
                   and g["min_flair_contrast"] == 0.0 and g["max_grey_matter_fraction"] == 1.0
                   and g["min_lesion_mm3"] == base.min_lesion_mm3)
    result = {"plan": {k: v for k, v in chosen.to_dict().items() if k not in MODEL_INPUT_KEYS},
              "cases": sorted(cases), "objective": "mean of DSC and lesion-wise F1 over held-out cases",
              "tie_tolerance": OBJECTIVE_TOLERANCE, "best_objective": max(g["objective"] for g in grid),
              "flair_contrasts_searched": sorted(searched),
              "grey_matter_fractions_searched": sorted(fractions),
              "chosen": best, "default": default,
              "nested": _nested(per_case, oof_folds(Path(out_dir)), searched, fractions), "grid": grid}
    write_json_atomic(Path(out_dir) / PLAN_FILE, result)
    return result


_PLAN_FIELDS = ("threshold", "lesion_score_threshold", "min_flair_contrast", "max_grey_matter_fraction",
                "min_lesion_mm3")


def _grid(per_case: dict[str, dict[tuple, tuple[float, float]]], cases: list[str]) -> list[dict]:
    """One row per plan: its values and the mean DSC, L-F1 and objective over ``cases``."""
    grid = []
    for key in per_case[cases[0]]:
        dsc, lf1 = (float(np.mean([per_case[c][key][i] for c in cases])) for i in (0, 1))
        grid.append(dict(zip(_PLAN_FIELDS, key)) | {"mean_dsc": dsc, "mean_lf1": lf1,
                                                     "objective": (dsc + lf1) / 2})
    return grid


def _choose(grid: list[dict], contrasts: tuple[float, ...] | None = None,
            fractions: tuple[float, ...] | None = None) -> dict:
    """The plan row chosen among those whose FLAIR-contrast floor is one of ``contrasts`` and
    grey-matter fraction one of ``fractions`` (default: any): among those within
    OBJECTIVE_TOLERANCE of the best objective, the smallest size, score and contrast floors
    and the largest grey-matter fraction, then the objective, then the threshold nearest 0.5."""
    if contrasts is not None:
        grid = [g for g in grid if g["min_flair_contrast"] in contrasts]
    if fractions is not None:
        grid = [g for g in grid if g["max_grey_matter_fraction"] in fractions]
    top = max(g["objective"] for g in grid)
    near = [g for g in grid if g["objective"] >= top - OBJECTIVE_TOLERANCE]
    return max(near, key=lambda g: (-g["min_lesion_mm3"], -g["lesion_score_threshold"], -g["min_flair_contrast"],
                                    g["max_grey_matter_fraction"], round(g["objective"], 9),
                                    -abs(g["threshold"] - 0.5)))


def _nested(per_case: dict[str, dict[tuple, tuple[float, float]]], folds: dict[str, str],
            contrasts: tuple[float, ...] | None = None,
            fractions: tuple[float, ...] | None = None) -> dict | None:
    """How the plan choice itself generalises: for each fold, the plan chosen (same grid and
    rule) on the other folds' cases only, scored on that fold's cases. None with one fold."""
    if len(set(folds.values())) < 2:
        return None
    rows = []
    for fold in sorted(set(folds.values())):
        held = [c for c in per_case if folds[c] == fold]
        best = _choose(_grid(per_case, [c for c in per_case if folds[c] != fold]), contrasts, fractions)
        key = tuple(best[f] for f in _PLAN_FIELDS)
        rows += [{"case": c, "fold": fold, "plan": dict(zip(_PLAN_FIELDS, key)),
                  "dsc": per_case[c][key][0], "lf1": per_case[c][key][1]} for c in held]
    return {"cases": rows, "mean_dsc": float(np.mean([r["dsc"] for r in rows])),
            "mean_lf1": float(np.mean([r["lf1"] for r in rows]))}


def read_plan(path: str | Path) -> dict:
    """The ``plan`` entry of a ``plan.json`` written by :func:`tune_plan` (or a bare plan)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    plan = data.get("plan", data)
    InferencePlan.from_dict(plan)  # refuse what the core could not apply
    return plan


CURVE_FILE = "lesion_score_roc.json"
CURVE_FIGURE = "lesion_score_roc.png"
CURVE_SCORES = tuple(float(s) for s in np.round(np.arange(0.0, 1.0001, 0.05), 2))


def lesion_score_curve(cases: dict[str, dict[str, np.ndarray]], plan: InferencePlan,
                       score_thresholds: tuple[float, ...] = CURVE_SCORES) -> dict:
    """Lesion-wise ROC of the lesion score (the paper's Fig. 5 with ALL-Net's own lesion
    decision): the held-out predictions are post-processed with ``plan`` (its probability
    threshold, connectivity, minimum size, contrast floor and grey-matter fraction, no score
    threshold), then for each score
    threshold the lesions scoring at least that much are kept. Per threshold: LTPR (reference
    lesions, 18-connected, touched by a kept lesion / all reference lesions), false-positive
    lesions per scan and LFPR."""
    from allnet.metrics import label_components

    base = dataclasses.replace(plan, lesion_score_threshold=0.0)  # the other rules stay
    thresholds = np.asarray(score_thresholds, dtype=float)
    detected = np.zeros(thresholds.size)
    false = np.zeros(thresholds.size)
    kept_total = np.zeros(thresholds.size)
    n_ref = 0
    for arrays in cases.values():
        if "sphere" not in arrays:
            raise ValueError("the held-out predictions carry no lesion scores (model without sphere head)")
        contrast, grey = arrays.get(CONTRAST_KEY), arrays.get(GREY_MATTER_KEY)
        labels, scores = postprocess_array(vote(arrays, base.threshold), base, arrays["sphere"].astype(np.float32),
                                           contrast_map=None if contrast is None else contrast.astype(np.float32),
                                           grey_matter_map=None if grey is None else grey.astype(np.float32))
        ref_labels, n = label_components(arrays["reference"] > 0, 18)
        n_ref += n
        ids = np.array(sorted(scores), dtype=int)
        peak = np.array([scores[i] for i in ids])
        hit_refs = {i: set(np.unique(ref_labels[(labels == i) & (ref_labels > 0)]).tolist()) for i in ids}
        for t_index, t in enumerate(thresholds):
            kept = ids[peak >= t]
            found = set().union(*(hit_refs[i] for i in kept)) if kept.size else set()
            detected[t_index] += len(found)
            false[t_index] += sum(1 for i in kept if not hit_refs[i])
            kept_total[t_index] += kept.size
    n_scans = len(cases)
    return {"score_thresholds": thresholds.tolist(),
            "ltpr": (detected / max(n_ref, 1)).tolist(),
            "fp_per_scan": (false / max(n_scans, 1)).tolist(),
            "lfpr": np.divide(false, kept_total, out=np.zeros_like(false), where=kept_total > 0).tolist(),
            "n_reference_lesions": n_ref, "n_scans": n_scans,
            "plan": {k: v for k, v in base.to_dict().items() if k not in MODEL_INPUT_KEYS}}


def plot_lesion_score_curve(curve: dict, path: Path, chosen: float | None = None) -> Path:
    """PNG of LTPR against false-positive lesions per scan, one point per score threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.2), dpi=110)
    ax.plot(curve["fp_per_scan"], curve["ltpr"], "o-", ms=3)
    for t, x, y in zip(curve["score_thresholds"], curve["fp_per_scan"], curve["ltpr"]):
        if round(t * 20) % 4 == 0:  # label every 0.2
            ax.annotate(f"{t:.1f}", (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    if chosen is not None:
        i = int(np.argmin(np.abs(np.asarray(curve["score_thresholds"]) - chosen)))
        ax.plot(curve["fp_per_scan"][i], curve["ltpr"][i], "r*", ms=10, label=f"plan: score >= {chosen:g}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set(xlabel="false-positive lesions per scan", ylabel="lesion-wise TPR", ylim=(0, 1.02),
           title=f"Lesion score ROC, {curve['n_scans']} held-out scans, {curve['n_reference_lesions']} lesions")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def write_lesion_score_curve(out_dir: str | Path, plan: InferencePlan) -> dict | None:
    """Curve JSON and figure of the stored held-out predictions in ``out_dir`` (None without any)."""
    cases = load_oof(Path(out_dir))
    if not cases or not all("sphere" in a for a in cases.values()):
        return None
    curve = lesion_score_curve(cases, plan)
    write_json_atomic(Path(out_dir) / CURVE_FILE, curve)
    plot_lesion_score_curve(curve, Path(out_dir) / CURVE_FIGURE, plan.lesion_score_threshold)
    return curve
