"""One test per bad-input case: the error type and a message that names the file."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from allnet import validation
from allnet.errors import InputError, ResourceError
from allnet.io import read_image
from helpers_io import phantom


def write(image: sitk.Image, path) -> str:
    sitk.WriteImage(image, str(path))
    return str(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope_FLAIR.nii.gz"
    with pytest.raises(InputError) as info:
        read_image(path, "flair")
    assert str(path) in str(info.value) and "not found" in str(info.value)
    assert info.value.path == str(path)


def test_empty_file(tmp_path):
    path = tmp_path / "T1.nii.gz"
    path.write_bytes(b"")
    with pytest.raises(InputError, match="empty") as info:
        read_image(path, "t1")
    assert str(path) in str(info.value)


def test_unreadable_file(tmp_path):
    path = tmp_path / "T1.nii.gz"
    path.write_bytes(b"this is a text file, not an image\n" * 10)
    with pytest.raises(InputError, match="cannot be read") as info:
        read_image(path, "t1")
    assert str(path) in str(info.value) and "T1W" in str(info.value)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_file(tmp_path, suffix):
    path = tmp_path / f"FLAIR{suffix}"
    write(phantom(size=(64, 64, 32)), path)
    if suffix == ".nii.gz":  # a valid gzip stream holding half the voxels
        path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[: 64 * 64 * 16]))
    else:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match="corrupt or truncated") as info:
        read_image(path, "flair")
    assert str(path) in str(info.value)


def test_2d_image(tmp_path):
    path = write(sitk.GetImageFromArray(np.random.default_rng(0).random((30, 40))),
                 tmp_path / "slice.nii.gz")
    with pytest.raises(InputError, match="2D") as info:
        read_image(path, "flair")
    assert path in str(info.value)


def test_single_slice_volume_counts_as_2d(tmp_path):
    array = np.random.default_rng(0).random((1, 30, 40)).astype(np.float32)
    path = write(sitk.GetImageFromArray(array), tmp_path / "one_slice.nrrd")
    with pytest.raises(InputError, match="single slice") as info:
        read_image(path, "t2")
    assert path in str(info.value)


def test_4d_series(tmp_path):
    array = np.random.default_rng(0).random((3, 6, 7, 8)).astype(np.float32)
    image = sitk.JoinSeries([sitk.GetImageFromArray(a) for a in array])
    path = write(image, tmp_path / "dwi.nii.gz")
    with pytest.raises(InputError, match="4D") as info:
        read_image(path, "flair")
    assert path in str(info.value)


def test_4d_with_one_volume_is_read_as_3d(tmp_path):
    array = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)
    image = sitk.JoinSeries([sitk.GetImageFromArray(array)])
    path = write(image, tmp_path / "t1_4d.nii.gz")
    read = read_image(path, "t1")
    assert read.GetSize() == (8, 7, 6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read), array)


def test_vector_image(tmp_path):
    rgb = sitk.Compose([phantom(size=(10, 10, 10))] * 3)
    path = write(rgb, tmp_path / "rgb.mha")
    with pytest.raises(InputError, match="3 components") as info:
        read_image(path, "t1")
    assert path in str(info.value)


def test_nan_voxels(tmp_path):
    array = sitk.GetArrayFromImage(phantom(dtype=np.float32))
    array[3, 4, 5] = np.nan
    array[2, 2, 2] = np.inf
    path = write(sitk.GetImageFromArray(array), tmp_path / "FLAIR.nii.gz")
    with pytest.raises(InputError, match="2 NaN or infinite") as info:
        read_image(path, "flair")
    assert path in str(info.value)


@pytest.mark.parametrize("value, text", [(0, "all zero"), (417, "constant")])
def test_constant_image(tmp_path, value, text):
    image = sitk.Image([12, 12, 12], sitk.sitkInt16) + value
    path = write(image, tmp_path / "T2.nii.gz")
    with pytest.raises(InputError, match=text) as info:
        read_image(path, "t2")
    assert path in str(info.value) and "T2W" in str(info.value)


def test_memory_guard_voxel_cap(tmp_path, monkeypatch):
    path = write(phantom(size=(20, 20, 20)), tmp_path / "big.nii.gz")
    monkeypatch.setattr(validation, "MAX_VOXELS", 20**3 - 1)
    with pytest.raises(ResourceError, match="more than the limit") as info:
        read_image(path, "flair")
    assert path in str(info.value) and "GB" in str(info.value)


def test_memory_guard_available_memory(tmp_path, monkeypatch):
    path = write(phantom(size=(20, 20, 20)), tmp_path / "big.nii.gz")
    monkeypatch.setattr(validation, "FIXED_WORKING_BYTES", 0)
    monkeypatch.setattr(validation, "BYTES_PER_VOXEL", 10 * 1024**3)  # 80 TB needed
    with pytest.raises(ResourceError, match=r"needs about [\d.]+ GB") as info:
        read_image(path, "t1")
    assert path in str(info.value)


def test_memory_estimate_scales_with_voxels():
    small = validation.estimate_working_memory_bytes(100**3)
    large = validation.estimate_working_memory_bytes(400**3)
    assert large - small == (400**3 - 100**3) * validation.BYTES_PER_VOXEL
    validation.check_memory("clinical.nii.gz", (512, 512, 200), available_bytes=8 * 1024**3)


def test_not_a_brain_volume():
    with pytest.raises(InputError, match="does not look like a brain") as info:
        validation.check_brain_volume("/data/T1.nii.gz", 35.0)
    assert "/data/T1.nii.gz" in str(info.value) and "35 mL" in str(info.value)
    validation.check_brain_volume("/data/T1.nii.gz", 1350.0)
