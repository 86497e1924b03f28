"""The whole pipeline: outputs, geometry, determinism, missing T2W, native round trip."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

from allnet import outputs, pipeline
from allnet.contract import REPORT_FILE
from allnet.grid import working_reference
from allnet.inference import Prediction
from allnet.model import ModelConfig, random_bundle, save_model_file

from helpers_synthesis import write_mni_case

TINY = dict(base_channels=4, depth=2, max_channels=8, head_channels=4, head_mlp=(4,))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    bundle = random_bundle(ModelConfig(**TINY), n=3, seed=1)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model_file(path, bundle.config, [m.state_dict() for m in bundle.members], {"name": "tiny"})
    return path


@pytest.fixture(scope="module")
def mni_case(tmp_path_factory) -> dict[str, Path]:
    """A skull-stripped synthetic case on the MNI grid with known lesions (the --preprocessed mode)."""
    return write_mni_case(tmp_path_factory.mktemp("mni_case"), seed=3, n_lesions=8)


def test_outputs_geometry_and_summary(mni_case, tiny_model, tmp_path) -> None:
    out = tmp_path / "out"
    result = pipeline.segment(mni_case["t1"], mni_case["flair"], mni_case["t2"], out,
                              model=str(tiny_model), preprocessed=True, device="cpu")
    expected = {outputs.MASK_FILE, outputs.PROBABILITY_FILE, outputs.LABELS_FILE, outputs.ZONES_FILE,
                outputs.SEGMENTATION_FILE, outputs.TABLE_FILE, outputs.SUMMARY_FILE, REPORT_FILE}
    assert {p.name for p in out.iterdir()} == expected
    flair = sitk.ReadImage(str(mni_case["flair"]))
    for name in (outputs.MASK_FILE, outputs.PROBABILITY_FILE, outputs.LABELS_FILE, outputs.ZONES_FILE):
        image = sitk.ReadImage(str(out / name))
        assert image.GetSize() == flair.GetSize() and np.allclose(image.GetOrigin(), flair.GetOrigin())
        assert np.allclose(image.GetDirection(), flair.GetDirection())
    summary = json.loads((out / outputs.SUMMARY_FILE).read_text())
    assert summary["modalities_present"] == ["t1", "flair", "t2"]
    assert summary["model"]["members"] == 3 and summary["model"]["trained"] is False
    assert {"anatomy", "network", "total"} <= set(summary["timings_s"])
    assert summary["totals"]["count"] == len(result.lesions)
    # The label map, the table and the mask agree.
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / outputs.LABELS_FILE)))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out / outputs.MASK_FILE)))
    assert np.array_equal(labels > 0, mask > 0)
    assert sorted(np.unique(labels[labels > 0]).tolist()) == [l.id for l in sorted(result.lesions, key=lambda l: l.id)]
    seg = slicerio.read_segmentation(str(out / outputs.SEGMENTATION_FILE))
    assert int((seg["voxels"] > 0).sum()) == int(mask.sum())


def test_same_input_gives_bit_identical_output(mni_case, tiny_model) -> None:
    kwargs = dict(model=str(tiny_model), preprocessed=True, device="cpu")
    a = pipeline.segment(mni_case["t1"], mni_case["flair"], mni_case["t2"], **kwargs)
    b = pipeline.segment(mni_case["t1"], mni_case["flair"], mni_case["t2"], **kwargs)
    pa, pb = sitk.GetArrayFromImage(a.probability), sitk.GetArrayFromImage(b.probability)
    assert pa.max() > 0  # the random model gives a non-trivial map, so the comparison means something
    assert np.array_equal(pa, pb)
    assert np.array_equal(sitk.GetArrayFromImage(a.mask), sitk.GetArrayFromImage(b.mask))


def test_without_t2_says_so(mni_case, tiny_model, tmp_path) -> None:
    result = pipeline.segment(mni_case["t1"], mni_case["flair"], None, tmp_path / "o",
                              model=str(tiny_model), preprocessed=True, device="cpu")
    summary = json.loads((tmp_path / "o" / outputs.SUMMARY_FILE).read_text())
    assert summary["modalities_present"] == ["t1", "flair"]
    assert any("T2W not given" in w for w in summary["warnings"])
    assert result.summary["warnings"] == summary["warnings"]


def _truth_predictor(truth_working: np.ndarray):
    """Stand-in for inference.predict that returns a known working-grid mask."""
    def fake_predict(bundle, images, anatomy, brain_mask, **kwargs) -> Prediction:
        prob = truth_working.astype(np.float32) * 0.9
        return Prediction(probability=prob, mask=truth_working.astype(np.uint8), n_members=1,
                          device_used="cpu", seconds=0.0, mode="whole", patch_size=(0, 0, 0),
                          n_windows=1, crop=(slice(None),) * 3)
    return fake_predict


def test_lesion_table_matches_known_lesions(mni_case, tiny_model, monkeypatch) -> None:
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(mni_case["truth"])))
    monkeypatch.setattr(pipeline, "predict", _truth_predictor(truth))
    result = pipeline.segment(mni_case["t1"], mni_case["flair"], mni_case["t2"],
                              model=str(tiny_model), preprocessed=True, min_lesion_mm3=0.0)
    mask = sitk.GetArrayFromImage(result.mask)
    assert np.array_equal(mask > 0, truth > 0)  # identity geometry: exact
    from scipy import ndimage
    _, n = ndimage.label(truth, structure=np.ones((3, 3, 3)))
    assert result.totals["count"] == n
    assert result.totals["total_volume_ml"] == pytest.approx(truth.sum() / 1000.0)
    assert all(l.mean_probability == pytest.approx(0.9, abs=1e-4) for l in result.lesions)


def test_native_to_working_to_native_within_one_voxel() -> None:
    """A mask on an oblique anisotropic native grid survives the round trip through the
    working grid (as the pipeline does it) to within one native voxel."""
    native = sitk.Image([160, 160, 40], sitk.sitkFloat32)
    native.SetSpacing((1.2, 1.2, 3.5))
    native.SetDirection(sitk.VersorTransform((0.2, 0.1, 1.0), 0.15).GetMatrix())
    native.SetOrigin((-95.0, -100.0, -60.0))
    array = np.zeros(sitk.GetArrayFromImage(native).shape, np.float32)
    array[12:20, 40:70, 50:90] = 1.0
    array[25:28, 100:112, 30:45] = 1.0
    mask_native = sitk.GetImageFromArray(array)
    mask_native.CopyInformation(native)
    working_to_native = sitk.Euler3DTransform((0, 0, 0), 0.08, -0.05, 0.12, (4.0, -7.0, 3.0))
    in_working = sitk.Resample(mask_native, working_reference(), working_to_native, sitk.sitkLinear, 0.0)
    case = pipeline.PreprocessedCase(images={}, brain_mask=None, flair_native=native,
                                     working_to_native=working_to_native, modalities_present=[],
                                     timings={}, qc={})
    back = pipeline._to_native((sitk.GetArrayFromImage(in_working) >= 0.5).astype(np.float32), case,
                               sitk.sitkLinear, sitk.sitkFloat32)
    back = sitk.GetArrayFromImage(back) >= 0.5
    original = array > 0
    from scipy import ndimage
    grown = ndimage.binary_dilation(original, np.ones((3, 3, 3)))
    shrunk = ndimage.binary_erosion(original, np.ones((3, 3, 3)))
    assert back[shrunk].all() and not back[~grown].any()
    assert abs(int(back.sum()) - int(original.sum())) < 0.25 * original.sum()


def test_no_model_bundled_is_a_clear_model_error(mni_case, monkeypatch) -> None:
    from allnet.errors import ModelError
    monkeypatch.setattr(pipeline, "bundled_model_path", lambda: None)
    with pytest.raises(ModelError, match="no trained model is bundled"):
        pipeline.segment(mni_case["t1"], mni_case["flair"], preprocessed=True)


@pytest.mark.realdata
@pytest.mark.slow
def test_whole_pipeline_on_native_clinical_scans(shared_data, tiny_model, tmp_path) -> None:
    """lesjak2018 native patient01 study1: thick-slice, whole-head, own scanner space."""
    case = shared_data / "lesjak2018" / "native" / "patient01"
    out = tmp_path / "native"
    result = pipeline.segment(case / "study1_T1W.nii.gz", case / "study1_FLAIR.nii.gz",
                              case / "study1_T2W.nii.gz", out, model=str(tiny_model), device="cpu")
    flair = sitk.ReadImage(str(case / "study1_FLAIR.nii.gz"))
    mask = sitk.ReadImage(str(out / outputs.MASK_FILE))
    assert mask.GetSize() == flair.GetSize() and np.allclose(mask.GetSpacing(), flair.GetSpacing())
    qc = result.summary["qc"]
    assert 900 < qc["brain_volume_ml"] < 1800 and qc["template_dice"] > 0.9
    zones = sitk.GetArrayFromImage(sitk.ReadImage(str(out / outputs.ZONES_FILE)))
    # the zones map (brain, in native space) covers a plausible brain volume
    voxel_ml = np.prod(flair.GetSpacing()) / 1000.0
    assert 800 < (zones > 0).sum() * voxel_ml < 1900
