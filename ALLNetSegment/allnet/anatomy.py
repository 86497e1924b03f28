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

Structures (all inside the hole-filled brain mask; tissue from ``allnet.tissue``):
  ventricles  CSF components inside a search region = template ventricles grown by
              ``VENTRICLE_SEARCH_MM`` (room for enlarged ventricles and affine misalignment),
              after a 6-neighbour opening; kept when >= ``MIN_VENTRICLE_OVERLAP`` voxels lie
              in the template ventricles; then a 6-neighbour closing. Template ventricles =
              the template CSF prior > 0.5, opened, the component that fills most of the box
              |x| <= 20, -30 <= y <= 20, 5 <= z <= 25 mm (bodies of the lateral ventricles;
              the component includes the third ventricle and the atria).
  sulcal CSF  CSF components (26-connected, ventricles removed) that reach within
              ``PIAL_CONTACT_MM`` of the brain surface, i.e. CSF that communicates with the
              subarachnoid space. Isolated dark islands in white matter (T1 black holes,
              perivascular spaces) are not CSF-filled structures.
  cortex      GM voxels within ``CORTEX_DEPTH_MM`` of the brain surface or of sulcal CSF
              (cortex is 2-4 mm thick). Deep GM (thalamus, basal ganglia) is farther away.

Zones (codes in ``allnet.lesions``), later rules override earlier ones:
  DEEP_WM (1)         every brain voxel (white matter and deep grey matter);
  JUXTACORTICAL (3)   cortex, and voxels within ``JUXTACORTICAL_MM`` of it ("abutting the cortex");
  PERIVENTRICULAR (2) ventricles, and voxels within ``PERIVENTRICULAR_MM`` of their surface
                      ("abutting the ventricles");
  INFRATENTORIAL (4)  brain voxels below the tentorium, see ``infratentorial_region``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage
from skimage.morphology import ball

from .errors import InputError
from .grid import WORKING_SHAPE_KJI, WORKING_SPACING, mni_ras_coordinates
from .lesions import ZONE_DEEP_WM, ZONE_INFRATENTORIAL, ZONE_JUXTACORTICAL, ZONE_OUTSIDE, ZONE_PERIVENTRICULAR
from .tissue import CSF, GM, TissueSegmentation, segment_tissue

COORDINATE_SCALE_MM = 100.0
DISTANCE_SCALE_MM = 20.0
DISTANCE_CLIP_MM = 100.0
PERIVENTRICULAR_MM = 3.0
JUXTACORTICAL_MM = 3.0
CORTEX_DEPTH_MM = 4.0
PIAL_CONTACT_MM = 2.0
VENTRICLE_SEARCH_MM = 10.0
MIN_VENTRICLE_OVERLAP = 30  # voxels (mm^3) of a CSF component inside the template ventricles

# Tentorium cerebelli as a tent over the posterior fossa, in MNI RAS mm, drawn on the ICBM
# 2009a template (checked on sagittal x = 0/12/25/40, coronal y = -20/-40/-60/-85 and axial
# z = -35..-8 slices). Ridge height at the midline as a function of y (straight sinus: high
# over the culmen at y = -58, falling towards the torcular and, forward, to the midbrain /
# diencephalon junction at z = -8), descending laterally by 0.5 mm per mm of |x|.
TENTORIUM_RIDGE_Y_MM = (-110.0, -75.0, -58.0, -40.0, 0.0)
TENTORIUM_RIDGE_Z_MM = (-16.0, -6.0, -2.0, -8.0, -8.0)
TENTORIUM_LATERAL_SLOPE = 0.5
# Front limits: the brainstem (|x| <= 16 mm) starts behind y = -12 (anterior surface of the
# pons); lateral to it the temporal lobes reach down to z = -40, so there only the
# cerebellar hemispheres, behind y = -36, are infratentorial.
BRAINSTEM_HALF_WIDTH_MM = 16.0
BRAINSTEM_FRONT_Y_MM = -12.0
CEREBELLUM_FRONT_Y_MM = -36.0

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


def infratentorial_region(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """True below the tentorium (brainstem and cerebellum) for MNI RAS coordinates in mm."""
    ridge = np.interp(y, TENTORIUM_RIDGE_Y_MM, TENTORIUM_RIDGE_Z_MM)
    below = z < ridge - TENTORIUM_LATERAL_SLOPE * np.abs(x)
    front = np.where(np.abs(x) <= BRAINSTEM_HALF_WIDTH_MM, BRAINSTEM_FRONT_Y_MM, CEREBELLUM_FRONT_Y_MM)
    return below & (y <= front)


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


@lru_cache(maxsize=1)
def template_ventricles() -> tuple[tuple[slice, ...], np.ndarray, np.ndarray]:
    """(box, core, search): the template ventricles (``core``) and the region grown from them
    by ``VENTRICLE_SEARCH_MM`` (``search``), bool arrays on the working-grid sub-box ``box``."""
    import SimpleITK as sitk

    from .templates import load_template

    csf = sitk.GetArrayFromImage(load_template().csf) > 0.5
    components, _ = ndimage.label(ndimage.binary_opening(csf, _FACE), _FACE)
    x, y, z = mni_ras_coordinates()
    central = (np.abs(x) <= 20) & (y >= -30) & (y <= 20) & (z >= 5) & (z <= 25)
    counts = np.bincount(components[central & (components > 0)])
    core = components == int(np.argmax(counts))
    pad = int(np.ceil(VENTRICLE_SEARCH_MM)) + 1
    box = _box(core, pad)
    core = core[box]
    search = ndimage.distance_transform_edt(~core, sampling=WORKING_SPACING[::-1]) <= VENTRICLE_SEARCH_MM
    core.setflags(write=False)
    search.setflags(write=False)
    return box, core, search


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

    d_vent = np.full(brain_box.shape, np.inf, dtype=np.float32)
    if ventricles.any():
        reach = int(np.ceil(max(PERIVENTRICULAR_MM, CORTEX_DEPTH_MM))) + 2
        vbox = _box(ventricles, reach)
        d_vent[vbox] = surface_distance(ventricles[vbox], spacing)

    # A voxel whose nearest CSF-filled surface is a ventricle is not near sulcal CSF.
    near_pial = (d_brain <= CORTEX_DEPTH_MM) | ((d_csf <= CORTEX_DEPTH_MM) & (d_csf < d_vent))
    cortex = (lab == GM) & near_pial
    radius = int(round(JUXTACORTICAL_MM / spacing[0]))
    juxtacortical = ndimage.binary_dilation(cortex, ball(radius)) if cortex.any() else cortex

    coords = mni_ras_coordinates()
    zones_box = np.where(brain_box, ZONE_DEEP_WM, ZONE_OUTSIDE).astype(np.uint8)
    zones_box[juxtacortical & brain_box] = ZONE_JUXTACORTICAL
    zones_box[(ventricles | (d_vent <= PERIVENTRICULAR_MM)) & brain_box] = ZONE_PERIVENTRICULAR
    zones_box[infratentorial_region(*(c[box] for c in coords)) & brain_box] = ZONE_INFRATENTORIAL
    zones = np.zeros(WORKING_SHAPE_KJI, dtype=np.uint8)
    zones[box] = zones_box

    channels = np.zeros((6,) + WORKING_SHAPE_KJI, dtype=np.float32)
    channels[:3] = coords / COORDINATE_SCALE_MM
    channels[3] = np.sqrt(np.sum(coords.astype(np.float32) ** 2, axis=0)) / COORDINATE_SCALE_MM
    for channel, distance in ((4, d_csf), (5, d_brain)):
        scaled = np.minimum(distance, DISTANCE_CLIP_MM) / DISTANCE_SCALE_MM
        channels[channel][box] = np.where(brain_box, scaled, 0.0)
    return Anatomy(channels=channels, tissue=labels, zones=zones)
