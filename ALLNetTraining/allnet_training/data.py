"""Case lists for training: which files make up each labelled case.

A case list is a CSV file with the columns ``case_id, subject_id, t1, t2, flair, mask``.
``t2`` may be empty (a case without T2W). Relative paths are resolved against the folder
of the CSV file. All images of a case must already lie on the working grid (FSL MNI152
1 mm, see ``allnet.grid``); they go through ``allnet`` preprocessing in already-in-MNI
mode (see ``cache.py``).

``subject_id`` groups the visits of one person: cross-validation holds out whole
subjects, never single visits (see :func:`leave_one_subject_out`).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from allnet.atomic import atomic_file
from allnet.errors import InputError

CASE_LIST_COLUMNS = ("case_id", "subject_id", "t1", "t2", "flair", "mask")


@dataclass(frozen=True)
class Case:
    """One labelled case: absolute paths of its images (``t2`` None when absent)."""

    case_id: str
    subject_id: str
    t1: Path
    flair: Path
    mask: Path
    t2: Path | None = None

    def paths(self) -> dict[str, Path]:
        """Role -> path of every file of the case (t2 only when present)."""
        out = {"t1": self.t1, "flair": self.flair, "mask": self.mask}
        if self.t2 is not None:
            out["t2"] = self.t2
        return out


def _check_files(case: Case, source: Path | None) -> None:
    for role, path in case.paths().items():
        if not path.is_file():
            where = f" (listed in {source})" if source else ""
            raise InputError(path, f"{role} file of case {case.case_id!r} does not exist{where}")


def read_case_list(csv_path: str | Path, *, check_files: bool = True) -> list[Case]:
    """Read a case-list CSV; raises InputError for missing columns, duplicates or files."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputError(csv_path, "case list does not exist")
    base = csv_path.resolve().parent
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CASE_LIST_COLUMNS if c != "t2" and c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(csv_path, f"case list lacks the column(s) {', '.join(missing)} "
                                       f"(expected {', '.join(CASE_LIST_COLUMNS)})")
        rows = list(reader)
    if not rows:
        raise InputError(csv_path, "case list has no cases")

    def resolve(value: str | None) -> Path | None:
        value = (value or "").strip()
        if not value:
            return None
        path = Path(value)
        return path if path.is_absolute() else (base / path).resolve()

    cases: list[Case] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        case_id = (row.get("case_id") or "").strip()
        subject_id = (row.get("subject_id") or "").strip() or case_id
        if not case_id:
            raise InputError(csv_path, f"line {line}: empty case_id")
        if case_id in seen:
            raise InputError(csv_path, f"line {line}: duplicate case_id {case_id!r}")
        seen.add(case_id)
        t1, flair, mask = resolve(row.get("t1")), resolve(row.get("flair")), resolve(row.get("mask"))
        for role, path in (("t1", t1), ("flair", flair), ("mask", mask)):
            if path is None:
                raise InputError(csv_path, f"line {line}: case {case_id!r} has no {role} path")
        case = Case(case_id, subject_id, t1, flair, mask, resolve(row.get("t2")))
        if check_files:
            _check_files(case, csv_path)
        cases.append(case)
    return cases


def write_case_list(cases: list[Case], csv_path: str | Path) -> None:
    """Write ``cases`` as a case-list CSV (paths relative to its folder where possible)."""
    csv_path = Path(csv_path)
    base = csv_path.resolve().parent

    def rel(path: Path | None) -> str:
        if path is None:
            return ""
        try:
            return os.path.relpath(path, base)
        except ValueError:  # another drive on Windows
            return str(path)

    with atomic_file(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CASE_LIST_COLUMNS)
        for c in cases:
            writer.writerow([c.case_id, c.subject_id, rel(c.t1), rel(c.t2), rel(c.flair), rel(c.mask)])


def dev_cases(shared_data_dir: str | Path) -> list[Case]:
    """The labelled development cases in ``shared_data_dir`` (``../shared/data``).

    Lesjak et al. 2018 patients 07 and 19 (one visit each) and MSLesSeg P14 at visits
    T1, T2, T3 (one subject; visit T1 has no T2W). All on the working grid.
    """
    root = Path(shared_data_dir)
    cases = []
    for patient in ("patient07", "patient19"):
        d = root / "lesjak2018" / "mni" / patient
        cases.append(Case(patient, patient, d / "T1.nii.gz", d / "FLAIR.nii.gz",
                          d / "lesions.nii.gz", d / "T2.nii.gz"))
    for visit in ("T1", "T2", "T3"):
        d = root / "mslesseg" / "P14" / visit
        t2 = d / f"P14_{visit}_T2.nii.gz"
        cases.append(Case(f"P14_{visit}", "P14", d / f"P14_{visit}_T1.nii.gz",
                          d / f"P14_{visit}_FLAIR.nii.gz", d / f"P14_{visit}_MASK.nii.gz",
                          t2 if t2.is_file() else None))
    for case in cases:
        _check_files(case, root)
    return cases


def leave_one_subject_out(cases: list[Case]) -> list[tuple[str, list[Case], list[Case]]]:
    """Folds ``(held_out_subject, training_cases, held_out_cases)``, one per subject,
    in order of first appearance."""
    subjects = list(dict.fromkeys(c.subject_id for c in cases))
    if len(subjects) < 2:
        raise ValueError("leave-one-subject-out needs cases of at least two subjects")
    return [(s, [c for c in cases if c.subject_id != s], [c for c in cases if c.subject_id == s])
            for s in subjects]
