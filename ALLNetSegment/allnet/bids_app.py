"""``allnet bids``: a BIDS App with BIDS-Derivatives outputs.

Participant level: each session (``sub-X[/ses-Y]``) with a T1w and a FLAIR is one case of
``allnet.cases.run_cases``; the run's files, listed in its ``summary.json["outputs"]``, are
renamed to BIDS-Derivatives names (``allnet.contract.BIDS_OUTPUTS``) into
``OUTPUT/sub-X[/ses-Y]/anat/``, which appears only when the session succeeded. Images get a
JSON sidecar (Description, Sources and SpatialReference: BIDS URIs of the raw inputs; the
``space-orig`` images are on the grid of the session's FLAIR). The lesion table becomes a
TSV with a sidecar describing each column and unit (from ``LESION_COLUMNS``).

Each participant-level outcome is logged in ``OUTPUT/logs/<session>.json`` (status, error).
Group level: merges the sessions' lesion tables into one TSV and writes one row per
session (status, totals, model; for a session without derivatives the logged error), each
with its column sidecar.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import uuid
from concurrent.futures import Executor
from pathlib import Path

from . import __version__
from .atomic import write_json_atomic, write_text_atomic
from .bids_inputs import BidsSession, Selection, find_sessions
from .bids_naming import build_name, parse_name
from .cases import Case, CaseOutcome, write_csv, case_table_rows, run_cases
from .contract import (BIDS_GROUP_LESIONS_FILE, BIDS_GROUP_SESSIONS_FILE, BIDS_IGNORED, BIDS_LOGS_DIR,
                       BIDS_OUTPUTS, BIDS_PIPELINE_NAME, BIDS_SESSION_COLUMNS, BIDS_SPEC_VERSION,
                       LESION_COLUMNS, SUMMARY_FILE, SUMMARY_OUTPUTS_KEY, Column, RunSettings)
from .errors import InputError
from .io import atomic_output_dir

SIDECAR_TEXT = {
    "mask": "MS lesion mask (1 = lesion) after post-processing",
    "probability": "lesion probability (0-1), mean over the ensemble members",
    "labels": "lesion instances: value n is lesion n of the lesion table (0 = background)",
    "zones": "location zones: 0 outside the brain, 1 deep white matter, 2 periventricular, "
             "3 juxtacortical, 4 infratentorial",
}
RAW_LINK = "raw"  # DatasetLinks name of the input dataset in BIDS URIs (bids:raw:...)


def derivative_name(entities: dict[str, str], key: str) -> str:
    """BIDS-Derivatives file name of output ``key`` (a ``summary.json["outputs"]`` key) of
    the session with ``entities`` (sub, ses); KeyError for an output without one."""
    extra, suffix, extension = BIDS_OUTPUTS[key]
    return build_name(entities | extra, suffix, extension)


def summary_name(entities: dict[str, str]) -> str:
    return derivative_name(entities, "summary")


def _sidecar_name(name: str) -> str:
    """The JSON sidecar written beside a NIfTI image or a TSV table."""
    for extension in (".nii.gz", ".tsv"):
        if name.endswith(extension):
            return name[: -len(extension)] + ".json"
    return ""


def session_output_names(entities: dict[str, str]) -> set[str]:
    """Every file name a session with ``entities`` may have in its ``anat`` folder (outputs
    and their sidecars): what a rerun replaces or, when it does not write it, removes."""
    names = {derivative_name(entities, key) for key in BIDS_OUTPUTS}
    return names | {_sidecar_name(n) for n in names} - {""}


def columns_sidecar(columns: tuple[Column, ...]) -> dict:
    """TSV sidecar: each column's Description and, when it has one, Units."""
    return {c.name: {"Description": c.description} | ({"Units": c.unit} if c.unit else {})
            for c in columns}


def write_tsv(path: Path, rows: list[dict], columns: tuple[Column, ...] | list[Column]) -> None:
    """A BIDS TSV (tab-separated, ``n/a`` for missing values) and its column sidecar (.json)."""
    names = [c.name for c in columns]
    clean = [{k: ("n/a" if row.get(k) in (None, "") else row[k]) for k in names} for row in rows]
    write_csv(path, clean, names, delimiter="\t")
    write_json_atomic(path.with_suffix(".json"), columns_sidecar(tuple(columns)))


class SessionRunner:
    """Runs one session into its BIDS ``anat`` folder (picklable: it travels to workers)."""

    def __init__(self, settings: RunSettings, bids_dir: str | Path) -> None:
        self.settings = settings
        self.bids_dir = Path(bids_dir).resolve()

    def __call__(self, inputs: dict[str, Path], anat_dir: Path) -> None:
        from .pipeline import run_pipeline
        from .progress import Progress

        entities = {k: v for k, v in parse_name(Path(inputs["flair"]).name).entities.items()
                    if k in ("sub", "ses")}
        work = anat_dir.parent / f".allnet-work-{uuid.uuid4().hex[:12]}"
        try:
            run_pipeline(inputs["t1"], inputs["flair"], inputs.get("t2"), work, self.settings, Progress())
            self._publish(work, anat_dir, entities, inputs)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            with contextlib.suppress(OSError):  # a failed session leaves no empty folder
                anat_dir.parent.rmdir()

    def _uri(self, path: Path) -> str:
        return f"bids:{RAW_LINK}:" + Path(path).resolve().relative_to(self.bids_dir).as_posix()

    def _publish(self, work: Path, anat_dir: Path, entities: dict[str, str],
                 inputs: dict[str, Path]) -> None:
        """Rename the run's listed files to BIDS names in ``anat_dir`` (all or nothing); the
        summary, with its output list in BIDS names, is written last."""
        summary = json.loads((work / SUMMARY_FILE).read_text(encoding="utf-8"))
        sources = [self._uri(inputs[r]) for r in ("flair", "t1", "t2") if r in inputs]
        published: dict[str, str] = {}
        with atomic_output_dir(anat_dir, owned=session_output_names(entities)) as tmp:
            for key, name in summary[SUMMARY_OUTPUTS_KEY].items():
                if key == "summary":
                    continue
                if key not in BIDS_OUTPUTS:  # a new output needs its name in the contract
                    raise RuntimeError(f"output '{key}' ({name}) has no BIDS-Derivatives name in "
                                       "allnet.contract.BIDS_OUTPUTS")
                target = Path(tmp) / derivative_name(entities, key)
                if key == "table":
                    with (work / name).open(newline="", encoding="utf-8") as handle:
                        write_tsv(target, list(csv.DictReader(handle)), LESION_COLUMNS)
                else:
                    os.replace(work / name, target)
                if target.name.endswith(".nii.gz"):
                    write_json_atomic(Path(str(target)[: -len(".nii.gz")] + ".json"),
                                      self._image_sidecar(key, sources))
                published[key] = target.name
            summary[SUMMARY_OUTPUTS_KEY] = published | {"summary": summary_name(entities)}
            summary["bids"] = {"sources": sources, "space": "orig (the grid of the session's FLAIR)"}
            write_json_atomic(Path(tmp) / summary_name(entities), summary)

    def _image_sidecar(self, key: str, sources: list[str]) -> dict:
        sidecar = {"Description": SIDECAR_TEXT.get(key, key), "Sources": sources,
                   "SpatialReference": sources[0]}
        if key == "mask":
            sidecar["Type"] = "Lesion"
        return sidecar


def dataset_description(model_name: str, model_version: str, model_files: list[str],
                        bids_dir: Path) -> dict:
    """``dataset_description.json`` of the derivative dataset (GeneratedBy: ALLNet and model)."""
    return {
        "Name": "ALLNet MS lesion segmentation",
        "BIDSVersion": BIDS_SPEC_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{
            "Name": BIDS_PIPELINE_NAME, "Version": __version__,
            "Description": f"MS lesion segmentation; model {model_name} version {model_version} "
                           f"({', '.join(Path(f).name for f in model_files)})",
        }],
        "DatasetLinks": {RAW_LINK: Path(bids_dir).resolve().as_uri()},
    }


def write_dataset_files(output_dir: Path, description: dict) -> None:
    """dataset_description.json, README.md and .bidsignore (files BIDS has no rule for)."""
    write_json_atomic(output_dir / "dataset_description.json", description)
    write_text_atomic(output_dir / ".bidsignore", "\n".join(BIDS_IGNORED) + "\n")
    readme = output_dir / "README.md"
    if not readme.exists():
        write_text_atomic(readme, "# ALLNet derivatives\n\nMS lesion masks, probabilities, lesion "
                                  "instances and per-lesion tables written by `allnet bids`, on the "
                                  "grid of each session's FLAIR (space-orig).\n")


def participant(bids_dir: str | Path, output_dir: str | Path, settings: RunSettings, *,
                participant_labels: list[str] | None = None, session_labels: list[str] | None = None,
                selections: list[Selection] | None = None, executor: Executor | None = None,
                resume: bool = False, on_done=None) -> list[CaseOutcome]:
    """Segment every selected session (see module doc); returns one outcome per session.

    Refuses before any work (InputError / ModelError) an unusable dataset, ambiguous inputs
    or model. A session that fails leaves no folder and does not stop the others.
    """
    from .pipeline import model_meta, load_models

    if settings.save_working_grid:
        raise InputError(None, "allnet bids: --save-working-grid is not available (the MNI "
                               "working-grid files have no BIDS-Derivatives names); use allnet segment")
    bids_dir, output_dir = Path(bids_dir), Path(output_dir)
    sessions = find_sessions(bids_dir, participant_labels, session_labels, selections)
    bundle, model_files = load_models(settings.model)
    meta = model_meta(bundle)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_dataset_files(output_dir, dataset_description(meta["name"], str(meta["version"]),
                                                        model_files, bids_dir))
    cases = [_case(output_dir, s) for s in sessions]

    def log(done: int, total: int, outcome: CaseOutcome) -> None:
        write_json_atomic(output_dir / BIDS_LOGS_DIR / f"{outcome.case_id}.json", {
            "status": outcome.status, "error": outcome.error, "exit_code": outcome.exit_code,
            "seconds": round(outcome.seconds, 1), "allnet_version": __version__})
        if on_done is not None:
            on_done(done, total, outcome)

    return run_cases(cases, SessionRunner(settings, bids_dir), executor=executor, resume=resume,
                     on_done=log)


def _case(output_dir: Path, session: BidsSession) -> Case:
    anat = output_dir / session.folder / "anat"
    return Case(session.case_id, session.inputs, anat, anat / summary_name(session.entities),
                problem=session.problem)


def group(bids_dir: str | Path, output_dir: str | Path, *, participant_labels: list[str] | None = None,
          session_labels: list[str] | None = None, selections: list[Selection] | None = None
          ) -> tuple[Path, Path]:
    """Merge the finished sessions' lesion tables and write one row per session (sessions
    of the input dataset without derivatives are ``missing``). Returns the two TSV paths."""
    output_dir = Path(output_dir)
    if not (output_dir / "dataset_description.json").is_file():
        raise InputError(output_dir, "no derivatives here: run the participant level first")
    sessions = find_sessions(bids_dir, participant_labels, session_labels, selections)
    lesion_rows, session_rows = [], []
    for session in sessions:
        case = _case(output_dir, session)
        ids = {"participant_id": f"sub-{session.subject}",
               "session_id": f"ses-{session.session}" if session.session else None}
        if not case.done_marker.is_file():
            session_rows.append(ids | {"status": "missing", "note": _missing_note(output_dir, session)})
            continue
        summary = json.loads(case.done_marker.read_text(encoding="utf-8"))
        totals = summary.get("totals") or {}
        model = summary.get("model") or {}
        session_rows.append(ids | {
            "status": "ok", "lesion_count": totals.get("count"),
            "total_volume_ml": totals.get("total_volume_ml"),
            "dis_areas_with_lesions": (totals.get("dissemination_in_space") or {}).get("areas_with_lesions"),
            "modalities": "+".join(summary.get("modalities_present") or []),
            "model": f"{model.get('name', '')} {model.get('version', '')}".strip(),
            "seconds": (summary.get("timings_s") or {}).get("total"),
            "note": "; ".join(summary.get("warnings") or [])})
        lesion_rows += [ids | row for row in case_table_rows(case.done_marker)]
    id_columns = BIDS_SESSION_COLUMNS[:2]
    lesions_path = output_dir / BIDS_GROUP_LESIONS_FILE
    sessions_path = output_dir / BIDS_GROUP_SESSIONS_FILE
    write_tsv(lesions_path, lesion_rows, [*id_columns, *LESION_COLUMNS])
    write_tsv(sessions_path, session_rows, BIDS_SESSION_COLUMNS)
    return lesions_path, sessions_path


def _missing_note(output_dir: Path, session: BidsSession) -> str:
    """Why a session has no derivatives: the error its last participant-level run logged."""
    try:
        logged = json.loads((output_dir / BIDS_LOGS_DIR / f"{session.case_id}.json").read_text())
    except (OSError, ValueError):
        return session.problem or "not segmented (the participant level has not run for it)"
    return f"failed: {logged.get('error') or 'unknown error'}"
