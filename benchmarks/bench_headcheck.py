"""One-head check values on the development data: every matched pair and swapped pairs.

For each native visit (lesjak2018 native patient01/12 study1-2, patient04 study1) the
T1W and T2W are registered to their own FLAIR and the check's measures computed exactly as
``allnet segment`` does (``allnet.preprocessing.headcheck``); then images of one person
are paired with another person's FLAIR. Cases already on the MNI grid (lesjak2018 mni,
MSLesSeg P14 visits) are compared on that grid. The limits in ``headcheck`` must separate
the two groups with a margin.

    python benchmarks/bench_headcheck.py      # ~5 min on 2 cores (4 min measured under load)

Writes benchmarks/results/headcheck_values.json.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
NATIVE = DATA / "lesjak2018" / "native"
VISITS = [("patient01", "study1"), ("patient01", "study2"), ("patient12", "study1"),
          ("patient12", "study2"), ("patient04", "study1")]
# (FLAIR visit, T1W visit, T2W visit): images of another person against a FLAIR
SWAPS = [(("patient12", "study1"), ("patient01", "study1"), ("patient12", "study1")),
         (("patient01", "study1"), ("patient12", "study1"), ("patient01", "study1")),
         (("patient04", "study1"), ("patient04", "study1"), ("patient01", "study1")),
         (("patient01", "study2"), ("patient01", "study2"), ("patient12", "study2"))]


def _path(visit: tuple[str, str], modality: str) -> Path:
    return NATIVE / visit[0] / f"{visit[1]}_{modality}.nii.gz"


def native_pair(flair_visit, t1_visit, t2_visit, masks: dict) -> dict:
    from allnet.io import read_image
    from allnet.preprocessing import headcheck, registration
    from allnet.preprocessing.brain import extract_brain

    flair = read_image(_path(flair_visit, "FLAIR"), "flair")
    t1 = read_image(_path(t1_visit, "T1W"), "t1")
    t2 = read_image(_path(t2_visit, "T2W"), "t2")
    if t1_visit not in masks:
        masks[t1_visit] = extract_brain(t1)
    flair_to_t1 = registration.register_to_flair(flair, t1, moving_brain_mask=masks[t1_visit])
    flair_to_t2 = registration.register_to_flair(flair, t2, moving_name="T2W")
    out = {}
    for role, image, transform in (("t1", t1, flair_to_t1), ("t2", t2, flair_to_t2)):
        match = headcheck.measure_native(flair, image, transform, masks[t1_visit], flair_to_t1, role)
        out[role] = match.to_dict()
    return out


def mni_cases() -> dict[str, dict[str, Path]]:
    cases = {}
    for patient in ("patient07", "patient19"):
        folder = DATA / "lesjak2018" / "mni" / patient
        cases[patient] = {m.lower(): folder / f"{m}.nii.gz" for m in ("FLAIR", "T1", "T2")}
    for visit in ("T1", "T2", "T3"):
        folder = DATA / "mslesseg" / "P14" / visit
        found = {m.lower(): folder / f"P14_{visit}_{m}.nii.gz" for m in ("FLAIR", "T1", "T2")}
        cases[f"P14_{visit}"] = {k: v for k, v in found.items() if v.exists()}
    return cases


def mni_pair(flair: Path, t1: Path, t2: Path | None) -> dict:
    from allnet.preprocessing import headcheck

    def read(path: Path) -> np.ndarray:
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path), sitk.sitkFloat32))
    arrays = {"flair": read(flair), "t1": read(t1)} | ({"t2": read(t2)} if t2 else {})
    brain = ndimage.binary_fill_holes(arrays["flair"] > 0)
    return {m.role: m.to_dict() for m in headcheck.measure_working(arrays, brain)}


def main() -> None:
    from allnet.preprocessing import headcheck

    start = time.perf_counter()
    results: dict = {"native_matched": {}, "native_swapped": {}, "mni_matched": {}, "mni_swapped": {}}
    masks: dict = {}
    for visit in VISITS:
        results["native_matched"]["/".join(visit)] = native_pair(visit, visit, visit, masks)
        print(visit, results["native_matched"]["/".join(visit)], flush=True)
    for flair_visit, t1_visit, t2_visit in SWAPS:
        key = f"FLAIR {'/'.join(flair_visit)}, T1W {'/'.join(t1_visit)}, T2W {'/'.join(t2_visit)}"
        pair = native_pair(flair_visit, t1_visit, t2_visit, masks)
        # only the image of the other person counts as swapped
        swapped = {"t1": t1_visit[0] != flair_visit[0], "t2": t2_visit[0] != flair_visit[0]}
        results["native_swapped"][key] = {role: m for role, m in pair.items() if swapped[role]}
        print(key, results["native_swapped"][key], flush=True)
    cases = mni_cases()
    for name, files in cases.items():
        results["mni_matched"][name] = mni_pair(files["flair"], files["t1"], files.get("t2"))
    for a in cases:
        for b in cases:
            if a.split("_")[0] != b.split("_")[0]:  # every ordered pair of different people
                results["mni_swapped"][f"FLAIR {a}, T1W/T2W {b}"] = mni_pair(
                    cases[a]["flair"], cases[b]["t1"], cases[b].get("t2"))
    results["mni_same_person_other_visit"] = {
        "FLAIR P14_T1, T1W/T2W P14_T3": mni_pair(cases["P14_T1"]["flair"], cases["P14_T3"]["t1"],
                                                cases["P14_T3"].get("t2"))}

    def values(group: str) -> list[float]:
        return [m["edge_correlation"] for pair in results[group].values() for m in pair.values()]
    results["summary"] = {
        group: {"min": min(values(group)), "max": max(values(group)), "n": len(values(group))}
        for group in ("native_matched", "native_swapped", "mni_matched", "mni_swapped")}
    results["limits"] = {"native": headcheck.EDGE_CORRELATION_MIN, "mni": headcheck.EDGE_CORRELATION_MIN_MNI}
    results["seconds"] = round(time.perf_counter() - start, 1)
    out = HERE / "results" / "headcheck_values.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(results["summary"], indent=1), "\nlimits", results["limits"], "\nwritten", out)


if __name__ == "__main__":
    main()
