"""Guess which loaded volume is the T1W, T2W and FLAIR input from its name.

The naming rule is the core's (``allnet.cases.modality_of_name``), so the panel and
``allnet segment --cohort`` recognise the same names.
"""
from __future__ import annotations

from allnet.cases import modality_of_name


def roleOfName(name: str) -> str | None:
    """"t1", "t2", "flair" or None for a volume or file name."""
    return modality_of_name(name)


def assignByName(names: list[str]) -> dict[str, int]:
    """Index of the first name matching each role, e.g. ``{"t1": 0, "flair": 2}``."""
    assigned: dict[str, int] = {}
    for index, name in enumerate(names):
        role = roleOfName(name)
        if role and role not in assigned:
            assigned[role] = index
    return assigned
