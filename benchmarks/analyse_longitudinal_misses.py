"""Where the expert change components of a development pair go: for each connected component
of ``gt.nii.gz`` (common space, 18-connectivity), the change classes of the method's lesions
that touch it (their voxels carried to common space with the follow-up study's transform).

    python benchmarks/analyse_longitudinal_misses.py patient12

Prints one line per reference component and a count per outcome; needs ``../shared/data``.
"""
from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_longitudinal import NATIVE, to_common  # noqa: E402

from allnet.contract import RunSettings  # noqa: E402
from allnet.longitudinal_pipeline import run_longitudinal  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patient", help="lesjak2018/native patient folder name, e.g. patient12")
    args = parser.parse_args()
    folder = NATIVE / args.patient
    files = {f"{study}_{role}": folder / f"{study}_{role}.nii.gz"
             for study in ("study1", "study2") for role in ("FLAIR", "T1W", "T2W")}
    gt = sitk.ReadImage(str(folder / "gt.nii.gz"))
    reference = sitk.GetArrayFromImage(gt) > 0
    result = run_longitudinal(files["study1_FLAIR"], files["study2_FLAIR"],
                              baseline_t1=files["study1_T1W"], followup_t1=files["study2_T1W"],
                              baseline_t2=files["study1_T2W"], followup_t2=files["study2_T2W"],
                              output_dir=None, options=RunSettings(device="cpu"))
    transform = folder / "study2_FLAIR_to_common_space.txt"
    shape = sitk.GetArrayViewFromImage(result.new_enlarged).shape
    lesions = []
    for change in result.changes:  # each lesion where it is drawn, in common space
        drawn = np.zeros(shape, np.uint8)
        drawn[change.box][change.region] = 1
        image = sitk.GetImageFromArray(drawn)
        image.CopyInformation(result.new_enlarged)
        lesions.append((change, to_common(image, gt, transform)))
    components, n = ndimage.label(reference, ndimage.generate_binary_structure(3, 2))
    outcomes: collections.Counter[str] = collections.Counter()
    for index in range(1, n + 1):
        component = components == index
        hits = [c for c, voxels in lesions if (voxels & component).any()]
        classes = sorted({c.change_class for c in hits}) or ["no lesion of the model"]
        outcomes[" + ".join(classes)] += 1
        details = "; ".join(f"{c.change_class} ({c.flair_change_z:+.2f} z, {c.volume_baseline_mm3:.0f} -> "
                            f"{c.volume_followup_mm3:.0f} mm3)" for c in hits)
        print(f"component {index}: {int(component.sum())} voxels: {details or 'no lesion of the model'}")
    print(f"{args.patient}: {n} reference components:", dict(outcomes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
