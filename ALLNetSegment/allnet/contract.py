"""What the core, the command line, the Slicer module and training agree on, defined once.

Standard library only: Slicer's GUI process imports this module without numpy, SimpleITK
or torch. It holds

- the process exit codes and the machine-readable line prefixes of ``--progress json``;
- the progress stages and where each starts in the overall fraction of a run;
- the output manifest: file names, the columns of ``lesions.csv`` with units, the
  ``summary.json`` keys other layers read;
- the run settings (:class:`RunSettings`): one declaration with defaults, ranges, help
  texts and one validation, from which the ``allnet`` command-line options and the
  argument list the Slicer module sends (:meth:`RunSettings.to_argv`) are generated.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

# -- exit codes -------------------------------------------------------------------------------
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_REGISTRATION = 3
EXIT_MODEL = 4
EXIT_RESOURCES = 5
EXIT_BATCH_FAILURES = 6
EXIT_CANCELLED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_INTERNAL: "internal error",
    EXIT_BAD_INPUT: "bad input (file, setting or output location)",
    EXIT_REGISTRATION: "registration failed",
    EXIT_MODEL: "model problem (including no trained model bundled)",
    EXIT_RESOURCES: "memory guard or other resource limit",
    EXIT_BATCH_FAILURES: "batch finished with failed cases",
    EXIT_CANCELLED: "cancelled",
}

# -- progress protocol (``--progress json``) ---------------------------------------------------
PROGRESS_PREFIX = "ALLNET-PROGRESS "
RESULT_PREFIX = "ALLNET-RESULT "
ERROR_PREFIX = "ALLNET-ERROR "

# Stage name -> overall fraction of the run at which it starts; weights follow the measured
# share of each stage in a CPU run (README benchmark). Preprocessing spreads its own
# sub-stages (brain extraction, registration, bias correction, resampling) over its span.
STAGES: dict[str, float] = {
    "loading model": 0.00,
    "reading inputs": 0.02,
    "preprocessing": 0.03,
    "anatomy": 0.55,
    "network": 0.62,
    "lesion analysis": 0.90,
    "writing": 0.97,
}

# Steps inside the "preprocessing" stage: fraction of that stage's span at which each starts,
# keyed by the timing key (the stage name, or the step inside a stage).
PREPROCESSING_STEPS: dict[str, float] = {
    "brain extraction": 0.0, "registration to FLAIR": 0.35, "bias correction": 0.5,
    "registration to MNI": 0.7, "resampling": 0.9,
}


def stage_span(name: str) -> tuple[float, float]:
    """(start, end) overall fraction of stage ``name``; end = start of the next stage (or 1)."""
    names = list(STAGES)
    start = STAGES[name]
    index = names.index(name)
    end = STAGES[names[index + 1]] if index + 1 < len(names) else 1.0
    return start, end


# -- output manifest ---------------------------------------------------------------------------
MASK_FILE = "lesion_mask.nii.gz"
PROBABILITY_FILE = "lesion_probability.nii.gz"
LABELS_FILE = "lesion_labels.nii.gz"
ZONES_FILE = "lesion_zones.nii.gz"
SEGMENTATION_FILE = "lesions.seg.nrrd"
TABLE_FILE = "lesions.csv"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
WORKING_DIR = "mni"

# key in summary.json["outputs"] -> file name (relative to the run's output folder).
# "probability", "report" and "working_grid" are present only when written.
OUTPUT_FILES: dict[str, str] = {
    "mask": MASK_FILE,
    "probability": PROBABILITY_FILE,
    "labels": LABELS_FILE,
    "zones": ZONES_FILE,
    "segmentation": SEGMENTATION_FILE,
    "table": TABLE_FILE,
    "summary": SUMMARY_FILE,
    "report": REPORT_FILE,
    "working_grid": WORKING_DIR,
}
SUMMARY_OUTPUTS_KEY = "outputs"      # summary.json: {key: file name} of what the run wrote
SUMMARY_PLAN_KEY = "inference_plan"  # summary.json: the post-processing values used, with sources

# Batch (cohort) mode
COHORT_LESIONS_FILE = "lesions_all.csv"
COHORT_SUMMARY_FILE = "cohort_summary.csv"
COHORT_REPORT_FILE = "cohort_report.html"

# BIDS-Derivatives outputs (``allnet bids``): summary.json["outputs"] key -> (entities after
# the session's own sub/ses entities, suffix, extension) of the file's BIDS name. "space-orig":
# the input FLAIR's own grid. Files that the BIDS specification has no suffix for (Slicer
# segmentation, lesion table, summary, QC report) keep BIDS-style names and are listed in
# the derivative dataset's .bidsignore (BIDS_IGNORED).
BIDS_OUTPUTS: dict[str, tuple[dict[str, str], str, str]] = {
    "mask": ({"space": "orig", "desc": "lesion"}, "mask", ".nii.gz"),
    "probability": ({"space": "orig", "label": "lesion"}, "probseg", ".nii.gz"),
    "labels": ({"space": "orig", "desc": "lesion"}, "dseg", ".nii.gz"),
    "zones": ({"space": "orig", "desc": "zones"}, "dseg", ".nii.gz"),
    "segmentation": ({"space": "orig", "desc": "lesion"}, "dseg", ".seg.nrrd"),
    "table": ({"space": "orig", "desc": "lesion"}, "lesions", ".tsv"),
    "report": ({"desc": "lesion"}, "report", ".html"),
    "summary": ({"desc": "lesion"}, "summary", ".json"),
}
BIDS_LOGS_DIR = "logs"  # one JSON per session and participant-level run: status and error
BIDS_IGNORED: tuple[str, ...] = ("*.seg.nrrd", "*_lesions.tsv", "*_lesions.json", "*_report.html",
                                 "*_summary.json", "group_*", f"{BIDS_LOGS_DIR}/")
BIDS_GROUP_LESIONS_FILE = "group_desc-lesion_lesions.tsv"     # every lesion of every session
BIDS_GROUP_SESSIONS_FILE = "group_desc-lesion_sessions.tsv"   # one row per session
BIDS_PIPELINE_NAME = "ALLNet"
BIDS_SPEC_VERSION = "1.10.0"

# McDonald 2017 dissemination-in-space areas of the brain, as location classes of lesions.csv
# (the fourth area, the spinal cord, is not imaged). Shown as a count that supports a reader.
DIS_AREAS: tuple[str, ...] = ("periventricular", "juxtacortical", "infratentorial")
DIS_LABEL = "McDonald 2017 DIS areas with a lesion (supports a reader; not a diagnosis)"

# Evaluation outputs (``allnet evaluate``)
EVALUATION_METRICS_FILE = "metrics.csv"
EVALUATION_COMPARE_FILE = "metrics_compare.csv"
EVALUATION_SUMMARY_FILE = "summary.json"
EVALUATION_CURVES_FILE = "curves.png"

# Longitudinal outputs (``allnet longitudinal``), all on the follow-up FLAIR's grid.
# Change classes in the order of their label codes (1..5) in CHANGE_LABELS_FILE.
CHANGE_CLASSES: tuple[str, ...] = ("new", "enlarging", "stable", "shrinking", "resolved")
CHANGE_CODES: dict[str, int] = {name: code for code, name in enumerate(CHANGE_CLASSES, start=1)}
CHANGE_COLORS_RGB: dict[str, tuple[float, float, float]] = {
    "new": (0.90, 0.10, 0.10), "enlarging": (1.00, 0.55, 0.00), "stable": (0.94, 0.82, 0.10),
    "shrinking": (0.30, 0.65, 1.00), "resolved": (0.55, 0.35, 0.85)}
CHANGE_LABELS_FILE = "change_labels.nii.gz"        # uint8 CHANGE_CODES per lesion, 0 background
NEW_ENLARGED_FILE = "new_enlarged_mask.nii.gz"     # uint8 0/1: new lesions + growth of enlarging ones
BASELINE_LABELS_FILE = "baseline_lesion_labels.nii.gz"  # uint16 baseline lesion ids on this grid
FOLLOWUP_LABELS_FILE = "followup_lesion_labels.nii.gz"  # uint16 follow-up lesion ids
FLAIR_CHANGE_FILE = "flair_change.nii.gz"          # float32 follow-up - baseline FLAIR, z units
CHANGE_SEGMENTATION_FILE = "changes.seg.nrrd"      # one named, coloured segment per class
CHANGE_TABLE_FILE = "changes.csv"
LONGITUDINAL_OUTPUT_FILES: dict[str, str] = {
    "change_labels": CHANGE_LABELS_FILE,
    "new_enlarged": NEW_ENLARGED_FILE,
    "baseline_labels": BASELINE_LABELS_FILE,
    "followup_labels": FOLLOWUP_LABELS_FILE,
    "flair_change": FLAIR_CHANGE_FILE,
    "segmentation": CHANGE_SEGMENTATION_FILE,
    "table": CHANGE_TABLE_FILE,
    "report": REPORT_FILE,  # only when written (not with --no-report)
    "summary": SUMMARY_FILE,
}
SUMMARY_COUNTS_KEY = "counts"  # longitudinal summary.json: {change class: number of lesions}

# The ``allnet longitudinal`` command line as other layers (the Slicer module) build it:
# the sub-command, the image option of each (visit, modality), the output folder option and
# the machine-readable progress options (ALLNET-PROGRESS/-RESULT/-ERROR lines on stdout).
LONGITUDINAL_COMMAND = "longitudinal"
VISITS: tuple[str, ...] = ("baseline", "followup")
LONGITUDINAL_INPUT_OPTIONS: dict[tuple[str, str], str] = {
    (visit, modality): f"--{visit}-{modality}" for visit in VISITS for modality in ("flair", "t1", "t2")}
OUTPUT_OPTION = "--output"
PROGRESS_JSON_OPTIONS: tuple[str, ...] = ("--progress", "json")

# Image files the core reads by name (cohort folders, evaluation folders, the Slicer sample),
# longest first so that ".nii.gz" wins over ".nii".
IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def strip_image_suffix(name: str) -> str | None:
    """``name`` without its image-file ending (case-insensitive), or None when it has none."""
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


@dataclass(frozen=True)
class Column:
    """One column of ``lesions.csv``: name, unit ('' for none) and meaning."""

    name: str
    unit: str
    description: str
    kind: str  # "int", "float" or "string"


LESION_COLUMNS: tuple[Column, ...] = (
    Column("id", "", "lesion number; matches the values of lesion_labels.nii.gz", "int"),
    Column("voxels", "", "number of voxels of the lesion on the FLAIR grid", "int"),
    Column("volume_mm3", "mm3", "lesion volume", "float"),
    Column("location", "", "location class: periventricular, juxtacortical, infratentorial or "
                           "deep white matter (empty when unknown)", "string"),
    Column("centroid_r_mm", "mm", "centre of mass, Right coordinate (RAS, FLAIR physical space)", "float"),
    Column("centroid_a_mm", "mm", "centre of mass, Anterior coordinate (RAS)", "float"),
    Column("centroid_s_mm", "mm", "centre of mass, Superior coordinate (RAS)", "float"),
    Column("bbox_i_min", "voxel", "bounding box, first i index (inclusive)", "int"),
    Column("bbox_j_min", "voxel", "bounding box, first j index (inclusive)", "int"),
    Column("bbox_k_min", "voxel", "bounding box, first k index (inclusive)", "int"),
    Column("bbox_i_max", "voxel", "bounding box, last i index (inclusive)", "int"),
    Column("bbox_j_max", "voxel", "bounding box, last j index (inclusive)", "int"),
    Column("bbox_k_max", "voxel", "bounding box, last k index (inclusive)", "int"),
    Column("mean_prob", "", "mean lesion probability inside the lesion (0-1)", "float"),
    Column("max_prob", "", "maximum lesion probability inside the lesion (0-1)", "float"),
    Column("confidence", "", "lesion score: peak of the sphere-head (lesion-centre) probability "
                             "inside the lesion (0-1); empty for models without a sphere head", "float"),
)
LESION_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in LESION_COLUMNS)

# One row per session of ``allnet bids ... group`` (BIDS_GROUP_SESSIONS_FILE); the group
# lesion table (BIDS_GROUP_LESIONS_FILE) is participant_id, session_id, then LESION_COLUMNS.
BIDS_SESSION_COLUMNS: tuple[Column, ...] = (
    Column("participant_id", "", "participant (sub-<label>)", "string"),
    Column("session_id", "", "session (ses-<label>; n/a in a dataset without sessions)", "string"),
    Column("status", "", "ok: segmented; missing: no finished derivatives for this session "
                         "(see note)", "string"),
    Column("lesion_count", "", "number of lesions", "int"),
    Column("total_volume_ml", "mL", "total lesion volume", "float"),
    Column("dis_areas_with_lesions", "", "McDonald 2017 dissemination-in-space areas "
                                         "(periventricular, juxtacortical, infratentorial) with a "
                                         "lesion, 0-3 (supports a reader; not a diagnosis)", "int"),
    Column("modalities", "", "inputs used, separated by '+' (t1, t2, flair)", "string"),
    Column("model", "", "model name and version", "string"),
    Column("seconds", "s", "run time of the session", "float"),
    Column("note", "", "warnings of the run, or why the session has no derivatives", "string"),
)
BIDS_SESSION_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in BIDS_SESSION_COLUMNS)

CHANGE_COLUMNS: tuple[Column, ...] = (
    Column("id", "", "change number (drawing order); lesions of one class are consecutive", "int"),
    Column("class", "", "new, enlarging, stable, shrinking or resolved (rules: docs/LONGITUDINAL.md)", "string"),
    Column("volume_baseline_mm3", "mm3", "volume of the baseline lesion(s) it overlaps, on the follow-up grid", "float"),
    Column("volume_followup_mm3", "mm3", "volume of the follow-up lesion", "float"),
    Column("change_mm3", "mm3", "follow-up minus baseline volume", "float"),
    Column("change_percent", "%", "change relative to the baseline volume (empty when it is 0)", "float"),
    Column("flair_change_z", "z", "mean FLAIR change (follow-up - baseline, jointly normalised, robust SD "
                                  "of the brain) over the voxels the rule looked at", "float"),
    Column("confidence", "", "fraction of those voxels whose FLAIR change agrees with the class (0-1)", "float"),
    Column("location", "", "location class of the drawn lesion (as in lesions.csv)", "string"),
    Column("centroid_r_mm", "mm", "centre of mass, Right coordinate (RAS, follow-up FLAIR physical space)", "float"),
    Column("centroid_a_mm", "mm", "centre of mass, Anterior coordinate (RAS)", "float"),
    Column("centroid_s_mm", "mm", "centre of mass, Superior coordinate (RAS)", "float"),
    Column("followup_lesion_id", "", "id in followup_lesion_labels.nii.gz (empty: none)", "int"),
    Column("baseline_lesion_ids", "", "ids in baseline_lesion_labels.nii.gz, separated by ';'", "string"),
    Column("rule", "", "the rule that decided the class, with its numbers", "string"),
)
CHANGE_COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in CHANGE_COLUMNS)


# -- run settings ------------------------------------------------------------------------------
class SettingError(ValueError):
    """A run setting is out of range; the message names the setting and its CLI option."""

    def __init__(self, name: str, problem: str) -> None:
        self.setting = name
        self.problem = problem
        where = f" ({option_flag(name)})" if name in _FIELDS else ""
        super().__init__(f"setting {name}{where} {problem}")


def _setting(default: Any, help: str, *, group: str, choices: tuple | None = None,
             minimum: float | None = None, maximum: float | None = None, flag: str | None = None,
             plan: bool = False, metavar: str | None = None) -> Any:
    """A RunSettings field with its CLI and validation metadata.

    ``plan=True``: the default (None) means "the value of the model's inference plan".
    ``flag``: the CLI option when it differs from ``--name-with-dashes`` (booleans that
    default to True get a ``--no-...`` flag).
    """
    meta = {"help": help, "group": group, "choices": choices, "minimum": minimum,
            "maximum": maximum, "flag": flag, "plan": plan, "metavar": metavar}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass
class RunSettings:
    """Settings of one segmentation run: the Python API's keyword arguments, the ``allnet
    segment`` options and the Slicer panel's settings are all this one class.

    Post-processing values left at None come from the model file's inference plan
    (``allnet.plan``); a value given here overrides the plan for this run.
    """

    model: list[str] | None = _setting(
        None, "model file (repeat to pool several into one majority-vote ensemble); "
              "default: the bundled model", group="model and device", metavar="FILE")
    device: str = _setting("auto", "auto (GPU if available), cpu, cuda or cuda:N",
                           group="model and device")
    ensemble: str = _setting("full", "full: majority vote of all ensemble members; fast: first member only",
                             group="model and device", choices=("full", "fast"))
    tta: bool = _setting(False, "left-right flip test-time augmentation (doubles the network time)",
                         group="model and device")
    threshold: float | None = _setting(
        None, "lesion probability threshold of each member's vote", group="lesions",
        minimum=0.01, maximum=0.99, plan=True)
    min_lesion_mm3: float | None = _setting(
        None, "drop lesions smaller than this volume (mm3)", group="lesions",
        minimum=0.0, maximum=10000.0, plan=True, flag="--min-lesion-mm3")
    connectivity: int | None = _setting(
        None, "voxel connectivity that joins a lesion (6, 18 or 26)", group="lesions",
        choices=(6, 18, 26), plan=True)
    lesion_score_threshold: float | None = _setting(
        None, "drop lesions whose lesion score (sphere-head peak, 0-1) is below this; 0 keeps all",
        group="lesions", minimum=0.0, maximum=1.0, plan=True)
    min_flair_contrast: float | None = _setting(
        None, "drop lesions whose mean FLAIR lies less than this fraction of the white matter-CSF "
              "contrast above the white-matter median (MS lesions are FLAIR-hyperintense); 0 keeps all",
        group="lesions", minimum=0.0, maximum=2.0, plan=True)
    max_grey_matter_fraction: float | None = _setting(
        None, "drop lesions with more than this fraction of their voxels in grey matter (the T1W tissue "
              "segmentation): cortex, deep and cerebellar grey matter are not white-matter lesions; 1 keeps all",
        group="lesions", minimum=0.0, maximum=1.0, plan=True)
    preprocessed: bool = _setting(
        False, "inputs are already skull-stripped, co-registered and on the MNI152 1 mm grid",
        group="inputs")
    allow_mismatch: bool = _setting(
        False, "run even when the T1W or T2W does not look like the same head as the FLAIR, or an "
               "image does not have the contrast of its role (a warning in summary.json and the "
               "report instead of an error)", group="inputs")
    write_probability: bool = _setting(True, "do not write lesion_probability.nii.gz",
                                       group="outputs", flag="--no-probability")
    per_lesion_segments: bool = _setting(
        False, "one segment per lesion in lesions.seg.nrrd (default: one 'MS lesions' segment)",
        group="outputs")
    save_working_grid: bool = _setting(
        False, "also write the MNI working-grid images and maps to OUT/mni/", group="outputs")
    report: bool = _setting(True, "do not write report.html (the QC report with pictures)",
                            group="outputs", flag="--no-report")

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            self.model = [self.model]
        elif self.model is not None:
            self.model = [str(m) for m in self.model]
            if not self.model:
                self.model = None

    def validate(self) -> RunSettings:
        """Check every value; raises :class:`SettingError` naming the setting. Returns self."""
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None and (meta["plan"] or f.name == "model"):
                continue
            expected = _base_type(f)
            if expected is bool:
                if not isinstance(value, bool):
                    raise SettingError(f.name, f"must be true or false, got {value!r}")
                continue
            if expected in (int, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                    raise SettingError(f.name, f"must be a number, got {value!r}")
                if expected is int and int(value) != value:
                    raise SettingError(f.name, f"must be a whole number, got {value!r}")
            if meta["choices"] is not None and value not in meta["choices"]:
                allowed = ", ".join(str(c) for c in meta["choices"])
                raise SettingError(f.name, f"must be one of {allowed}, got {value!r}")
            if meta["minimum"] is not None and not meta["minimum"] <= value <= meta["maximum"]:
                raise SettingError(f.name, f"must be between {meta['minimum']:g} and "
                                           f"{meta['maximum']:g}, got {value!r}")
        if not isinstance(self.device, str) or not DEVICE_PATTERN.match(self.device.strip().lower()):
            raise SettingError("device", f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        return self

    def to_argv(self) -> list[str]:
        """``allnet segment`` options for these settings (only values that differ from the
        defaults, so the model's plan still applies to whatever was left unset)."""
        argv: list[str] = []
        defaults = RunSettings()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == getattr(defaults, f.name):
                continue
            flag = option_flag(f.name)
            if isinstance(value, bool):
                argv.append(flag)  # booleans differing from their default = their flag
            elif isinstance(value, list):
                for item in value:
                    argv += [flag, str(item)]
            else:
                argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
        return argv

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> RunSettings:
        """Settings from parsed ``allnet`` options (see :func:`add_arguments`)."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})

    def plan_overrides(self) -> dict[str, Any]:
        """The post-processing values set here (they override the model's plan)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata["plan"] and getattr(self, f.name) is not None}


def _base_type(f: dataclasses.Field) -> type:
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("list", list), ("str", str)):
        if text.startswith(name):
            return kind
    raise TypeError(f"unsupported setting type {text!r} of {f.name}")


def option_flag(name: str) -> str:
    """The command-line option of setting ``name`` (``min_lesion_mm3`` -> ``--min-lesion-mm3``)."""
    f = _FIELDS[name]
    return f.metadata["flag"] or "--" + name.replace("_", "-")


def setting_range(name: str) -> tuple[float, float]:
    """(minimum, maximum) of a numeric setting, for sliders and spin boxes."""
    meta = _FIELDS[name].metadata
    return float(meta["minimum"]), float(meta["maximum"])


def setting_choices(name: str) -> tuple:
    return tuple(_FIELDS[name].metadata["choices"] or ())


def setting_help(name: str) -> str:
    return _FIELDS[name].metadata["help"]


def add_arguments(parser: argparse.ArgumentParser, plan_defaults: dict[str, Any] | None = None) -> None:
    """Add one option per RunSettings field to ``parser`` (grouped; defaults = RunSettings()).

    ``plan_defaults`` (e.g. the bundled model's plan) only feeds the help texts.
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(RunSettings):
        meta = f.metadata
        group = groups.get(meta["group"]) or groups.setdefault(meta["group"],
                                                               parser.add_argument_group(meta["group"]))
        kind = _base_type(f)
        flag = option_flag(f.name)
        default = RunSettings.__dataclass_fields__[f.name].default
        help_text = meta["help"]
        if kind is bool:
            action = "store_false" if default else "store_true"
            group.add_argument(flag, dest=f.name, action=action, help=help_text)
            continue
        if kind is list:
            group.add_argument(flag, dest=f.name, action="append", metavar=meta["metavar"], help=help_text)
            continue
        if meta["plan"]:
            shown = (plan_defaults or {}).get(f.name)
            help_text += (" (default: the model's inference plan"
                          + (f"; {shown:g} for the bundled model" if isinstance(shown, (int, float)) else "")
                          + ")")
        else:
            help_text += f" (default: {default})"
        if meta["minimum"] is not None:
            help_text += f"; range {meta['minimum']:g}-{meta['maximum']:g}"
        group.add_argument(flag, dest=f.name, type=kind, default=None if meta["plan"] else default,
                           choices=meta["choices"],
                           metavar=meta["metavar"], help=help_text)


_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunSettings)}
