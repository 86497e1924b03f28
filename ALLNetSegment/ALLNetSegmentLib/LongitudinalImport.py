"""Loads the files of one ``allnet longitudinal`` run into the scene.

``changes.seg.nrrd`` becomes a segmentation on the follow-up FLAIR (one segment per change
class, named, coloured and coded by the core's writer), ``changes.csv`` a table node with the
contract's columns (``allnet.contract.CHANGE_COLUMNS``), and ``summary.json`` gives the
number of lesions per class. Files are found through the run's ``summary.json``.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import slicer
from allnet.contract import CHANGE_CLASSES, CHANGE_COLUMN_NAMES, CHANGE_COLUMNS, SUMMARY_COUNTS_KEY, SUMMARY_FILE

from .LesionTable import Column, fillTableNode
from .ResultImporter import detachFromFile, placeInStudyOf, runOutputs, runWarnings

CHANGE_TABLE_NAME = "ALLNet lesion changes"
SEGMENTATION_SUFFIX = " lesion changes"  # "<follow-up FLAIR name> lesion changes"


@dataclass
class ChangeResult:
    """What a longitudinal run left in the scene: the change segmentation, the change table,
    the number of lesions per class (``CHANGE_CLASSES`` order) and the run's warnings."""

    segmentationNode: object
    tableNode: object
    counts: dict
    outputDir: Path
    rows: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    reportPath: Path | None = None  # the run's QC report, kept after its folder is deleted

    def countsText(self) -> str:
        """"2 new, 1 enlarging, 5 stable, 0 shrinking, 1 resolved"."""
        return ", ".join(f"{self.counts.get(name, 0)} {name}" for name in CHANGE_CLASSES)


def readCounts(outputDir: str | Path) -> dict[str, int]:
    """Lesions per change class from ``summary.json``; RuntimeError naming the file when absent."""
    path = Path(outputDir) / SUMMARY_FILE
    try:
        counts = json.loads(path.read_text(encoding="utf-8"))[SUMMARY_COUNTS_KEY]
        return {name: int(counts[name]) for name in CHANGE_CLASSES}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RuntimeError(f"{path}: no lesion counts per change class in the run summary ({error})") from None


def readChangeRows(path: str | Path) -> list[dict]:
    """Rows of ``changes.csv`` as text, checked against the contract's columns."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CHANGE_COLUMN_NAMES:
            raise RuntimeError(f"{path}: columns {reader.fieldnames} are not those of allnet.contract.CHANGE_COLUMNS")
        return list(reader)


def tableColumns(rows: list[dict]) -> tuple[list[Column], list[dict]]:
    """Table columns (the contract's names, units, descriptions and kinds) and typed rows.

    Empty numbers ("no baseline volume", "no follow-up lesion") stay empty: a float column holds
    NaN; an integer column with an empty cell is shown as text, since a vtkIntArray has no NaN.
    """
    columns, typed = [], [dict() for _ in rows]
    for spec in CHANGE_COLUMNS:
        values = [row[spec.name] for row in rows]
        kind = "string" if spec.kind == "int" and "" in values else spec.kind
        columns.append(Column(spec.name, spec.name, spec.unit, spec.description, kind))
        for out, value in zip(typed, values):
            if kind == "int":
                out[spec.name] = int(float(value))
            elif kind == "float":
                out[spec.name] = float(value) if value != "" else float("nan")
            else:
                out[spec.name] = value
    return columns, typed


class ChangeImporter:
    """``importResult(outputDir, followupFlairNode)`` -> :class:`ChangeResult`."""

    def importResult(self, outputDir: str | Path, followupFlairNode, tableNode=None) -> ChangeResult:
        outputDir = Path(outputDir)
        files = runOutputs(outputDir)
        for key in ("segmentation", "table"):
            if key not in files or not files[key].is_file():
                raise RuntimeError(f"{files.get(key, outputDir)}: the {key} file is missing from the ALLNet output folder")
        counts = readCounts(outputDir)
        rows = readChangeRows(files["table"])

        segmentationNode = slicer.util.loadSegmentation(
            str(files["segmentation"]), {"name": followupFlairNode.GetName() + SEGMENTATION_SUFFIX})
        segmentationNode.CreateDefaultDisplayNodes()
        # Reference geometry = the follow-up FLAIR (the grid the core wrote on): slice views,
        # DICOM SEG export and segment arrays then use that volume.
        segmentationNode.SetReferenceImageGeometryParameterFromVolumeNode(followupFlairNode)
        detachFromFile(segmentationNode)  # the run's folder is deleted after the import
        placeInStudyOf(followupFlairNode, segmentationNode)

        created = tableNode is None
        if created:
            tableNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", CHANGE_TABLE_NAME)
        columns, typed = tableColumns(rows)
        fillTableNode(tableNode, columns, typed)
        if created:
            placeInStudyOf(followupFlairNode, tableNode)
        return ChangeResult(segmentationNode, tableNode, counts, outputDir, typed, runWarnings(outputDir))
