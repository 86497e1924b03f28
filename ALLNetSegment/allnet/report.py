"""The QC report: one self-contained ``report.html`` per run, ``cohort_report.html`` per batch.

Everything is inside the file (pictures as base64 PNG, inline CSS, no script, no link to
the network), so it opens from a USB stick in any browser. Sections of a run's report:
inputs (files, voxel sizes, T2W present or not), the one-head check and registration
pictures, a lesion overview, views through the largest and the least confident lesions,
the lesion table, totals with the McDonald 2017 dissemination-in-space count, warnings,
model and software versions, timings. Pictures come from ``allnet.report_figures``.
"""
from __future__ import annotations

import base64
import html
import json
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import __version__
from . import report_figures as figures
from .atomic import atomic_file
from .contract import DIS_AREAS, DIS_LABEL, REPORT_FILE, SUMMARY_OUTPUTS_KEY
from .io import ROLES
from .lesions import Lesion

MAX_TABLE_ROWS = 200  # longer tables are cut (lesions.csv has every row)

REPORT_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:1.5em auto;
max-width:1100px;color:#222;background:#fff;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f0f0f0}td.t,th.t{text-align:left}img{max-width:100%;display:block;margin:.4em 0}
.warn{background:#fff4d6;border-left:4px solid #e6a700;padding:.4em .8em;margin:.3em 0}
.note{color:#555;font-size:.85em}.ok{color:#1a7f37}.bad{color:#b42318}
.cases{display:flex;flex-wrap:wrap;gap:12px}.case{border:1px solid #ccc;padding:6px;width:250px;font-size:.85em}
"""


@dataclass
class ReportData:
    """What a run's report shows. Native images are on the input FLAIR's grid (LPS);
    working-grid arrays are KJI on the MNI grid (``allnet.grid``)."""

    summary: dict                                   # the run's summary.json content
    lesions: list[Lesion]
    flair: sitk.Image                               # input FLAIR, native
    labels: sitk.Image                              # lesion ids on the FLAIR grid
    input_geometry: dict[str, dict] = field(default_factory=dict)  # role -> {"size", "spacing_mm"}
    working_images: dict[str, np.ndarray] = field(default_factory=dict)  # 'flair','t1'[,'t2'] normalised
    brain_mask: np.ndarray | None = None            # working grid
    working_mask: np.ndarray | None = None          # lesion mask, working grid


def img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def html_table(header: list[str], rows: list[list], text_columns: int | set[int] = 1) -> str:
    """HTML table; ``text_columns``: the first n columns, or a set of column indices, are
    left-aligned text (the others right-aligned numbers)."""
    text = set(range(text_columns)) if isinstance(text_columns, int) else text_columns

    def cell(tag: str, value, index: int) -> str:
        cls = ' class="t"' if index in text else ""
        return f"<{tag}{cls}>{html.escape('' if value is None else str(value))}</{tag}>"
    head = "".join(cell("th", h, i) for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(cell("td", v, i) for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def least_confident(lesions: list[Lesion]) -> Lesion | None:
    """The lesion with the lowest lesion score (confidence), else the lowest mean probability."""
    for key in ("confidence", "mean_probability"):
        scored = [les for les in lesions if getattr(les, key) is not None]
        if scored:
            return min(scored, key=lambda les: (getattr(les, key), les.id))
    return None


def _inputs_section(data: ReportData) -> str:
    summary = data.summary
    rows = []
    for role, name in (summary.get("inputs") or {}).items():
        geometry = data.input_geometry.get(role, {})
        spacing = geometry.get("spacing_mm")
        rows.append([role.upper(), name, " x ".join(str(s) for s in geometry.get("size", ())),
                     " x ".join(f"{s:.2f}" for s in spacing) if spacing else ""])
    present = summary.get("modalities_present") or list((summary.get("inputs") or {}).keys())
    not_used = summary.get("inputs_not_used") or {}
    t2 = ("given but not used: this model does not read it" if "t2" in not_used else
          "present" if "t2" in present else "not given (segmented from T1W and FLAIR)")
    return ("<h2>Inputs</h2>" + html_table(["role", "file", "size (voxels)", "voxel size (mm)"], rows, 2)
            + f"<p>T2W: {html.escape(t2)}. Mode: "
            + ("already on the MNI grid" if (summary.get("settings") or {}).get("preprocessed") else "native scans")
            + ".</p>" + _noise_paragraph(summary))


def _noise_paragraph(summary: dict) -> str:
    """What the model's noise harmonisation did to each modality (``qc.noise_harmonisation``)."""
    records = (summary.get("qc") or {}).get("noise_harmonisation") or {}
    smoothed = [f"{role.upper()} noise {_fmt(r.get('noise_before'), 3)} -> {_fmt(r.get('noise_after'), 3)} "
                f"(Gaussian sigma {_fmt(r.get('sigma_voxels'), 2)} mm)"
                for role, r in records.items() if (r.get("sigma_voxels") or 0) > 0]
    if not records:
        return ""
    target = (summary.get("inference_plan") or {}).get("noise_target")
    head = f"Noise harmonisation to the model's noise target{'' if target is None else f' ({_fmt(target, 2)})'}: "
    body = "; ".join(smoothed) if smoothed else "no modality was above it, none was smoothed"
    return f'<p class="note">{html.escape(head + body)}. Noise: white-matter voxel-scale noise, normalised units.</p>'



def _registration_section(data: ReportData) -> str:
    parts = ["<h2>Registration and one-head check</h2>"]
    head = (data.summary.get("qc") or {}).get("head_check")
    if head:
        rows = [[{"t1": "T1W", "t2": "T2W"}.get(role, role), _fmt(v.get("edge_correlation"), 3),
                 _fmt(v.get("limit"), 2), _fmt(v.get("nmi"), 3), "yes" if v.get("same_head") else "NO"]
                for role, v in head.items()]
        parts.append(html_table(["image vs FLAIR", "edge correlation", "same-head limit",
                             "normalised mutual information", "same head"], rows))
        parts.append('<p class="note">Correlation of the image edges with the FLAIR edges inside the '
                     "brain after registration: the same head lines up edge for edge (measured 0.61-0.81 "
                     "on matched scans), another person's head only in its outline (0.29-0.37).</p>")
    images, brain = data.working_images, data.brain_mask
    if brain is not None and "flair" in images:
        for role, name in (("t1", "T1W"), ("t2", "T2W")):
            if role in images:
                parts.append(img_tag(figures.registration_edges(images["flair"], images[role], brain, name),
                                  f"{name} edges on FLAIR"))
        parts.append('<p class="note">Cyan: edges of the T1W/T2W drawn on the FLAIR after registration; '
                     "they should follow the ventricles and the brain surface of the FLAIR.</p>")
        from .templates import load_template

        template_t1 = sitk.GetArrayFromImage(load_template().t1)
        parts.append(img_tag(figures.template_fit(template_t1, brain), "brain on the MNI template"))
        parts.append('<p class="note">Yellow: the outline of this brain after the affine registration '
                     "to MNI, on the template; it should follow the template's brain surface.</p>")
    return "".join(parts)


def _decisions_paragraph(summary: dict) -> str:
    """How the vote became lesions (``summary.json``'s inference plan): the values used and
    how many detections the lesion-score threshold, the FLAIR-contrast floor and the
    grey-matter rule dropped, so a reviewer knows what was removed before looking for missed
    lesions."""
    plan = summary.get("inference_plan") or {}
    if "threshold" not in plan:
        return ""
    text = (f"Lesion decisions: probability above {_fmt(plan.get('threshold'), 2)}, "
            f"{plan.get('connectivity', '?')}-connected, at least {_fmt(plan.get('min_lesion_mm3'), 0)} mm3; "
            f"lesion-score threshold {_fmt(plan.get('lesion_score_threshold'), 2)} "
            f"({plan.get('lesions_dropped_by_score', 0)} dropped); FLAIR-contrast floor "
            f"{_fmt(plan.get('min_flair_contrast'), 2)} of the WM-CSF contrast above white matter "
            f"({plan.get('lesions_dropped_by_contrast', 0)} dropped)")
    fraction = plan.get("max_grey_matter_fraction", 1.0)
    if fraction is not None and fraction < 1:
        text += (f"; lesions with more than {_fmt(fraction, 2)} of their voxels in the grey matter of the "
                 f"T1W tissue segmentation ({plan.get('lesions_dropped_by_grey_matter', 0)} dropped)")
    text += "."
    averaged = [m for m in plan.get("average_without") or [] if m in (summary.get("modalities_present") or [])]
    if averaged:
        names = " and ".join(ROLES.get(m, m) for m in averaged)
        text += (f" Each model's probability is the mean of a pass with all images and a pass without the "
                 f"{names}, as the model's plan says.")
    return f'<p class="note">{html.escape(text)}</p>'


def _lesion_pictures(data: ReportData) -> str:
    parts = ["<h2>Lesions</h2>", _decisions_paragraph(data.summary)]
    images, brain = data.working_images, data.brain_mask
    if data.working_mask is not None and brain is not None and "flair" in images:
        parts.append(img_tag(figures.lesion_overview(images["flair"], data.working_mask, brain),
                          "lesion overview"))
        parts.append('<p class="note">FLAIR on the MNI grid with the lesion mask (red), axial slices '
                     "from bottom to top.</p>")
    if not data.lesions:
        return "".join(parts) + "<p>No lesion found.</p>"
    largest = max(data.lesions, key=lambda les: (les.voxel_count, -les.id))
    shown = [(largest, f"largest lesion (#{largest.id}, {largest.volume_mm3:.0f} mm3, "
                       f"{largest.location or 'location unknown'})")]
    weakest = least_confident(data.lesions)
    if weakest is not None and weakest.id != largest.id:
        score = weakest.confidence if weakest.confidence is not None else weakest.mean_probability
        shown.append((weakest, f"least confident lesion (#{weakest.id}, score {score:.2f}, "
                               f"{weakest.location or 'location unknown'})"))
    for lesion, title in shown:
        parts.append(f"<p><b>{html.escape(title)}</b></p>")
        parts.append(img_tag(figures.lesion_views(data.flair, data.labels, lesion, f"#{lesion.id}"), title))
    parts.append('<p class="note">Native FLAIR around the lesion (70 mm box): the lesion outlined in '
                 "yellow, other lesions in red. Radiological convention: the patient's right on the "
                 "left.</p>")
    return "".join(parts)


def _lesion_table(lesions: list[Lesion]) -> str:
    rows = [[les.id, les.location or "", _fmt(les.volume_mm3, 1),
             *(_fmt(v, 1) for v in les.centroid_ras),
             _fmt(les.confidence), _fmt(les.mean_probability)] for les in lesions[:MAX_TABLE_ROWS]]
    cut = (f'<p class="note">First {MAX_TABLE_ROWS} of {len(lesions)} lesions; lesions.csv has all.</p>'
           if len(lesions) > MAX_TABLE_ROWS else "")
    return ("<h2>Lesion table</h2>"
            + html_table(["id", "location", "volume (mm3)", "R (mm)", "A (mm)", "S (mm)", "confidence",
                      "mean probability"], rows, {1}) + cut)


def _totals_section(totals: dict) -> str:
    rows = [["all lesions", totals.get("count", 0), _fmt(totals.get("total_volume_ml", 0.0), 3)]]
    for location, entry in (totals.get("by_location") or {}).items():
        rows.append([location, entry["count"], _fmt(entry["volume_ml"], 3)])
    dis = totals.get("dissemination_in_space") or {}
    areas = dis.get("areas") or {}
    dis_text = (f"<p><b>{html.escape(DIS_LABEL)}: {dis.get('areas_with_lesions', 0)} of "
                f"{dis.get('areas_assessed', len(DIS_AREAS))}</b> ("
                + ", ".join(f"{html.escape(a)}: {areas.get(a, 0)}" for a in DIS_AREAS) + ")</p>"
                + f'<p class="note">{html.escape(dis.get("note", ""))}</p>') if dis else ""
    return "<h2>Totals</h2>" + html_table(["location", "lesions", "volume (mL)"], rows) + dis_text


def software_section(summary: dict) -> str:
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str:
        try:
            return version(package)  # metadata only: importing torch would take seconds
        except PackageNotFoundError:
            return "not installed"

    model = summary.get("model") or {}
    rows = [["ALLNet", summary.get("allnet_version", __version__)],
            ["model", f"{model.get('name', '')} {model.get('version', '')} "
                      f"({model.get('members_used', model.get('members', ''))} member(s)"
                      f"{', trained' if model.get('trained') else ', NOT trained'})"],
            ["model files", ", ".join(model.get("files") or [])],
            ["device", summary.get("device", "")],
            ["Python", platform.python_version()], ["numpy", np.__version__],
            ["SimpleITK", sitk.Version_VersionString()],
            *([package, installed(package)] for package in ("scipy", "torch", "deepbet", "matplotlib"))]
    timings = summary.get("timings_s") or {}
    timing_rows = [[name, _fmt(seconds, 1)] for name, seconds in timings.items()]
    return ("<h2>Model and software</h2>" + html_table(["", "version"], rows, 2)
            + "<h2>Timings</h2>" + (html_table(["stage", "seconds"], timing_rows) if timing_rows else "<p>-</p>"))


def render_report(data: ReportData) -> str:
    """The report's HTML text (see the module doc)."""
    summary = data.summary
    warnings = summary.get("warnings") or []
    warning_html = "".join(f'<div class="warn">{html.escape(str(w))}</div>' for w in warnings) or "<p>None.</p>"
    title = Path(str((summary.get("inputs") or {}).get("flair", "case"))).name
    totals = summary.get("totals") or {}
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ALLNet report: "
            f"{html.escape(title)}</title><style>{REPORT_CSS}</style></head><body>"
            f"<h1>ALLNet QC report</h1><p>{html.escape(title)}: {totals.get('count', 0)} lesions, "
            f"{totals.get('total_volume_ml', 0.0):.2f} mL. Research software: check every result; "
            "not for diagnosis.</p>"
            + _inputs_section(data) + "<h2>Warnings</h2>" + warning_html
            + _registration_section(data) + _lesion_pictures(data) + _totals_section(totals)
            + _lesion_table(data.lesions) + software_section(summary)
            + f'<p class="note">{html.escape(summary.get("coordinate_system", ""))}</p></body></html>')


def write_report(path: str | Path, data: ReportData) -> Path:
    """Write ``report.html`` (self-contained) to ``path`` atomically; returns the path."""
    path = Path(path)
    text = render_report(data)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


_FIRST_IMAGE = re.compile(r'<img alt="[^"]*" src="(data:image/png;base64,[A-Za-z0-9+/=]+)">')


@dataclass
class CohortCase:
    """One case of a batch for the cohort report: ``report`` is its report.html (or None)."""

    name: str
    status: str                      # "ok" | "failed"
    totals: dict = field(default_factory=dict)
    error: str = ""
    report: Path | None = None


def cohort_cases(outcomes: list, output_dir: str | Path) -> list[CohortCase]:
    """:class:`CohortCase` list from a batch's outcomes (objects with ``case_id``, ``status``,
    ``totals``, ``error`` and optionally ``summary``, as ``allnet.cases.CaseOutcome``); a
    finished case's report is the one its summary lists, else ``output_dir/<case_id>/
    report.html``, when the file exists. Resumed cases count as segmented."""
    cases = []
    for outcome in outcomes:
        ok = outcome.status in ("ok", "resumed")
        report = Path(output_dir) / outcome.case_id / REPORT_FILE
        summary_path = getattr(outcome, "summary", None)
        if summary_path is not None:  # the run's own list of what it wrote (names may differ)
            try:
                listed = json.loads(Path(summary_path).read_text(encoding="utf-8"))[SUMMARY_OUTPUTS_KEY]
                report = Path(summary_path).parent / listed["report"]
            except (OSError, ValueError, KeyError, TypeError):
                pass
        cases.append(CohortCase(outcome.case_id, "ok" if ok else "failed", dict(outcome.totals or {}),
                                outcome.error, report if ok and report.is_file() else None))
    return cases


def render_cohort_report(cases: list[CohortCase], folder: Path) -> str:
    """Cohort report HTML: lesion-load plot, one thumbnail per case linking to its report
    (relative link from ``folder``), failed cases with their reasons."""
    done = [c for c in cases if c.status == "ok"]
    failed = [c for c in cases if c.status != "ok"]
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ALLNet cohort "
             f"report</title><style>{REPORT_CSS}</style></head><body><h1>ALLNet cohort report</h1>"
             f"<p>{len(cases)} cases: {len(done)} segmented, {len(failed)} failed.</p>"]
    if done:
        parts.append(img_tag(figures.lesion_load_plot([c.name for c in done],
                                                   [float(c.totals.get("total_volume_ml", 0.0)) for c in done],
                                                   [int(c.totals.get("count", 0)) for c in done]),
                          "lesion load per case"))
        parts.append('<h2>Cases</h2><div class="cases">')
        for case in done:
            thumb, link = "", ""
            if case.report is not None and case.report.is_file():
                link = html.escape(case.report.relative_to(folder).as_posix()
                                   if case.report.is_relative_to(folder) else case.report.as_uri())
                found = _FIRST_IMAGE.search(case.report.read_text(encoding="utf-8"))
                thumb = f'<img alt="{html.escape(case.name)}" src="{found.group(1)}">' if found else ""
            dis = (case.totals.get("dissemination_in_space") or {}).get("areas_with_lesions")
            label = html.escape(case.name)
            if link:
                label = f'<a href="{link}">{label}</a>'
            parts.append(f'<div class="case"><b>{label}</b>'
                         f"{thumb}{case.totals.get('count', 0)} lesions, "
                         f"{float(case.totals.get('total_volume_ml', 0.0)):.2f} mL"
                         + (f"; DIS areas: {dis} of {len(DIS_AREAS)}" if dis is not None else "") + "</div>")
        parts.append("</div>")
    if failed:
        parts.append("<h2>Failed cases</h2>" + html_table(["case", "reason"], [[c.name, c.error] for c in failed], 2))
    parts.append(f'<p class="note">ALLNet {html.escape(__version__)}. {html.escape(DIS_LABEL)}.</p></body></html>')
    return "".join(parts)


def write_cohort_report(path: str | Path, cases: list[CohortCase]) -> Path:
    """Write ``cohort_report.html`` atomically; links to case reports are relative to its folder."""
    path = Path(path)
    text = render_cohort_report(cases, path.parent)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
