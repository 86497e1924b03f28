"""Stand-in for the few VTK classes ALLNetSegmentLib uses (real: the ``vtk`` package)."""
from __future__ import annotations

import itertools


class vtkCommand:
    # VTK Common/Core/vtkCommand.h: ModifiedEvent is event id 33
    ModifiedEvent = 33


class vtkObject:
    """Observer bookkeeping as in vtkObject (AddObserver returns a tag; InvokeEvent calls)."""

    _tags = itertools.count(1)

    def __init__(self) -> None:
        self._observers: dict[int, tuple[int, object]] = {}

    # VTK Common/Core/vtkObject.h: unsigned long AddObserver(unsigned long event, vtkCommand*, float priority=0.0f)
    def AddObserver(self, event, callback, priority=0.0):
        tag = next(self._tags)
        self._observers[tag] = (event, callback)
        return tag

    def RemoveObserver(self, tag):
        self._observers.pop(tag, None)

    def InvokeEvent(self, event, callData=None):
        for observedEvent, callback in list(self._observers.values()):
            if observedEvent == event:
                callback(self, event)

    def Modified(self):
        self.InvokeEvent(vtkCommand.ModifiedEvent)

    def IsA(self, className: str) -> bool:
        return any(cls.__name__ == className for cls in type(self).__mro__)

    def GetClassName(self) -> str:
        return type(self).__name__


class vtkMatrix4x4(vtkObject):
    def __init__(self) -> None:
        super().__init__()
        self._e = [[1.0 if r == c else 0.0 for c in range(4)] for r in range(4)]

    def GetElement(self, i, j):
        return self._e[i][j]

    def SetElement(self, i, j, value):
        self._e[i][j] = float(value)


class _Array(vtkObject):
    _cast = staticmethod(lambda v: v)

    def __init__(self) -> None:
        super().__init__()
        self._name = None
        self._values: list = []

    def SetName(self, name):
        self._name = name

    def GetName(self):
        return self._name

    def InsertNextValue(self, value):
        self._values.append(self._cast(value))
        return len(self._values) - 1

    def GetValue(self, index):
        return self._values[index]

    def GetNumberOfTuples(self):
        return len(self._values)

    def GetNumberOfValues(self):
        return len(self._values)


class vtkIntArray(_Array):
    _cast = staticmethod(int)


class vtkDoubleArray(_Array):
    _cast = staticmethod(float)


class vtkStringArray(_Array):
    _cast = staticmethod(str)


class vtkTable(vtkObject):
    def __init__(self) -> None:
        super().__init__()
        self._columns: list[_Array] = []

    def AddColumn(self, array):
        self._columns.append(array)

    def RemoveAllColumns(self) -> None:  # vtkMRMLTableNode::RemoveAllColumns uses the table's
        self._columns.clear()

    def GetNumberOfColumns(self):
        return len(self._columns)

    def GetNumberOfRows(self):
        return self._columns[0].GetNumberOfTuples() if self._columns else 0

    def GetColumn(self, index):
        return self._columns[index]

    def GetColumnByName(self, name):
        for column in self._columns:
            if column.GetName() == name:
                return column
        return None
