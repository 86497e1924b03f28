"""ALLNet: multiple-sclerosis lesion segmentation and per-lesion measurement from T1W,
T2W (optional) and FLAIR MRI, after Zhang et al., NeuroImage: Clinical 32:102854 (2021).

``allnet.segment(t1, flair, t2=None, output_dir=None, **options)`` runs the whole pipeline
(see ``allnet.pipeline``); ``allnet.longitudinal(baseline_flair, followup_flair, ...)`` compares
two visits (see ``allnet.longitudinal_pipeline``); the ``allnet`` command wraps the same functions.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "segment", "SegmentOptions", "SegmentationResult", "longitudinal",
           "LongitudinalResult"]


def __getattr__(name: str):
    # Lazy: importing allnet (e.g. for lesions or progress parsing inside Slicer's GUI process)
    # must not pull in torch and the whole pipeline.
    if name in ("segment", "SegmentOptions", "SegmentationResult"):
        from . import pipeline
        return getattr(pipeline, name)
    if name in ("longitudinal", "LongitudinalResult"):
        from . import longitudinal_pipeline as module
        return getattr(module, name)
    raise AttributeError(f"module 'allnet' has no attribute {name!r}")
