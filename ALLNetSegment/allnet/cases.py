"""Finding a case's T1W/T2W/FLAIR inputs by name, and batch runs over a cohort folder.

Naming rule: a file or DICOM folder name is split into alphanumeric tokens; the LAST token
that names a modality decides its role (so ``P14_T2_T1.nii.gz``, visit T2, is a T1W image).
Modality tokens: ``flair`` (also ``t2flair``), ``t1``/``t1w``/``mprage``/``spgr``/``t1ce``,
``t2``/``t2w``.
Names with a token such as ``mask``, ``lesion(s)``, ``seg``, ``gt``, ``label`` or ``truth`` are
reference masks, never inputs.
"""
from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_file
from .contract import (COHORT_LESIONS_FILE, COHORT_SUMMARY_FILE, IMAGE_SUFFIXES, LESION_COLUMN_NAMES,
                       strip_image_suffix)
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


@dataclass
class CaseOutcome:
    """Result of one case of a batch run."""

    case_id: str
    status: str  # "ok" | "failed"
    seconds: float
    totals: dict = field(default_factory=dict)
    error: str = ""
    exit_code: int = 0


def run_cohort(cases_dir: str | Path, output_dir: str | Path, run_case: Callable,
               on_case: Callable[[int, int, str], None] | None = None) -> list[CaseOutcome]:
    """Segment every sub-folder of ``cases_dir`` into ``output_dir/<case>``; keep going past failures.

    ``run_case(inputs: dict[str, Path], case_output_dir: Path)`` runs one case and returns its
    SegmentationResult. Writes ``lesions_all.csv`` (every lesion, with a ``case`` column) and
    ``cohort_summary.csv`` (one row per case with status and error) into ``output_dir``.
    """
    cases_dir, output_dir = Path(cases_dir), Path(output_dir)
    if not cases_dir.is_dir():
        raise InputError(cases_dir, "cohort folder does not exist")
    case_dirs = sorted(p for p in cases_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not case_dirs:
        raise InputError(cases_dir, "cohort folder has no case sub-folders")
    output_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[CaseOutcome] = []
    lesion_rows: list[dict] = []
    for index, case_dir in enumerate(case_dirs):
        if on_case is not None:
            on_case(index, len(case_dirs), case_dir.name)
        start = time.perf_counter()
        try:
            result = run_case(find_inputs(case_dir), output_dir / case_dir.name)
        except AllnetError as error:
            outcomes.append(CaseOutcome(case_dir.name, "failed", time.perf_counter() - start,
                                        error=str(error), exit_code=error.exit_code))
            continue
        except Exception as error:  # noqa: BLE001 - a batch must survive one broken case
            outcomes.append(CaseOutcome(case_dir.name, "failed", time.perf_counter() - start,
                                        error=f"internal error: {error!r}", exit_code=1))
            continue
        from .lesions import table_rows
        lesion_rows += [{"case": case_dir.name} | row for row in table_rows(result.lesions)]
        outcomes.append(CaseOutcome(case_dir.name, "ok", time.perf_counter() - start,
                                    totals=result.totals))
    _write_csv(output_dir / COHORT_LESIONS_FILE, lesion_rows, ["case", *LESION_COLUMN_NAMES])
    _write_csv(output_dir / COHORT_SUMMARY_FILE, [_summary_row(o) for o in outcomes], COHORT_SUMMARY_COLUMNS)
    return outcomes


COHORT_SUMMARY_COLUMNS = ("case", "status", "lesion_count", "total_volume_ml", "seconds", "error")


def _summary_row(outcome: CaseOutcome) -> dict:
    totals = outcome.totals
    return {"case": outcome.case_id, "status": outcome.status,
            "lesion_count": totals.get("count", ""),
            "total_volume_ml": totals.get("total_volume_ml", ""),
            "seconds": round(outcome.seconds, 1), "error": outcome.error}


def _write_csv(path: Path, rows: list[dict], columns: list[str] | tuple[str, ...]) -> None:
    """Write rows atomically (temp file, then rename) with a fixed header (also when empty)."""
    with atomic_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
