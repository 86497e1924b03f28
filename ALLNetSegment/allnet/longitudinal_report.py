"""The QC report page of a longitudinal run: ``report.html`` in the run's folder.

One self-contained file like the run report (``allnet.report``: its styles, tables and
software section): the two visits' inputs, warnings, the visit-to-visit registration and
same-person check, counts per change class and total volumes, views through each changed
lesion at both visits (up to ``MAX_VIEWS``; the jointly normalised FLAIRs of both visits on
the follow-up grid, the lesion outlined in yellow), the change table and timings.
"""
from __future__ import annotations

import html
from pathlib import Path

import SimpleITK as sitk

from . import report_figures as figures
from .atomic import atomic_file
from .contract import CHANGE_CLASSES, CHANGE_COLORS_RGB
from .report import REPORT_CSS, html_table, img_tag, software_section

MAX_VIEWS = 8
_CHANGED = ("new", "enlarging", "shrinking", "resolved")


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb)


def _inputs(summary: dict) -> str:
    rows = [[visit, role.upper(), name] for visit, names in (summary.get("inputs") or {}).items()
            for role, name in names.items()]
    sources = summary.get("t1_source") or {}
    borrowed = [f"the {v} visit uses the {s} visit's T1W" for v, s in sources.items() if s != "own"]
    return ("<h2>Inputs</h2>" + html_table(["visit", "role", "file"], rows, 3)
            + (f"<p>{html.escape('; '.join(borrowed))}.</p>" if borrowed else ""))


def _registration(summary: dict) -> str:
    qc = summary.get("qc") or {}
    rows = [["rotation between the visits (degrees)", qc.get("visit_rotation_deg")],
            ["translation between the visits (mm)", qc.get("visit_translation_mm")],
            ["FLAIR edge correlation after registration", qc.get("visit_edge_correlation")],
            ["same-person limit", qc.get("same_person_limit")],
            ["working grid: Dice with the template brain", round(qc.get("template_dice", 0.0), 3)]]
    return ("<h2>Registration of the visits</h2>" + html_table(["", "value"], rows)
            + '<p class="note">Both visits are resampled once onto one MNI-aligned grid halfway '
              "between them; the outputs are on the follow-up FLAIR's grid.</p>")


def _counts(summary: dict) -> str:
    counts, totals = summary.get("counts") or {}, summary.get("totals") or {}
    rows = "".join(f'<tr><td class="t"><span style="color:{_hex(CHANGE_COLORS_RGB[name])}">&#9632;</span> '
                   f"{name}</td><td>{counts.get(name, 0)}</td></tr>" for name in CHANGE_CLASSES)
    volume_rows = [["lesion volume at baseline (mL)", f"{totals.get('baseline_volume_ml', 0.0):.2f}"],
                   ["lesion volume at follow-up (mL)", f"{totals.get('followup_volume_ml', 0.0):.2f}"],
                   ["new and enlarged tissue (mL)", f"{totals.get('new_enlarged_volume_ml', 0.0):.2f}"]]
    return ("<h2>Changes</h2><table><tr><th class=\"t\">class</th><th>lesions</th></tr>" + rows
            + "</table>" + html_table(["", "value"], volume_rows))


def _views(result, flairs: dict[str, sitk.Image], ids: sitk.Image) -> str:
    shown = [(number, item, place) for number, (item, place)
             in enumerate(zip(result.changes, result.places), start=1) if item.change_class in _CHANGED]
    if not shown:
        return "<h2>Changed lesions</h2><p>No new, enlarging, shrinking or resolved lesion.</p>"
    parts = ["<h2>Changed lesions</h2>"]
    for number, item, place in shown[:MAX_VIEWS]:
        title = (f"#{number} {item.change_class}: {item.volume_baseline_mm3:.0f} -> "
                 f"{item.volume_followup_mm3:.0f} mm3, FLAIR change {item.flair_change_z:+.2f} z, "
                 f"{place.location or 'location unknown'}")
        parts.append(f"<p><b>{html.escape(title)}</b></p>")
        for visit, label in (("baseline", "baseline"), ("followup", "follow-up")):
            parts.append(img_tag(figures.lesion_views(flairs[visit], ids, place, f"{label} #{number}"),
                              f"{label} {title}"))
    if len(shown) > MAX_VIEWS:
        parts.append(f"<p>{len(shown) - MAX_VIEWS} more changed lesions in changes.csv.</p>")
    parts.append('<p class="note">FLAIR of each visit (jointly normalised, on the follow-up grid) '
                 "around the lesion: the lesion as drawn in the change map outlined in yellow, other "
                 "lesions in red. Radiological convention.</p>")
    return "".join(parts)


def render(result, flairs: dict[str, sitk.Image], ids: sitk.Image) -> str:
    """HTML of the page. ``result``: a ``LongitudinalResult``; ``flairs``: 'baseline' and
    'followup' FLAIRs on the follow-up grid; ``ids``: the drawing-order ids of its changes."""
    from .longitudinal_outputs import change_rows

    summary = result.summary
    counts = summary.get("counts") or {}
    warnings = summary.get("warnings") or []
    warning_html = "".join(f'<div class="warn">{html.escape(str(w))}</div>' for w in warnings) or "<p>None.</p>"
    header = ["id", "class", "baseline mm3", "follow-up mm3", "change %", "FLAIR z", "confidence", "location"]
    rows = [[r["id"], r["class"], r["volume_baseline_mm3"], r["volume_followup_mm3"],
             "" if r["change_percent"] is None else r["change_percent"], r["flair_change_z"],
             r["confidence"], r["location"] or ""] for r in change_rows(result)]
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ALLNet longitudinal "
            f"report</title><style>{REPORT_CSS}</style></head><body><h1>ALLNet longitudinal report</h1>"
            f"<p>{counts.get('new', 0)} new and {counts.get('enlarging', 0)} enlarging lesions. Research "
            "software: check every result; not for diagnosis.</p>"
            + _inputs(summary) + "<h2>Warnings</h2>" + warning_html + _registration(summary)
            + _counts(summary) + _views(result, flairs, ids) + "<h2>Change table</h2>"
            + html_table(header, rows, 2) + software_section(summary)
            + f'<p class="note">{html.escape(summary.get("coordinate_system", ""))}</p></body></html>')


def write_longitudinal_report(path: str | Path, result, flairs: dict[str, sitk.Image],
                              ids: sitk.Image) -> Path:
    """Write the page to ``path`` atomically; returns the path."""
    path = Path(path)
    text = render(result, flairs, ids)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
