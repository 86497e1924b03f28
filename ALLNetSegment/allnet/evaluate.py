"""`allnet evaluate PRED REF`: compare predicted lesion masks with reference masks.

PRED and REF are either two mask files (one case) or two folders (a cohort). In a folder,
a case is a mask file ``<case>.nii.gz`` (also .nii, .nrrd, .mha, .mhd) or a sub-folder
``<case>/`` holding ``lesion_mask.nii.gz`` (the layout ``allnet segment --cohort`` writes);
cases are matched by ``<case>`` and every case must be present on both sides. An ALLNet output
folder (one holding ``lesion_mask.nii.gz``) may stand for a single predicted case.
Probability maps (for the curves) come from ``--probability`` (file, or folder matched the same
way with ``<case>/lesion_probability.nii.gz``) or, by default, from ``lesion_probability.nii.gz``
beside each predicted mask that is named ``lesion_mask.nii.gz``.
Masks: non-zero voxels are lesion; all images of a case must share the reference's grid.
"""
from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import SimpleITK as sitk

from allnet import metrics
from allnet.io import atomic_output_dir, read_stored
from allnet.atomic import atomic_file, write_json_atomic
from allnet.contract import (EVALUATION_COMPARE_FILE, EVALUATION_CURVES_FILE, EVALUATION_METRICS_FILE,
                             EVALUATION_SUMMARY_FILE, IMAGE_SUFFIXES, MASK_FILE, PROBABILITY_FILE,
                             strip_image_suffix)
from allnet.contract import RunSettings
from allnet.errors import EXIT_OK, InputError
from allnet.outputs import check_output_location

EVALUATION_FILES = (EVALUATION_METRICS_FILE, EVALUATION_COMPARE_FILE, EVALUATION_SUMMARY_FILE,
                    EVALUATION_CURVES_FILE)
MASK_NAME = MASK_FILE                # a run's files (allnet segment / --cohort layout)
PROBABILITY_NAME = PROBABILITY_FILE
TABLE_COLUMNS = (  # (header, CaseMetrics attribute, format)
    ("DSC", "dsc", ".3f"), ("PPV", "ppv", ".3f"), ("TPR", "tpr", ".3f"), ("LTPR", "ltpr", ".3f"),
    ("LFPR", "lfpr", ".3f"), ("L-F1", "lf1", ".3f"), ("MR-LF1", "mr_lesion_f1", ".3f"),
    ("ref mL", "ref_volume_ml", ".2f"), ("pred mL", "pred_volume_ml", ".2f"),
    ("#ref", "n_ref_lesions", ".0f"), ("#pred", "n_pred_lesions", ".0f"),
)


@dataclass
class Case:
    """Files of one case: predicted mask, reference mask, optional probability and second mask."""

    name: str
    pred: Path
    ref: Path
    probability: Path | None = None
    compare: Path | None = None


@dataclass
class EvaluationResult:
    cases: list[metrics.CaseMetrics]
    summary: dict
    lesion_curve: metrics.LesionCurve | None = None
    pr_curve: metrics.PRCurve | None = None
    compare_cases: list[metrics.CaseMetrics] = field(default_factory=list)
    comparison: list[dict] = field(default_factory=list)


# ----------------------------------------------------------------------------- reading

def read_volume(path: Path, role: str) -> sitk.Image:
    """A 3D scalar image; InputError naming ``path`` when missing, unreadable or not 3D scalar
    (``allnet.io.read_stored``, the reader of every input)."""
    return read_stored(path, role)


def read_mask(path: Path, role: str) -> sitk.Image:
    """A lesion mask (non-zero = lesion) as uint8 0/1; rejects non-integer (probability) images."""
    image = read_volume(path, role)
    values = sitk.GetArrayViewFromImage(image)
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise InputError(path, f"{role} contains NaN or infinite values")
        if np.any(values != np.round(values)):
            raise InputError(path, f"{role} has non-integer values: not a mask (give probability maps "
                                   f"with --probability)")
    out = sitk.GetImageFromArray((values != 0).astype(np.uint8))
    out.CopyInformation(image)
    return out


def read_probability(path: Path) -> sitk.Image:
    """A lesion probability map (float32, values in [0, 1])."""
    image = sitk.Cast(read_volume(path, "probability map"), sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(image)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise InputError(path, "probability map values must be finite and within [0, 1]")
    return image


def check_grid(image: sitk.Image, path: Path, ref: sitk.Image, ref_path: Path) -> None:
    """InputError naming ``path`` when ``image`` is not on the grid of the reference."""
    problem = metrics.geometry_mismatch(image, ref)
    if problem:
        raise InputError(path, f"voxel grid differs from the reference {ref_path}: {problem}")


# ----------------------------------------------------------------------------- case discovery

def folder_cases(folder: Path, sub_name: str = MASK_NAME) -> dict[str, Path]:
    """Cases of a folder: ``<case>.<ext>`` files and ``<case>/<sub_name>`` sub-folders."""
    cases: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and (entry / sub_name).is_file():
            name, path = entry.name, entry / sub_name
        elif entry.is_file() and strip_image_suffix(entry.name):
            name, path = strip_image_suffix(entry.name), entry
        else:
            continue
        if name in cases:
            raise InputError(folder, f"case '{name}' is given twice ({cases[name].name} and {path})")
        cases[name] = path
    if not cases:
        raise InputError(folder, f"no cases found: expected <case>{IMAGE_SUFFIXES[0]} files or "
                                 f"<case>/{sub_name} sub-folders")
    return cases


def _single(path: Path, name: str) -> Path:
    """A file, or the ``name`` file inside an ALLNet output folder."""
    if path.is_dir():
        if (path / name).is_file():
            return path / name
        raise InputError(path, f"a single case needs a file or a folder holding {name}")
    if not path.exists():
        raise InputError(path, "file not found")
    return path


def _is_single(path: Path) -> bool:
    """A mask file, or an ALLNet output folder (holding lesion_mask.nii.gz): one case."""
    return path.is_file() or (path.is_dir() and (path / MASK_NAME).is_file())


def _default_probability(pred: Path) -> Path | None:
    candidate = pred.with_name(PROBABILITY_NAME)
    return candidate if pred.name == MASK_NAME and candidate.is_file() else None


def find_cases(pred: Path, ref: Path, probability: Path | None = None, compare: Path | None = None) -> list[Case]:
    """Pair predicted and reference masks (single files or folders; see the module docstring)."""
    if not ref.exists():
        raise InputError(ref, "reference not found")
    if not pred.exists():
        raise InputError(pred, "prediction not found")
    if _is_single(pred) and _is_single(ref):
        p = _single(pred, MASK_NAME)
        prob = _single(probability, PROBABILITY_NAME) if probability else _default_probability(p)
        name = p.parent.name if p.name == MASK_NAME else (strip_image_suffix(p.name) or p.name)
        return [Case(name, p, _single(ref, MASK_NAME), prob, _single(compare, MASK_NAME) if compare else None)]
    if _is_single(pred) or _is_single(ref):
        raise InputError(pred if _is_single(pred) else ref,
                         "is a single case but the other argument is a folder of cases: give two files or two folders")
    preds, refs = folder_cases(pred), folder_cases(ref)
    _require_same(preds, refs, pred, ref)
    probs = folder_cases(probability, PROBABILITY_NAME) if probability else {}
    if probability:
        _require_same(probs, refs, probability, ref)
    others = folder_cases(compare) if compare else {}
    if compare:
        _require_same(others, refs, compare, ref)
    return [Case(name, preds[name], refs[name],
                 probs.get(name) if probability else _default_probability(preds[name]),
                 others.get(name)) for name in sorted(refs)]


def _require_same(found: dict[str, Path], refs: dict[str, Path], folder: Path, ref_folder: Path) -> None:
    extra, missing = sorted(set(found) - set(refs)), sorted(set(refs) - set(found))
    if missing:
        raise InputError(folder, f"no file for reference case(s) {', '.join(missing[:10])} of {ref_folder}")
    if extra:
        raise InputError(folder, f"case(s) {', '.join(extra[:10])} have no reference in {ref_folder}")


# ----------------------------------------------------------------------------- evaluation

def evaluate_cases(cases: list[Case], connectivity: int = metrics.DEFAULT_CONNECTIVITY,
                   min_lesion_mm3: float = 0.0, curves: bool = True,
                   log: Callable[[str], None] | None = None) -> EvaluationResult:
    """Metrics of every case, their summary, curves (when all cases have a probability map)
    and, when cases carry a second prediction, paired t-tests of PRED vs that one."""
    results, other_results = [], []
    for case in cases:
        ref = read_mask(case.ref, "reference mask")
        pred = read_mask(case.pred, "predicted mask")
        check_grid(pred, case.pred, ref, case.ref)
        results.append(metrics.evaluate_case(pred, ref, None, connectivity, min_lesion_mm3, case=case.name))
        if case.compare:
            other = read_mask(case.compare, "predicted mask (--compare)")
            check_grid(other, case.compare, ref, case.ref)
            other_results.append(metrics.evaluate_case(other, ref, None, connectivity, min_lesion_mm3,
                                                       case=case.name))
        if log:
            log(f"evaluated {case.name}")
    result = EvaluationResult(results, metrics.summarise(results))
    with_prob = [c for c in cases if c.probability]
    if curves and with_prob and len(with_prob) < len(cases) and log:
        log(f"curves skipped: only {len(with_prob)} of {len(cases)} cases have a probability map")
    if curves and with_prob and len(with_prob) == len(cases):
        result.lesion_curve = metrics.lesion_curve(
            (p for p, _, _ in _prob_ref(cases)), (r for _, r, _ in _prob_ref(cases)),
            (v for _, _, v in _prob_ref(cases)), connectivity=connectivity, min_lesion_mm3=min_lesion_mm3)
        result.pr_curve = metrics.precision_recall(
            (p for p, _, _ in _prob_ref(cases)), (r for _, r, _ in _prob_ref(cases)))
    if other_results:
        result.compare_cases = other_results
        result.comparison = metrics.paired_tests(results, other_results)
    return result


def _prob_ref(cases: list[Case]) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """(probability KJI, reference KJI, voxel mm^3) per case, read lazily (one case in memory)."""
    for case in cases:
        ref = read_mask(case.ref, "reference mask")
        prob = read_probability(case.probability)
        check_grid(prob, case.probability, ref, case.ref)
        yield (sitk.GetArrayFromImage(prob), sitk.GetArrayFromImage(ref),
               float(np.prod(ref.GetSpacing())))


# ----------------------------------------------------------------------------- outputs

def _write_csv(path: Path, rows: list[metrics.CaseMetrics]) -> None:
    names = metrics.case_field_names()

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=names)
            writer.writeheader()
            for row in rows:
                writer.writerow(row.as_dict())
    with atomic_file(path) as tmp:
        write(tmp)


def plot_curves(lesion: metrics.LesionCurve | None, pr: metrics.PRCurve | None, path: Path) -> None:
    """PNG with the lesion-wise curve (LTPR vs false-positive lesions per scan) and the voxel PR curve."""
    import matplotlib
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), dpi=100)
    if lesion is not None:
        axes[0].plot(lesion.fp_per_scan, lesion.ltpr, "o-", ms=3)
        for t, x, y in zip(lesion.thresholds, lesion.fp_per_scan, lesion.ltpr):
            if abs(t * 10 - round(t * 10)) < 1e-6 and round(t * 10) % 2 == 1:  # label t = .1, .3, .5, ...
                axes[0].annotate(f"{t:.1f}", (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    axes[0].set_xscale("symlog", linthresh=1.0)  # FP counts span 0 to thousands at low thresholds
    axes[0].set(xlabel="false-positive lesions per scan", ylabel="lesion-wise TPR (LTPR)",
                title=f"Lesion-wise detection ({lesion.n_scans if lesion else 0} scan(s))", ylim=(0, 1.02))
    if pr is not None:
        step = max(1, pr.recall.size // 2000)
        axes[1].plot(np.r_[0.0, pr.recall[::step]], np.r_[1.0, pr.precision[::step]], "-")
    ap = "n/a" if pr is None or math.isnan(pr.average_precision) else f"{pr.average_precision:.3f}"
    axes[1].set(xlabel="recall (voxel TPR)", ylabel="precision (voxel PPV)", xlim=(0, 1), ylim=(0, 1.02),
                title=f"Voxel-wise precision-recall (AP {ap})")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_outputs(result: EvaluationResult, out_dir: Path, settings: dict) -> dict[str, str]:
    """metrics.csv, summary.json, [metrics_compare.csv], [curves.png] in ``out_dir``, all or
    nothing (``allnet.io.atomic_output_dir``; a rerun's files replace the earlier run's)."""
    with atomic_output_dir(out_dir, owned=EVALUATION_FILES) as tmp:
        return _write_outputs(result, Path(tmp), settings)


def _write_outputs(result: EvaluationResult, out_dir: Path, settings: dict) -> dict[str, str]:
    written = {"metrics": EVALUATION_METRICS_FILE, "summary": EVALUATION_SUMMARY_FILE}
    _write_csv(out_dir / EVALUATION_METRICS_FILE, result.cases)
    if result.compare_cases:
        _write_csv(out_dir / EVALUATION_COMPARE_FILE, result.compare_cases)
        written["metrics_compare"] = EVALUATION_COMPARE_FILE
    if result.lesion_curve is not None or result.pr_curve is not None:
        plot_curves(result.lesion_curve, result.pr_curve, out_dir / EVALUATION_CURVES_FILE)
        written["curves"] = EVALUATION_CURVES_FILE
    doc = {"settings": settings, "summary": result.summary, "outputs": written}
    if result.lesion_curve is not None:
        lc = result.lesion_curve
        doc["lesion_curve"] = {"thresholds": lc.thresholds, "ltpr": lc.ltpr, "lfpr": lc.lfpr,
                               "fp_per_scan": lc.fp_per_scan, "n_scans": lc.n_scans}
    if result.pr_curve is not None:
        doc["voxel_average_precision"] = result.pr_curve.average_precision
    if result.comparison:
        doc["comparison"] = {"summary_b": metrics.summarise(result.compare_cases), "paired_t_tests": result.comparison}
    write_json_atomic(out_dir / EVALUATION_SUMMARY_FILE, doc)
    return written


def format_table(result: EvaluationResult) -> str:
    """Readable per-case table with the mean row, VC, ISBI score and (if any) paired tests."""
    width = max([len("mean")] + [len(c.case) for c in result.cases])
    head = f"{'case':<{width}}  " + "  ".join(f"{h:>7}" for h, _, _ in TABLE_COLUMNS)
    lines = [head, "-" * len(head)]
    for c in result.cases:
        lines.append(f"{c.case:<{width}}  " + "  ".join(f"{c.value(a):>7{f}}" for _, a, f in TABLE_COLUMNS))
    mean = result.summary["mean"]
    lines += ["-" * len(head), f"{'mean':<{width}}  " + "  ".join(f"{mean[a]:>7{f}}" for _, a, f in TABLE_COLUMNS)]

    def num(v: float | None) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"
    s = result.summary
    lines.append(f"volume correlation (Pearson over {s['n_cases']} case(s)): {num(s['volume_correlation'])}   "
                 f"ISBI-2015 score: {num(s['isbi_score'])} (without VC: {num(s['isbi_score_without_vc'])})")
    if result.pr_curve is not None:
        lines.append(f"voxel-wise average precision: {num(result.pr_curve.average_precision)}")
    if result.comparison:
        lines.append("paired t-tests, PRED minus --compare:")
        for row in result.comparison:
            if row["metric"] in ("n_ref_lesions", "ref_volume_ml"):
                continue
            lines.append(f"  {row['metric']:<20} {row['mean_a']:8.3f} {row['mean_b']:8.3f}  "
                         f"diff {row['mean_diff']:+.3f}  t {num(row['t'])}  "
                         f"p {'n/a' if row['p'] is None else format(row['p'], '.3g')}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line

def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command; its ``func(args)`` returns the exit code."""
    parser = subparsers.add_parser(
        "evaluate", help="compare predicted lesion masks with reference masks",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pred", type=Path, metavar="PRED", help="predicted mask file, or folder of cases")
    parser.add_argument("ref", type=Path, metavar="REF", help="reference mask file, or folder of cases")
    parser.add_argument("--probability", type=Path, default=None, metavar="FILE_OR_FOLDER",
                        help="probability map file/folder for the curves (default: lesion_probability.nii.gz "
                             "beside each predicted lesion_mask.nii.gz)")
    parser.add_argument("--connectivity", type=int, choices=metrics.CONNECTIVITIES,
                        default=metrics.DEFAULT_CONNECTIVITY, help="lesion connectivity (default 18, as ISBI-2015)")
    parser.add_argument("--min-lesion-mm3", type=float, default=0.0, metavar="MM3",
                        help="drop lesions smaller than this from both masks before scoring (default 0)")
    parser.add_argument("--compare", type=Path, default=None, metavar="PRED2",
                        help="second prediction (file/folder) for paired t-tests against PRED")
    parser.add_argument("--no-curves", action="store_true", help="skip the lesion-wise and PR curves")
    parser.add_argument("-o", "--output-dir", type=Path, default=None, metavar="OUT_DIR",
                        help="write metrics.csv, summary.json and curves.png here")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of internal errors")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Entry point of ``allnet evaluate``; raises InputError for bad input (exit code 2)."""
    # the same bounds as segment's --min-lesion-mm3 (SettingError names the option)
    RunSettings(min_lesion_mm3=args.min_lesion_mm3).validate()
    if args.output_dir is not None:
        check_output_location(args.output_dir)
    cases = find_cases(args.pred, args.ref, args.probability, args.compare)
    result = evaluate_cases(cases, args.connectivity, args.min_lesion_mm3, curves=not args.no_curves,
                            log=lambda m: print(m, flush=True) if len(cases) > 1 else None)
    print(format_table(result))
    if args.output_dir is not None:
        settings = {"pred": str(args.pred), "ref": str(args.ref), "connectivity": args.connectivity,
                    "min_lesion_mm3": args.min_lesion_mm3, "compare": str(args.compare) if args.compare else None,
                    "probability": str(args.probability) if args.probability else None}
        written = write_outputs(result, args.output_dir, settings)
        print(f"wrote {', '.join(written.values())} to {args.output_dir}")
    return EXIT_OK
