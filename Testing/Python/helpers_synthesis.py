"""Synthetic tissue phantoms shared by test_synthesis.py and test_lesion_shapes.py."""
from __future__ import annotations

import numpy as np

CONN26 = np.ones((3, 3, 3), bool)


def phantom_maps(size: int = 64) -> dict[str, np.ndarray]:
    """Spherical head phantom (1 mm voxels): CSF ventricle, WM, GM cortex, brain radius 22 mm.

    Tissue boundaries are smooth (partial volume), like template probability maps.
    """
    centre = (size - 1) / 2.0
    k, j, i = np.meshgrid(*(np.arange(size),) * 3, indexing="ij")
    r = np.sqrt((k - centre) ** 2 + (j - centre) ** 2 + (i - centre) ** 2)

    def inside(radius: float) -> np.ndarray:
        return np.clip(radius + 0.5 - r, 0.0, 1.0).astype(np.float32)

    brain = inside(22.0)
    csf = inside(5.0) + (brain - inside(20.0))  # ventricle + subarachnoid CSF
    gm = inside(20.0) - inside(16.0)
    wm = inside(16.0) - inside(5.0)
    return {"gm": gm, "wm": wm, "csf": csf, "brain": (brain > 0.5).astype(np.uint8), "r": r}
