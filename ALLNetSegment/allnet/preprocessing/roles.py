"""Does each image have the contrast of the role it was given (T1W, FLAIR, T2W)?

A FLAIR given as the T1W and the T1W as the FLAIR pass the one-head check (same head) and
would give a meaningless result; so would a T2W in either place. On the working grid, the
three-class EM of the tissue segmentation (template priors) gives each image's CSF, GM and WM
class means (``allnet.tissue.class_means``), read as levels relative to white matter:
``level(class) = (mean(class) - mean(WM)) / |mean(WM) - mean(CSF)|``, so CSF is -1 when
darker than WM and +1 when brighter.

Measured on the development data (5 MNI-grid scans, 5 native visits): CSF is darker than WM
on every T1W and FLAIR and brighter on every T2W; the GM level is -0.27 to -0.61 on T1W and
-0.11 to +0.45 on FLAIR, and on every scan the FLAIR's GM level lies 0.24 to 1.01 above the
T1W's. Rules (``check_roles``): CSF must be darker than WM on the T1W and the FLAIR and
brighter on the T2W; the FLAIR's GM level must not lie more than ``MAX_GM_LEVEL_INVERSION``
below the T1W's (swapped T1W and FLAIR give -0.24 to -1.01 there).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..tissue import class_means

MAX_GM_LEVEL_INVERSION = 0.1
ROLE_NAMES = {"t1": "T1W", "flair": "FLAIR", "t2": "T2W"}
CSF_BRIGHTER = {"t1": False, "flair": False, "t2": True}


def tissue_levels(image: np.ndarray, brain_mask: np.ndarray) -> dict[str, float]:
    """CSF and GM levels of ``image`` (KJI, working grid) relative to WM (module doc)."""
    csf, gm, wm = (float(v) for v in class_means(image, brain_mask))
    spread = abs(wm - csf) or 1.0
    return {"csf": round((csf - wm) / spread, 3), "gm": round((gm - wm) / spread, 3)}


def check_roles(images: dict[str, np.ndarray], brain_mask: np.ndarray, paths: dict[str, str],
                allow_mismatch: bool = False) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Levels of every image and the rules of the module doc. ``images``: role ('t1',
    'flair', 't2') -> KJI array on the working grid; ``paths``: role -> file name for the
    message. Returns (levels per role, warnings). A broken rule raises InputError naming
    the file, or becomes a warning with ``allow_mismatch``."""
    levels = {role: tissue_levels(image, brain_mask) for role, image in images.items() if role in ROLE_NAMES}
    problems: list[tuple[str, str]] = []
    for role, level in levels.items():
        brighter = level["csf"] > 0
        if brighter != CSF_BRIGHTER[role]:
            seen = "brighter" if brighter else "darker"
            problems.append((role, f"its CSF is {seen} than its white matter, unlike a {ROLE_NAMES[role]}'s: "
                                   "is each image given in its role (T1W, FLAIR, T2W)?"))
    if not problems and "t1" in levels and "flair" in levels:
        inversion = levels["t1"]["gm"] - levels["flair"]["gm"]
        if inversion > MAX_GM_LEVEL_INVERSION:
            problems.append(("t1", f"its grey matter is brighter relative to white matter (level "
                                   f"{levels['t1']['gm']:+.2f}) than the FLAIR's ({levels['flair']['gm']:+.2f}): "
                                   "are the T1W and the FLAIR swapped?"))
    warnings = []
    for role, problem in problems:
        name = paths.get(role, ROLE_NAMES[role])
        if not allow_mismatch:
            raise InputError(name, f"{problem} (check the inputs, or run with --allow-mismatch)")
        warnings.append(f"{name}: {problem} (--allow-mismatch: segmented anyway)")
    return levels, warnings
