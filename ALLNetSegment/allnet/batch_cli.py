"""Command-line glue of batch runs: where cases run (``--workers``, ``--scheduler``,
``--resume``, shared by ``allnet segment --cohort`` and ``allnet bids``) and the
``allnet bids`` command (BIDS Apps convention: ``bids_dir output_dir {participant,group}``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .contract import EXIT_BATCH_FAILURES, EXIT_OK, RunSettings, add_arguments
from .errors import InputError


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """Options of the distributed batch engine (``allnet.cluster``)."""
    group = parser.add_argument_group("batch runs (one case per task on Dask distributed)")
    group.add_argument("--workers", type=int, default=1, metavar="N",
                       help="local worker processes, each running one case at a time with the cores "
                            "shared among them; a case needs about 2.6 GB of memory (default: 1)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of a running Dask scheduler (tcp://host:8786), e.g. one started "
                            "by dask-jobqueue on SLURM/PBS; its workers run the cases (--workers is "
                            "then ignored)")
    group.add_argument("--resume", action="store_true",
                       help="skip cases finished by an earlier run (their summary file exists)")


def batch_executor(args: argparse.Namespace, settings: RunSettings):
    """The executor context of ``allnet.cluster.case_executor`` for the parsed options."""
    from .cluster import case_executor

    if args.workers < 1:
        raise InputError(None, f"--workers must be at least 1, got {args.workers}")
    return case_executor(args.workers, args.scheduler, settings.model)


def print_outcome(done: int, total: int, outcome) -> None:
    """One line per finished case on stderr."""
    detail = (f"{outcome.totals.get('count', '?')} lesions, {outcome.seconds:.0f} s"
              if outcome.succeeded else outcome.error)
    print(f"[{done}/{total}] {outcome.case_id}: {outcome.status} ({detail})", file=sys.stderr, flush=True)


def report_failures(outcomes) -> int:
    """Exit code of a batch: EXIT_BATCH_FAILURES when a case failed (each one listed)."""
    failed = [o for o in outcomes if not o.succeeded]
    for outcome in failed:
        print(f"FAILED {outcome.case_id}: {outcome.error}", file=sys.stderr)
    return EXIT_BATCH_FAILURES if failed else EXIT_OK


def _cmd_bids(args: argparse.Namespace) -> int:
    from . import bids_app
    from .bids_inputs import Selection
    from .outputs import check_output_location

    settings = RunSettings.from_namespace(args).validate()
    try:
        selections = [Selection.parse(text) for text in args.select or []]
    except ValueError as error:
        raise InputError(None, str(error)) from None
    bids_dir, output_dir = Path(args.bids_dir), Path(args.output_dir)
    if bids_dir.resolve() == output_dir.resolve():
        raise InputError(output_dir, "the output folder must differ from the BIDS dataset")
    check_output_location(output_dir)
    labels = {"participant_labels": args.participant_label, "session_labels": args.session_label,
              "selections": selections}
    if args.analysis_level == "group":
        lesions, sessions = bids_app.group(bids_dir, output_dir, **labels)
        print(f"group tables: {lesions}, {sessions}", file=sys.stderr)
        return EXIT_OK
    with batch_executor(args, settings) as executor:
        outcomes = bids_app.participant(bids_dir, output_dir, settings, executor=executor,
                                        resume=args.resume, on_done=print_outcome, **labels)
    ok = sum(o.succeeded for o in outcomes)
    print(f"{ok} of {len(outcomes)} sessions segmented into {output_dir}", file=sys.stderr)
    return report_failures(outcomes)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``allnet bids`` to the ``allnet`` sub-commands."""
    bids = sub.add_parser(
        "bids", help="BIDS App: segment a BIDS dataset into BIDS-Derivatives",
        description="BIDS App (bids_dir output_dir analysis_level). participant: segment each "
                    "session's anat T1w + FLAIR (+ T2w) into OUTPUT_DIR/sub-X[/ses-Y]/anat/ with "
                    "BIDS-Derivatives names; group: merge the lesion tables and write one row per "
                    "session. Several candidates of one suffix (acq/rec/run/...) are refused with "
                    "the candidates listed unless --select picks one.")
    bids.add_argument("bids_dir", help="the BIDS dataset (read only)")
    bids.add_argument("output_dir", help="the derivative dataset to write (e.g. BIDS_DIR/derivatives/allnet)")
    bids.add_argument("analysis_level", choices=("participant", "group"), help="participant or group")
    bids.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                      help="only these participants (label with or without sub-; default: all)")
    bids.add_argument("--session-label", "--session_label", nargs="+", metavar="LABEL",
                      help="only these sessions (label with or without ses-; default: all)")
    bids.add_argument("--select", action="append", metavar="[SUFFIX:]ENTITY-LABEL",
                      help="pick among several candidates, e.g. T1w:acq-mprage, FLAIR:run-2 or rec-norm "
                           "(all suffixes); repeatable")
    add_batch_options(bids)
    add_arguments(bids)
    bids.add_argument("--debug", action="store_true", help="show the Python traceback of internal errors")
    bids.set_defaults(func=_cmd_bids)
