"""The model's inference plan: how a model's output becomes lesions.

A model file carries its plan (``meta["inference_plan"]``, written by ``allnet-train``):
the grid and intensity normalisation the model was trained on, and the post-processing
values chosen for it on out-of-fold predictions (probability threshold, connectivity,
minimum lesion size, lesion-score threshold). ``allnet segment``, cross-validation and
``allnet evaluate`` all read it from there and apply it through
:func:`allnet.postprocess.postprocess`. Run settings override single values; the summary
records every value used and where it came from.

Standard library only (the Slicer GUI process reads the defaults).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .contract import RunSettings, SettingError

PLAN_META_KEY = "inference_plan"
GRID_MNI152_1MM = "mni152_1mm"
NORMALISATION_ROBUST_ZSCORE = "robust-zscore"
# robust z-score, then WM median -> 0 and the WM-CSF contrast -> a fixed unit, from the T1W
# tissue segmentation (``allnet.preprocessing.intensity.apply_normalisation``)
NORMALISATION_WM_CSF = "wm-csf"
# the same on FLAIR and T1W only, where CSF is dark by physics; T2W keeps the robust z-score
# (on T2W partial-volume CSF can sit barely above grey matter and make the gain explode)
NORMALISATION_WM_CSF_FLAIR_T1 = "wm-csf-flair-t1"
# FLAIR and T1W re-referenced to the WM level and WM-CSF distance that the robust z-score gives
# a typical scan (TISSUE_REFERENCE_TARGETS): a model trained on robust z-scores sees the same
# ranges, while bright grey matter no longer moves the reference
NORMALISATION_WM_CSF_CALIBRATED = "wm-csf-calibrated"
SUPPORTED_GRIDS = (GRID_MNI152_1MM,)
# The plan entries that describe the model's inputs: they come from the model's config,
# never from tuning or run settings.
MODEL_INPUT_KEYS = ("grid", "normalisation", "noise_target", "average_without")
# Upper bound of a noise target (normalised units): far above any scan measured here
# (0.06-0.31), so a larger value can only be a mistake.
MAX_NOISE_TARGET = 1.0
SUPPORTED_NORMALISATIONS = (NORMALISATION_ROBUST_ZSCORE, NORMALISATION_WM_CSF, NORMALISATION_WM_CSF_FLAIR_T1,
                            NORMALISATION_WM_CSF_CALIBRATED)
# One unit of the WM-CSF contrast maps to this many units: on the development scans the
# robust z-score puts WM and CSF 2.0-3.4 apart, so both normalisations span similar ranges.
WM_CSF_SCALE = 2.5
# Per normalisation, the modalities it re-references to the tissues (the others keep the
# robust z-score) and where it puts them: (WM median, WM-CSF distance of medians), in robust-z
# units. The calibrated targets are the means over the five development scans of the robust
# z-score (noise-harmonised at 0.12): FLAIR WM -0.02, WM-CSF 2.57 (1.98-3.08); T1W WM 0.72
# (0.42-1.04), WM-CSF 2.85 (2.19-3.35).
TISSUE_REFERENCE_TARGETS: dict[str, dict[str, tuple[float, float]]] = {
    NORMALISATION_ROBUST_ZSCORE: {},
    NORMALISATION_WM_CSF: {m: (0.0, WM_CSF_SCALE) for m in ("flair", "t1", "t2")},
    NORMALISATION_WM_CSF_FLAIR_T1: {m: (0.0, WM_CSF_SCALE) for m in ("flair", "t1")},
    NORMALISATION_WM_CSF_CALIBRATED: {"flair": (0.0, 2.55), "t1": (0.72, 2.85)},
}


def check_noise_target(value: object) -> None:
    """SettingError unless ``value`` is a number in [0, MAX_NOISE_TARGET]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_NOISE_TARGET:
        raise SettingError("noise_target", f"must be a number from 0 to {MAX_NOISE_TARGET}, got {value!r}")


@dataclass(frozen=True)
class InferencePlan:
    """Post-processing of one model. ``threshold``: probability above which a member votes
    lesion; ``connectivity``: 6, 18 or 26 neighbours join a lesion; ``min_lesion_mm3``:
    smaller lesions are dropped (mm3, measured on the output grid); ``lesion_score_threshold``:
    lesions whose sphere-head peak (0-1) is below it are dropped (0 keeps all);
    ``min_flair_contrast``: lesions whose mean FLAIR lies less than this fraction of the
    WM-CSF contrast above the white-matter median are dropped (0 keeps all; MS lesions are
    FLAIR-hyperintense by definition, ``allnet.preprocessing.intensity.flair_contrast``);
    ``max_grey_matter_fraction``: lesions with more than this fraction of their voxels in the
    grey matter of the case's T1W tissue segmentation (``allnet.tissue``) are dropped (1 keeps
    all; normal cortex, deep and cerebellar grey matter that is bright on FLAIR is the commonest
    false positive on scanners the model has not seen);
    ``grid``/``normalisation``/``noise_target``: what the model's inputs must be (the last:
    voxel-scale noise, normalised units, that noisier scans are smoothed down to; 0 = off,
    ``allnet.preprocessing.noise``); ``average_without``: the modalities a second pass of each
    member leaves out, averaged with the full pass (``allnet.model.ModelConfig``)."""

    threshold: float = 0.5
    connectivity: int = 26
    # MAGNIMS counts lesions of >= 3 mm in their long axis; an ellipsoid of 3 x 2.5 x 2.5 mm
    # holds 9.8 mm3. 10 mm3 also drops the 1-9 voxel specks a voxel classifier leaves.
    min_lesion_mm3: float = 10.0
    lesion_score_threshold: float = 0.0
    min_flair_contrast: float = 0.0
    max_grey_matter_fraction: float = 1.0
    grid: str = GRID_MNI152_1MM
    normalisation: str = NORMALISATION_ROBUST_ZSCORE
    noise_target: float = 0.0
    average_without: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "average_without", tuple(self.average_without))
        overrides = {k: getattr(self, k) for k in POSTPROCESSING_KEYS}
        RunSettings(**overrides).validate()  # same ranges as the run settings
        if self.grid not in SUPPORTED_GRIDS:
            raise SettingError("grid", f"must be one of {SUPPORTED_GRIDS}, got {self.grid!r}")
        if self.normalisation not in SUPPORTED_NORMALISATIONS:
            raise SettingError("normalisation", f"must be one of {SUPPORTED_NORMALISATIONS}, "
                                                f"got {self.normalisation!r}")
        check_noise_target(self.noise_target)
        if not all(isinstance(m, str) for m in self.average_without):
            raise SettingError("average_without", f"must be modality names, got {self.average_without!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"average_without": list(self.average_without)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> InferencePlan:
        """A plan from a model file's dict; missing keys take the defaults, unknown keys are
        refused (a newer plan this version cannot apply)."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingError("inference_plan", f"has entries this version does not know: {unknown}")
        return cls(**data)


# The plan entries a run setting may override (the names are RunSettings fields).
POSTPROCESSING_KEYS: tuple[str, ...] = ("threshold", "connectivity", "min_lesion_mm3",
                                        "lesion_score_threshold", "min_flair_contrast",
                                        "max_grey_matter_fraction")
DEFAULT_PLAN = InferencePlan()


@dataclass(frozen=True)
class ResolvedPlan:
    """The plan a run applies, with the source of each post-processing value:
    'model' (the model file's plan), 'default' (model without a plan), 'setting' (user)."""

    plan: InferencePlan
    sources: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {**self.plan.to_dict(), "sources": dict(self.sources)}


def resolve_plan(model_plan: dict[str, Any] | None, settings: RunSettings) -> ResolvedPlan:
    """The model's plan (or the defaults when the model has none) with ``settings`` applied."""
    base = InferencePlan.from_dict(model_plan)
    given = set(model_plan or {})
    overrides = settings.plan_overrides()
    sources = {key: "setting" if key in overrides else "model" if key in given else "default"
               for key in POSTPROCESSING_KEYS}
    return ResolvedPlan(dataclasses.replace(base, **overrides), sources)
