"""QC report (allnet.report): one self-contained HTML file per run, a cohort page per batch,
and a real browser renders them."""
from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from allnet.contract import DIS_LABEL
from allnet.grid import array_to_working_image, mni_ras_coordinates
from allnet.lesions import lesion_table, lesion_totals
from allnet.report import (CohortCase, ReportData, cohort_cases, least_confident, write_cohort_report,
                           write_report)

IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _report_data() -> ReportData:
    """The template head as a case on the working grid with three spherical lesions."""
    from allnet.templates import load_template

    t1 = sitk.GetArrayFromImage(load_template().t1)
    brain = (t1 > 0).astype(np.uint8)
    # FLAIR-like contrast: CSF dark, grey matter a little brighter than white matter
    flair = np.where(brain > 0, np.interp(t1, [0.3, 0.7, 0.9], [0.2, 0.8, 0.7]), 0.0).astype(np.float32)
    x, y, z = mni_ras_coordinates()
    ids = np.zeros(t1.shape, dtype=np.uint16)
    for number, (cx, cy, cz, r) in enumerate([(20, -10, 25, 6), (-25, 10, 30, 4), (-8, -25, -11, 3)], 1):
        ids[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= r * r] = number
    flair[ids > 0] = 1.5
    flair_image, labels = array_to_working_image(flair), array_to_working_image(ids)
    lesions = lesion_table(labels, scores={1: 0.9, 2: 0.35, 3: 0.8})
    summary = {
        "allnet_version": "0.1.0", "inputs": {"t1": "/cases/a/T1.nii.gz", "flair": "/cases/a/FLAIR.nii.gz"},
        "modalities_present": ["t1", "flair"], "totals": lesion_totals(lesions),
        "warnings": ["T2W not given: segmented from T1W and FLAIR only"],
        "model": {"name": "tiny", "version": "2", "members": 1, "members_used": 1, "trained": False,
                  "files": ["/models/tiny.pt"]},
        "qc": {"head_check": {"t1": {"edge_correlation": 0.81, "nmi": 1.08, "limit": 0.5, "same_head": True}},
               "noise_harmonisation": {"flair": {"noise_before": 0.309, "noise_after": 0.117, "sigma_voxels": 0.7063},
                                       "t1": {"noise_before": 0.094, "noise_after": 0.094, "sigma_voxels": 0.0}}},
        "inference_plan": {"noise_target": 0.12, "threshold": 0.6, "connectivity": 26, "min_lesion_mm3": 10.0,
                           "lesion_score_threshold": 0.0, "min_flair_contrast": 0.3,
                           "max_grey_matter_fraction": 0.99, "lesions_dropped_by_score": 0,
                           "lesions_dropped_by_contrast": 4, "lesions_dropped_by_grey_matter": 2},
        "timings_s": {"preprocessing": 10.0, "network": 5.0, "total": 16.5}, "device": "cpu",
    }
    return ReportData(summary=summary, lesions=lesions, flair=flair_image, labels=labels,
                      input_geometry={"t1": {"size": (182, 218, 182), "spacing_mm": (1.0, 1.0, 1.0)}},
                      working_images={"flair": flair, "t1": t1}, brain_mask=brain,
                      working_mask=(ids > 0).astype(np.uint8))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, ReportData]:
    data = _report_data()
    path = write_report(tmp_path_factory.mktemp("run") / "report.html", data)
    return path, data


def test_report_is_one_self_contained_file_with_every_section(report):
    path, data = report
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # no temporary left
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    # nothing to fetch: no script, no link, no external source
    assert "<script" not in text and "<link" not in text
    assert not re.search(r'(src|href)="(?!data:)', text)
    images = IMG.findall(text)
    alts = [alt for alt, _ in images]
    largest = data.lesions[0]
    assert alts[:4] == ["T1W edges on FLAIR", "brain on the MNI template", "lesion overview",
                        f"largest lesion (#1, {largest.volume_mm3:.0f} mm3, location unknown)"]
    assert alts[4].startswith("least confident lesion (#2, score 0.35")
    for _, payload in images:
        png = base64.b64decode(payload)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    for needle in ("/cases/a/FLAIR.nii.gz", "not given", "T2W not given", DIS_LABEL,
                   "edge correlation", "0.81", "Timings", "16.5", "tiny 2", "NOT trained", "not for diagnosis",
                   "noise target (0.12): FLAIR noise 0.309 -&gt; 0.117 (Gaussian sigma 0.71 mm)",
                   "probability above 0.60, 26-connected, at least 10 mm3",
                   "FLAIR-contrast floor 0.30 of the WM-CSF contrast above white matter (4 dropped); "
                   "lesions with more than 0.99 of their voxels in the grey matter of the T1W tissue "
                   "segmentation (2 dropped)."):
        assert needle in text, needle
    assert text.count("<tr>") >= len(data.lesions) + 1


def test_least_confident_prefers_the_lesion_score(report):
    _, data = report
    assert least_confident(data.lesions).id == 2
    assert least_confident([]) is None


def test_lesion_views_show_the_lesion(report):
    """The largest lesion's axial view has yellow outline pixels near the picture's centre."""
    from PIL import Image

    path, _ = report
    payload = IMG.findall(path.read_text(encoding="utf-8"))[3][1]
    picture = np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")).astype(int)
    height, width, _ = picture.shape
    first_panel = picture[:, : width // 3]
    yellow = (first_panel[..., 0] > 200) & (first_panel[..., 1] > 170) & (first_panel[..., 2] < 80)
    rows, cols = np.nonzero(yellow)
    assert rows.size > 30
    assert abs(cols.mean() - width / 6) < width / 12 and abs(rows.mean() - height / 2) < height / 5


def test_cohort_report_links_thumbnails_and_failures(report, tmp_path):
    path, data = report
    case_dir = tmp_path / "case_a"
    case_dir.mkdir()
    shutil.copy(path, case_dir / "report.html")
    cases = [CohortCase("case_a", "ok", data.summary["totals"], report=case_dir / "report.html"),
             CohortCase("case_b", "ok", {"count": 0, "total_volume_ml": 0.0}),
             CohortCase("case_c", "failed", error="T1.nii.gz: image is constant")]
    out = write_cohort_report(tmp_path / "cohort_report.html", cases)
    text = out.read_text(encoding="utf-8")
    assert '<a href="case_a/report.html">case_a</a>' in text
    assert len(IMG.findall(text)) == 2  # the lesion-load plot and case_a's thumbnail
    assert "case_c" in text and "T1.nii.gz: image is constant" in text
    assert "3 cases: 2 segmented, 1 failed" in text


def test_cohort_cases_from_batch_outcomes(report, tmp_path):
    from allnet.cases import CaseOutcome

    path, data = report
    (tmp_path / "a").mkdir()
    shutil.copy(path, tmp_path / "a" / "report.html")
    outcomes = [CaseOutcome("a", "ok", 1.0, totals=data.summary["totals"]),
                CaseOutcome("b", "failed", 0.5, error="no FLAIR image found", exit_code=2)]
    cases = cohort_cases(outcomes, tmp_path)
    assert [(c.name, c.status, c.report) for c in cases] == [("a", "ok", tmp_path / "a" / "report.html"),
                                                             ("b", "failed", None)]
    assert cases[1].error == "no FLAIR image found"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium); the report's "
                    "browser rendering is not checked")
    from PIL import Image

    path, _ = report
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1200,1600", f"--screenshot={shot}", path.as_uri()],
                   check=True, capture_output=True, timeout=120)
    picture = np.asarray(Image.open(shot).convert("L")).astype(float)
    assert picture.shape == (1600, 1200)
    assert picture.std() > 20  # text and pictures, not a blank page
    dark = picture < 60
    assert dark.mean() > 0.05  # the black-background pictures are drawn
    assert (picture > 240).mean() > 0.3  # on the white page


def test_no_report_setting_writes_none(tmp_path):
    """``report=False`` (``--no-report``): the run writes no report.html and lists none."""
    import json

    from allnet.model import ModelConfig, random_bundle, save_model_file
    from allnet.pipeline import segment

    data = _report_data()
    bundle = random_bundle(ModelConfig(base_channels=4, depth=2, max_channels=8, head_channels=4,
                                       head_mlp=(4,)), n=1)
    model = tmp_path / "tiny.pt"
    save_model_file(model, bundle.config, [m.state_dict() for m in bundle.members], {"name": "tiny"})
    t1 = array_to_working_image(data.working_images["t1"])
    segment(t1, data.flair, output_dir=tmp_path / "out", preprocessed=True, model=str(model), report=False)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert not (tmp_path / "out" / "report.html").exists()
    assert "report" not in summary["outputs"] and "report" not in summary["timings_s"]


def test_decisions_say_when_a_pass_without_t2w_was_averaged():
    from allnet.report import _decisions_paragraph

    plan = {"threshold": 0.5, "connectivity": 26, "min_lesion_mm3": 10.0, "lesion_score_threshold": 0.0,
            "min_flair_contrast": 0.3, "average_without": ["t2"]}
    with_t2 = _decisions_paragraph({"inference_plan": plan, "modalities_present": ["t1", "flair", "t2"]})
    assert "mean of a pass with all images and a pass without the T2W" in with_t2
    # no T2W given: one pass only, nothing to say
    assert "pass without" not in _decisions_paragraph({"inference_plan": plan, "modalities_present": ["t1", "flair"]})
