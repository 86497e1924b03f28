"""The six AnaConv anatomy channels and the lesion location zones, on the working grid.

Channels (float32, (6, K, J, I), working grid = MNI152 1 mm, see ``allnet.grid``):
  0-2  MNI RAS x, y, z of the voxel centre (mm) / 100
  3    distance from the voxel centre to the MNI origin (mm) / 100
  4    distance to the surface of the CSF-filled structures (ventricles + sulcal CSF), mm / 20
  5    distance to the surface of the brain, mm / 20
Distances are clipped at ``DISTANCE_CLIP_MM`` before scaling. Channels 4 and 5 are set
inside the brain mask only and are 0 outside it, where the images are 0 too and no lesion
is predicted.

"Distance to the surface of a mask" (``surface_distance``), for every voxel, inside or
outside the mask: the Euclidean distance (mm, scipy's ``distance_transform_edt`` with
``sampling`` = voxel spacing) from the voxel centre to the nearest centre of a *surface
voxel*, i.e. a mask voxel with at least one face neighbour outside the mask (or on the edge
of the array). It is 0 on the surface layer, and for a voxel outside the mask it equals the
distance to the nearest mask voxel (the nearest mask voxel is always a surface voxel).

Structures. Subject structures come from the subject's own tissue segmentation
(``allnet.tissue``), inside the hole-filled brain mask, because ventricle size and cortex
position vary more between people than an affine registration to MNI can absorb; the
posterior fossa has no reliable tissue contrast for this, so it comes from the template
regions (``allnet.regions``, drawn on the ICBM 2009a template, accurate to a few mm after
the affine registration).
  ventricles  CSF components inside a search region = template ventricles grown by
              ``VENTRICLE_SEARCH_MM`` (room for enlarged ventricles and affine misalignment),
              after a 6-neighbour opening; kept when >= ``MIN_VENTRICLE_OVERLAP`` voxels lie
              in the template ventricles; then a 6-neighbour closing (see
              ``allnet.regions.template_ventricles``; they include the third ventricle).
  lateral     the ventricles without the voxels within ``THIRD_VENTRICLE_MARGIN_MM`` of the
  ventricles  template's third ventricle.
  sulcal CSF  CSF components (26-connected, ventricles removed) that reach within
              ``PIAL_CONTACT_MM`` of the brain surface, i.e. CSF that communicates with the
              subarachnoid space. Isolated dark islands in white matter (T1 black holes,
              perivascular spaces) are not CSF-filled structures.
  cortex      GM voxels within ``CORTEX_DEPTH_MM`` of the brain surface or of sulcal CSF
              (cortex is 2-4 mm thick) or within ``TEMPLATE_CORTEX_MARGIN_MM`` of the
              template's cortex, outside the template's deep GM, midline GM and
              infratentorial regions.

Zones (codes in ``allnet.lesions``), later rules override earlier ones; "within d mm" is the
Euclidean distance between voxel centres on the 1 mm working grid, measured to the surface
voxels of the structure:
  DEEP_WM (1)         every brain voxel (white matter and deep grey matter);
  JUXTACORTICAL (3)   cortex, and voxels within ``JUXTACORTICAL_MM`` of it (touching the
                      cortex, allowing for partial volume at the grey/white border);
  PERIVENTRICULAR (2) lateral ventricles, and voxels within ``PERIVENTRICULAR_MM`` of their
                      surface (touching the ventricle wall, same allowance);
  INFRATENTORIAL (4)  brain voxels in the template's infratentorial region (brainstem,
                      cerebellum, fourth ventricle and its walls).
These distances change only the zones, never the network's channels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.morphology import ball

from .errors import InputError
from .grid import WORKING_SHAPE_KJI, WORKING_SPACING, mni_ras_coordinates
from .lesions import ZONE_DEEP_WM, ZONE_INFRATENTORIAL, ZONE_JUXTACORTICAL, ZONE_OUTSIDE, ZONE_PERIVENTRICULAR
from .regions import VENTRICLE_SEARCH_MM, template_regions, template_ventricles  # noqa: F401  (re-exported)
from .tissue import CSF, GM, TissueSegmentation, segment_tissue

COORDINATE_SCALE_MM = 100.0
DISTANCE_SCALE_MM = 20.0
DISTANCE_CLIP_MM = 100.0
PERIVENTRICULAR_MM = 3.0
JUXTACORTICAL_MM = 3.0
CORTEX_DEPTH_MM = 4.0
TEMPLATE_CORTEX_MARGIN_MM = 2  # affine misalignment of the template cortex, mm
THIRD_VENTRICLE_MARGIN_MM = 2  # affine misalignment of the template third ventricle, mm
PIAL_CONTACT_MM = 2.0
MIN_VENTRICLE_OVERLAP = 30  # voxels (mm^3) of a CSF component inside the template ventricles

_FACE = ndimage.generate_binary_structure(3, 1)
_FULL = ndimage.generate_binary_structure(3, 3)


@dataclass
class Anatomy:
    """``channels`` float32 (6, K, J, I) (see module doc); ``tissue`` uint8 KJI (0 background,
    1 CSF, 2 GM, 3 WM); ``zones`` uint8 KJI location zones (``allnet.lesions`` codes)."""

    channels: np.ndarray
    tissue: np.ndarray
    zones: np.ndarray


def surface_distance(mask: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Distance (mm) from every voxel centre to the nearest surface voxel of ``mask`` (see the
    module doc). ``spacing``: voxel size along the array axes (k, j, i), mm. float32; all
    ``inf`` for an empty mask."""
    mask = np.asarray(mask, dtype=bool)
    surface = mask & ~ndimage.binary_erosion(mask, _FACE, border_value=0)
    if not surface.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    return ndimage.distance_transform_edt(~surface, sampling=spacing).astype(np.float32)


def _box(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """Bounding box of a non-empty bool mask grown by ``pad`` voxels (clipped to the array)."""
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(hits[0]) - pad, 0), min(int(hits[-1]) + 1 + pad, mask.shape[axis])))
    return tuple(box)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region that does not reach the array edge filled
    (same result as ``ndimage.binary_fill_holes`` with face connectivity, several times faster)."""
    background, _ = ndimage.label(~mask, _FACE)
    edge = np.zeros(background.max() + 1, dtype=bool)
    for axis in range(3):
        for end in (0, -1):
            edge[np.take(background, end, axis=axis)] = True
    edge[0] = False  # label 0 is the mask itself
    return ~edge[background]


def ventricle_mask(csf: np.ndarray) -> np.ndarray:
    """Ventricles (bool KJI, working grid) from a CSF mask on the working grid (module doc)."""
    box, core, search = template_ventricles()
    candidates = ndimage.binary_opening(csf[box] & search, _FACE)
    components, n = ndimage.label(candidates, _FACE)
    overlap = np.bincount(components[core], minlength=n + 1)
    keep = overlap >= MIN_VENTRICLE_OVERLAP
    keep[0] = False
    ventricles = np.zeros(csf.shape, dtype=bool)
    ventricles[box] = ndimage.binary_closing(keep[components], _FACE)
    return ventricles


def _distance_near(mask: np.ndarray, reach_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """``surface_distance`` of ``mask``, computed in its bounding box grown by ``reach_mm`` + 2
    voxels (inf beyond it, and everywhere for an empty mask): exact up to ``reach_mm``."""
    distance = np.full(mask.shape, np.inf, dtype=np.float32)
    if mask.any():
        sub = _box(mask, int(np.ceil(reach_mm)) + 2)
        distance[sub] = surface_distance(mask[sub], spacing)
    return distance


def _check(t1: np.ndarray, brain_mask: np.ndarray) -> None:
    for name, array in (("T1W", t1), ("brain mask", brain_mask)):
        if tuple(array.shape) != WORKING_SHAPE_KJI:
            raise InputError(None, f"{name} shape {tuple(array.shape)} is not the working grid {WORKING_SHAPE_KJI}")
    if not np.any(brain_mask):
        raise InputError(None, "brain mask is empty")


def compute_anatomy(t1: np.ndarray, brain_mask: np.ndarray, *,
                    tissue: TissueSegmentation | None = None) -> Anatomy:
    """Anatomy channels, tissue labels and location zones of a case on the working grid.

    ``t1``: normalised T1W, float KJI (zero outside the brain); ``brain_mask``: KJI, nonzero =
    brain. ``tissue``: a precomputed segmentation of the same case (default: computed here).
    Raises InputError for arrays off the working grid or an empty mask.
    """
    _check(t1, brain_mask)
    spacing = WORKING_SPACING[::-1]
    box = _box(brain_mask != 0, pad=1)
    brain_box = _fill_holes(brain_mask[box] != 0)
    brain = np.zeros(WORKING_SHAPE_KJI, dtype=bool)
    brain[box] = brain_box
    if tissue is None:
        tissue = segment_tissue(t1, brain.view(np.uint8))
    labels = np.where(brain, tissue.labels, 0).astype(np.uint8)
    lab = labels[box]

    d_brain = surface_distance(brain_box, spacing)
    csf = np.zeros(WORKING_SHAPE_KJI, dtype=bool)
    csf[box] = lab == CSF
    ventricles = ventricle_mask(csf)[box] & brain_box
    components, n = ndimage.label(csf[box] & ~ventricles, _FULL)
    at_surface = np.zeros(n + 1, dtype=bool)
    at_surface[components[(d_brain <= PIAL_CONTACT_MM) & (components > 0)]] = True
    at_surface[0] = False
    sulcal = at_surface[components]
    d_csf = surface_distance(ventricles | sulcal, spacing)

    d_vent = _distance_near(ventricles, max(PERIVENTRICULAR_MM, CORTEX_DEPTH_MM), spacing)

    regions = template_regions()
    # McDonald 2017 counts contact with the lateral ventricles only: the subject's ventricle
    # voxels near the template's third ventricle are not a periventricular target.
    third = regions["third_ventricle"][box]
    lateral = ventricles & ~ndimage.binary_dilation(third, ball(THIRD_VENTRICLE_MARGIN_MM))
    d_lateral = _distance_near(lateral, PERIVENTRICULAR_MM, spacing)

    # A voxel whose nearest CSF-filled surface is a ventricle is not near sulcal CSF.
    near_pial = (d_brain <= CORTEX_DEPTH_MM) | ((d_csf <= CORTEX_DEPTH_MM) & (d_csf < d_vent))
    not_cortical = regions["deep_gm"][box] | regions["midline_gm"][box] | regions["infratentorial"][box]
    # The template cortex (grown for misalignment) vouches for GM whose nearest CSF is a
    # ventricle although it lines a sulcus (calcarine cortex beside the occipital horn).
    template_cortex = ndimage.binary_dilation(regions["cortex"][box], ball(TEMPLATE_CORTEX_MARGIN_MM))
    cortex = (lab == GM) & (near_pial | template_cortex) & ~not_cortical
    radius = int(round(JUXTACORTICAL_MM / spacing[0]))
    juxtacortical = ndimage.binary_dilation(cortex, ball(radius)) if cortex.any() else cortex

    coords = mni_ras_coordinates()
    zones_box = np.where(brain_box, ZONE_DEEP_WM, ZONE_OUTSIDE).astype(np.uint8)
    zones_box[juxtacortical & brain_box] = ZONE_JUXTACORTICAL
    zones_box[(lateral | (d_lateral <= PERIVENTRICULAR_MM)) & brain_box] = ZONE_PERIVENTRICULAR
    zones_box[regions["infratentorial"][box] & brain_box] = ZONE_INFRATENTORIAL
    zones = np.zeros(WORKING_SHAPE_KJI, dtype=np.uint8)
    zones[box] = zones_box

    channels = np.zeros((6,) + WORKING_SHAPE_KJI, dtype=np.float32)
    channels[:3] = coords / COORDINATE_SCALE_MM
    channels[3] = np.sqrt(np.sum(coords.astype(np.float32) ** 2, axis=0)) / COORDINATE_SCALE_MM
    for channel, distance in ((4, d_csf), (5, d_brain)):
        scaled = np.minimum(distance, DISTANCE_CLIP_MM) / DISTANCE_SCALE_MM
        channels[channel][box] = np.where(brain_box, scaled, 0.0)
    return Anatomy(channels=channels, tissue=labels, zones=zones)
