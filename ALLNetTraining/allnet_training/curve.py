"""Learning curve of a cross-validation: held-out DSC and lesion-wise F1 against training steps.

Every fold trained with ``--snapshot-every`` keeps model files ``fold_<s>/seed<N>/snapshots/
step<K>.pt``; each is scored on its fold's held-out cases exactly as the fold's final model
(``crossval.predict_cached`` + ``crossval.score``: the product's post-processing). Writes
``curve.csv``, ``curve.json`` and ``curve.png`` in the cross-validation folder.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from allnet.atomic import atomic_file, write_text_atomic
from allnet.model import load_model_file

from .cache import CachedCase
from .crossval import predict_cached, score


def snapshot_steps(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of the snapshots in ``folder`` (``step<N>.pt``), by step."""
    found = []
    for path in folder.glob("step*.pt"):
        match = re.fullmatch(r"step(\d+)\.pt", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def run_curve(cases: list[CachedCase], crossval_dir: str | Path, seed: int = 0, *, log=print) -> list[dict]:
    """Score every snapshot of seed ``seed`` on its fold's held-out cases (module doc)."""
    root = Path(crossval_dir)
    previous = root / "curve.json"
    # snapshots scored by an earlier call are kept, so the curve can grow while training runs
    rows = json.loads(previous.read_text(encoding="utf-8"))["rows"] if previous.is_file() else []
    done = {(r["case"], r["step"]) for r in rows}
    for subject in dict.fromkeys(c.subject_id for c in cases):
        for step, path in snapshot_steps(root / f"fold_{subject}" / f"seed{seed}" / "snapshots"):
            todo = [c for c in cases if c.subject_id == subject and (c.case_id, step) not in done]
            if not todo:
                continue
            bundle = load_model_file(path)
            for case in todo:
                prediction = predict_cached(bundle, case)
                metrics = score(prediction.mask, case, score_map=prediction.sphere_probability)
                rows.append({"subject": subject, "case": case.case_id, "step": step,
                             "dsc": metrics.dsc, "lf1": metrics.lf1})
                log(f"curve {case.case_id} step {step}: DSC {metrics.dsc:.3f} L-F1 {metrics.lf1:.3f}")
                _write(rows, root)  # after every score: a stopped call loses nothing
    return rows


def _write(rows: list[dict], out: Path) -> None:
    rows = sorted(rows, key=lambda r: (r["subject"], r["case"], r["step"]))
    with atomic_file(out / "curve.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    steps = sorted({r["step"] for r in rows})
    # the mean covers a step only when every case has it, so folds that ran shorter do not bias it
    cases = sorted({r["case"] for r in rows})
    mean = {}
    for step in steps:
        hit = [r for r in rows if r["step"] == step]
        if len(hit) == len(cases):
            mean[step] = {"dsc": float(np.mean([r["dsc"] for r in hit])),
                          "lf1": float(np.mean([r["lf1"] for r in hit]))}
    write_text_atomic(out / "curve.json", json.dumps({"rows": rows, "mean": mean}, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharex=True)
    for ax, metric, label in zip(axes, ("dsc", "lf1"), ("DSC", "lesion-wise F1")):
        for case in cases:
            points = sorted((r["step"], r[metric]) for r in rows if r["case"] == case)
            ax.plot(*zip(*points), lw=1, alpha=0.6, marker=".", label=case)
        if mean:
            ax.plot(list(mean), [m[metric] for m in mean.values()], lw=2.5, color="k", label="mean")
        ax.set_xlabel("training steps")
        ax.set_ylabel(f"held-out {label}")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_file(out / "curve.png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
