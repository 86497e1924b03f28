"""Readers for every supported format and atomic writing (allnet.io)."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from allnet.errors import InputError
from allnet.io import atomic_output_dir, read_image, write_image_atomic
from helpers_io import oblique_direction, phantom, write_dicom_series


def assert_same_image(read: sitk.Image, expected: sitk.Image, tol: float = 1e-4) -> None:
    assert read.GetPixelID() == sitk.sitkFloat32
    assert read.GetSize() == expected.GetSize()
    np.testing.assert_allclose(read.GetSpacing(), expected.GetSpacing(), atol=tol)
    np.testing.assert_allclose(read.GetOrigin(), expected.GetOrigin(), atol=tol)
    np.testing.assert_allclose(read.GetDirection(), expected.GetDirection(), atol=tol)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read),
                                  sitk.GetArrayFromImage(expected).astype(np.float32))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"])
@pytest.mark.parametrize("angle", [0.0, 20.0])
def test_reads_file_formats_with_geometry(tmp_path, suffix, angle):
    image = phantom(direction=oblique_direction(angle))
    path = tmp_path / f"flair{suffix}"
    sitk.WriteImage(image, str(path))
    assert_same_image(read_image(path, "flair"), image)


def test_reads_lps_flipped_orientation(tmp_path):
    flipped = (-1.0, 0, 0, 0, 0, 1.0, 0, -1.0, 0)  # axes permuted and flipped (coronal-like)
    image = phantom(direction=flipped, spacing=(0.5, 3.0, 0.6))
    path = tmp_path / "t2.nii.gz"
    sitk.WriteImage(image, str(path))
    assert_same_image(read_image(path, "t2"), image)


def test_reads_dicom_series_folder(tmp_path):
    image = phantom(size=(24, 20, 8), spacing=(0.7, 0.7, 3.0))
    write_dicom_series(image, tmp_path / "dicom", "1.2.826.0.1.3680043.2.1125.7")
    assert_same_image(read_image(tmp_path / "dicom", "t1"), image, tol=1e-3)


def test_dicom_folder_with_two_series_reads_largest_and_warns(tmp_path):
    big = phantom(size=(24, 20, 8), spacing=(0.7, 0.7, 3.0))
    small = phantom(size=(24, 20, 3), spacing=(0.7, 0.7, 3.0))
    write_dicom_series(big, tmp_path, "1.2.826.0.1.3680043.2.1125.11")
    write_dicom_series(small, tmp_path, "1.2.826.0.1.3680043.2.1125.12", "localizer")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read = read_image(tmp_path, "flair")
    assert read.GetSize() == big.GetSize()
    assert any("2 DICOM series" in str(w.message) for w in caught)


def test_mask_role_gives_uint8_binary(tmp_path):
    labels = sitk.GetImageFromArray(np.array([[[0, 2], [3, 0]], [[0, 0], [1, 0]]], np.int16))
    path = tmp_path / "mask.nrrd"
    sitk.WriteImage(labels, str(path))
    mask = read_image(path, "mask")
    assert mask.GetPixelID() == sitk.sitkUInt8
    assert sitk.GetArrayFromImage(mask).tolist() == [[[0, 1], [1, 0]], [[0, 0], [1, 0]]]


def test_all_zero_mask_is_allowed_but_all_zero_image_is_not(tmp_path):
    zeros = sitk.Image([8, 8, 8], sitk.sitkUInt8)
    path = tmp_path / "empty.nii.gz"
    sitk.WriteImage(zeros, str(path))
    assert sitk.GetArrayFromImage(read_image(path, "mask")).sum() == 0
    with pytest.raises(InputError, match="all zero"):
        read_image(path, "flair")


def test_unknown_role_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError):
        read_image(tmp_path / "x.nii.gz", "pd")


def test_write_image_atomic_writes_and_replaces(tmp_path):
    image = phantom()
    path = tmp_path / "sub" / "out.nii.gz"
    write_image_atomic(image, path)
    assert_same_image(read_image(path, "t1"), image)
    write_image_atomic(sitk.Cast(image * 2, sitk.sitkInt16), path)
    assert sitk.GetArrayFromImage(read_image(path, "t1")).max() == \
        2 * sitk.GetArrayViewFromImage(image).max()
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.nii.gz"]


def test_write_image_atomic_failure_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "out.nrrd"
    write_image_atomic(phantom(), path)
    before = path.read_bytes()

    def broken_write(image, filename, *args):
        with open(filename, "wb") as f:  # a partial file, then the writer fails
            f.write(b"NRRD0004\n")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", broken_write)
    with pytest.raises(RuntimeError, match="disk full"):
        write_image_atomic(phantom(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.nrrd"]


def test_write_image_atomic_rejects_two_file_formats(tmp_path):
    with pytest.raises(ValueError, match="single-file"):
        write_image_atomic(phantom(), tmp_path / "out.mhd")


def test_atomic_output_dir_publishes_on_success(tmp_path):
    final = tmp_path / "results"
    with atomic_output_dir(final) as work:
        assert work.parent == tmp_path and work != final
        (work / "summary.json").write_text("{}")
        (work / "masks").mkdir()
        (work / "masks" / "lesions.nii.gz").write_bytes(b"x")
        assert not final.exists()
    assert (final / "summary.json").read_text() == "{}"
    assert (final / "masks" / "lesions.nii.gz").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    umask = os.umask(0)
    os.umask(umask)
    assert final.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700


def test_atomic_output_dir_failure_leaves_nothing(tmp_path):
    final = tmp_path / "results"
    with pytest.raises(KeyError):
        with atomic_output_dir(final) as work:
            (work / "half-written.nii.gz").write_bytes(b"partial")
            raise KeyError("model failed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_dir_merges_into_existing_only_on_success(tmp_path):
    final = tmp_path / "results"
    final.mkdir()
    (final / "summary.json").write_text("old")
    (final / "notes.txt").write_text("keep")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(final) as work:
            (work / "summary.json").write_text("half")
            raise RuntimeError("cancelled")
    assert (final / "summary.json").read_text() == "old"
    with atomic_output_dir(final) as work:
        (work / "summary.json").write_text("new")
    assert (final / "summary.json").read_text() == "new"
    assert (final / "notes.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_atomic_output_dir_removes_owned_names_the_run_did_not_write(tmp_path):
    """A rerun without, e.g., the probability map must not leave the earlier run's map
    beside the new mask; files the tool does not own stay."""
    final = tmp_path / "results"
    with atomic_output_dir(final, owned=("mask", "probability", "mni")) as work:
        for name in ("mask", "probability"):
            (work / name).write_text("run 1")
        (work / "mni").mkdir()
        (work / "mni" / "flair").write_text("run 1")
    (final / "notes.txt").write_text("keep")
    with atomic_output_dir(final, owned=("mask", "probability", "mni")) as work:
        (work / "mask").write_text("run 2")
    assert sorted(p.name for p in final.iterdir()) == ["mask", "notes.txt"]
    assert (final / "mask").read_text() == "run 2"


def test_atomic_output_dir_refuses_a_file_path(tmp_path):
    target = tmp_path / "results"
    target.write_text("not a folder")
    with pytest.raises(InputError, match="not a folder"):
        with atomic_output_dir(target):
            pass
