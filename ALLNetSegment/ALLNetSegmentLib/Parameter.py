"""Module parameters: the scene-saved parameter node, and the settings of one run.

What a run means (fields, defaults, ranges, validation, the command-line options) is the
core's ``allnet.contract.RunSettings``; the parameter node only stores the panel's values
under Slicer-style names (``PANEL_SETTINGS``) and takes its defaults and ranges from the
contract and from the default inference plan (``allnet.plan``). Both core modules are
standard-library only, so importing them here does not load numpy or torch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated

from allnet.contract import LONGITUDINAL_INPUT_OPTIONS, RunSettings, setting_choices, setting_range
from allnet.plan import DEFAULT_PLAN, POSTPROCESSING_KEYS
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

# The devices the panel offers (the core accepts any cuda:N; four GPUs cover workstations).
DEVICES = ["auto", "cpu", "cuda", "cuda:0", "cuda:1", "cuda:2", "cuda:3"]
ENSEMBLES = list(setting_choices("ensemble"))
CONNECTIVITIES = list(setting_choices("connectivity"))

# RunSettings field -> parameter-node name, for every setting the panel shows.
PANEL_SETTINGS: dict[str, str] = {
    "device": "device",
    "ensemble": "ensemble",
    "tta": "tta",
    "threshold": "threshold",
    "min_lesion_mm3": "minLesionSizeMm3",
    "connectivity": "connectivity",
    "lesion_score_threshold": "lesionScoreThreshold",
    "min_flair_contrast": "minFlairContrast",
    "max_grey_matter_fraction": "maxGreyMatterFraction",
    "preprocessed": "preprocessed",
    "allow_mismatch": "allowMismatch",
}
# RunSettings fields the panel does not show, and why (a contract test checks that every
# field is either here or in PANEL_SETTINGS).
NOT_ON_PANEL: dict[str, str] = {
    "model": "the panel runs the bundled model",
    "write_probability": "the lesion table needs the probability file; keepProbability decides loading",
    "per_lesion_segments": "the panel imports the mask through its colour table",
    "save_working_grid": "working-grid files are for command-line users",
    "report": "the QC report is always written; after import it is kept in Slicer's temporary folder (ALLNetReports/) and named in the Log",
}
# Post-processing settings: sent only when the user turns off "use the model's plan".
PLAN_SETTINGS = POSTPROCESSING_KEYS
# Longitudinal mode: (visit, modality) of allnet.contract.LONGITUDINAL_INPUT_OPTIONS ->
# parameter-node name of the volume selected for it ("baselineFlairVolume", ...).
VISIT_VOLUMES: dict[tuple[str, str], str] = {
    (visit, modality): f"{visit}{modality.capitalize()}Volume" for visit, modality in LONGITUDINAL_INPUT_OPTIONS}


@parameterNodeWrapper
class ALLNetSegmentParameterNode:
    """Inputs, output and options of one ALLNet run, bound to the panel by ``SlicerParameterName``.

    t1Volume, t2Volume (optional), flairVolume: input MR volumes; outputSegmentation: result.
    useModelPlan: apply the model's own post-processing (threshold, minimum size,
    connectivity, lesion-score threshold, FLAIR-contrast floor, grey-matter fraction);
    otherwise the six values below are sent.
    tta, ensemble, device, preprocessed, allowMismatch: see ``allnet.contract.RunSettings``.
    keepProbability: load the probability map as a volume.
    baseline*/followup*Volume (``VISIT_VOLUMES``): the longitudinal mode's inputs (FLAIR at both
    visits, T1W at one at least, T2W optional); changeSegmentation: its last result.
    """

    t1Volume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    flairVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    useModelPlan: bool = True
    threshold: Annotated[float, WithinRange(*setting_range("threshold"))] = DEFAULT_PLAN.threshold
    minLesionSizeMm3: Annotated[float, WithinRange(*setting_range("min_lesion_mm3"))] = DEFAULT_PLAN.min_lesion_mm3
    connectivity: Annotated[int, Choice(CONNECTIVITIES)] = DEFAULT_PLAN.connectivity
    lesionScoreThreshold: Annotated[float, WithinRange(*setting_range("lesion_score_threshold"))] = \
        DEFAULT_PLAN.lesion_score_threshold
    minFlairContrast: Annotated[float, WithinRange(*setting_range("min_flair_contrast"))] = \
        DEFAULT_PLAN.min_flair_contrast
    maxGreyMatterFraction: Annotated[float, WithinRange(*setting_range("max_grey_matter_fraction"))] = \
        DEFAULT_PLAN.max_grey_matter_fraction
    tta: bool = RunSettings.tta
    ensemble: Annotated[str, Choice(ENSEMBLES)] = RunSettings.ensemble
    device: Annotated[str, Choice(DEVICES)] = RunSettings.device
    preprocessed: bool = RunSettings.preprocessed
    allowMismatch: bool = RunSettings.allow_mismatch
    keepProbability: bool = True
    baselineFlairVolume: vtkMRMLScalarVolumeNode
    baselineT1Volume: vtkMRMLScalarVolumeNode
    baselineT2Volume: vtkMRMLScalarVolumeNode
    followupFlairVolume: vtkMRMLScalarVolumeNode
    followupT1Volume: vtkMRMLScalarVolumeNode
    followupT2Volume: vtkMRMLScalarVolumeNode
    changeSegmentation: vtkMRMLSegmentationNode


@dataclass(frozen=True)
class SegmentationSettings:
    """One run from Slicer: the core's run settings plus what only the panel decides
    (whether to load the probability map). ``cliArgs`` gives the ``allnet segment`` options."""

    run: RunSettings = field(default_factory=RunSettings)
    keepProbability: bool = True

    def __post_init__(self) -> None:
        self.run.validate()  # SettingError (a ValueError) names the setting and its option

    def cliArgs(self) -> list[str]:
        """Options of ``allnet segment`` for these settings (``RunSettings.to_argv``)."""
        return self.run.to_argv()

    @classmethod
    def fromOptions(cls, keepProbability: bool = True, **options) -> SegmentationSettings:
        """Settings from ``RunSettings`` keyword arguments (scripted use of the logic)."""
        return cls(RunSettings(**options), keepProbability)

    @classmethod
    def fromParameterNode(cls, parameterNode: ALLNetSegmentParameterNode) -> SegmentationSettings:
        values = {name: getattr(parameterNode, panelName) for name, panelName in PANEL_SETTINGS.items()}
        if parameterNode.useModelPlan:
            values = {k: v for k, v in values.items() if k not in PLAN_SETTINGS}
        return cls(RunSettings(**values), bool(parameterNode.keepProbability))

    def asDict(self) -> dict:
        return dataclasses.asdict(self.run) | {"keepProbability": self.keepProbability}
