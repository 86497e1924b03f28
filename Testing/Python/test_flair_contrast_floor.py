"""``allnet segment`` applies the model plan's FLAIR-contrast floor and grey-matter fraction: a
detection in normal white matter is dropped by the floor, one lying wholly in grey matter by the
fraction, the lesions are kept, and summary.json says how many each rule dropped. (This
synthetic case's lesions are faint: 0.07-0.26 WM-CSF contrasts above WM, where real lesions sit
at 0.5-0.9; the floor here is set between them and white matter.)"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from allnet import outputs, pipeline
from allnet.contract import LABELS_FILE, SUMMARY_PLAN_KEY
from allnet.model import ModelConfig, random_bundle, save_model_file, set_inference_plan
from allnet.tissue import GM, WM

from helpers_synthesis import write_mni_case

FLOOR = 0.04
TINY = dict(base_channels=4, depth=2, max_channels=8, head_channels=4, head_mlp=(4,))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return write_mni_case(tmp_path_factory.mktemp("contrast_case"), seed=7, n_lesions=4)


def _run(case, tmp_path, monkeypatch, floor: float, tissue: int = WM, half: int = 2,
         plan: dict | None = None) -> dict:
    """Segment with a network stand-in that votes for every true lesion and for one cube of
    (2 * half + 1) voxels a side lying wholly in normal ``tissue`` (found on the case's own
    tissue labels)."""
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(case["truth"]))) > 0
    real_predict, real_anatomy = pipeline.predict, pipeline.compute_anatomy
    seen = {}

    def anatomy(*args, **kwargs):
        seen["anatomy"] = real_anatomy(*args, **kwargs)
        return seen["anatomy"]

    def predict(bundle, images, anatomy_channels, brain_mask, **kwargs):
        result = real_predict(bundle, images, anatomy_channels, brain_mask, **kwargs)
        normal = (seen["anatomy"].tissue == tissue) & ~truth
        core = normal.copy()
        for axis in range(3):
            for shift in range(1, half + 2):
                core &= np.roll(normal, shift, axis) & np.roll(normal, -shift, axis)
        k, j, i = np.argwhere(core)[int(core.sum()) // 2]
        seen["cube"] = np.zeros_like(truth)
        seen["cube"][k - half:k + half + 1, j - half:j + half + 1, i - half:i + half + 1] = True
        mask = truth | seen["cube"]
        return replace(result, mask=mask.astype(np.uint8), probability=mask.astype(np.float32))

    monkeypatch.setattr(pipeline, "compute_anatomy", anatomy)
    monkeypatch.setattr(pipeline, "predict", predict)
    bundle = random_bundle(ModelConfig(**TINY), n=1, seed=2)
    name = f"floor{floor}_{tissue}_{sorted((plan or {}).items())}"
    model = tmp_path / f"{name}.pt"
    save_model_file(model, bundle.config, [m.state_dict() for m in bundle.members], {})
    set_inference_plan(model, {"min_flair_contrast": floor, "min_lesion_mm3": 0.0, **(plan or {})})
    out = tmp_path / f"out_{name}"
    pipeline.segment(case["t1"], case["flair"], case["t2"], out, model=str(model), preprocessed=True,
                     device="cpu", report=False)
    summary = json.loads((out / outputs.SUMMARY_FILE).read_text())
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / LABELS_FILE)))
    return {"summary": summary, "labels": labels, "truth": truth, "cube": seen["cube"]}


def test_the_floor_drops_the_white_matter_detection_and_keeps_the_lesions(case, tmp_path, monkeypatch) -> None:
    off = _run(case, tmp_path, monkeypatch, 0.0)
    on = _run(case, tmp_path, monkeypatch, FLOOR)
    n_off, n_on = (r["summary"]["totals"]["count"] for r in (off, on))
    plan_on = on["summary"][SUMMARY_PLAN_KEY]
    assert plan_on["min_flair_contrast"] == FLOOR and plan_on["sources"]["min_flair_contrast"] == "model"
    assert off["summary"][SUMMARY_PLAN_KEY]["lesions_dropped_by_contrast"] == 0
    assert plan_on["lesions_dropped_by_contrast"] == 1 and n_on == n_off - 1
    assert off["labels"][off["cube"]].min() > 0 and on["labels"][on["cube"]].max() == 0
    assert (on["labels"][on["truth"]] > 0).mean() > 0.99  # every true lesion kept
    assert not any("FLAIR-contrast floor" in w for w in on["summary"]["warnings"])


def test_the_grey_matter_fraction_drops_a_detection_lying_wholly_in_grey_matter(case, tmp_path, monkeypatch) -> None:
    off = _run(case, tmp_path, monkeypatch, 0.0, tissue=GM, half=1)
    on = _run(case, tmp_path, monkeypatch, 0.0, tissue=GM, half=1, plan={"max_grey_matter_fraction": 0.99})
    plan_on = on["summary"][SUMMARY_PLAN_KEY]
    assert plan_on["max_grey_matter_fraction"] == 0.99 and plan_on["sources"]["max_grey_matter_fraction"] == "model"
    assert off["summary"][SUMMARY_PLAN_KEY]["lesions_dropped_by_grey_matter"] == 0
    assert plan_on["lesions_dropped_by_grey_matter"] == 1 and plan_on["lesions_dropped_by_contrast"] == 0
    assert on["summary"]["totals"]["count"] == off["summary"]["totals"]["count"] - 1
    assert off["labels"][off["cube"]].min() > 0 and on["labels"][on["cube"]].max() == 0
    assert (on["labels"][on["truth"]] > 0).mean() > 0.99  # every true lesion kept
