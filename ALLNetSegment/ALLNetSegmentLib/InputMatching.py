"""Guess which loaded volume is the T1W, T2W and FLAIR input from its name."""
from __future__ import annotations

import re

# FLAIR first: names such as "T2-FLAIR" or "t2_flair" are FLAIR, not T2W.
_PATTERNS = [
    ("flair", re.compile(r"flair")),
    ("t1", re.compile(r"(^|[^a-z0-9])(t1|t1w|t1ce|t1c|mprage|spgr)([^a-z0-9]|$)")),
    ("t2", re.compile(r"(^|[^a-z0-9])(t2|t2w)([^a-z0-9]|$)")),
]


def roleOfName(name: str) -> str | None:
    """"t1", "t2", "flair" or None for a volume or file name."""
    lowered = name.lower()
    for role, pattern in _PATTERNS:
        if pattern.search(lowered):
            return role
    return None


def assignByName(names: list[str]) -> dict[str, int]:
    """Index of the first name matching each role, e.g. ``{"t1": 0, "flair": 2}``."""
    assigned: dict[str, int] = {}
    for index, name in enumerate(names):
        role = roleOfName(name)
        if role and role not in assigned:
            assigned[role] = index
    return assigned
