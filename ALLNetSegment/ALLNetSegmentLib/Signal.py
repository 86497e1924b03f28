"""A tiny pure-Python signal: PythonQt cannot define custom qt.Signal in Python classes."""
from __future__ import annotations

from collections.abc import Callable
from itertools import count


class Signal:
    """Connect callables and call them all on ``emit``; ``connect`` returns a handle for ``disconnect``."""

    def __init__(self, *typeInfo: str) -> None:
        self._typeInfo = typeInfo  # documentation only: the argument types emitted
        self._slots: dict[int, Callable] = {}
        self._ids = count()
        self._blocked = False

    def connect(self, slot: Callable) -> int:
        if not callable(slot):
            raise TypeError("slot must be callable")
        handle = next(self._ids)
        self._slots[handle] = slot
        return handle

    def disconnect(self, handle: int) -> bool:
        return self._slots.pop(handle, None) is not None

    def disconnectAll(self) -> None:
        self._slots.clear()

    def blockSignals(self, blocked: bool) -> None:
        self._blocked = blocked

    def emit(self, *args, **kwargs) -> None:
        if self._blocked:
            return
        for slot in list(self._slots.values()):  # a slot may disconnect itself
            slot(*args, **kwargs)

    __call__ = emit
