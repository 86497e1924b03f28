"""Pictures of the QC report (``allnet.report``), drawn with matplotlib as PNG bytes.

Every view is shown in radiological convention (the patient's right on the left of the
picture), superior up in coronal and sagittal views, anterior up in axial views.
Working-grid arrays are KJI on the MNI grid (``allnet.grid``, LAS voxel order); native
views are resampled from the FLAIR's own grid onto a small LPS-aligned box around a
lesion, so that axial, coronal and sagittal are true anatomical planes whatever the
acquisition's orientation.
"""
from __future__ import annotations

import io

import numpy as np
import SimpleITK as sitk
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from scipy import ndimage

from .lesions import Lesion

LESION_COLOUR = "#ff3030"
FOCUS_COLOUR = "#ffd000"
EDGE_COLOUR = "#00e5ff"
DPI = 80
CROP_MARGIN = 6  # voxels kept around the brain in working-grid views
VIEW_BOX_MM = 70.0  # side of the box around a lesion shown in the lesion views


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes (deterministic: no date or software metadata)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor=figure.get_facecolor(),
                   metadata={"Software": None})
    return buffer.getvalue()


def _window(array: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Display range: 1st-99.5th percentile of the non-zero voxels (inside ``mask`` if given)."""
    values = array[mask] if mask is not None and mask.any() else array[array != 0]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [1.0, 99.5])
    return float(low), float(max(high, low + 1e-6))


def _working_views(array: np.ndarray, centre_kji: tuple[int, int, int],
                   box: tuple[slice, slice, slice]) -> list[np.ndarray]:
    """Axial, coronal, sagittal slices through ``centre_kji`` of a working-grid KJI array,
    cropped to ``box`` and oriented for ``imshow`` with origin='lower' (LAS voxel order: i
    runs to the patient's left, so the patient's right is on the picture's left)."""
    k, j, i = centre_kji
    bk, bj, bi = box
    return [array[k, bj, bi], array[bk, j, bi], array[bk, bj, i][:, ::-1]]


def _crop_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """Bounding box of ``mask`` grown by CROP_MARGIN voxels (the whole array when empty)."""
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    return tuple(slice(max(int(idx.min()) - CROP_MARGIN, 0), min(int(idx.max()) + 1 + CROP_MARGIN, n))
                 for idx, n in zip(np.nonzero(mask), mask.shape))


def _solid(colour: str) -> ListedColormap:
    return ListedColormap([colour])


def _axes_row(figure: Figure, n: int, titles: list[str]):
    axes = figure.subplots(1, n)
    for ax, title in zip(np.atleast_1d(axes), titles):
        ax.set_axis_off()
        ax.set_title(title, fontsize=9, color="white")
    return np.atleast_1d(axes)


def _dark_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), facecolor="black")
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, wspace=0.03)
    return figure


def _mark_sides(ax, left_text: str = "R", right_text: str = "L") -> None:
    style = dict(color="white", fontsize=8, transform=ax.transAxes, va="top")
    ax.text(0.02, 0.98, left_text, ha="left", **style)
    ax.text(0.98, 0.98, right_text, ha="right", **style)


def brain_centre(brain_mask: np.ndarray) -> tuple[int, int, int]:
    """Centre of mass (k, j, i) of a working-grid mask, as integer indices."""
    return tuple(int(round(c)) for c in np.argwhere(brain_mask > 0).mean(axis=0))


def registration_edges(flair: np.ndarray, moving: np.ndarray, brain_mask: np.ndarray,
                       moving_name: str) -> bytes:
    """FLAIR (grey) with the edges of another modality (cyan) on the working grid: both went
    through their own registration, so misaligned edges show a registration error."""
    from skimage.feature import canny

    centre = brain_centre(brain_mask)
    brain = brain_mask > 0
    box = _crop_box(brain)
    figure = _dark_figure(9.0, 3.4)
    axes = _axes_row(figure, 3, [f"{moving_name} edges on FLAIR: axial", "coronal", "sagittal"])
    low, high = _window(flair, brain)
    flair = np.where(brain, flair, low)  # normalised images are 0 outside: show it black
    m_low, m_high = _window(moving, brain)
    scaled = np.clip((moving - m_low) / (m_high - m_low), 0, 1)
    for ax, f_slice, m_slice in zip(axes, _working_views(flair, centre, box),
                                    _working_views(scaled, centre, box)):
        ax.imshow(f_slice, cmap="gray", vmin=low, vmax=high, origin="lower", interpolation="nearest")
        edges = canny(m_slice, sigma=2.0, low_threshold=0.08, high_threshold=0.2)
        ax.imshow(np.ma.masked_where(~edges, edges), cmap=_solid(EDGE_COLOUR), origin="lower",
                  alpha=0.9, interpolation="nearest")
    _mark_sides(axes[0])
    _mark_sides(axes[1])
    return png_bytes(figure)


def template_fit(template_t1: np.ndarray, brain_mask: np.ndarray) -> bytes:
    """The MNI template (grey) with the outline of the subject's brain after the affine
    registration (yellow): the outline should follow the template's brain surface."""
    template_brain = template_t1 > 0
    centre = brain_centre(template_brain)
    box = _crop_box(template_brain | (brain_mask > 0))
    figure = _dark_figure(9.0, 3.4)
    axes = _axes_row(figure, 3, ["brain on the MNI template: axial", "coronal", "sagittal"])
    low, high = _window(template_t1, template_brain)
    for ax, t_slice, m_slice in zip(axes, _working_views(template_t1, centre, box),
                                    _working_views(brain_mask > 0, centre, box)):
        ax.imshow(t_slice, cmap="gray", vmin=low, vmax=high, origin="lower", interpolation="nearest")
        outline = ndimage.binary_fill_holes(m_slice)  # the outer surface, not the ventricles
        if outline.any():
            ax.contour(outline.astype(np.float32), levels=[0.5], colors=[FOCUS_COLOUR],
                       linewidths=1.2, origin="lower")
    _mark_sides(axes[0])
    _mark_sides(axes[1])
    return png_bytes(figure)


def lesion_overview(flair: np.ndarray, mask: np.ndarray, brain_mask: np.ndarray, n: int = 8) -> bytes:
    """Axial working-grid FLAIR slices evenly through the brain with the lesion mask (red)."""
    ks = np.flatnonzero(brain_mask.any(axis=(1, 2)))
    if ks.size == 0:
        ks = np.arange(flair.shape[0])
    chosen = np.linspace(ks[0] + 0.15 * ks.size, ks[-1] - 0.1 * ks.size, n).round().astype(int)
    _, bj, bi = _crop_box(brain_mask > 0)
    figure = _dark_figure(1.6 * n, 2.2)
    axes = _axes_row(figure, n, [f"z = {k - 72} mm" for k in chosen])  # MNI z of slice k
    low, high = _window(flair, brain_mask > 0)
    flair = np.where(brain_mask > 0, flair, low)
    for ax, k in zip(axes, chosen):
        ax.imshow(flair[k, bj, bi], cmap="gray", vmin=low, vmax=high, origin="lower",
                  interpolation="nearest")
        lesion = mask[k, bj, bi] > 0
        ax.imshow(np.ma.masked_where(~lesion, lesion), cmap=_solid(LESION_COLOUR), origin="lower",
                  alpha=0.8, interpolation="nearest")
    _mark_sides(axes[0])
    return png_bytes(figure)


def _box_around(flair: sitk.Image, centre_lps: np.ndarray) -> sitk.Image:
    """An empty LPS-aligned image of side VIEW_BOX_MM centred on ``centre_lps`` (mm), voxel
    size the FLAIR's finest spacing within 0.5-1 mm."""
    spacing = float(np.clip(min(flair.GetSpacing()), 0.5, 1.0))
    n = int(round(VIEW_BOX_MM / spacing))
    box = sitk.Image([n, n, n], sitk.sitkFloat32)
    box.SetSpacing([spacing] * 3)
    box.SetOrigin(tuple(float(c - spacing * (n - 1) / 2) for c in centre_lps))
    return box


def lesion_views(flair: sitk.Image, labels: sitk.Image, lesion: Lesion, title: str) -> bytes:
    """Axial, coronal and sagittal FLAIR views through ``lesion``'s centroid, native data:
    the lesion in yellow, other lesions in red (outlines)."""
    centre_lps = np.array(lesion.centroid_ras) * np.array([-1.0, -1.0, 1.0])
    box = _box_around(flair, centre_lps)
    image = sitk.GetArrayFromImage(sitk.Resample(flair, box, sitk.Transform(), sitk.sitkLinear,
                                                 0.0, sitk.sitkFloat32))
    ids = sitk.GetArrayFromImage(sitk.Resample(labels, box, sitk.Transform(),
                                               sitk.sitkNearestNeighbor, 0, labels.GetPixelID()))
    c = image.shape[0] // 2
    # LPS-aligned box, KJI: axial [k] has rows j (posterior down when drawn with origin upper)
    views = [(image[c], ids[c], "upper"), (image[:, c, :], ids[:, c, :], "lower"),
             (image[:, :, c], ids[:, :, c], "lower")]
    figure = _dark_figure(9.0, 3.4)
    axes = _axes_row(figure, 3, [f"{title}: axial", "coronal", "sagittal"])
    low, high = _window(image)
    for ax, (picture, id_slice, origin) in zip(axes, views):
        ax.imshow(picture, cmap="gray", vmin=low, vmax=high, origin=origin, interpolation="bilinear")
        for mask, colour in ((id_slice == lesion.id, FOCUS_COLOUR),
                             ((id_slice > 0) & (id_slice != lesion.id), LESION_COLOUR)):
            if mask.any():
                ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour],
                           linewidths=1.2, origin=origin)
    _mark_sides(axes[0])
    _mark_sides(axes[1])
    _mark_sides(axes[2], "A", "P")
    return png_bytes(figure)


def lesion_load_plot(names: list[str], volumes_ml: list[float], counts: list[int]) -> bytes:
    """Bar chart of total lesion volume (mL) per case with the lesion count on each bar."""
    figure = Figure(figsize=(max(4.0, 0.5 * len(names) + 2.0), 3.2))
    ax = figure.subplots()
    positions = np.arange(len(names))
    bars = ax.bar(positions, volumes_ml, color="#c0392b")
    for bar, count in zip(bars, counts):
        ax.annotate(str(count), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(positions, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("total lesion volume (mL)")
    ax.set_title("lesion load per case (number on bar = lesion count)", fontsize=9)
    figure.tight_layout()
    return png_bytes(figure)
