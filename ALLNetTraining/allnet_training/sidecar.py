"""The JSON sidecar that travels with a shipped model file (``<model>.json``).

It states what the model file is (SHA-256, size, architecture, members), how it was trained
(data credits, cases, command, date, hardware, time, seeds) and how it scored in
leave-one-subject-out cross-validation (the summary ``crossval.json`` that
``allnet-train crossval`` writes), so that a copy of the weights can be checked against its
model card without running anything.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from allnet.atomic import write_text_atomic
from allnet.pipeline import model_plan
from allnet.model import load_model_file

from .plan_tuning import PLAN_FILE


TRAINING_KEYS = ("training_data", "training_cases", "command", "date", "hardware",
                 "training_seconds", "seeds")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _relative_paths(command: str, anchors: list[Path]) -> str:
    """The command with absolute paths under ``anchors`` written relative to them, so the
    sidecar does not record one machine's folder layout."""
    for anchor in anchors:
        prefix = str(anchor.resolve()) + os.sep
        command = command.replace(prefix, "")
    return command


def sidecar(model_path: str | Path, crossval_dir: str | Path | None = None,
            model_card: str = "MODEL_CARD.md", anchors: list[Path] | None = None) -> dict:
    """Sidecar content for ``model_path`` (loaded with weights_only) and an optional
    cross-validation folder (its ``crossval.json``, and its ``plan.json`` when the plan was
    chosen there: the scores with the plan and the nested estimate)."""
    path = Path(model_path)
    bundle = load_model_file(path)
    training = {k: bundle.meta[k] for k in TRAINING_KEYS if k in bundle.meta}
    if "command" in training and anchors:
        training["command"] = _relative_paths(str(training["command"]), anchors)
    out = {
        "file": path.name,
        "sha256": _sha256(path),
        "bytes": path.stat().st_size,
        "config": bundle.config.to_dict(),
        "members": len(bundle.members),
        "training": training,
        "augmentation": bundle.meta.get("sampler_config", {}).get("augment"),
        "inference_plan": model_plan(bundle),
        "model_card": model_card,
    }
    if crossval_dir is not None:
        summary = json.loads((Path(crossval_dir) / "crossval.json").read_text(encoding="utf-8"))
        out["validation"] = {
            "protocol": "leave-one-subject-out on the development data; see " + model_card,
            "mean": {k: summary[k] for k in ("model", "model_calibrated", "baseline")},
            "per_case": summary["cases"],
        }
        plan_file = Path(crossval_dir) / PLAN_FILE
        if plan_file.is_file():  # the plan chosen on these held-out predictions, and how it generalises
            tuned = json.loads(plan_file.read_text(encoding="utf-8"))
            out["validation"]["with_plan"] = {"plan": tuned["plan"], "mean_dsc": tuned["chosen"]["mean_dsc"],
                                              "mean_lf1": tuned["chosen"]["mean_lf1"]}
            if tuned.get("nested"):
                out["validation"]["nested_plan"] = {
                    "protocol": "each fold's plan chosen on the other folds' held-out predictions",
                    "mean_dsc": tuned["nested"]["mean_dsc"], "mean_lf1": tuned["nested"]["mean_lf1"]}
    return out


def write_sidecar(model_path: str | Path, crossval_dir: str | Path | None = None,
                  out: str | Path | None = None, anchors: list[Path] | None = None) -> Path:
    """Write the sidecar next to the model (``.pt`` -> ``.json``) or to ``out`` (atomic)."""
    target = Path(out) if out else Path(model_path).with_suffix(".json")
    content = sidecar(model_path, crossval_dir, anchors=anchors)
    write_text_atomic(target, json.dumps(content, indent=1, default=float) + "\n")
    return target
