"""Lesion instances and measurements: connected components, minimum size, per-lesion
table, location classes and totals.

Works on SimpleITK images in any geometry (in the product: the native FLAIR grid) and
needs nothing but the images, so the Slicer module can recompute the table after manual
edits. Voxel indices are (i, j, k) as in ITK/Slicer; centroids are reported in RAS mm
(Slicer convention: RAS = (-L, -P, S) of ITK's LPS physical point).

Location zones (codes of the ``lesion_zones`` image written by ``allnet.anatomy``):
0 outside the brain, 1 deep white matter (with deep grey matter), 2 periventricular,
3 juxtacortical (including the cortex), 4 infratentorial. See ``allnet.anatomy`` for the
rules that draw them.

Location of a lesion (MAGNIMS 2016 / McDonald 2017 topography, one class per lesion, in
this order of precedence), counting only its voxels inside the brain (zone > 0):
1. infratentorial if more than half of those voxels lie in the infratentorial zone
   (brainstem, cerebellum, walls of the fourth ventricle), checked first so that a brainstem
   lesion next to the cisterns is not called juxtacortical;
2. periventricular if any voxel lies in the periventricular zone (touches a lateral
   ventricle: within ``allnet.anatomy.PERIVENTRICULAR_MM`` of its wall);
3. juxtacortical if any voxel lies in the juxtacortical zone (in the cortex or touching it:
   within ``allnet.anatomy.JUXTACORTICAL_MM``); the class holds cortical and juxtacortical
   lesions, one area of the McDonald 2017 criteria;
4. deep white matter otherwise (deep grey matter included).
A lesion with no voxel inside the brain, or a table made without a zones image, has
location ``None`` (an empty CSV cell).

Dissemination in space (``lesion_totals``): the number of McDonald 2017 areas of the brain
(periventricular, cortical/juxtacortical, infratentorial) that hold at least one lesion. It
is a count that supports a reader, never a diagnosis: the fourth area (spinal cord) is not
imaged, and the criteria apply to lesions a reader confirms, in a clinical context.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .atomic import atomic_file
from .contract import DIS_AREAS, LESION_COLUMN_NAMES
from .errors import InputError
from .grid import same_grid

ZONE_OUTSIDE = 0
ZONE_DEEP_WM = 1
ZONE_PERIVENTRICULAR = 2
ZONE_JUXTACORTICAL = 3
ZONE_INFRATENTORIAL = 4

LOC_DEEP_WM = "deep white matter"
LOC_PERIVENTRICULAR = "periventricular"
LOC_JUXTACORTICAL = "juxtacortical"
LOC_INFRATENTORIAL = "infratentorial"

# zone code -> location name (zone 0, outside the brain, has no location)
LOCATION_ZONES: dict[int, str] = {
    ZONE_DEEP_WM: LOC_DEEP_WM,
    ZONE_PERIVENTRICULAR: LOC_PERIVENTRICULAR,
    ZONE_JUXTACORTICAL: LOC_JUXTACORTICAL,
    ZONE_INFRATENTORIAL: LOC_INFRATENTORIAL,
}
LOCATIONS: tuple[str, ...] = (LOC_PERIVENTRICULAR, LOC_JUXTACORTICAL, LOC_INFRATENTORIAL, LOC_DEEP_WM)
_N_ZONES = 5

# Smallest lesion kept, mm^3. MAGNIMS counts lesions of >= 3 mm in their long axis; an
# ellipsoid of 3 x 2.5 x 2.5 mm holds 9.8 mm^3. 10 mm^3 also drops the 1-9 voxel specks
# a voxel classifier leaves on a 1 mm grid, which are mostly noise. Evaluation against
# reference masks passes its own value (often 0 or 3 mm^3, as in MSSEG).
DEFAULT_MIN_LESION_MM3 = 10.0

CONNECTIVITIES: dict[int, int] = {6: 1, 18: 2, 26: 3}  # neighbours -> generate_binary_structure rank

CSV_COLUMNS: tuple[str, ...] = LESION_COLUMN_NAMES  # defined once in allnet.contract


@dataclass(frozen=True)
class Lesion:
    """One lesion. ``bbox`` = ((i, j, k) min, (i, j, k) max), voxel indices, inclusive.
    ``centroid_ras``: centre of mass of the voxel centres, RAS mm. Probabilities are
    ``None`` without a probability map; ``location`` is one of ``LOCATIONS`` or ``None``."""

    id: int
    voxel_count: int
    volume_mm3: float
    centroid_ras: tuple[float, float, float]
    bbox: tuple[tuple[int, int, int], tuple[int, int, int]]
    mean_probability: float | None
    max_probability: float | None
    location: str | None
    confidence: float | None = None  # lesion score (sphere-head peak, 0-1); None without one


def _check_3d_scalar(image: sitk.Image, what: str) -> None:
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(None, f"{what} must be a 3D scalar image (got {image.GetDimension()}D, "
                               f"{image.GetNumberOfComponentsPerPixel()} component(s))")


def _on_grid(image: sitk.Image, reference: sitk.Image, interpolator: int, pixel_type: int) -> np.ndarray:
    """``image`` as a KJI array on ``reference``'s grid (resampled in physical space if needed)."""
    if not same_grid(image, reference):
        image = sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, pixel_type)
    return sitk.GetArrayFromImage(image)


def label_lesions(mask: sitk.Image, connectivity: int = 26,
                  min_size_mm3: float = DEFAULT_MIN_LESION_MM3) -> sitk.Image:
    """Connected components of ``mask`` (nonzero = lesion) as lesion ids 1..N.

    Ids are sorted by decreasing volume (ties: raster order of the first voxel, k, j, i);
    components smaller than ``min_size_mm3`` are removed. ``connectivity`` is 6, 18 or 26
    (face, face+edge, face+edge+corner neighbours). Returns uint16 (uint32 above 65,535
    lesions) with the geometry of ``mask``.
    """
    if connectivity not in CONNECTIVITIES:
        raise InputError(None, f"connectivity must be 6, 18 or 26, not {connectivity}")
    if not np.isfinite(min_size_mm3) or min_size_mm3 < 0:
        raise InputError(None, f"minimum lesion size must be a finite number >= 0 mm3, not {min_size_mm3}")
    _check_3d_scalar(mask, "lesion mask")
    structure = ndimage.generate_binary_structure(3, CONNECTIVITIES[connectivity])
    components, n = ndimage.label(sitk.GetArrayViewFromImage(mask) != 0, structure)
    counts = np.bincount(components.ravel(), minlength=n + 1)
    counts[0] = 0
    voxel_mm3 = float(np.prod(mask.GetSpacing()))
    keep = np.flatnonzero((counts > 0) & (counts * voxel_mm3 >= min_size_mm3 - 1e-9))
    keep = keep[np.argsort(-counts[keep], kind="stable")]
    dtype = np.uint16 if keep.size <= np.iinfo(np.uint16).max else np.uint32
    remap = np.zeros(n + 1, dtype=dtype)
    remap[keep] = np.arange(1, keep.size + 1, dtype=dtype)
    labels = sitk.GetImageFromArray(remap[components])
    labels.CopyInformation(mask)
    return labels


def _location(zone_counts: np.ndarray) -> str | None:
    """Location class from one lesion's voxel counts per zone code (length _N_ZONES)."""
    inside = int(zone_counts[1:].sum())
    if inside == 0:
        return None
    if 2 * int(zone_counts[ZONE_INFRATENTORIAL]) > inside:
        return LOC_INFRATENTORIAL
    if zone_counts[ZONE_PERIVENTRICULAR] > 0:
        return LOC_PERIVENTRICULAR
    if zone_counts[ZONE_JUXTACORTICAL] > 0:
        return LOC_JUXTACORTICAL
    return LOC_DEEP_WM


def lesion_table(labels: sitk.Image, probability: sitk.Image | None = None,
                 zones: sitk.Image | None = None,
                 scores: dict[int, float] | None = None) -> list[Lesion]:
    """One :class:`Lesion` per id present in ``labels`` (integer image, 0 = background), in
    increasing id order. ``probability`` (lesion probability 0-1) and ``zones`` (zone codes)
    may lie on any grid: they are resampled onto ``labels`` in physical space (linear and
    nearest neighbour) when their geometry differs. ``scores``: lesion id -> lesion score
    (``allnet.postprocess``), shown as the lesion's confidence."""
    _check_3d_scalar(labels, "lesion labels")
    lab = sitk.GetArrayViewFromImage(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raise InputError(None, f"lesion labels must be an integer image, not {lab.dtype}")
    if lab.size and lab.min() < 0:
        raise InputError(None, "lesion labels must not be negative")
    where = np.nonzero(lab)
    ids_at = lab[where].astype(np.intp)
    n = int(ids_at.max()) if ids_at.size else 0
    counts = np.bincount(ids_at, minlength=n + 1)
    ids = np.flatnonzero(counts)
    ids = ids[ids > 0]
    if ids.size == 0:
        return []

    # where is (k, j, i); centroids in continuous index (i, j, k) -> LPS -> RAS
    index_mean = np.stack([np.bincount(ids_at, weights=w, minlength=n + 1) for w in where[::-1]], axis=1)
    index_mean = index_mean[ids] / counts[ids, None]
    matrix = np.asarray(labels.GetDirection()).reshape(3, 3) * np.asarray(labels.GetSpacing())[None, :]
    lps = np.asarray(labels.GetOrigin())[None, :] + index_mean @ matrix.T
    ras = lps * np.array([-1.0, -1.0, 1.0])
    boxes = ndimage.find_objects(np.asarray(lab))

    mean_p = max_p = None
    if probability is not None:
        _check_3d_scalar(probability, "lesion probability")
        prob = _on_grid(probability, labels, sitk.sitkLinear, sitk.sitkFloat32)[where].astype(np.float64)
        mean_p = np.bincount(ids_at, weights=prob, minlength=n + 1)[ids] / counts[ids]
        max_all = np.full(n + 1, -np.inf)
        np.maximum.at(max_all, ids_at, prob)
        max_p = max_all[ids]
    zone_counts = None
    if zones is not None:
        _check_3d_scalar(zones, "lesion zones")
        z = _on_grid(zones, labels, sitk.sitkNearestNeighbor, sitk.sitkUInt8)[where].astype(np.intp)
        z = np.where((z >= 0) & (z < _N_ZONES), z, ZONE_OUTSIDE)
        zone_counts = np.bincount(ids_at * _N_ZONES + z, minlength=(n + 1) * _N_ZONES).reshape(n + 1, _N_ZONES)

    voxel_mm3 = float(np.prod(labels.GetSpacing()))
    table = []
    for row, lid in enumerate(ids):
        box = boxes[lid - 1]  # (k, j, i) slices
        table.append(Lesion(
            id=int(lid),
            voxel_count=int(counts[lid]),
            volume_mm3=float(counts[lid] * voxel_mm3),
            centroid_ras=tuple(float(v) for v in ras[row]),
            bbox=(tuple(int(s.start) for s in box[::-1]), tuple(int(s.stop - 1) for s in box[::-1])),
            mean_probability=None if mean_p is None else float(mean_p[row]),
            max_probability=None if max_p is None else float(max_p[row]),
            location=None if zone_counts is None else _location(zone_counts[lid]),
            confidence=None if not scores or int(lid) not in scores else float(scores[int(lid)]),
        ))
    return table


def lesion_totals(lesions: list[Lesion]) -> dict:
    """Totals: ``count`` (lesions), ``total_volume_ml``, ``total_voxels`` and ``by_location``
    {location: {"count", "volume_ml"}} for every name in ``LOCATIONS`` (zeros included),
    plus ``"unknown"`` when some lesions have no location, and ``dissemination_in_space``
    (see :func:`dissemination_in_space`)."""
    by_location: dict[str, dict[str, float]] = {name: {"count": 0, "volume_ml": 0.0} for name in LOCATIONS}
    for lesion in lesions:
        entry = by_location.setdefault(lesion.location or "unknown", {"count": 0, "volume_ml": 0.0})
        entry["count"] += 1
        entry["volume_ml"] += lesion.volume_mm3 / 1000.0
    return {
        "count": len(lesions),
        "total_volume_ml": sum(lesion.volume_mm3 for lesion in lesions) / 1000.0,
        "total_voxels": sum(lesion.voxel_count for lesion in lesions),
        "by_location": by_location,
        "dissemination_in_space": dissemination_in_space(by_location),
    }


DIS_NOTE = ("McDonald 2017 dissemination-in-space areas of the brain (periventricular, cortical/"
            "juxtacortical, infratentorial) with at least one lesion found by ALLNet: a count that "
            "supports a reader, not a diagnosis (the spinal cord is not imaged; the criteria apply "
            "to lesions a reader confirms, in a clinical context)")


def dissemination_in_space(by_location: dict[str, dict[str, float]]) -> dict:
    """{"areas_with_lesions": n of 3 (``allnet.contract.DIS_AREAS``), "areas_assessed": 3, "areas": {area: lesion count},
    "note": DIS_NOTE} from ``lesion_totals``' ``by_location``."""
    areas = {name: int(by_location.get(name, {}).get("count", 0)) for name in DIS_AREAS}
    return {"areas_with_lesions": sum(1 for n in areas.values() if n > 0),
            "areas_assessed": len(DIS_AREAS), "areas": areas, "note": DIS_NOTE}


def table_rows(lesions: list[Lesion]) -> list[dict]:
    """Rows for ``lesions.csv``, keys ``CSV_COLUMNS``: mm and mm^3 for sizes and positions
    (RAS), voxel indices (i, j, k, inclusive) for the box, probabilities 0-1 (``None`` when
    absent)."""
    rows = []
    for les in lesions:
        (i0, j0, k0), (i1, j1, k1) = les.bbox
        r, a, s = les.centroid_ras
        rows.append({
            "id": les.id, "voxels": les.voxel_count, "volume_mm3": round(les.volume_mm3, 3),
            "location": les.location,
            "centroid_r_mm": round(r, 2), "centroid_a_mm": round(a, 2), "centroid_s_mm": round(s, 2),
            "bbox_i_min": i0, "bbox_j_min": j0, "bbox_k_min": k0,
            "bbox_i_max": i1, "bbox_j_max": j1, "bbox_k_max": k1,
            "mean_prob": None if les.mean_probability is None else round(les.mean_probability, 4),
            "max_prob": None if les.max_probability is None else round(les.max_probability, 4),
            "confidence": None if les.confidence is None else round(les.confidence, 4),
        })
    return rows


def write_lesions_csv(lesions: list[Lesion], path: str | Path) -> Path:
    """Write ``table_rows(lesions)`` as CSV (header = ``CSV_COLUMNS``; missing values empty)
    to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    with atomic_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(table_rows(lesions))
    return path
