"""BIDS file-name rules (specification 1.10, "Filename structure" and the entity table),
implemented here instead of depending on pybids.

Why not pybids: ALLNet needs the anatomical files of a session and derivative names, which
is name parsing and building. pybids 0.22 would add about 20 MB of wheels beyond ALLNet's own
dependencies (pandas, SQLAlchemy, formulaic, num2words, bidsschematools, ...), 0.8 s of
import time and an SQL index of the whole dataset; that is heavy for this job. The official
validator (``bids-validator-deno``, a test dependency) checks what this module writes.

A name is ``<key>-<value>`` entities joined by ``_`` in the specification's order, then
``_<suffix>`` and an extension: ``sub-01_ses-02_acq-3d_run-1_FLAIR.nii.gz``. Labels are
alphanumeric; index entities (``run``, ``echo``, ...) are non-negative integers.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# Entity keys in the order the specification puts them in a file name.
ENTITY_ORDER: tuple[str, ...] = (
    "sub", "ses", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc", "stain", "rec",
    "dir", "run", "mod", "echo", "flip", "inv", "mt", "part", "proc", "hemi", "space", "split",
    "recording", "chunk", "seg", "res", "den", "label", "desc",
)
INDEX_ENTITIES = frozenset({"run", "echo", "flip", "inv", "split", "chunk"})
LABEL_PATTERN = re.compile(r"^[0-9a-zA-Z]+$")
INDEX_PATTERN = re.compile(r"^[0-9]+$")
SUFFIX_PATTERN = re.compile(r"^[0-9a-zA-Z]+$")
# Extensions with more than one dot, longest first.
_COMPOUND_EXTENSIONS = (".seg.nrrd", ".nii.gz", ".tsv.gz")


@dataclass(frozen=True)
class BidsName:
    """A parsed BIDS file name: entities in file order, suffix and extension (with its dot)."""

    entities: dict[str, str]
    suffix: str
    extension: str

    def __str__(self) -> str:
        return build_name(self.entities, self.suffix, self.extension)


def split_extension(name: str) -> tuple[str, str]:
    """(stem, extension): the extension from the first dot, known compound endings kept whole."""
    lowered = name.lower()
    for ending in _COMPOUND_EXTENSIONS:
        if lowered.endswith(ending):
            return name[: -len(ending)], name[-len(ending):]
    stem, dot, ext = name.partition(".")
    return stem, (dot + ext) if dot else ""


def check_entity(key: str, value: str) -> None:
    """ValueError naming the entity when ``key`` is unknown or ``value`` breaks its rule."""
    if key not in ENTITY_ORDER:
        raise ValueError(f"unknown BIDS entity {key!r}")
    if key in INDEX_ENTITIES:
        if not INDEX_PATTERN.match(value):
            raise ValueError(f"entity {key} must be a non-negative integer, got {value!r}")
    elif not LABEL_PATTERN.match(value):
        raise ValueError(f"entity {key} must be alphanumeric (letters and digits only), got {value!r}")


def parse_name(name: str) -> BidsName:
    """Parse a BIDS file name; ValueError saying what breaks the rules.

    Rules checked: the first entity is ``sub``; every part but the last is ``key-value``
    with a known key, at most once, in the specification's order; values follow their
    entity's rule; the suffix is alphanumeric.
    """
    stem, extension = split_extension(name)
    parts = stem.split("_")
    if len(parts) < 2:
        raise ValueError(f"{name}: a BIDS name has entities and a suffix separated by '_'")
    entities: dict[str, str] = {}
    for part in parts[:-1]:
        key, dash, value = part.partition("-")
        if not dash or not value:
            raise ValueError(f"{name}: {part!r} is not a key-value entity")
        if key in entities:
            raise ValueError(f"{name}: entity {key} appears twice")
        try:
            check_entity(key, value)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        entities[key] = value
    keys = list(entities)
    if keys[0] != "sub":
        raise ValueError(f"{name}: a BIDS name starts with sub-<label>")
    if keys != sorted(keys, key=ENTITY_ORDER.index):
        raise ValueError(f"{name}: entities are not in the specification's order "
                         f"({', '.join(k for k in ENTITY_ORDER if k in entities)})")
    suffix = parts[-1]
    if not SUFFIX_PATTERN.match(suffix):
        raise ValueError(f"{name}: suffix {suffix!r} must be alphanumeric")
    return BidsName(entities, suffix, extension)


def build_name(entities: Mapping[str, str], suffix: str, extension: str) -> str:
    """A BIDS file name from entities (put in the specification's order), suffix and
    extension; ValueError for an unknown entity, a value breaking its rule or no ``sub``."""
    if "sub" not in entities:
        raise ValueError("a BIDS name needs the sub entity")
    for key, value in entities.items():
        check_entity(key, str(value))
    if not SUFFIX_PATTERN.match(suffix):
        raise ValueError(f"suffix {suffix!r} must be alphanumeric")
    ordered = sorted(entities.items(), key=lambda item: ENTITY_ORDER.index(item[0]))
    return "_".join([*(f"{k}-{v}" for k, v in ordered), suffix]) + extension


def strip_prefix(label: str, key: str) -> str:
    """A participant or session label as users give it (``01`` or ``sub-01``) without the
    ``key-`` prefix; ValueError when it is not a valid label."""
    value = label[len(key) + 1:] if label.startswith(f"{key}-") else label
    check_entity(key, value)
    return value
