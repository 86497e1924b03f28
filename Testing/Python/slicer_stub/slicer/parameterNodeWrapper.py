"""Stand-in for Base/Python/slicer/parameterNodeWrapper/ (a package there; one module here).

Mirrors: ``parameterNodeWrapper(classtype=None)`` (wrapper.py), ``WithinRange(minimum, maximum)``
and ``Choice(choices)`` (validators.py), and the wrapper methods ``connectGui(gui)`` /
``disconnectGui(guiTag)``. Like the real GUI connectors (guiConnectors.py) it refuses a widget
whose ``SlicerParameterName`` names no parameter or whose type cannot show the parameter
(QCheckBox <-> bool, QDoubleSpinBox/ctkSliderWidget <-> float (slider needs WithinRange),
QComboBox <-> Choice, qMRMLNodeComboBox <-> node type listed in its nodeTypes).
"""
from __future__ import annotations

import itertools
import typing

import vtk

SlicerParameterNamePropertyName = "SlicerParameterName"


class WithinRange:
    # validators.py: class WithinRange(Validator): def __init__(self, minimum, maximum)
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value {value} must be within [{self.minimum}, {self.maximum}]")


class Choice:
    # validators.py: class Choice(Validator): def __init__(self, choices)
    def __init__(self, choices):
        self.choices = choices

    def validate(self, value):
        if value not in self.choices:
            raise ValueError(f"Value is {value}, but must be in one of the following: {self.choices}")


def _split(annotation):
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        return base, extras
    return annotation, []


def _isNodeType(t):
    return isinstance(t, type) and any(c.__name__ == "vtkMRMLNode" for c in t.__mro__)


def _property(name):
    def getter(self):
        return self.parameterNode._values[name]

    def setter(self, value):
        base, extras = self.allParameters[name]["type"], self.allParameters[name]["validators"]
        if value is not None or not _isNodeType(base):
            if _isNodeType(base):
                if not isinstance(value, base):
                    raise TypeError(f"{name}: expected {base.__name__}, got {type(value).__name__}")
            elif base in (float, int, bool, str):
                value = base(value)
            for validator in extras:
                validator.validate(value)
        if self.parameterNode._values.get(name, object()) is not value and self.parameterNode._values.get(name) != value:
            self.parameterNode._values[name] = value
            self._updateGui(name)
            self.parameterNode.Modified()

    return property(getter, setter)


def _canShow(widget, base, extras) -> str | None:
    """Why ``widget`` cannot show a parameter of this type, or None."""
    cls = widget.className
    if cls in ("QCheckBox", "ctkCheckBox"):
        return None if base is bool else "a check box needs a bool parameter"
    if cls in ("QDoubleSpinBox", "ctkSliderWidget"):
        if base not in (float, int):
            return f"{cls} needs a float parameter"
        if cls == "ctkSliderWidget" and not any(isinstance(e, WithinRange) for e in extras):
            return "Cannot have a connection to ctkSliderWidget where the float types is unbounded."
        return None
    if cls in ("QComboBox", "ctkComboBox"):
        return None if any(isinstance(e, Choice) for e in extras) else "ComboBoxToStringableConnector requires the Choice annotation"
    if cls == "qMRMLNodeComboBox":
        if not _isNodeType(base):
            return "a node selector needs a node parameter"
        nodeTypes = widget.property("nodeTypes") or []
        return None if base.__name__ in nodeTypes else f"nodeTypes {nodeTypes} do not include {base.__name__}"
    return f"no GUI connector for {cls}"


def _processClass(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    allParameters = {}
    for name, annotation in hints.items():
        base, extras = _split(annotation)
        if hasattr(cls, name):
            default = getattr(cls, name)
        else:
            default = None if _isNodeType(base) else base()
        allParameters[name] = {"type": base, "validators": extras, "default": default}
        setattr(cls, name, _property(name))
    cls.allParameters = allParameters

    def __init__(self, parameterNode, prefix=None):
        self.parameterNode = parameterNode
        if not hasattr(parameterNode, "_values"):
            parameterNode._values = {}
        for pname, info in allParameters.items():
            parameterNode._values.setdefault(pname, info["default"])
        self._guis = {}
        self._tags = itertools.count(1)

    def connectGui(self, gui):
        widgets = list(gui.__dict__.values()) if not hasattr(gui, "findChildren") else gui.findChildren()
        mapping = {}
        for widget in widgets:
            pname = widget.property(SlicerParameterNamePropertyName) if hasattr(widget, "property") else None
            if not pname:
                continue
            if pname not in allParameters:
                raise ValueError(f"Widget {widget.objectName}: no parameter named {pname!r}")
            reason = _canShow(widget, allParameters[pname]["type"], allParameters[pname]["validators"])
            if reason:
                raise RuntimeError(f"Widget {widget.objectName} for {pname}: {reason}")
            for extra in allParameters[pname]["validators"]:
                if isinstance(extra, Choice):
                    widget.clear()
                    for choice in extra.choices:
                        widget.addItem(str(choice))
            mapping[pname] = widget
        tag = next(self._tags)
        self._guis[tag] = mapping
        for pname in mapping:
            self._updateGui(pname)
        return tag

    def disconnectGui(self, guiTag):
        self._guis.pop(guiTag, None)

    def _updateGui(self, pname):
        value = self.parameterNode._values.get(pname)
        for mapping in self._guis.values():
            widget = mapping.get(pname)
            if widget is None:
                continue
            if widget.className == "qMRMLNodeComboBox":
                widget.setCurrentNode(value)
            elif widget.className in ("QCheckBox", "ctkCheckBox"):
                widget.checked = bool(value)
            elif widget.className in ("QComboBox", "ctkComboBox"):
                choices = next(e.choices for e in allParameters[pname]["validators"] if isinstance(e, Choice))
                widget.currentIndex = choices.index(value)
            else:
                widget.value = value

    def guiChanged(self, widget):
        """Stand-in only: what a GUI connector does when the user edits ``widget``."""
        for mapping in self._guis.values():
            for pname, bound in mapping.items():
                if bound is widget:
                    if widget.className == "qMRMLNodeComboBox":
                        setattr(self, pname, widget.currentNode())
                    elif widget.className in ("QCheckBox", "ctkCheckBox"):
                        setattr(self, pname, widget.checked)
                    elif widget.className in ("QComboBox", "ctkComboBox"):
                        choices = next(e.choices for e in allParameters[pname]["validators"] if isinstance(e, Choice))
                        setattr(self, pname, choices[widget.currentIndex])
                    else:
                        setattr(self, pname, widget.value)

    cls.__init__ = __init__
    cls.connectGui = connectGui
    cls.disconnectGui = disconnectGui
    cls._updateGui = _updateGui
    cls.guiChanged = guiChanged
    cls.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback, priority)
    cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
    cls.Modified = lambda self: self.parameterNode.Modified()
    cls.StartModify = lambda self: self.parameterNode.StartModify()
    cls.EndModify = lambda self, wasModified: self.parameterNode.EndModify(wasModified)
    cls._is_parameter_node_wrapper = True
    return cls


# wrapper.py: def parameterNodeWrapper(classtype=None):
def parameterNodeWrapper(classtype=None):
    def wrap(cls):
        return _processClass(cls)

    if classtype is None:
        return wrap
    return wrap(classtype)


__all__ = ["parameterNodeWrapper", "WithinRange", "Choice", "vtk"]
