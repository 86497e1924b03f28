"""Nested leave-one-subject-out check of a lesion-level classifier after the inference plan.

The held-out predictions of a cross-validation (``fold_*/oof``) are post-processed with the
bundled plan (p > 0.5, 26-connected, >= 10 mm3, FLAIR floor 0.3, grey-matter fraction 0.99);
each kept lesion gets ten features; a logistic regression trained on the lesions of the other
subjects, with its keep-threshold chosen on them (their mean lesion-wise F1), filters the
held-out subject's lesions. Model card, stage 7c: "A lesion-level classifier after the plan".

    python benchmarks/lesion_classifier_oof.py runs/cv_stage7_avg_t2 \
        -o docs/model_card/lesion_classifier_nested.json
"""
import argparse
import dataclasses, json

import numpy as np
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from allnet_training.plan_tuning import load_oof, vote
from allnet_training.cache import load_cached, prepare_cases
from allnet_training.data import dev_cases
from allnet.plan import DEFAULT_PLAN
from allnet.postprocess import postprocess_array
from allnet.metrics import evaluate_case
plan = dataclasses.replace(DEFAULT_PLAN, threshold=0.5, min_flair_contrast=0.3, max_grey_matter_fraction=0.99)
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("crossval")
parser.add_argument("--dev-data", default="../shared/data")
parser.add_argument("--cache", default="runs/cache")
parser.add_argument("-o", "--output", required=True)
args = parser.parse_args()
oof = load_oof(args.crossval)
cases = {c.case_id: c for c in (load_cached(p) for p in prepare_cases(dev_cases(args.dev_data), args.cache))}
S18 = ndimage.generate_binary_structure(3, 2)
data = {}
for cid, a in oof.items():
    c = cases[cid]
    v = vote(a, plan.threshold)
    labels, _ = postprocess_array(v, plan, a["sphere"].astype(np.float32), contrast_map=a["flair_contrast"].astype(np.float32),
                                  grey_matter_map=a["grey_matter"])
    ref = a["reference"] > 0
    n = int(labels.max()); idx = np.arange(1, n + 1)
    prob = a["probability"].astype(np.float32); sph = a["sphere"].astype(np.float32)
    fc = a["flair_contrast"].astype(np.float32); gm = a["grey_matter"].astype(np.float32)
    an = c.anatomy.astype(np.float32)
    vol = ndimage.sum(np.ones_like(prob), labels, idx)
    feats = np.stack([np.log10(vol), ndimage.mean(prob, labels, idx), ndimage.maximum(prob, labels, idx),
                      ndimage.maximum(sph, labels, idx), ndimage.mean(fc, labels, idx), ndimage.mean(gm, labels, idx),
                      ndimage.mean(an[4], labels, idx), ndimage.mean(an[5], labels, idx),
                      np.abs(ndimage.mean(an[0], labels, idx)), ndimage.mean(an[2], labels, idx)], 1)
    tp = ndimage.maximum(ref.astype(np.float32), labels, idx) > 0
    data[cid] = dict(labels=labels, ref=ref, X=feats, y=tp, subject=c.subject_id)
    print(cid, n, "components", int(tp.sum()), "true", flush=True)

def score(cid, keep):
    d = data[cid]
    kept = np.isin(d["labels"], np.flatnonzero(keep) + 1)
    m = evaluate_case(kept, d["ref"], spacing=(1, 1, 1))
    return m.dsc, m.lf1

base = {cid: score(cid, np.ones(len(d["y"]), bool)) for cid, d in data.items()}
print("base", {k: tuple(round(x, 3) for x in v) for k, v in base.items()},
      "mean %.3f / %.3f" % tuple(np.mean(list(base.values()), 0)))
subjects = sorted({d["subject"] for d in data.values()})
grid = np.round(np.arange(0, 0.91, 0.05), 2)
result = {}
for held in subjects:
    train = [c for c, d in data.items() if d["subject"] != held]
    X = np.concatenate([data[c]["X"] for c in train]); y = np.concatenate([data[c]["y"] for c in train])
    sc = StandardScaler().fit(X); clf = LogisticRegression(C=1.0, max_iter=1000).fit(sc.transform(X), y)
    best, bt = -1, 0
    for t in grid:
        m = np.mean([score(c, clf.predict_proba(sc.transform(data[c]["X"]))[:, 1] >= t)[1] for c in train])
        if m > best + 1e-9: best, bt = m, t
    for c in (c for c, d in data.items() if d["subject"] == held):
        keep = clf.predict_proba(sc.transform(data[c]["X"]))[:, 1] >= bt
        result[c] = score(c, keep)
        print(held, "t", bt, c, "kept", int(keep.sum()), "of", len(keep), "true kept", int((keep & data[c]["y"]).sum()), "of", int(data[c]["y"].sum()),
              "%.3f / %.3f (base %.3f / %.3f)" % (*result[c], *base[c]), flush=True)
print("NESTED mean %.3f / %.3f" % tuple(np.mean(list(result.values()), 0)))
with open(args.output, "w") as f:
    json.dump({"crossval": args.crossval, "plan": dataclasses.asdict(plan), "base": base, "nested": result}, f, indent=1)
