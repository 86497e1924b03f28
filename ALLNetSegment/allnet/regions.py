"""Anatomical regions on the working grid, drawn on the ICBM 2009a template.

Every region is a bool array, KJI, on the working grid (FSL MNI152 1 mm, see
``allnet.grid``). They are built by this module from the template and its tissue priors
(``allnet.templates``: nothing is downloaded) with the rules below, once (3-5 s), then
kept in the user cache folder (``cache_file``). Coordinates are MNI RAS mm (x right,
y anterior, z superior).

"tissue" = template brain mask with GM + WM prior >= 0.5 and template T1 >= TISSUE_T1_MIN;
"CSF" = brain mask with CSF prior >= 0.5; "GM-dominant" = tissue with GM prior >= WM prior.

Posterior fossa and brainstem
  tentorium      the surface ``tentorium_z(x, y)``: a ridge along the straight sinus,
                 z = interp(y; TENTORIUM_RIDGE_Y_MM -> TENTORIUM_RIDGE_Z_MM), falling by
                 TENTORIUM_LATERAL_SLOPE mm per mm of |x| (checked on the template's
                 sagittal, coronal and axial slices).
  diencephalic   the midbrain / diencephalon boundary: the plane through the posterior
  plane          commissure (y = -30, z = -2) and the back of the mammillary bodies
                 (y = -12, z = -14), constant over x.
  brainstem      tissue below the diencephalic plane and below BRAINSTEM_TOP_Z_MM, with
                 |x| <= BRAINSTEM_HALF_WIDTH_MM, y <= BRAINSTEM_FRONT_Y_MM and in front of
                 the back line ``BRAINSTEM_BACK`` (the tectum, the floor of the fourth
                 ventricle, the back of the medulla); the 6-connected component that holds
                 the pons (0, -25, -30), found after a 2-voxel erosion (which cuts thin
                 bridges to the medial temporal lobes) and grown back inside the tissue.
  fourth_ventricle  CSF in |x| <= 12, -55 <= y <= -30, -45 <= z <= -15: the component
                 with most voxels.
  cerebellum     tissue below the tentorium and behind CEREBELLUM_FRONT_Y_MM (or, below
                 z = -26 and within |x| <= 24, behind y = -20: the middle cerebellar
                 peduncles), not brainstem; the 6-connected component that holds
                 (±25, -65, -35). ``cerebellar_cortex`` / ``cerebellar_wm``: its
                 GM-dominant / other voxels.
  infratentorial brainstem + cerebellum + the fourth ventricle and every brain voxel
                 within FOURTH_VENTRICLE_WALL_MM of it (its walls).
Ventricles
  ventricles     the template CSF prior > 0.5, opened, the component that fills most of
                 the box |x| <= 20, -30 <= y <= 20, 5 <= z <= 25 (see
                 ``template_ventricles``, which also gives the search region used to
                 find a subject's ventricles).
  third_ventricle  the largest CSF component in |x| <= THIRD_VENTRICLE_HALF_WIDTH_MM,
                 -32 <= y <= 2, -8 <= z <= 8 (under the bodies of the lateral
                 ventricles); ``lateral_ventricles``: the ventricles outside that box.
Grey matter
  cortex         GM-dominant tissue, supratentorial (not infratentorial nor in the
                 brainstem or cerebellum search boxes), within CORTEX_DEPTH_MM of the brain
                 surface or of CSF farther than 3 mm from the ventricles and outside the
                 third ventricle / velum interpositum box (|x| <= 8, -35 <= y <= 5,
                 -10 <= z <= 20): sulci, fissures, cisterns.
  deep_gm        GM-dominant tissue, supratentorial, not cortex, in |x| <= 35,
                 -40 <= y <= 30, -12 <= z <= 25 (thalamus, caudate, putamen, pallidum).
  midline_gm     brain voxels that are not ventricle: the septum pellucidum (|x| <= 3,
                 -10 <= y <= 25, 0 <= z <= 25, within 3 mm of both lateral ventricles),
                 the fornix body (|x| <= 6, -30 <= y <= 0, 5 <= z <= 22, within 3 mm of the
                 lateral ventricles) and the hypothalamus (|x| <= 10, -16 <= y <= 8,
                 -16 <= z <= 0, within 5 mm of the third ventricle).
  choroid_plexus the lateral ventricles and the 1 mm around them in the atria
                 (15 <= |x| <= 38, -55 <= y <= -20, 0 <= z <= 28), where the glomus of the
                 choroid plexus lies, and the roof of the third ventricle (|x| <= 5,
                 -25 <= y <= 0, z >= 0 in the third ventricle).
These are region definitions for location classes and audits on an affinely registered
brain, accurate to a few mm; they are not a substitute for a subject's own parcellation.
"""
from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from .disk_cache import keyed_path, remove_other_keys
from .grid import WORKING_SHAPE_KJI, WORKING_SPACING, mni_ras_coordinates

TENTORIUM_RIDGE_Y_MM = (-110.0, -75.0, -58.0, -40.0, 0.0)
TENTORIUM_RIDGE_Z_MM = (-16.0, -6.0, -2.0, -8.0, -8.0)
TENTORIUM_LATERAL_SLOPE = 0.5
# midbrain/diencephalon plane through the posterior commissure and the mammillary bodies
DIENCEPHALIC_PLANE_YZ_MM = ((-30.0, -2.0), (-12.0, -14.0))
BRAINSTEM_TOP_Z_MM = -2.0  # behind the posterior commissure: top of the tectum
BRAINSTEM_HALF_WIDTH_MM = 16.0
BRAINSTEM_FRONT_Y_MM = -2.0
# back line of the brainstem at the midline: (z, y) pairs, tectum -> fourth-ventricle floor -> medulla
BRAINSTEM_BACK_Z_MM = (-72.0, -55.0, -40.0, -25.0, -12.0, 5.0)
BRAINSTEM_BACK_Y_MM = (-48.0, -46.0, -40.0, -38.0, -40.0, -44.0)
CEREBELLUM_FRONT_Y_MM = -36.0
FOURTH_VENTRICLE_WALL_MM = 3.0
THIRD_VENTRICLE_HALF_WIDTH_MM = 4.0
CORTEX_DEPTH_MM = 4.0
VENTRICLE_SEARCH_MM = 10.0  # room for enlarged ventricles and affine misalignment
TISSUE_T1_MIN = 0.5  # template T1 between CSF (~0.3) and GM (~0.7)

REGION_NAMES: tuple[str, ...] = (
    "brainstem", "cerebellum", "cerebellar_cortex", "cerebellar_wm", "fourth_ventricle",
    "lateral_ventricles", "third_ventricle", "deep_gm", "cortex", "midline_gm",
    "choroid_plexus", "infratentorial",
)

_FACE = ndimage.generate_binary_structure(3, 1)


def tentorium_z(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height (MNI z, mm) of the tentorium above the point (x, y) in MNI RAS mm."""
    ridge = np.interp(y, TENTORIUM_RIDGE_Y_MM, TENTORIUM_RIDGE_Z_MM)
    return ridge - TENTORIUM_LATERAL_SLOPE * np.abs(x)


def diencephalic_z(y: np.ndarray) -> np.ndarray:
    """Height (MNI z, mm) of the midbrain/diencephalon plane at MNI y (mm)."""
    (y0, z0), (y1, z1) = DIENCEPHALIC_PLANE_YZ_MM
    return z0 + (np.asarray(y) - y0) * (z1 - z0) / (y1 - y0)


def _component_at(mask: np.ndarray, seeds_ras: list[tuple[float, float, float]],
                  cut_mm: int = 0) -> np.ndarray:
    """The 6-connected components of ``mask`` that hold any of the seed points (MNI RAS mm).
    ``cut_mm`` > 0: components of ``mask`` eroded by that many voxels (bridges up to twice as
    thick are cut), grown back by as many voxels inside ``mask``."""
    eroded = ndimage.binary_erosion(mask, _FACE, iterations=cut_mm) if cut_mm else mask
    labels, _ = ndimage.label(eroded, _FACE)
    keep = set()
    for x, y, z in seeds_ras:
        k, j, i = int(round(z + 72)), int(round(y + 126)), int(round(90 - x))
        if labels[k, j, i]:
            keep.add(int(labels[k, j, i]))
    if not keep:
        raise RuntimeError("template region seed fell outside its candidate mask")
    kept = np.isin(labels, sorted(keep))
    if cut_mm:
        kept = ndimage.binary_dilation(kept, _FACE, iterations=cut_mm, mask=mask)
    return kept


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask, _FACE)
    if n == 0:
        return mask
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return labels == int(np.argmax(counts))


def _within(mask: np.ndarray, mm: float) -> np.ndarray:
    """Voxels within ``mm`` (Euclidean, voxel centres) of ``mask``, the mask included."""
    out = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return out
    box = bounding_box(mask, int(np.ceil(mm)) + 1)
    out[box] = ndimage.distance_transform_edt(~mask[box], sampling=WORKING_SPACING[::-1]) <= mm
    return out


def bounding_box(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """Bounding box (array slices) of a non-empty bool mask grown by ``pad`` voxels, clipped."""
    return tuple(slice(max(int(idx.min()) - pad, 0), min(int(idx.max()) + 1 + pad, n))
                 for idx, n in zip(np.nonzero(mask), mask.shape))


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
    box = bounding_box(core, pad)
    core = core[box]
    search = ndimage.distance_transform_edt(~core, sampling=WORKING_SPACING[::-1]) <= VENTRICLE_SEARCH_MM
    core.setflags(write=False)
    search.setflags(write=False)
    return box, core, search


def cache_file() -> Path:
    """Where the regions are kept between processes: the user cache folder
    (``$XDG_CACHE_HOME`` or ``~/.cache``) / allnet / a name keyed by this module's source and
    the template package's version, so a change of rules or template never reads stale masks."""
    return keyed_path("template_regions", __file__)


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as stored:
            regions = {name: np.unpackbits(stored[name], count=int(np.prod(WORKING_SHAPE_KJI)))
                       .reshape(WORKING_SHAPE_KJI).astype(bool) for name in REGION_NAMES}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return regions


def _write_cache(path: Path, regions: dict[str, np.ndarray]) -> None:
    from .atomic import atomic_file

    try:
        with atomic_file(path) as tmp:
            np.savez_compressed(tmp, **{name: np.packbits(mask.ravel()) for name, mask in regions.items()})
    except OSError:
        return  # a read-only home folder only costs the rebuild (~3 s) in the next process
    remove_other_keys(path)


@lru_cache(maxsize=1)
def template_regions() -> dict[str, np.ndarray]:
    """All regions of ``REGION_NAMES`` (bool KJI arrays on the working grid, read-only),
    built from the template by the rules of the module doc. Cached per process and on disk
    (``cache_file``; rebuilt when missing or unreadable)."""
    path = cache_file()
    regions = _read_cache(path)
    if regions is None:
        regions = build_template_regions()
        _write_cache(path, regions)
    for array in regions.values():
        array.setflags(write=False)
    return regions


def build_template_regions() -> dict[str, np.ndarray]:
    """The regions computed from the template (no cache), bool KJI arrays on the working grid."""
    import SimpleITK as sitk

    from .templates import load_template

    template = load_template()
    brain = sitk.GetArrayFromImage(template.brain_mask) > 0
    gm = sitk.GetArrayFromImage(template.gm)
    wm = sitk.GetArrayFromImage(template.wm)
    csf = sitk.GetArrayFromImage(template.csf)
    t1 = sitk.GetArrayFromImage(template.t1)
    # the priors are smooth: the template T1 (CSF ~0.3, GM ~0.7, WM ~0.9) draws the cisterns
    tissue = brain & (gm + wm >= 0.5) & (t1 >= TISSUE_T1_MIN)
    csf_mask = brain & (csf >= 0.5)
    gm_dominant = tissue & (gm >= wm)
    x, y, z = mni_ras_coordinates()
    ax = np.abs(x)

    back = np.interp(z, BRAINSTEM_BACK_Z_MM, BRAINSTEM_BACK_Y_MM)
    stem_box = ((z < np.minimum(diencephalic_z(y), BRAINSTEM_TOP_Z_MM)) & (ax <= BRAINSTEM_HALF_WIDTH_MM)
                & (y <= BRAINSTEM_FRONT_Y_MM) & (y >= back))
    brainstem = _component_at(tissue & stem_box, [(0.0, -25.0, -30.0)], cut_mm=2)

    v_box = (ax <= 12) & (y >= -55) & (y <= -30) & (z >= -45) & (z <= -15)
    fourth = _largest_component(csf_mask & v_box)

    below_tent = z < tentorium_z(x, y)
    cb_box = below_tent & ((y <= CEREBELLUM_FRONT_Y_MM) | ((z <= -26) & (ax <= 24) & (y <= -20)))
    cerebellum = _component_at(tissue & cb_box & ~brainstem & ~fourth,
                               [(25.0, -65.0, -35.0), (-25.0, -65.0, -35.0)])
    walls = _within(fourth, FOURTH_VENTRICLE_WALL_MM) & brain
    infratentorial = brainstem | cerebellum | fourth | walls

    box, core, _ = template_ventricles()
    ventricles = np.zeros(WORKING_SHAPE_KJI, dtype=bool)
    ventricles[box] = core
    third_box = (ax <= THIRD_VENTRICLE_HALF_WIDTH_MM) & (y >= -32) & (y <= 2) & (z >= -8) & (z <= 8)
    third = _largest_component(csf_mask & third_box)
    lateral = ventricles & ~third & ~third_box

    supra = tissue & ~infratentorial & ~cb_box & ~stem_box
    # CSF that the opening left out of the ventricles still lines them: not sulcal
    # nor does the CSF of the third ventricle and the velum interpositum above it
    deep_midline = (ax <= 8) & (y >= -35) & (y <= 5) & (z >= -10) & (z <= 20)
    other_csf = csf_mask & ~_within(ventricles | third | fourth, 3.0) & ~deep_midline
    surface = brain & ~ndimage.binary_erosion(brain, _FACE, border_value=0)
    near_outside = _within(surface | other_csf, CORTEX_DEPTH_MM)
    cortex = gm_dominant & supra & near_outside
    deep_box = (ax <= 35) & (y >= -40) & (y <= 30) & (z >= -12) & (z <= 25)
    deep_gm = gm_dominant & supra & ~cortex & deep_box

    near_lateral = _within(lateral, 3.0)
    left_lat, right_lat = lateral & (x < 0), lateral & (x > 0)
    septum = ((ax <= 3) & (y >= -10) & (y <= 25) & (z >= 0) & (z <= 25)
              & _within(left_lat, 3.0) & _within(right_lat, 3.0))
    fornix = (ax <= 6) & (y >= -30) & (y <= 0) & (z >= 5) & (z <= 22) & near_lateral
    hypothalamus = ((ax <= 10) & (y >= -16) & (y <= 8) & (z >= -16) & (z <= 0)
                    & _within(third, 5.0))
    midline_gm = brain & ~ventricles & ~third & ~infratentorial & (septum | fornix | hypothalamus)

    atria = (ax >= 15) & (ax <= 38) & (y >= -55) & (y <= -20) & (z >= 0) & (z <= 28)
    choroid = ((_within(lateral, 1.0) & brain & atria)
               | (third & (ax <= 5) & (y >= -25) & (y <= 0) & (z >= 0)))

    regions = {
        "brainstem": brainstem,
        "cerebellum": cerebellum,
        "cerebellar_cortex": cerebellum & (gm >= wm),
        "cerebellar_wm": cerebellum & (gm < wm),
        "fourth_ventricle": fourth,
        "lateral_ventricles": lateral,
        "third_ventricle": third,
        "deep_gm": deep_gm,
        "cortex": cortex,
        "midline_gm": midline_gm,
        "choroid_plexus": choroid,
        "infratentorial": infratentorial,
    }
    return regions


def region_volumes_ml() -> dict[str, float]:
    """Volume (mL) of every template region (1 mm^3 voxels)."""
    voxel_ml = float(np.prod(WORKING_SPACING)) / 1000.0
    return {name: float(mask.sum()) * voxel_ml for name, mask in template_regions().items()}
