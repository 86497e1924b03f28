"""The ``allnet`` command: segment, longitudinal, demo, evaluate, info.

Exit codes (allnet.errors): 0 ok, 1 internal error, 2 bad input, 3 registration failed,
4 model problem, 5 resources, 6 batch finished with failed cases, 130 cancelled.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from . import __version__
from .contract import (COHORT_LESIONS_FILE, COHORT_SUMMARY_FILE, ERROR_PREFIX, EXIT_BAD_INPUT,
                       EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, EXIT_RESOURCES, LONGITUDINAL_COMMAND,
                       LONGITUDINAL_INPUT_OPTIONS, OUTPUT_OPTION, RESULT_PREFIX, SUMMARY_PLAN_KEY,
                       RunSettings, SettingError, add_arguments)
from .errors import AllnetError, InputError
from .progress import Progress, json_line_sink, terminal_sink


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``segment`` and ``demo``: the run settings (generated from
    ``allnet.contract.RunSettings``) and how progress is shown."""
    add_arguments(parser)
    out = parser.add_argument_group("progress and errors")
    out.add_argument("--progress", choices=("bar", "json", "none"), default="bar",
                     help="bar: progress bar on stderr; json: ALLNET-PROGRESS lines on stdout "
                          "(for Slicer); none (default: bar)")
    out.add_argument("--debug", action="store_true", help="show the Python traceback of internal errors")


def _options(args: argparse.Namespace) -> RunSettings:
    return RunSettings.from_namespace(args)


def _progress(args: argparse.Namespace) -> Progress:
    if args.progress == "json":
        return Progress(json_line_sink(sys.stdout))
    if args.progress == "bar":
        return Progress(terminal_sink(sys.stderr))
    return Progress()


def _print_lesions(result, stream=sys.stdout, limit: int = 30) -> None:
    """Readable per-lesion table (RAS mm centroids) and totals."""
    lesions = result.lesions
    print(f"{'id':>4} {'volume mm3':>11} {'location':<18} {'centroid RAS (mm)':<26} {'mean p':>7}",
          file=stream)
    for lesion in lesions[:limit]:
        r, a, s = lesion.centroid_ras
        mean_p = "" if lesion.mean_probability is None else f"{lesion.mean_probability:.2f}"
        print(f"{lesion.id:>4} {lesion.volume_mm3:>11.1f} {lesion.location:<18} "
              f"{f'({r:.1f}, {a:.1f}, {s:.1f})':<26} {mean_p:>7}", file=stream)
    if len(lesions) > limit:
        print(f"... {len(lesions) - limit} more lesions in lesions.csv", file=stream)
    totals = result.totals
    print(f"total: {totals['count']} lesions, {totals['total_volume_ml']:.3f} mL", file=stream)


def _cmd_segment(args: argparse.Namespace) -> int:
    from .outputs import check_output_location
    from .pipeline import run_pipeline

    options = _options(args).validate()
    if args.cohort and (args.t1 or args.flair or args.t2):
        raise InputError(None, "give either --cohort FOLDER or --t1/--flair/--t2 of one case, not both")
    if not args.cohort and (args.workers != 1 or args.scheduler or args.resume):
        raise InputError(None, "--workers, --scheduler and --resume apply to --cohort runs only")
    check_output_location(args.output)
    if args.cohort:
        return _run_cohort(args, options)
    if not (args.t1 and args.flair):
        raise InputError(None, "segment needs --t1 and --flair (T2W optional), or --cohort FOLDER")
    result = run_pipeline(args.t1, args.flair, args.t2, args.output, options, _progress(args))
    _report_result(args, result)
    return EXIT_OK


def _report_result(args: argparse.Namespace, result) -> None:
    if args.progress == "json":
        print(RESULT_PREFIX + json.dumps({"output_dir": str(result.output_dir),
                                          "summary": str(result.files.get("summary", ""))}),
              flush=True)
    else:
        _print_lesions(result)
        if not result.summary["model"].get("trained", True):
            print("note: this model is untrained (random weights); its lesions mean nothing",
                  file=sys.stderr)
        for warning in result.summary.get("warnings", []):
            print(f"note: {warning}", file=sys.stderr)
        print(f"outputs in {result.output_dir}", file=sys.stderr)


def _run_cohort(args: argparse.Namespace, options) -> int:
    from .batch_cli import batch_executor, print_outcome, report_failures
    from .cases import SegmentCase, run_cohort

    with batch_executor(args, options) as executor:
        outcomes = run_cohort(args.cohort, args.output, SegmentCase(options), print_outcome,
                              executor=executor, resume=args.resume, report=options.report)
    ok = sum(o.succeeded for o in outcomes)
    print(f"{ok} of {len(outcomes)} cases segmented; "
          f"tables: {Path(args.output) / COHORT_LESIONS_FILE}, {Path(args.output) / COHORT_SUMMARY_FILE}",
          file=sys.stderr)
    return report_failures(outcomes)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import make_demo_case
    import SimpleITK as sitk

    from .metrics import evaluate_case
    from .outputs import check_output_location
    from .pipeline import run_pipeline

    out = Path(args.output)
    options = _options(args).validate()
    check_output_location(out)
    case = make_demo_case(out / "case", seed=args.seed)
    print(f"demo case (synthetic, native-like geometry) written to {out / 'case'}", file=sys.stderr)
    if args.case_only:  # the Slicer module's "Load sample": the case, not its segmentation
        if args.progress == "json":
            print(RESULT_PREFIX + json.dumps({"output_dir": str(out / "case")}), flush=True)
        return EXIT_OK
    result = run_pipeline(case.t1, case.flair, case.t2, out / "result", options,
                          _progress(args))
    _report_result(args, result)
    truth = sitk.ReadImage(str(case.truth))
    metrics = evaluate_case(result.mask, truth,
                            connectivity=result.summary[SUMMARY_PLAN_KEY]["connectivity"])
    print(f"against the known truth: Dice {metrics.dsc:.3f}, lesion-wise F1 {metrics.lf1:.3f} "
          f"(LTPR {metrics.ltpr:.3f}, LFPR {metrics.lfpr:.3f})")
    return EXIT_OK


def _cmd_longitudinal(args: argparse.Namespace) -> int:
    from .longitudinal_pipeline import run_longitudinal
    from .outputs import check_output_location

    options = _options(args).validate()
    check_output_location(args.output)
    result = run_longitudinal(args.baseline_flair, args.followup_flair,
                              baseline_t1=args.baseline_t1, followup_t1=args.followup_t1,
                              baseline_t2=args.baseline_t2, followup_t2=args.followup_t2,
                              output_dir=args.output, options=options, progress=_progress(args))
    if args.progress == "json":
        print(RESULT_PREFIX + json.dumps({"output_dir": str(result.output_dir),
                                          "summary": str(result.files.get("summary", ""))}), flush=True)
    else:
        counts = result.summary["counts"]
        print(", ".join(f"{n} {name}" for name, n in counts.items()) + " lesions")
        for warning in result.summary.get("warnings", []):
            print(f"note: {warning}", file=sys.stderr)
        print(f"outputs in {result.output_dir}", file=sys.stderr)
    return EXIT_OK


def _cmd_info(args: argparse.Namespace) -> int:
    import platform

    import torch

    from .errors import ModelError
    from .io import ROLES
    from .model import bundled_model_path, load_model_file

    bundled = bundled_model_path()
    try:
        reads = (", ".join(ROLES[m] for m in load_model_file(bundled).config.modalities)
                 if bundled else "-")
    except ModelError as exc:
        reads = f"unreadable ({exc})"
    info = {
        "allnet": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "bundled_model": str(bundled) if bundled else "none (no trained model is bundled)",
        "model_reads": reads,
    }
    for key, value in info.items():
        print(f"{key:>15}: {value}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="allnet", description="MS lesion segmentation and per-lesion measurement (ALL-Net).")
    parser.add_argument("--version", action="version", version=f"allnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    seg = sub.add_parser("segment", help="segment one case or a cohort folder",
                         description="Segment MS lesions from T1W, FLAIR and (optionally) T2W. "
                                     "Outputs are written in the geometry of the input FLAIR.")
    inputs = seg.add_argument_group("inputs (files: .nii/.nii.gz/.nrrd/.mha, or DICOM series folders)")
    inputs.add_argument("--t1", help="T1-weighted image")
    inputs.add_argument("--t2", help="T2-weighted image (optional)")
    inputs.add_argument("--flair", help="FLAIR image (outputs use its grid)")
    inputs.add_argument("--cohort", metavar="FOLDER",
                        help="batch: one sub-folder per case, inputs found by name (t1/t2/flair)")
    seg.add_argument("-o", "--output", required=True, help="output folder")
    _add_run_options(seg)
    from .batch_cli import add_batch_options, register as register_bids
    add_batch_options(seg)
    seg.set_defaults(func=_cmd_segment)

    demo = sub.add_parser("demo", help="build a synthetic case with known lesions and segment it",
                          description="Builds a synthetic T1W/T2W/FLAIR case from the bundled MNI "
                                      "template (no download), runs the full pipeline and scores it.")
    demo.add_argument("-o", "--output", required=True, help="output folder (case/ and result/)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the synthetic case")
    demo.add_argument("--case-only", action="store_true",
                      help="only build the case (OUTPUT/case); with --progress json its folder is "
                           "reported on the ALLNET-RESULT line")
    _add_run_options(demo)
    demo.set_defaults(func=_cmd_demo)

    lon = sub.add_parser(LONGITUDINAL_COMMAND, help="new, enlarging, stable, shrinking and resolved lesions "
                                              "between two visits",
                         description="Compare two visits of one person: both are segmented in one "
                                     "space halfway between them and each lesion is classified by "
                                     "written rules with the FLAIR change as evidence. Outputs are "
                                     "on the follow-up FLAIR's grid. A FLAIR at both visits and a "
                                     "T1W at one visit at least are needed.")
    visits = lon.add_argument_group("inputs (files: .nii/.nii.gz/.nrrd/.mha, or DICOM series folders)")
    visit_help = {("baseline", "flair"): "FLAIR of the first visit",
                  ("followup", "flair"): "FLAIR of the later visit (outputs use its grid)",
                  ("baseline", "t1"): "T1W of the first visit",
                  ("followup", "t1"): "T1W of the later visit (one T1W is enough)",
                  ("baseline", "t2"): "T2W of the first visit (optional)",
                  ("followup", "t2"): "T2W of the later visit (optional)"}
    for (visit, modality), option in LONGITUDINAL_INPUT_OPTIONS.items():
        visits.add_argument(option, required=modality == "flair", help=visit_help[(visit, modality)])
    lon.add_argument("-o", OUTPUT_OPTION, required=True, help="output folder")
    _add_run_options(lon)
    lon.set_defaults(func=_cmd_longitudinal)

    from . import evaluate
    evaluate.register(sub)
    register_bids(sub)

    info = sub.add_parser("info", help="versions, devices and the bundled model")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (also used by ``python -m allnet``)."""
    args = build_parser().parse_args(argv)
    json_mode = getattr(args, "progress", "") == "json"
    try:
        return int(args.func(args) or EXIT_OK)
    except AllnetError as error:
        return _fail(str(error), error.exit_code, json_mode)
    except SettingError as error:
        return _fail(str(error), EXIT_BAD_INPUT, json_mode)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_CANCELLED, json_mode)
    except MemoryError:
        return _fail("out of memory: close other programs or use a machine with more RAM",
                     EXIT_RESOURCES, json_mode)
    except Exception as error:  # noqa: BLE001 - last line of defence: a message, not only a traceback
        if getattr(args, "debug", False):
            traceback.print_exc()
        return _fail(f"internal error: {error!r} (rerun with --debug for the traceback and report it)",
                     EXIT_INTERNAL, json_mode)


def _fail(message: str, code: int, json_mode: bool) -> int:
    if json_mode:
        print(ERROR_PREFIX + json.dumps({"message": message, "exit_code": code}), flush=True)
    print(f"allnet: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
