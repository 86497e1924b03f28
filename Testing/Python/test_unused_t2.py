"""A model that takes FLAIR and T1W only: a given T2W is read but not used, and the run says
so (warning, summary.json ``inputs_not_used``, the QC report); a three-modality model still
warns when the T2W is missing."""
from __future__ import annotations

import json

import pytest

from allnet import outputs, pipeline
from allnet.contract import REPORT_FILE
from allnet.longitudinal_pipeline import _without_unused, input_warnings
from allnet.model import ModelConfig, random_bundle, save_model_file
from allnet.preprocessing.pair import VisitImages

from helpers_synthesis import write_mni_case

TINY = dict(base_channels=4, depth=2, max_channels=8, head_channels=4, head_mlp=(4,))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return write_mni_case(tmp_path_factory.mktemp("unused_t2_case"), seed=3, n_lesions=2)


def _model(folder, modalities) -> str:
    bundle = random_bundle(ModelConfig(**TINY, modalities=modalities, modality_dropout=True), n=1, seed=4)
    path = folder / f"{'_'.join(modalities)}.pt"
    save_model_file(path, bundle.config, [m.state_dict() for m in bundle.members], {})
    return str(path)


def test_flair_t1_model_leaves_the_given_t2w_out(case, tmp_path) -> None:
    model = _model(tmp_path, ("flair", "t1"))
    out = tmp_path / "out"
    pipeline.segment(case["t1"], case["flair"], case["t2"], out, model=model, preprocessed=True, device="cpu")
    summary = json.loads((out / outputs.SUMMARY_FILE).read_text())
    assert summary["inputs_not_used"] == {"t2": str(case["t2"])}
    assert "t2" not in summary["inputs"] and "t2" not in summary["modalities_present"]
    assert any(w.startswith("T2W given") and "FLAIR and T1W only" in w for w in summary["warnings"])
    assert not any("T2W not given" in w for w in summary["warnings"])
    assert "given but not used" in (out / REPORT_FILE).read_text()


def test_three_modality_model_still_warns_about_a_missing_t2w(case, tmp_path) -> None:
    model = _model(tmp_path, ("flair", "t1", "t2"))
    result = pipeline.segment(case["t1"], case["flair"], None, model=model, preprocessed=True, device="cpu")
    assert "inputs_not_used" not in result.summary
    assert any("T2W not given" in w for w in result.summary["warnings"])


def test_longitudinal_visit_without_the_unused_t2w(case) -> None:
    import SimpleITK as sitk

    flair, t2 = sitk.ReadImage(str(case["flair"])), sitk.ReadImage(str(case["t2"]))
    visit = VisitImages(flair=flair, t2=t2, names={"flair": "f.nii.gz", "t2": "t2.nii.gz"})
    two = random_bundle(ModelConfig(**TINY, modalities=("flair", "t1")), n=1)
    three = random_bundle(ModelConfig(**TINY), n=1)
    kept, unused = _without_unused(two, visit)
    assert kept.t2 is None and kept.names == {"flair": "f.nii.gz"} and unused == {"t2": "t2.nii.gz"}
    assert _without_unused(three, visit) == (visit, {})
    # no "T2W at one visit only / not given" warnings for a model that takes no T2W
    present = {"baseline": ["flair", "t1"], "followup": ["flair", "t1"]}
    assert input_warnings(present, ("flair", "t1")) == []
    assert "T2W not given" in input_warnings(present)[0]


def test_a_model_that_averages_a_pass_without_t2w_says_so(case, tmp_path) -> None:
    """A three-modality model with ``average_without=('t2',)``: the run uses the T2W, runs a
    second pass per member without it (progress says so), and summary.json and the report
    record the averaging."""
    from allnet.progress import Progress

    bundle = random_bundle(ModelConfig(**TINY, modality_dropout=True, average_without=("t2",)), n=1, seed=4)
    model = tmp_path / "avg.pt"
    save_model_file(model, bundle.config, [m.state_dict() for m in bundle.members], {})
    messages = []
    out = tmp_path / "out"
    pipeline.segment(case["t1"], case["flair"], case["t2"], out, model=str(model), preprocessed=True,
                     device="cpu", progress=Progress(lambda stage, fraction, message: messages.append(message)))
    summary = json.loads((out / outputs.SUMMARY_FILE).read_text())
    assert summary["inference_plan"]["average_without"] == ["t2"] and "t2" in summary["modalities_present"]
    assert any("pass 2/2" in m for m in messages)
    assert "a pass without the T2W" in (out / REPORT_FILE).read_text()
