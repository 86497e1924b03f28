"""Template regions (allnet.regions): volumes, positions and landmarks on the MNI grid."""
from __future__ import annotations

import numpy as np
import pytest

from allnet.grid import WORKING_SHAPE_KJI, mni_ras_coordinates
from allnet.regions import REGION_NAMES, region_volumes_ml, template_regions


@pytest.fixture(scope="module")
def regions() -> dict[str, np.ndarray]:
    return template_regions()


def _at(mask: np.ndarray, x: float, y: float, z: float) -> bool:
    """Value of a working-grid mask at MNI RAS (x, y, z) mm."""
    return bool(mask[int(round(z + 72)), int(round(y + 126)), int(round(90 - x))])


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.array([float(c[mask].mean()) for c in mni_ras_coordinates()])


def test_every_region_is_a_readonly_bool_mask_on_the_working_grid(regions):
    assert set(REGION_NAMES) <= set(regions)
    for name, mask in regions.items():
        assert mask.shape == WORKING_SHAPE_KJI and mask.dtype == bool, name
        assert mask.any(), name
        assert not mask.flags.writeable, name
    assert template_regions() is regions  # computed once per process


# Ranges on the template (about 1.2x the volume of an average adult brain).
@pytest.mark.parametrize("name, low, high", [
    ("brainstem", 20, 45), ("cerebellum", 120, 210), ("fourth_ventricle", 0.8, 5),
    ("lateral_ventricles", 7, 40), ("third_ventricle", 0.3, 3), ("deep_gm", 30, 75),
    ("cortex", 350, 650), ("midline_gm", 1, 12), ("choroid_plexus", 1, 15),
])
def test_volumes_are_in_anatomical_ranges(name, low, high):
    assert low <= region_volumes_ml()[name] <= high


def test_positions(regions):
    stem = _centroid(regions["brainstem"])
    assert abs(stem[0]) < 2 and -36 < stem[1] < -20 and -40 < stem[2] < -20
    cb = _centroid(regions["cerebellum"])
    assert abs(cb[0]) < 2 and cb[1] < -45 and cb[2] < -25
    z = mni_ras_coordinates()[2]
    assert z[regions["cerebellum"]].max() <= 0          # under the tentorium
    assert np.percentile(z[regions["cerebellum"]], 90) < -10
    lv = regions["lateral_ventricles"]
    mirrored = lv[:, :, ::-1]  # i axis = RAS x, the grid is symmetric about x = 0
    assert 2 * (lv & mirrored).sum() / (2 * lv.sum()) > 0.8
    left, right = lv[:, :, 91:].sum(), lv[:, :, :91].sum()
    assert 0.9 < left / right < 1.1
    assert abs(_centroid(regions["third_ventricle"])[0]) < 1


def test_regions_that_must_not_overlap(regions):
    pairs = [("brainstem", "cerebellum"), ("cortex", "infratentorial"), ("deep_gm", "cortex"),
             ("lateral_ventricles", "third_ventricle"), ("deep_gm", "infratentorial"),
             ("midline_gm", "lateral_ventricles")]
    for a, b in pairs:
        assert not (regions[a] & regions[b]).any(), (a, b)
    for part in ("brainstem", "cerebellum", "fourth_ventricle"):
        assert not (regions[part] & ~regions["infratentorial"]).any(), part
    assert not (regions["cerebellar_cortex"] & regions["cerebellar_wm"]).any()
    assert ((regions["cerebellar_cortex"] | regions["cerebellar_wm"]) == regions["cerebellum"]).all()


@pytest.mark.parametrize("point, name", [
    ((-8, -25, -11), "brainstem"),     # left cerebral peduncle / midbrain (patient07's lesion)
    ((0, -28, -30), "brainstem"),      # pons
    ((0, -40, -55), "brainstem"),      # medulla
    ((-30, -65, -35), "cerebellum"), ((30, -65, -35), "cerebellum"), ((0, -65, -20), "cerebellum"),
    ((0, -44, -30), "fourth_ventricle"),
    ((-10, -18, 8), "deep_gm"), ((10, -18, 8), "deep_gm"), ((-26, 2, 2), "deep_gm"),
    ((-12, -10, 22), "lateral_ventricles"), ((0, -15, 0), "third_ventricle"),
    ((15, -85, 5), "cortex"), ((-28, -22, -14), "cortex"),
])
def test_landmarks(regions, point, name):
    assert _at(regions[name], *point)


@pytest.mark.parametrize("point", [(-10, -18, 8), (-26, 2, 2), (15, -85, 5), (-28, -22, -14), (0, -20, 20)])
def test_supratentorial_landmarks_are_not_infratentorial(regions, point):
    assert not _at(regions["infratentorial"], *point)


def test_disk_cache_round_trip_and_rebuild(regions, tmp_path, monkeypatch):
    from allnet import regions as module

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = module.cache_file()
    assert path.parent == tmp_path / "allnet" and path.suffix == ".npz"
    module._write_cache(path, regions)
    loaded = module._read_cache(path)
    assert set(loaded) == set(REGION_NAMES)
    assert all(np.array_equal(loaded[name], regions[name]) for name in REGION_NAMES)
    path.write_bytes(b"not an npz file")
    assert module._read_cache(path) is None  # a damaged cache is rebuilt, not trusted
    rebuilt = module.build_template_regions()  # deterministic: the same masks again
    assert all(np.array_equal(rebuilt[name], regions[name]) for name in REGION_NAMES)
