"""A stand-in for ``python -m allnet longitudinal`` for the Slicer tests: it parses its
arguments with the real ``allnet`` command-line parser, then writes the files of a run with the
core's own writers (``allnet.longitudinal_outputs``) and the core's change rules
(``allnet.change.classify_changes``) on the follow-up FLAIR it was given: one lesion of each
change class, and a second stable one."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).resolve().parent

FAKE_LONGITUDINAL_CORE = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
from helpers_slicer_longitudinal import fakeLongitudinalRun
sys.exit(fakeLongitudinalRun(sys.argv))
"""

# KJI boxes on the 24 x 36 x 40 oblique test grid (helpers_slicer.obliqueFlair); FLAIR change in z.
BOXES = {
    "stable": ((slice(4, 7), slice(4, 8), slice(4, 8)),) * 2,
    "stable2": ((slice(18, 21), slice(20, 24), slice(14, 18)),) * 2,
    "new": (None, (slice(4, 7), slice(20, 24), slice(4, 8))),
    "enlarging": ((slice(12, 14), slice(10, 13), slice(20, 23)), (slice(11, 16), slice(8, 15), slice(18, 25))),
    "shrinking": ((slice(12, 17), slice(22, 29), slice(30, 37)), (slice(13, 15), slice(24, 27), slice(32, 35))),
    "resolved": ((slice(18, 21), slice(4, 8), slice(30, 34)), None),
}
EXPECTED_COUNTS = {"new": 1, "enlarging": 1, "stable": 2, "shrinking": 1, "resolved": 1}
WARNING = "T2W not given: both visits segmented from T1W and FLAIR only (T2W channel set to zero)"


def changeArrays(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Baseline ids, follow-up ids and FLAIR change (KJI) with the lesions of ``BOXES``."""
    baseline, followup = np.zeros(shape, np.uint16), np.zeros(shape, np.uint16)
    change = np.zeros(shape, np.float32)
    for number, (before, after) in enumerate(BOXES.values(), start=1):
        if before is not None:
            baseline[before] = number
        if after is not None:
            followup[after] = number
    change[(followup > 0) & (baseline == 0)] = 4.0   # new tissue: the FLAIR rose
    change[(baseline > 0) & (followup == 0)] = -4.0  # lost tissue: the FLAIR fell
    return baseline, followup, change


def writeChangeOutputFolder(folder: Path, flair: sitk.Image) -> dict:
    """The files of one ``allnet longitudinal`` run on ``flair``'s grid (no QC report)."""
    from allnet import change, lesions, outputs
    from allnet.contract import SUMMARY_COUNTS_KEY, SUMMARY_OUTPUTS_KEY
    from allnet.longitudinal_outputs import write_longitudinal_files

    def image(array):
        out = sitk.GetImageFromArray(np.ascontiguousarray(array))
        out.CopyInformation(flair)
        return out

    baseline, followup, flairChange = changeArrays(sitk.GetArrayViewFromImage(flair).shape)
    voxelMm3 = float(np.prod(flair.GetSpacing()))
    classified = change.classify_changes(baseline, followup, flairChange, voxelMm3)
    ids = np.zeros(baseline.shape, np.uint32)
    for number, item in enumerate(classified.changes, start=1):
        ids[item.box][item.region] = number
    table = {lesion.id: lesion for lesion in lesions.lesion_table(image(ids), None, None)}
    result = SimpleNamespace(
        change_labels=image(classified.class_map), new_enlarged=image(classified.new_enlarged),
        baseline_labels=image(baseline), followup_labels=image(followup), flair_change=image(flairChange),
        changes=classified.changes, places=[table[n] for n in range(1, len(classified.changes) + 1)])
    folder.mkdir(parents=True)
    files = write_longitudinal_files(folder, result, report=False)
    outputs.write_summary(folder, {"mode": "longitudinal", SUMMARY_COUNTS_KEY: change.counts(classified.changes),
                                   "warnings": [WARNING], SUMMARY_OUTPUTS_KEY: files})
    return {"classMap": classified.class_map, "changes": classified.changes}


def fakeLongitudinalRun(argv: list[str]) -> int:
    """Entry point of the fake core script: records its arguments next to the script
    (``.args.json``), then behaves like ``allnet longitudinal --progress json``."""
    from allnet.cli import build_parser
    from allnet.contract import LONGITUDINAL_COMMAND, RESULT_PREFIX

    script, args = Path(argv[0]), argv[1:]
    script.with_suffix(".args.json").write_text(json.dumps(args))
    parsed = build_parser().parse_args([LONGITUDINAL_COMMAND, *args])  # exits 2 on an option the CLI lacks
    print('ALLNET-PROGRESS {"stage": "preprocessing", "fraction": 0.2, "message": "two visits"}', flush=True)
    if parsed.tta:  # used by the cancel test: behave like a long run
        time.sleep(60)
    out = Path(parsed.output)
    writeChangeOutputFolder(out, sitk.ReadImage(parsed.followup_flair))
    print(RESULT_PREFIX + json.dumps({"output_dir": str(out), "summary": str(out / "summary.json")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(fakeLongitudinalRun(sys.argv))
