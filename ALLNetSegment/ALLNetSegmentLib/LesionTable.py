"""Per-lesion table and totals as MRML table nodes, recomputation after edits, row -> RAS jump.

Rows are plain dicts with the columns of the core's ``lesions.csv`` (``allnet.contract.LESION_COLUMNS``);
centroids in RAS mm.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import slicer

from allnet.contract import LESION_COLUMNS

from .Geometry import ijkToRasArray, sitkImageFromArray


@dataclass(frozen=True)
class Column:
    name: str         # column name = key in a row dict (same as lesions.csv)
    title: str        # header shown in the table view
    unit: str
    description: str
    kind: str         # "int", "float" or "string"


# Columns shown in the panel, in this order, with their titles; names, units, meanings and
# kinds are the core's lesions.csv columns (allnet.contract.LESION_COLUMNS).
_SHOWN_TITLES = {
    "id": "Lesion", "volume_mm3": "Volume", "location": "Location", "centroid_r_mm": "R",
    "centroid_a_mm": "A", "centroid_s_mm": "S", "confidence": "Confidence",
    "mean_prob": "Mean probability", "max_prob": "Max probability", "voxels": "Voxels",
}
_CSV_COLUMNS = {c.name: c for c in LESION_COLUMNS}
COLUMNS = [Column(name, title, _CSV_COLUMNS[name].unit, _CSV_COLUMNS[name].description,
                  _CSV_COLUMNS[name].kind) for name, title in _SHOWN_TITLES.items()]
TOTAL_COLUMNS = [
    Column("measure", "Measure", "", "What is counted or summed", "string"),
    Column("value", "Value", "", "Value of the measure", "float"),
    Column("unit", "Unit", "", "Unit of the value", "string"),
]
LESION_TABLE_NAME = "ALLNet lesions"
TOTALS_TABLE_NAME = "ALLNet lesion totals"


# -- rows ------------------------------------------------------------------------------------
def rowsFromCsv(path: str | Path) -> list[dict]:
    """Rows of a core ``lesions.csv``."""
    with open(path, newline="", encoding="utf-8") as f:
        return [normalizeRow(row) for row in csv.DictReader(f)]


def normalizeRow(row: dict) -> dict:
    """Typed values for every lesions.csv column (empty -> NaN for numbers, "" for text)."""
    out: dict = {}
    for column in LESION_COLUMNS:
        value = row.get(column.name)
        if value in (None, ""):
            out[column.name] = "" if column.kind == "string" else float("nan")
        elif column.kind == "int":
            out[column.name] = int(float(value))
        elif column.kind == "float":
            out[column.name] = float(value)
        else:
            out[column.name] = str(value)
    return out


def totalsRows(rows: list[dict]) -> list[dict]:
    """Count and total volume (mL), then count and volume per location class."""
    totalMm3 = sum(r["volume_mm3"] for r in rows)
    result = [{"measure": "Lesion count", "value": float(len(rows)), "unit": "lesions"},
              {"measure": "Total lesion volume", "value": round(totalMm3 / 1000.0, 4), "unit": "mL"}]
    for location in sorted({r["location"] for r in rows if r["location"]}):
        inClass = [r for r in rows if r["location"] == location]
        result.append({"measure": f"{location}: count", "value": float(len(inClass)), "unit": "lesions"})
        result.append({"measure": f"{location}: volume",
                       "value": round(sum(r["volume_mm3"] for r in inClass) / 1000.0, 4), "unit": "mL"})
    from allnet.contract import DIS_AREAS, DIS_LABEL

    areas = sum(1 for area in DIS_AREAS if any(r["location"] == area for r in rows))
    result.append({"measure": DIS_LABEL, "value": float(areas), "unit": f"of {len(DIS_AREAS)} brain areas"})
    return result


# -- table nodes -----------------------------------------------------------------------------
def _newArray(kind: str):
    import vtk

    return {"int": vtk.vtkIntArray, "float": vtk.vtkDoubleArray, "string": vtk.vtkStringArray}[kind]()


def fillTableNode(tableNode, columns: list[Column], rows: list[dict]) -> None:
    """Replace the content of ``tableNode`` with ``rows``; titles, units, descriptions set."""
    wasModified = tableNode.StartModify()
    tableNode.RemoveAllColumns()
    for column in columns:
        array = _newArray(column.kind)
        array.SetName(column.name)
        for row in rows:
            array.InsertNextValue(row[column.name])
        tableNode.AddColumn(array)
        tableNode.SetColumnTitle(column.name, column.title)
        tableNode.SetColumnUnitLabel(column.name, column.unit)
        tableNode.SetColumnDescription(column.name, column.description)
    tableNode.SetUseColumnTitleAsColumnHeader(True)
    tableNode.SetLocked(True)  # results are recomputed from the segmentation, not typed in
    tableNode.EndModify(wasModified)


def updateTables(rows: list[dict], lesionTableNode=None, totalsTableNode=None, referenceNode=None):
    """Create (if None) and fill the lesion and totals tables; returns both nodes."""
    from .ResultImporter import placeInStudyOf

    created = []
    if lesionTableNode is None:
        lesionTableNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", LESION_TABLE_NAME)
        created.append(lesionTableNode)
    if totalsTableNode is None:
        totalsTableNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", TOTALS_TABLE_NAME)
        created.append(totalsTableNode)
    fillTableNode(lesionTableNode, COLUMNS, rows)
    fillTableNode(totalsTableNode, TOTAL_COLUMNS, totalsRows(rows))
    if referenceNode is not None:
        for node in created:
            placeInStudyOf(referenceNode, node)
    return lesionTableNode, totalsTableNode


def rasOfRow(tableNode, rowIndex: int) -> tuple[float, float, float]:
    """Lesion centre (RAS mm) stored in row ``rowIndex`` of a lesion table node."""
    table = tableNode.GetTable()
    return tuple(float(table.GetColumnByName(name).GetValue(rowIndex))
                 for name in ("centroid_r_mm", "centroid_a_mm", "centroid_s_mm"))


def jumpToRow(tableNode, rowIndex: int) -> tuple[float, float, float] | None:
    """Centre all slice views on the lesion of row ``rowIndex``; returns the RAS point."""
    if rowIndex < 0 or rowIndex >= tableNode.GetNumberOfRows():
        return None
    r, a, s = rasOfRow(tableNode, rowIndex)
    slicer.modules.markups.logic().JumpSlicesToLocation(r, a, s, True)
    return r, a, s


# -- recomputation after manual edits --------------------------------------------------------
def lesionMaskImage(segmentationNode, referenceVolumeNode):
    """Union of all segments as a uint8 SimpleITK image on the reference volume's grid (LPS)."""
    import numpy as np

    segmentation = segmentationNode.GetSegmentation()
    union = None
    for index in range(segmentation.GetNumberOfSegments()):
        segmentId = segmentation.GetNthSegmentID(index)
        array = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, referenceVolumeNode)
        union = array > 0 if union is None else (union | (array > 0))
    if union is None:
        union = np.zeros(slicer.util.arrayFromVolume(referenceVolumeNode).shape, dtype=bool)
    return sitkImageFromArray(union.astype(np.uint8), ijkToRasArray(referenceVolumeNode))


def recomputeRows(segmentationNode, referenceVolumeNode, probability=None, zones=None,
                  connectivity: int = 26, minSizeMm3: float = 0.0) -> list[dict]:
    """Lesion rows of the (edited) segmentation, through ``allnet.lesions``.

    ``probability``/``zones`` are the run's maps (FLAIR geometry), each a file path or a
    SimpleITK image; without them the probability and location columns stay empty. Rows come
    from ``allnet.lesions.table_rows``, the same conversion that writes the core's lesions.csv.
    """
    import SimpleITK as sitk
    from allnet import lesions as allnetLesions

    mask = lesionMaskImage(segmentationNode, referenceVolumeNode)

    def asImage(value):
        # allnet.lesions resamples a map that is not on the mask's grid
        if value is None or isinstance(value, sitk.Image):
            return value
        return sitk.ReadImage(str(value)) if Path(value).is_file() else None

    labels = allnetLesions.label_lesions(mask, connectivity=connectivity, min_size_mm3=minSizeMm3)
    lesions = allnetLesions.lesion_table(labels, asImage(probability), asImage(zones))
    return [normalizeRow(row) for row in allnetLesions.table_rows(lesions)]


def writeCsv(rows: list[dict], path: str | Path) -> None:
    """Write rows as CSV with the columns of the core's lesions.csv (NaN -> empty), atomically."""
    from allnet.atomic import atomic_file

    names = [c.name for c in LESION_COLUMNS]
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if isinstance(row.get(k), float) and row[k] != row[k] else row.get(k, "")
                             for k in names})
