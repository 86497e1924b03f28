"""Lesion shapes for synthetic lesions: random ellipsoids, and real lesion components moved
to new white-matter locations (used by ``allnet.synthesis``, the demo case and training).

Arrays are numpy volumes indexed [k, j, i] (KJI); ``spacing`` is the voxel size in mm in the
same order. Randomness comes only from the ``numpy.random.Generator`` passed in. Lesions are
26-connected components; new lesions never overlap or touch existing ones, so each stays a
separate component.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

CONN26 = np.ones((3, 3, 3), dtype=bool)


def wm_fraction(wm: np.ndarray) -> np.ndarray:
    """White-matter fraction in [0, 1] (float32) from a probability map or a boolean mask."""
    return np.clip(np.asarray(wm, dtype=np.float32), 0.0, 1.0)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random 3x3 rotation matrix (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _free(occupied: np.ndarray, shape_mask: np.ndarray, corner: Sequence[int]) -> bool:
    """True when ``shape_mask`` at ``corner`` neither overlaps nor touches ``occupied``."""
    lo = [max(0, c - 1) for c in corner]
    hi = [min(n, c + s + 1) for c, s, n in zip(corner, shape_mask.shape, occupied.shape)]
    region = occupied[tuple(slice(a, b) for a, b in zip(lo, hi))]
    if not region.any():
        return True
    grown = ndimage.binary_dilation(np.pad(shape_mask, 1), structure=CONN26)
    offset = [a - (c - 1) for a, c in zip(lo, corner)]
    grown = grown[tuple(slice(o, o + r) for o, r in zip(offset, region.shape))]
    return not (grown & region).any()


def _candidates(wm: np.ndarray, where: np.ndarray | None) -> np.ndarray:
    ok = wm_fraction(wm) >= 0.5
    if where is not None:
        ok &= np.asarray(where) > 0
    flat = np.flatnonzero(ok)
    if flat.size == 0:
        raise ValueError("no white-matter voxel (wm >= 0.5) is available for lesion centres")
    return flat


def ellipsoid_lesions(shape: Sequence[int], wm: np.ndarray, n: int, rng: np.random.Generator,
                      radius_mm: tuple[float, float] = (1.5, 6.0), *,
                      spacing: Sequence[float] = (1.0, 1.0, 1.0), where: np.ndarray | None = None,
                      existing: np.ndarray | None = None, min_kept: float = 0.5,
                      max_tries: int = 200) -> np.ndarray:
    """Mask (uint8, KJI) of ``n`` randomly oriented ellipsoidal lesions in white matter.

    Semi-axes are drawn uniformly from ``radius_mm``; centres from WM voxels (wm >= 0.5, and
    ``where`` if given); each ellipsoid is clipped to WM (keeping the part connected to its
    centre; an ellipsoid that keeps less than ``min_kept`` of its volume is redrawn).
    Lesions neither overlap nor touch each other or ``existing``, so the mask has
    ``n`` 26-connected components unless the space ran out (then fewer).
    """
    shape = tuple(int(s) for s in shape)
    if tuple(np.shape(wm)) != shape:
        raise ValueError(f"wm shape {np.shape(wm)} differs from {shape}")
    spacing_arr = np.asarray(spacing, dtype=float)
    wm_ok = wm_fraction(wm) >= 0.5
    occupied = np.zeros(shape, bool) if existing is None else np.asarray(existing) > 0
    occupied = occupied.copy()
    result = np.zeros(shape, np.uint8)
    flat = _candidates(wm, where)
    placed = 0
    for _ in range(max_tries * max(n, 1)):
        if placed >= n:
            break
        centre = np.array(np.unravel_index(flat[rng.integers(flat.size)], shape))
        axes = rng.uniform(radius_mm[0], radius_mm[1], 3)
        half = np.ceil(axes.max() / spacing_arr).astype(int) + 1
        lo, hi = centre - half, centre + half + 1
        if (lo < 0).any() or (hi > np.array(shape)).any():
            continue
        grid = np.stack(np.meshgrid(*(np.arange(-h, h + 1) * s for h, s in zip(half, spacing_arr)),
                                    indexing="ij"), axis=-1)
        local = grid @ _rotation(rng)  # voxel offsets (mm) in the ellipsoid's own axes
        body = ((local / axes) ** 2).sum(-1) <= 1.0
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        body &= wm_ok[box]
        comp, _ = ndimage.label(body, structure=CONN26)
        centre_label = comp[tuple(half)]
        if centre_label == 0:
            continue
        body = comp == centre_label
        if body.sum() * spacing_arr.prod() < min_kept * 4.0 / 3.0 * np.pi * axes.prod():
            continue
        if not _free(occupied, body, lo):
            continue
        result[box][body] = 1
        occupied[box] |= body
        placed += 1
    return result


class LesionShapeBank:
    """The 26-connected lesion components of a set of lesion masks, as cropped boolean shapes.

    Build it once (labelling 29 MNI masks takes a few seconds) and call :meth:`place` per
    training sample. ``spacing`` is the masks' voxel size in mm (KJI order); components
    smaller than ``min_volume_mm3`` are left out.
    """

    def __init__(self, masks: Sequence[np.ndarray], *, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                 min_volume_mm3: float = 10.0) -> None:
        self.spacing = tuple(float(s) for s in spacing)
        voxel_mm3 = float(np.prod(self.spacing))
        self.shapes: list[np.ndarray] = []
        for mask in masks:
            labels, _ = ndimage.label(np.asarray(mask) > 0, structure=CONN26)
            for index, box in enumerate(ndimage.find_objects(labels), start=1):
                if box is None:
                    continue
                shape = labels[box] == index
                if shape.sum() * voxel_mm3 >= min_volume_mm3:
                    self.shapes.append(shape)

    def __len__(self) -> int:
        return len(self.shapes)

    def _variant(self, shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random mirror along each axis and a random 90-degree turn in an isotropic plane."""
        for axis in range(3):
            if rng.random() < 0.5:
                shape = np.flip(shape, axis)
        planes = [(a, b) for a, b in ((0, 1), (0, 2), (1, 2))
                  if abs(self.spacing[a] - self.spacing[b]) < 1e-6]
        if planes:
            plane = planes[rng.integers(len(planes))]
            shape = np.rot90(shape, k=int(rng.integers(4)), axes=plane)
        return np.ascontiguousarray(shape)

    def place(self, wm: np.ndarray, n: int, rng: np.random.Generator, *,
              existing: np.ndarray | None = None, where: np.ndarray | None = None,
              min_wm_fraction: float = 0.5, max_tries: int = 100) -> np.ndarray:
        """Mask (uint8, KJI, grid of ``wm``) of ``n`` bank lesions at random WM locations.

        Each shape (randomly mirrored/turned) is centred on a WM voxel (wm >= 0.5, and
        ``where`` if given), must have at least ``min_wm_fraction`` of its voxels in WM, and
        must neither overlap nor touch ``existing`` or the lesions placed before it.
        Returns only the new lesions (fewer than ``n`` if no free place was found).
        """
        if not self.shapes:
            raise ValueError("the lesion shape bank is empty")
        grid_shape = np.array(np.shape(wm))
        wm_ok = wm_fraction(wm) >= 0.5
        occupied = (np.zeros(wm_ok.shape, bool) if existing is None
                    else np.asarray(existing) > 0).copy()
        result = np.zeros(wm_ok.shape, np.uint8)
        flat = _candidates(wm, where)
        placed = 0
        for _ in range(max_tries * max(n, 1)):
            if placed >= n:
                break
            shape = self._variant(self.shapes[rng.integers(len(self.shapes))], rng)
            centre = np.array(np.unravel_index(flat[rng.integers(flat.size)], wm_ok.shape))
            com = np.round(ndimage.center_of_mass(shape)).astype(int)
            lo = centre - com
            hi = lo + np.array(shape.shape)
            if (lo < 0).any() or (hi > grid_shape).any():
                continue
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            if (wm_ok[box] & shape).sum() < min_wm_fraction * shape.sum():
                continue
            if not _free(occupied, shape, lo):
                continue
            result[box][shape] = 1
            occupied[box] |= shape
            placed += 1
        return result


def sample_lesion_shapes(masks: Sequence[np.ndarray] | LesionShapeBank, wm: np.ndarray, n: int,
                         rng: np.random.Generator, *, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                         existing: np.ndarray | None = None,
                         where: np.ndarray | None = None) -> np.ndarray:
    """Place ``n`` real lesion shapes, drawn from the 26-connected components of ``masks``
    (lesion masks on the grid of ``wm``, voxel size ``spacing`` mm), at random WM locations.

    Shapes are optionally mirrored and turned by 90 degrees and avoid ``existing`` lesions.
    Returns the mask of the new lesions only (uint8, KJI). Pass a :class:`LesionShapeBank`
    instead of ``masks`` to label the masks once for many calls.
    """
    bank = masks if isinstance(masks, LesionShapeBank) else LesionShapeBank(masks, spacing=spacing)
    return bank.place(wm, n, rng, existing=existing, where=where)
