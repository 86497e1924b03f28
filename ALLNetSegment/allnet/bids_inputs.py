"""Finding each session's T1w, T2w and FLAIR in a BIDS dataset by entities.

A session is ``sub-<label>/ses-<label>/anat/`` (or ``sub-<label>/anat/`` in a dataset
without sessions). Its inputs are the NIfTI files named ``sub-<label>[_ses-<label>]...
_<suffix>.nii[.gz]`` with suffix ``T1w``, ``T2w`` or ``FLAIR`` (T2w optional). When a
suffix has several candidates (``acq``, ``rec``, ``run``, ``ce`` ... differ), nothing is
guessed: the run is refused with the candidates listed, unless ``--select`` picks one. A
selection applies to the sessions whose candidates carry its entity.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .bids_naming import BidsName, check_entity, parse_name, strip_prefix
from .errors import InputError

# BIDS suffix -> ALLNet input role.
ANAT_SUFFIXES: dict[str, str] = {"T1w": "t1", "T2w": "t2", "FLAIR": "flair"}
REQUIRED_SUFFIXES = ("T1w", "FLAIR")
NIFTI_EXTENSIONS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class Selection:
    """``--select [SUFFIX:]ENTITY-LABEL``: keep only candidates with that entity value
    (for one suffix, or for every suffix when none is given)."""

    entity: str
    value: str
    suffix: str | None = None

    @classmethod
    def parse(cls, text: str) -> Selection:
        """From ``T1w:acq-mprage`` or ``run-2``; ValueError explaining the form."""
        suffix, colon, rest = text.rpartition(":")
        key, dash, value = rest.partition("-")
        if (colon and suffix not in ANAT_SUFFIXES) or not dash:
            raise ValueError(f"--select {text!r}: expected [SUFFIX:]ENTITY-LABEL with SUFFIX one of "
                             f"{', '.join(ANAT_SUFFIXES)}, e.g. T1w:acq-mprage or run-1")
        if key in ("sub", "ses"):
            raise ValueError(f"--select {text!r}: use --participant-label / --session-label")
        check_entity(key, value)
        return cls(key, value, suffix or None)

    def applies(self, suffix: str) -> bool:
        return self.suffix in (None, suffix)

    def matches(self, name: BidsName) -> bool:
        value = name.entities.get(self.entity)
        if self.entity == "run" and value is not None:  # run-01 and run-1 are the same index
            return int(value) == int(self.value)
        return value == self.value

    def __str__(self) -> str:
        return (f"{self.suffix}:" if self.suffix else "") + f"{self.entity}-{self.value}"


@dataclass(frozen=True)
class BidsSession:
    """One session to segment. ``inputs``: role -> file; ``problem``: why it cannot run."""

    subject: str
    session: str | None
    inputs: dict[str, Path] = field(default_factory=dict)
    problem: str = ""

    @property
    def entities(self) -> dict[str, str]:
        return {"sub": self.subject} | ({"ses": self.session} if self.session else {})

    @property
    def case_id(self) -> str:
        return "_".join(f"{k}-{v}" for k, v in self.entities.items())

    @property
    def folder(self) -> Path:
        """Folder of the session relative to the dataset root (``sub-01/ses-02``)."""
        return Path(*(f"{k}-{v}" for k, v in self.entities.items()))


def _labels(root: Path, pattern: str, key: str) -> list[str]:
    return sorted(p.name[len(key) + 1:] for p in root.glob(pattern) if p.is_dir())


def find_sessions(bids_dir: str | Path, participant_labels: list[str] | None = None,
                  session_labels: list[str] | None = None,
                  selections: list[Selection] | None = None) -> list[BidsSession]:
    """Every session of the dataset (restricted to the given labels), with its inputs.

    Raises InputError (before any work) when the folder is not a BIDS dataset, a requested
    label does not exist, or a suffix has several candidates that ``selections`` do not
    narrow to one (all such sessions listed). A session without T1w or FLAIR, or where a
    selection removes every candidate, is returned with a ``problem`` and fails alone.
    """
    root = Path(bids_dir)
    if not (root / "dataset_description.json").is_file():
        raise InputError(root, "not a BIDS dataset: dataset_description.json is missing")
    subjects = _labels(root, "sub-*", "sub")
    wanted = [strip_prefix(s, "sub") for s in participant_labels or []]
    missing = sorted(set(wanted) - set(subjects))
    if missing:
        raise InputError(root, f"no participant {', '.join(missing)} in the dataset "
                               f"(participants: {', '.join(subjects) or 'none'})")
    wanted_sessions = [strip_prefix(s, "ses") for s in session_labels or []]
    sessions: list[BidsSession] = []
    for subject in wanted or subjects:
        labels = _labels(root / f"sub-{subject}", "ses-*", "ses") or [None]
        for session in labels:
            if wanted_sessions and session not in wanted_sessions:
                continue
            sessions.append(_session(root, subject, session, selections or []))
    found = {s.session for s in sessions}
    unknown = sorted(set(wanted_sessions) - found)
    if unknown:
        raise InputError(root, f"no session {', '.join(unknown)} in the selected participants")
    ambiguous = [s.problem for s in sessions if s.problem.startswith(_AMBIGUOUS)]
    if ambiguous:
        raise InputError(root, "inputs are ambiguous; nothing was run:\n  " + "\n  ".join(ambiguous))
    return sessions


_AMBIGUOUS = "several candidate"


def _session(root: Path, subject: str, session: str | None, selections: list[Selection]
             ) -> BidsSession:
    entities = {"sub": subject} | ({"ses": session} if session else {})
    anat = root.joinpath(*(f"{k}-{v}" for k, v in entities.items()), "anat")
    candidates: dict[str, list[tuple[Path, BidsName]]] = {s: [] for s in ANAT_SUFFIXES}
    if anat.is_dir():
        for path in sorted(anat.iterdir()):
            if not path.name.endswith(NIFTI_EXTENSIONS):
                continue
            try:
                name = parse_name(path.name)
            except ValueError:
                continue  # not a BIDS name: not an input (the validator reports it)
            own = {k: name.entities.get(k) for k in ("sub", "ses")} == {"sub": subject, "ses": session}
            if own and name.suffix in candidates:
                candidates[name.suffix].append((path, name))
    label = "_".join(f"{k}-{v}" for k, v in entities.items())
    inputs: dict[str, Path] = {}
    problems: list[str] = []
    for suffix, found in candidates.items():
        # A selection applies where the candidates carry its entity: --select run-1 keeps a
        # session's only FLAIR that has no run entity, but refuses a FLAIR with run-2 only.
        relevant = [s for s in selections
                    if s.applies(suffix) and any(s.entity in n.entities for _, n in found)]
        chosen = [(p, n) for p, n in found if all(s.matches(n) for s in relevant)]
        if len(chosen) > 1:
            listed = ", ".join(p.name for p, _ in chosen)
            problems.insert(0, f"{_AMBIGUOUS} {suffix} images in {label}: {listed}; pick one with "
                               f"--select {suffix}:ENTITY-LABEL ({_hint(chosen)})")
        elif len(chosen) == 1:
            inputs[ANAT_SUFFIXES[suffix]] = chosen[0][0]
        elif found:
            used = " ".join(f"--select {s}" for s in relevant)
            problems.append(f"no {suffix} image in {label} matches {used} (candidates: "
                            f"{', '.join(p.name for p, _ in found)})")
        elif suffix in REQUIRED_SUFFIXES:
            problems.append(f"no {suffix} image in {anat} (expected {label}[_acq-...]_{suffix}.nii.gz)")
    return BidsSession(subject, session, inputs, "; ".join(problems))


def _hint(chosen: list[tuple[Path, BidsName]]) -> str:
    """The entity values that tell the candidates apart, e.g. ``acq-mprage or acq-spgr``."""
    keys = {k for _, n in chosen for k in n.entities if k not in ("sub", "ses")}
    differing = [k for k in sorted(keys)
                 if len({n.entities.get(k) for _, n in chosen}) > 1]
    options = [" ".join(f"{k}-{n.entities[k]}" for k in differing if k in n.entities) or "(none)"
               for _, n in chosen]
    return "candidates differ in " + ", ".join(differing) + ": " + " or ".join(options) \
        if differing else "they differ only in extension"
