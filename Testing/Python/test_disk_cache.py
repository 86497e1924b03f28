"""Template arrays kept between processes (``allnet.disk_cache``): exact, keyed, and never
a reason for a run to fail."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from allnet import disk_cache, templates, tissue


def test_arrays_round_trip_exactly_and_a_bad_file_reads_as_missing(tmp_path) -> None:
    path = tmp_path / "a.npz"
    arrays = {"x": np.random.default_rng(0).random((3, 4, 5)).astype(np.float32),
              "m": np.arange(6, dtype=np.uint8).reshape(2, 3)}
    disk_cache.write_arrays(path, arrays)
    expected = {"x": ((3, 4, 5), "float32"), "m": ((2, 3), "uint8")}
    back = disk_cache.read_arrays(path, expected)
    assert all(np.array_equal(back[k], arrays[k]) and back[k].dtype == arrays[k].dtype for k in arrays)
    assert disk_cache.read_arrays(path, {"x": ((3, 4, 6), "float32")}) is None     # other shape
    assert disk_cache.read_arrays(path, {"x": ((3, 4, 5), "float64")}) is None     # other type
    assert disk_cache.read_arrays(path, {"y": ((1,), "float32")}) is None          # missing name
    path.write_bytes(path.read_bytes()[:200])
    assert disk_cache.read_arrays(path, expected) is None                          # truncated
    blocked = tmp_path / "file"
    blocked.write_text("x")
    disk_cache.write_arrays(blocked / "sub" / "a.npz", arrays)  # cannot be written: no error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "file"]


def test_keyed_path_changes_with_the_source(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source = tmp_path / "builder.py"
    source.write_text("a = 1")
    first = disk_cache.keyed_path("maps", source)
    assert first.parent == tmp_path / "allnet" and first.name.startswith("maps_")
    assert disk_cache.keyed_path("maps", source) == first
    source.write_text("a = 2")
    assert disk_cache.keyed_path("maps", source) != first


def test_writing_removes_the_same_name_under_other_keys_only(tmp_path, monkeypatch) -> None:
    """An upgrade (new key) leaves one copy of each cache file, not one per version."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source = tmp_path / "builder.py"
    source.write_text("a = 1")
    old = disk_cache.keyed_path("maps", source)
    other_name = disk_cache.keyed_path("maps_fine", source)   # a longer name sharing the prefix
    disk_cache.write_arrays(old, {"x": np.zeros(2)})
    disk_cache.write_arrays(other_name, {"x": np.zeros(2)})
    (old.parent / "maps_notes.txt").write_text("kept")       # not a keyed file
    source.write_text("a = 2")
    new = disk_cache.keyed_path("maps", source)
    disk_cache.write_arrays(new, {"x": np.ones(2)})
    assert sorted(p.name for p in new.parent.iterdir()) == sorted([new.name, other_name.name, "maps_notes.txt"])
    assert disk_cache.read_arrays(new, {"x": ((2,), "float64")})["x"].tolist() == [1.0, 1.0]


def test_cached_template_and_priors_equal_freshly_built_ones(tmp_path, monkeypatch) -> None:
    """A run reads the same template bit for bit from the cache as it builds without it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    templates.load_template.cache_clear()
    tissue.template_priors.cache_clear()
    try:
        built = templates.load_template()      # builds and stores
        assert list((tmp_path / "allnet").glob("template_*.npz"))
        templates.load_template.cache_clear()
        cached = templates.load_template()     # reads
        for name in ("t1", "gm", "wm", "csf", "brain_mask"):
            a, b = getattr(built, name), getattr(cached, name)
            assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
            assert (a.GetOrigin(), a.GetSpacing(), a.GetDirection(), a.GetPixelID()) == \
                   (b.GetOrigin(), b.GetSpacing(), b.GetDirection(), b.GetPixelID())
        priors = tissue.template_priors()
        tissue.template_priors.cache_clear()
        assert np.array_equal(tissue.template_priors(), priors)
        assert not tissue.template_priors().flags.writeable
    finally:
        templates.load_template.cache_clear()
        tissue.template_priors.cache_clear()
