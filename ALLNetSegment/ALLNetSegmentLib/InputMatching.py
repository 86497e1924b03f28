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


def inputProblem(t1Node, flairNode, t2Node=None) -> str | None:
    """Why the selected volumes cannot be segmented, or None when they can.

    T1W and FLAIR are required and must be two different volumes; an optional T2W must differ
    from both (one volume given twice would silently stand for two contrasts).
    """
    if t1Node is None and flairNode is None:
        return "Select a T1W and a FLAIR volume (T2W is optional)."
    if t1Node is None:
        return "Select a T1W volume."
    if flairNode is None:
        return "Select a FLAIR volume."
    if t1Node is flairNode:
        return "T1W and FLAIR are the same volume: select two different volumes."
    if t2Node is not None and t2Node in (t1Node, flairNode):
        role = "T1W" if t2Node is t1Node else "FLAIR"
        return f"T2W is the same volume as the {role}: select another T2W or none."
    return None
