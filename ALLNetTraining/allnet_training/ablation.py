"""Ablation: base / +AnaConv / +LesLoss / ALL-Net on the same data, folds and seeds.

Each variant is scored by leave-one-subject-out cross-validation (``crossval.py``); the
table follows the layout of Table 4 of Zhang et al. 2021: one row per method, columns
DSC, PPV, sensitivity (TPR), LTPR, LFPR, L-F1, volume correlation (VC) and the ISBI-2015
score (means over held-out cases; VC and ISBI score over all held-out cases).
"""
from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

from allnet.atomic import atomic_file, write_text_atomic
from allnet.metrics import summarise
from allnet.model import ModelConfig
from allnet.synthesis import LesionShapeBank

from .cache import CachedCase
from .crossval import load_case_metrics, run_crossval
from .patches import SamplerConfig
from .trainer import TrainConfig

VARIANTS: tuple[tuple[str, bool, bool], ...] = (
    # name, AnaConv, sphere head + LesLoss
    ("base", False, False),
    ("+AnaConv", True, False),
    ("+LesLoss", False, True),
    ("ALL-Net", True, True),
)
TABLE_COLUMNS = (("DSC", "dsc"), ("PPV", "ppv"), ("Sensitivity (TPR)", "tpr"), ("LTPR", "ltpr"),
                 ("LFPR", "lfpr"), ("L-F1", "lf1"), ("VC", None), ("ISBI score", None))


def table_rows(results: dict[str, list]) -> list[dict[str, float | str | None]]:
    """One row per method from its list of held-out CaseMetrics."""
    rows = []
    for name, metrics in results.items():
        s = summarise(metrics)
        row: dict[str, float | str | None] = {"method": name}
        for col, key in TABLE_COLUMNS:
            if key is not None:
                row[col] = s["mean"][key]
        row["VC"] = s["volume_correlation"]
        row["ISBI score"] = s["isbi_score"]
        rows.append(row)
    return rows


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def write_table(rows: list[dict], out: Path) -> str:
    """Write ``ablation.csv`` and ``ablation.md``; returns the markdown."""
    cols = ["method"] + [c for c, _ in TABLE_COLUMNS]
    with atomic_file(out / "ablation.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| Method | " + " | ".join(cols[1:]) + " |", "|---" * len(cols) + "|"]
    lines += ["| " + r["method"] + " | " + " | ".join(_fmt(r[c]) for c in cols[1:]) + " |" for r in rows]
    md = "\n".join(lines) + "\n"
    write_text_atomic(out / "ablation.md", md)
    return md


def variant_folder(out: Path, name: str) -> Path:
    return out / name.replace("+", "plus_").replace("-", "")


def run_ablation(cases: list[CachedCase], out_dir: str | Path, model_config: ModelConfig,
                 train_cfg: TrainConfig, sampler_cfg: SamplerConfig, seeds: list[int],
                 bank: LesionShapeBank | None = None, *, resume: bool = True,
                 progress: bool = True, variants: list[str] | None = None, log=print,
                 synth=None) -> str:
    """Cross-validate the chosen variants (default all; same seeds, folds, crops) and write
    the table of every variant finished in ``out_dir``.

    Choosing a subset lets several processes share the work (one per variant, same
    ``out_dir``); the process that finishes last writes the complete table.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chosen = set(variants or [v[0] for v in VARIANTS])
    unknown = chosen - {v[0] for v in VARIANTS}
    if unknown:
        raise ValueError(f"unknown ablation variants {sorted(unknown)}")
    computed = {}
    for name, anaconv, sphere in VARIANTS:
        if name in chosen:
            cfg = replace(model_config, anaconv=anaconv, sphere_head=sphere)
            folds = run_crossval(cases, variant_folder(out, name), cfg, train_cfg, sampler_cfg,
                                 seeds, bank, resume=resume, progress=progress, log=log,
                                 synth=synth)
            computed[name] = [m for f in folds for m in f.model]
    # read the others only now: another process may have finished them meanwhile
    results = {}
    for name, _, _ in VARIANTS:
        metrics = computed.get(name) or load_case_metrics(variant_folder(out, name))
        if metrics is not None:
            results[name] = metrics
    return write_table(table_rows(results), out)
