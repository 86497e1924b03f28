"""Finding a case's T1W/T2W/FLAIR inputs by name, and batch runs: the one loop over cases
(:func:`run_cases`, on any ``concurrent.futures.Executor``: this process, or a Dask cluster
from ``allnet.cluster``) and the cohort-folder run with merged tables (:func:`run_cohort`).

Naming rule: a file or DICOM folder name is split into alphanumeric tokens; the LAST token
that names a modality decides its role (so ``P14_T2_T1.nii.gz``, visit T2, is a T1W image).
Modality tokens: ``flair`` (also ``t2flair``), ``t1``/``t1w``/``mprage``/``spgr``/``t1ce``,
``t2``/``t2w``.
Names with a token such as ``mask``, ``lesion(s)``, ``seg``, ``gt``, ``label`` or ``truth`` are
reference masks, never inputs.
"""
from __future__ import annotations

import csv
import json
import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_file
from .contract import (COHORT_LESIONS_FILE, COHORT_REPORT_FILE, COHORT_SUMMARY_FILE, EXIT_BAD_INPUT,
                       EXIT_INTERNAL, EXIT_RESOURCES, IMAGE_SUFFIXES, LESION_COLUMN_NAMES, SUMMARY_FILE,
                       SUMMARY_OUTPUTS_KEY, strip_image_suffix)
from .errors import AllnetError, InputError

_MODALITY_TOKENS = {
    "flair": "flair", "t2flair": "flair", "t2_flair": "flair",
    "t1": "t1", "t1w": "t1", "mprage": "t1", "t1mprage": "t1", "spgr": "t1", "t1ce": "t1",
    "t1c": "t1",
    "t2": "t2", "t2w": "t2",
}
_MASK_TOKENS = {"mask", "lesion", "lesions", "seg", "segmentation", "gt", "label", "labels",
                "truth", "manual", "consensus"}


def modality_of_name(name: str) -> str | None:
    """Role ('t1', 't2', 'flair') that a file, folder or volume name denotes, or None."""
    tokens = [t for t in re.split(r"[^0-9a-z]+", (strip_image_suffix(name) or name).lower()) if t]
    if any(t in _MASK_TOKENS for t in tokens):
        return None
    roles = [_MODALITY_TOKENS[t] for t in tokens if t in _MODALITY_TOKENS]
    return roles[-1] if roles else None


def find_inputs(folder: str | Path) -> dict[str, Path]:
    """Map role -> path for the images in ``folder`` (files, or DICOM series sub-folders).

    Raises InputError when T1W or FLAIR is missing or a role is ambiguous.
    """
    folder = Path(folder)
    found: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        is_image = entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)
        if not (is_image or entry.is_dir()):
            continue
        role = modality_of_name(entry.name)
        if role:
            found.setdefault(role, []).append(entry)
    for role, paths in found.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            raise InputError(folder, f"several candidate {role.upper()} images ({names}); keep one")
    for role in ("t1", "flair"):
        if role not in found:
            raise InputError(folder, f"no {role.upper()} image found (expected a file or DICOM "
                                     f"folder whose name contains '{role}')")
    return {role: paths[0] for role, paths in found.items()}


@dataclass(frozen=True)
class Case:
    """One unit of a batch run: its inputs by role and where its outputs go.

    ``done_marker`` is the file a finished case has (its summary, written last and
    atomically), so ``--resume`` skips the case when it exists. ``problem`` is an input problem
    found while discovering the case: the case then fails without running.
    """

    case_id: str
    inputs: dict[str, Path]
    output_dir: Path
    done_marker: Path
    problem: str = ""
    problem_exit_code: int = EXIT_BAD_INPUT


@dataclass
class CaseOutcome:
    """Result of one case of a batch run."""

    case_id: str
    status: str  # "ok" | "failed" | "resumed" (finished by an earlier run, skipped)
    seconds: float
    totals: dict = field(default_factory=dict)
    error: str = ""
    exit_code: int = 0
    summary: Path | None = None        # the case's summary file (ok and resumed cases)
    peak_rss_mib: float | None = None  # peak resident memory of the process that ran it, MiB

    @property
    def succeeded(self) -> bool:
        return self.status in ("ok", "resumed")


RunCase = Callable[[dict[str, Path], Path], object]


def run_case_guarded(run_case: RunCase, case: Case) -> CaseOutcome:
    """Run one case where the executor put it (this process or a worker) and never raise:
    a batch must survive one broken case. The case counts as finished only when its
    ``done_marker`` exists afterwards."""
    start = time.perf_counter()
    try:
        run_case(case.inputs, case.output_dir)
        if not case.done_marker.is_file():
            raise InputError(case.output_dir, f"the run finished without writing {case.done_marker.name}")
        outcome = _finished(case, "ok")
    except AllnetError as error:
        outcome = CaseOutcome(case.case_id, "failed", 0.0, error=str(error), exit_code=error.exit_code)
    except MemoryError:
        outcome = CaseOutcome(case.case_id, "failed", 0.0, exit_code=EXIT_RESOURCES,
                              error="out of memory (give each worker more memory, or run fewer workers)")
    except Exception as error:  # noqa: BLE001 - one broken case must not stop the others
        outcome = CaseOutcome(case.case_id, "failed", 0.0, error=f"internal error: {error!r}",
                              exit_code=EXIT_INTERNAL)
    outcome.seconds = time.perf_counter() - start
    outcome.peak_rss_mib = peak_rss_mib()
    return outcome


def peak_rss_mib() -> float | None:
    """Peak resident memory of this process so far (MiB), or None where it is not known."""
    try:
        import resource  # POSIX only
    except ImportError:
        import psutil
        peak = getattr(psutil.Process().memory_info(), "peak_wset", None)  # Windows
        return None if peak is None else peak / 2**20
    scale = 2**20 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _finished(case: Case, status: str) -> CaseOutcome:
    """Outcome of a case whose summary exists (totals and time read from it)."""
    summary = json.loads(case.done_marker.read_text(encoding="utf-8"))
    seconds = float((summary.get("timings_s") or {}).get("total", 0.0))
    return CaseOutcome(case.case_id, status, seconds, totals=summary.get("totals") or {},
                       summary=case.done_marker)


def _earlier_outcome(case: Case) -> CaseOutcome | None:
    """The outcome of a case an earlier run finished, or None (no summary, or unreadable:
    the case is run again)."""
    if not case.done_marker.is_file():
        return None
    try:
        return _finished(case, "resumed")
    except (OSError, ValueError, AttributeError):
        return None


class InlineExecutor(Executor):
    """Runs each submitted call at once in this process (the Python API's default, and tests)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # noqa: BLE001 - delivered through the future like any executor
            future.set_exception(error)
        return future


def run_cases(cases: list[Case], run_case: RunCase, *, executor: Executor | None = None,
              resume: bool = False,
              on_done: Callable[[int, int, CaseOutcome], None] | None = None) -> list[CaseOutcome]:
    """Run every case on ``executor`` (one case per task) and return the outcomes in the
    order of ``cases``.

    ``run_case(inputs, case_output_dir)`` must be picklable when the executor runs cases in
    other processes (a module-level function or an instance of a module-level class). A case
    that raises, or whose worker dies (killed, out of memory), is a failed outcome; the
    others go on. With ``resume``, cases whose ``done_marker`` exists are not run again.
    ``on_done(finished_count, total, outcome)`` is called as each case ends.
    """
    executor = executor or InlineExecutor()
    outcomes: dict[str, CaseOutcome] = {}
    total = len(cases)

    def record(outcome: CaseOutcome) -> None:
        outcomes[outcome.case_id] = outcome
        if on_done is not None:
            on_done(len(outcomes), total, outcome)

    to_run: list[Case] = []
    for case in cases:
        if case.problem:
            record(CaseOutcome(case.case_id, "failed", 0.0, error=case.problem,
                               exit_code=case.problem_exit_code))
        elif resume and (earlier := _earlier_outcome(case)) is not None:
            record(earlier)
        else:
            to_run.append(case)
    # An executor may cap the cases handed out at once (a local cluster: one per worker, so
    # that a worker killed mid-case holds no other, queued case that would fail with it).
    limit = getattr(executor, "max_in_flight", None) or len(to_run)
    waiting = list(reversed(to_run))
    running: dict[Future, Case] = {}
    while waiting or running:
        while waiting and len(running) < limit:
            case = waiting.pop()
            running[executor.submit(run_case_guarded, run_case, case)] = case
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            case = running.pop(future)
            try:
                record(future.result())
            except Exception as error:  # noqa: BLE001 - the worker died or the engine lost the task
                record(CaseOutcome(case.case_id, "failed", 0.0, exit_code=EXIT_RESOURCES,
                                   error=f"the worker running this case stopped (killed, or out "
                                         f"of memory?): {type(error).__name__}: {error}"))
    return [outcomes[case.case_id] for case in cases]


class SegmentCase:
    """``run_case`` that runs the pipeline with fixed settings, silently (progress is
    reported per case by the batch); picklable, so it travels to Dask workers."""

    def __init__(self, settings) -> None:
        self.settings = settings

    def __call__(self, inputs: dict[str, Path], output_dir: Path) -> None:
        from .pipeline import run_pipeline

        run_pipeline(inputs["t1"], inputs["flair"], inputs.get("t2"), output_dir, self.settings)


def cohort_cases(cases_dir: str | Path, output_dir: str | Path) -> list[Case]:
    """One case per sub-folder of ``cases_dir`` (inputs found by name), output in
    ``output_dir/<sub-folder name>``; a folder whose inputs cannot be found is a case with a
    ``problem``."""
    cases_dir, output_dir = Path(cases_dir), Path(output_dir)
    if not cases_dir.is_dir():
        raise InputError(cases_dir, "cohort folder does not exist" if not cases_dir.exists()
                         else "is a file; --cohort takes a folder with one sub-folder per case")
    case_dirs = sorted(p for p in cases_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not case_dirs:
        raise InputError(cases_dir, "cohort folder has no case sub-folders")
    cases = []
    for case_dir in case_dirs:
        out = output_dir / case_dir.name
        try:
            cases.append(Case(case_dir.name, find_inputs(case_dir), out, out / SUMMARY_FILE))
        except AllnetError as error:
            cases.append(Case(case_dir.name, {}, out, out / SUMMARY_FILE, problem=str(error),
                              problem_exit_code=error.exit_code))
    return cases


def run_cohort(cases_dir: str | Path, output_dir: str | Path, run_case: RunCase,
               on_done: Callable[[int, int, CaseOutcome], None] | None = None, *,
               executor: Executor | None = None, resume: bool = False,
               report: bool = True) -> list[CaseOutcome]:
    """Segment every sub-folder of ``cases_dir`` into ``output_dir/<case>``; keep going past failures.

    ``run_case(inputs: dict[str, Path], case_output_dir: Path)`` runs one case and writes its
    outputs with a ``summary.json`` listing them (see :func:`run_cases` for the executor,
    ``resume`` and ``on_done``). Writes ``lesions_all.csv`` (every lesion of the finished
    cases, read from their ``lesions.csv``, with a ``case`` column) and ``cohort_summary.csv``
    (one row per case with status and error) into ``output_dir``, and with ``report``
    ``cohort_report.html`` (``allnet.report``).
    """
    cases = cohort_cases(cases_dir, output_dir)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    outcomes = run_cases(cases, run_case, executor=executor, resume=resume, on_done=on_done)
    lesion_rows: list[dict] = []
    for outcome in outcomes:
        if outcome.succeeded and outcome.summary is not None:
            lesion_rows += [{"case": outcome.case_id} | row for row in case_table_rows(outcome.summary)]
    write_csv(Path(output_dir) / COHORT_LESIONS_FILE, lesion_rows, ["case", *LESION_COLUMN_NAMES])
    write_csv(Path(output_dir) / COHORT_SUMMARY_FILE, [_summary_row(o) for o in outcomes],
               COHORT_SUMMARY_COLUMNS)
    if report:
        from .report import cohort_cases as report_cases, write_cohort_report

        write_cohort_report(Path(output_dir) / COHORT_REPORT_FILE, report_cases(outcomes, output_dir))
    return outcomes


def case_table_rows(summary_path: Path) -> list[dict]:
    """The lesion table of a finished run, found through its summary's ``outputs`` list
    (``lesions.csv`` or a BIDS ``.tsv``; the delimiter follows the file ending)."""
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    table = summary_path.parent / summary[SUMMARY_OUTPUTS_KEY]["table"]
    with table.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t" if table.suffix == ".tsv" else ","))


COHORT_SUMMARY_COLUMNS = ("case", "status", "lesion_count", "total_volume_ml", "seconds", "error")


def _summary_row(outcome: CaseOutcome) -> dict:
    totals = outcome.totals
    return {"case": outcome.case_id, "status": outcome.status,
            "lesion_count": totals.get("count", ""),
            "total_volume_ml": totals.get("total_volume_ml", ""),
            "seconds": round(outcome.seconds, 1), "error": outcome.error}


def write_csv(path: Path, rows: list[dict], columns: list[str] | tuple[str, ...],
               delimiter: str = ",") -> None:
    """Write rows atomically (temp file, then rename) with a fixed header (also when empty)."""
    with atomic_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), delimiter=delimiter,
                                lineterminator="\n" if delimiter == "\t" else "\r\n")
        writer.writeheader()
        writer.writerows(rows)
