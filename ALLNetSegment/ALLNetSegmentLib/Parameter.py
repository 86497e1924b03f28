"""Module parameters: the scene-saved parameter node and the plain settings sent to the core CLI."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

DEVICES = ["auto", "cpu", "cuda"]
ENSEMBLES = ["full", "fast"]


@parameterNodeWrapper
class ALLNetSegmentParameterNode:
    """Inputs, output and options of one ALLNet run, bound to the panel by ``SlicerParameterName``.

    t1Volume, t2Volume (optional), flairVolume: input MR volumes; outputSegmentation: result.
    threshold: lesion probability threshold (0-1). minLesionSizeMm3: smallest kept lesion (mm3).
    tta: left-right flip test-time augmentation. ensemble: "full" (all models) or "fast" (one).
    device: "auto", "cpu" or "cuda". preprocessed: inputs already skull-stripped, bias-corrected
    and co-registered on the MNI grid. keepProbability: load the probability map as a volume.
    """

    t1Volume: vtkMRMLScalarVolumeNode
    t2Volume: vtkMRMLScalarVolumeNode
    flairVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    threshold: Annotated[float, WithinRange(0.05, 0.95)] = 0.5
    minLesionSizeMm3: Annotated[float, WithinRange(0.0, 1000.0)] = 10.0  # allnet.lesions.DEFAULT_MIN_LESION_MM3
    tta: bool = False
    ensemble: Annotated[str, Choice(ENSEMBLES)] = "full"
    device: Annotated[str, Choice(DEVICES)] = "auto"
    preprocessed: bool = False
    keepProbability: bool = True


@dataclass(frozen=True)
class SegmentationSettings:
    """Options of one run, independent of MRML; ``cliArgs`` gives the ``allnet segment`` options."""

    threshold: float = 0.5
    minLesionSizeMm3: float = 10.0
    tta: bool = False
    ensemble: str = "full"
    device: str = "auto"
    preprocessed: bool = False
    keepProbability: bool = True
    connectivity: int = 26

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.minLesionSizeMm3 < 0:
            raise ValueError(f"minimum lesion size must be >= 0 mm3, got {self.minLesionSizeMm3}")
        if self.ensemble not in ENSEMBLES:
            raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {self.ensemble!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.connectivity not in (6, 18, 26):
            raise ValueError(f"connectivity must be 6, 18 or 26, got {self.connectivity}")

    def cliArgs(self) -> list[str]:
        """Options of ``allnet segment`` (see the core CLI) for these settings."""
        args = ["--threshold", f"{self.threshold:g}", "--min-lesion-mm3", f"{self.minLesionSizeMm3:g}",
                "--connectivity", str(self.connectivity), "--ensemble", self.ensemble,
                "--device", self.device]
        if self.tta:
            args.append("--tta")
        if self.preprocessed:
            args.append("--preprocessed")
        # The probability file is always written: the lesion table needs it for mean/max
        # probability even when the map is not loaded into the scene (keepProbability).
        return args

    @classmethod
    def fromParameterNode(cls, parameterNode: ALLNetSegmentParameterNode) -> SegmentationSettings:
        return cls(threshold=float(parameterNode.threshold),
                   minLesionSizeMm3=float(parameterNode.minLesionSizeMm3),
                   tta=bool(parameterNode.tta), ensemble=parameterNode.ensemble,
                   device=parameterNode.device, preprocessed=bool(parameterNode.preprocessed),
                   keepProbability=bool(parameterNode.keepProbability))
