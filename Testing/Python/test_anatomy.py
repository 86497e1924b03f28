"""Tests of allnet.anatomy: surface distances, anatomy channels and location zones."""
from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from allnet.anatomy import DISTANCE_SCALE_MM, compute_anatomy, surface_distance
from allnet.errors import InputError
from allnet.grid import WORKING_SHAPE_KJI, array_to_working_image, mni_ras_coordinates
from allnet.lesions import (LOC_DEEP_WM, LOC_INFRATENTORIAL, LOC_JUXTACORTICAL, LOC_PERIVENTRICULAR, ZONE_DEEP_WM, ZONE_INFRATENTORIAL, ZONE_JUXTACORTICAL, ZONE_OUTSIDE,
                            ZONE_PERIVENTRICULAR, label_lesions, lesion_table, lesion_totals)
from allnet.tissue import CSF, GM, WM


def _kji(x: float, y: float, z: float) -> tuple[int, int, int]:
    """Working-grid array index (k, j, i) of the MNI RAS point (x, y, z) mm."""
    return int(round(z + 72)), int(round(y + 126)), int(round(90 - x))


def test_surface_distance_box_with_anisotropic_spacing():
    spacing = (2.0, 1.0, 0.5)  # (k, j, i) mm
    mask = np.zeros((20, 30, 40), dtype=bool)
    k0, k1, j0, j1, i0, i1 = 5, 14, 8, 21, 10, 29  # inclusive box
    mask[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] = True
    distance = surface_distance(mask, spacing)
    assert distance.dtype == np.float32
    # inside: straight to the nearest face layer of the box
    k, j, i = np.indices(mask.shape)
    inside = np.minimum.reduce([(k - k0) * 2.0, (k1 - k) * 2.0, (j - j0) * 1.0, (j1 - j) * 1.0,
                                (i - i0) * 0.5, (i1 - i) * 0.5])
    assert np.allclose(distance[mask], inside[mask])
    # outside: the distance to the nearest mask voxel, exactly scipy's EDT of the complement
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    assert np.allclose(distance[~mask], outside[~mask], atol=1e-5)
    # analytic spot checks (mm): 3 voxels beyond the k face; diagonal beyond a j/i edge
    assert distance[k1 + 3, 15, 20] == pytest.approx(6.0)
    assert distance[10, j0 - 2, i0 - 4] == pytest.approx(np.hypot(2.0, 2.0))
    assert (distance[mask] >= 0).all() and distance[k0, 15, 20] == 0.0


def test_surface_distance_sphere_and_edges():
    spacing = (1.5, 1.0, 1.0)
    k, j, i = np.indices((40, 48, 48))
    radius = np.sqrt(((k - 20) * 1.5) ** 2 + (j - 24.0) ** 2 + (i - 24.0) ** 2)
    mask = radius <= 12.0
    distance = surface_distance(mask, spacing)
    far = radius >= 15.0
    # outside a sphere the distance to the nearest voxel centre is within a voxel of r - R
    assert np.all(np.abs(distance[far] - (radius[far] - 12.0)) <= 1.5)
    # centre: the staircase surface lies within one voxel (1.5 mm along k) inside the 12 mm sphere
    assert 10.5 <= distance[20, 24, 24] <= 12.0
    assert distance[20, 24, 24] == pytest.approx(np.min(np.sqrt(((k - 20) * 1.5) ** 2 + (j - 24.0) ** 2 + (i - 24.0) ** 2)[
        mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(3, 1))]))
    # a mask that fills the array: its edge voxels are surface voxels
    full = surface_distance(np.ones((5, 6, 7), dtype=bool))
    assert full[0].max() == 0.0 and full[2, 3, 3] == pytest.approx(2.0)
    assert np.isinf(surface_distance(np.zeros((4, 4, 4), dtype=bool))).all()


@pytest.fixture(scope="module")
def template_case():
    """The template T1 as a 'subject' (it is on the working grid by construction)."""
    from allnet.templates import load_template

    template = load_template()
    t1 = sitk.GetArrayFromImage(template.t1)
    mask = sitk.GetArrayFromImage(template.brain_mask)
    return t1, mask, compute_anatomy(t1, mask)


def test_channels_on_template(template_case):
    _, mask, anatomy = template_case
    channels = anatomy.channels
    assert channels.shape == (6,) + WORKING_SHAPE_KJI and channels.dtype == np.float32
    assert np.array_equal(channels[:4, 72, 126, 90], [0, 0, 0, 0])  # MNI origin voxel
    assert np.allclose(channels[:3, 0, 0, 0], [0.90, -1.26, -0.72])  # voxel (0, 0, 0)
    assert channels[3, 0, 0, 0] == pytest.approx(np.sqrt(0.9**2 + 1.26**2 + 0.72**2), rel=1e-6)
    assert np.allclose(channels[(slice(0, 3),) + _kji(-25, 40, 10)], [-0.25, 0.40, 0.10])
    brain = ndimage.binary_fill_holes(mask > 0)
    for channel in (4, 5):
        assert channels[channel].min() >= 0 and channels[channel].max() <= 100 / DISTANCE_SCALE_MM
        assert not channels[channel][~brain].any()
    # centrum semiovale: ~30 mm deep in the brain, far from sulci
    assert channels[5][_kji(25, -10, 35)] * DISTANCE_SCALE_MM > 25
    assert channels[5].max() * DISTANCE_SCALE_MM > 40
    # CSF-filled structures: 0 on their surface, deep white matter several mm away
    assert channels[4][brain & (anatomy.tissue == CSF)].min() == 0
    assert channels[4][_kji(25, -10, 35)] * DISTANCE_SCALE_MM > 5


def test_tissue_and_zones_on_template(template_case):
    _, mask, anatomy = template_case
    zones, tissue = anatomy.zones, anatomy.tissue
    assert zones.dtype == np.uint8 and tissue.dtype == np.uint8
    assert np.array_equal(zones == ZONE_OUTSIDE, ~ndimage.binary_fill_holes(mask > 0))
    from allnet.templates import load_template

    wm_prior = sitk.GetArrayFromImage(load_template().wm)
    assert np.mean(tissue[wm_prior > 0.9] == WM) > 0.95
    assert zones[_kji(0, -25, -30)] == ZONE_INFRATENTORIAL  # pons
    assert zones[_kji(-30, -65, -35)] == ZONE_INFRATENTORIAL  # cerebellum
    assert zones[_kji(16, -10, 25)] == ZONE_PERIVENTRICULAR  # lateral wall of the lateral ventricles
    assert zones[_kji(-16, -10, 25)] == ZONE_PERIVENTRICULAR
    assert zones[_kji(25, -10, 35)] == ZONE_DEEP_WM  # centrum semiovale
    assert zones[_kji(-25, -10, 35)] == ZONE_DEEP_WM
    # supratentorial GM at the brain surface is cortex
    surface_gm = (tissue == GM) & (anatomy.channels[5] * DISTANCE_SCALE_MM <= 2) & (zones != ZONE_INFRATENTORIAL)
    assert np.mean(zones[surface_gm] == ZONE_JUXTACORTICAL) > 0.99
    volumes_ml = np.bincount(zones.ravel(), minlength=5) / 1000.0
    assert 15 < volumes_ml[ZONE_PERIVENTRICULAR] < 120
    assert 150 < volumes_ml[ZONE_INFRATENTORIAL] < 320
    assert volumes_ml[ZONE_DEEP_WM] > 150


# Small spheres (r = 2.5 mm, 81 voxels) placed in known places of the template brain.
PLACED_LESIONS = {
    "midbrain (cerebral peduncle)": ((-8, -25, -11), LOC_INFRATENTORIAL),
    "pons": ((0, -28, -30), LOC_INFRATENTORIAL),
    "middle cerebellar peduncle": ((18, -45, -30), LOC_INFRATENTORIAL),
    "cerebellar hemisphere": ((-30, -65, -35), LOC_INFRATENTORIAL),
    "lateral ventricle body, right wall": ((16, -10, 25), LOC_PERIVENTRICULAR),
    "lateral ventricle body, left wall": ((-16, -10, 25), LOC_PERIVENTRICULAR),
    "atrium": ((-30, -45, 12), LOC_PERIVENTRICULAR),
    "corpus callosum": ((0, 10, 22), LOC_PERIVENTRICULAR),
    "precentral juxtacortical": ((-40, -20, 50), LOC_JUXTACORTICAL),
    "frontal juxtacortical": ((30, 30, 40), LOC_JUXTACORTICAL),
    "calcarine cortex": ((15, -85, 5), LOC_JUXTACORTICAL),
    "centrum semiovale right": ((25, -10, 35), LOC_DEEP_WM),
    "centrum semiovale left": ((-25, -10, 35), LOC_DEEP_WM),
    "thalamus": ((-10, -18, 8), LOC_DEEP_WM),
    "third ventricle wall": ((2, -10, 2), LOC_DEEP_WM),
}


def test_lesion_placed_in_each_region_gets_its_class(template_case):
    _, _, anatomy = template_case
    x, y, z = mni_ras_coordinates()
    labels = np.zeros(WORKING_SHAPE_KJI, dtype=np.uint16)
    for number, (point, _) in enumerate(PLACED_LESIONS.values(), start=1):
        labels[(x - point[0]) ** 2 + (y - point[1]) ** 2 + (z - point[2]) ** 2 <= 2.5 ** 2] = number
    table = lesion_table(array_to_working_image(labels), zones=array_to_working_image(anatomy.zones))
    assert [les.voxel_count for les in table] == [81] * len(PLACED_LESIONS)
    found = {name: les.location for name, les in zip(PLACED_LESIONS, table)}
    assert found == {name: location for name, (_, location) in PLACED_LESIONS.items()}
    dis = lesion_totals(table)["dissemination_in_space"]
    assert dis["areas_with_lesions"] == 3 and dis["areas"][LOC_INFRATENTORIAL] == 4


def test_deterministic_with_given_tissue(template_case):
    t1, mask, anatomy = template_case
    from allnet.tissue import TissueSegmentation

    tissue = TissueSegmentation(labels=anatomy.tissue, posteriors=np.zeros((3, 1, 1, 1), np.float32),
                                means=np.zeros(3, np.float32), stds=np.ones(3, np.float32))
    again = compute_anatomy(t1, mask, tissue=tissue)
    assert np.array_equal(again.channels, anatomy.channels)
    assert np.array_equal(again.zones, anatomy.zones)


def test_bad_inputs():
    small = np.zeros((32, 32, 32), dtype=np.float32)
    with pytest.raises(InputError, match="working grid"):
        compute_anatomy(small, small.astype(np.uint8))
    zeros = np.zeros(WORKING_SHAPE_KJI, dtype=np.float32)
    with pytest.raises(InputError, match="empty"):
        compute_anatomy(zeros, zeros.astype(np.uint8))


@pytest.mark.realdata
def test_real_case_patient07(shared_data):
    case = shared_data / "lesjak2018" / "mni" / "patient07"
    t1_image = sitk.ReadImage(str(case / "T1.nii.gz"), sitk.sitkFloat32)
    lesion_image = sitk.ReadImage(str(case / "lesions.nii.gz"))
    t1 = sitk.GetArrayFromImage(t1_image)
    brain = (t1 > 0).astype(np.uint8)  # the case is skull-stripped
    anatomy = compute_anatomy(t1, brain)
    lesions = sitk.GetArrayFromImage(lesion_image) > 0
    zones_at = np.bincount(anatomy.zones[lesions], minlength=5)
    tissue_at = np.bincount(anatomy.tissue[lesions], minlength=4)
    assert lesions.sum() == 1300
    assert zones_at[ZONE_OUTSIDE] == 0
    # MS lesions are white-matter lesions: most lie in deep, periventricular or
    # infratentorial white matter (this case has a large midbrain lesion)
    assert (zones_at[ZONE_DEEP_WM] + zones_at[ZONE_PERIVENTRICULAR] + zones_at[ZONE_INFRATENTORIAL]) / lesions.sum() > 0.75
    assert zones_at[ZONE_INFRATENTORIAL] > 200
    assert tissue_at[WM] > tissue_at[CSF]
    assert np.bincount(anatomy.zones.ravel(), minlength=5)[ZONE_PERIVENTRICULAR] > 10_000  # mm^3

    labels = label_lesions(lesion_image, connectivity=26, min_size_mm3=0)
    zones_image = sitk.GetImageFromArray(anatomy.zones)
    zones_image.CopyInformation(lesion_image)
    table = lesion_table(labels, zones=zones_image)
    totals = lesion_totals(table)
    assert totals["total_voxels"] == 1300
    assert totals["total_volume_ml"] == pytest.approx(1.3)
    assert sum(v["count"] for v in totals["by_location"].values()) == totals["count"] == len(table)
    assert all(les.location is not None for les in table)
    # the largest lesion lies in the left midbrain / cerebral peduncle: infratentorial
    largest = table[0]
    assert np.allclose(largest.centroid_ras, (-8.0, -25.0, -11.0), atol=2.0)
    assert largest.location == LOC_INFRATENTORIAL
    assert totals["dissemination_in_space"]["areas"][LOC_INFRATENTORIAL] >= 1
