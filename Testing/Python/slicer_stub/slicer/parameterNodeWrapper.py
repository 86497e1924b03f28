"""Stand-in for Base/Python/slicer/parameterNodeWrapper/ (Slicer 5.12; a package there, one module here).

As in Slicer, values live in the wrapped ``vtkMRMLScriptedModuleNode`` as strings (serializers.py:
NumberSerializer, StringSerializer, BoolSerializer) or node references (NodeSerializer, so a node
that left the scene reads back as None), and every write runs the validators first: the default
``NotNone``/``IsInstance`` ones of the serializer (a str for a bool parameter raises TypeError,
nothing is coerced), then the annotated ones (``WithinRange``, ``Choice``). The GUI connectors
(guiConnectors.py) refuse a widget that cannot show its parameter and follow the widget's change
signal, as the real ones do.
"""
from __future__ import annotations

import typing

import vtk

SlicerParameterNamePropertyName = "SlicerParameterName"


# validators.py (5.12): class NotNone(Validator)
class NotNone:
    def validate(self, value):
        if value is None:
            raise ValueError("Value must not be None")


# validators.py (5.12): class IsInstance(Validator): def __init__(self, classtype)
class IsInstance:
    def __init__(self, classtype):
        self.classtype = classtype

    def validate(self, value):
        if value is not None and not isinstance(value, self.classtype):
            raise TypeError(f"Value must be of type '{self.classtype}', is type '{type(value)}' value '{value}'")


# validators.py (5.12): class WithinRange(Validator): def __init__(self, minimum, maximum)
class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value must be within range [{self.minimum}, {self.maximum}], is {value}")


# validators.py (5.12): class Choice(Validator): def __init__(self, choices)
class Choice:
    def __init__(self, choices):
        self.choices = choices

    def validate(self, value):
        if value not in self.choices:
            raise ValueError(f"Value is {value}, but must be in one of the following: {self.choices}")


def _isNodeType(t):
    return isinstance(t, type) and any(c.__name__ == "vtkMRMLNode" for c in t.__mro__)


class _Serializer:
    """serializers.py (5.12): Number/String/Bool/NodeSerializer with their default validators."""

    def __init__(self, type_):
        self.type = type_
        if _isNodeType(type_):
            self.validators = [IsInstance(type_)]
        elif type_ is float:
            self.validators = [NotNone(), IsInstance((int, float))]
        elif type_ in (int, str, bool):
            self.validators = [NotNone(), IsInstance(type_)]
        else:
            raise Exception(f"Unable to create serializer for type: {type_}")

    def default(self):
        return None if _isNodeType(self.type) else {bool: False, str: "", int: 0, float: 0}[self.type]

    def isIn(self, node, name):
        return node.HasParameter(name)

    def write(self, node, name, value):
        if _isNodeType(self.type):
            node.SetParameter(name, "")
            node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
        elif self.type is bool:
            node.SetParameter(name, "True" if value else "False")
        else:
            node.SetParameter(name, str(value))

    def read(self, node, name):
        if _isNodeType(self.type):
            return node.GetNodeReference(name)
        if self.type is bool:
            return node.GetParameter(name) == "True"
        return self.type(node.GetParameter(name))


def _split(annotation):
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        return base, list(extras)
    return annotation, []


# guiConnectors.py (5.12): which widget class can show which parameter type, and its change signal.
def _connectorSignal(widget, info) -> str:
    base, extras = info["type"], info["validators"]
    cls = widget.className
    if cls in ("QCheckBox", "ctkCheckBox") and base is bool:
        return "toggled(bool)"
    if cls in ("QDoubleSpinBox", "ctkSliderWidget") and base in (float, int):
        if cls == "ctkSliderWidget" and not any(isinstance(e, WithinRange) for e in extras):
            raise RuntimeError("Cannot have a connection to ctkSliderWidget where the float types is unbounded.")
        return "valueChanged(double)"
    if cls in ("QComboBox", "ctkComboBox") and any(isinstance(e, Choice) for e in extras):
        return "currentIndexChanged(int)"
    if cls == "qMRMLNodeComboBox" and _isNodeType(base):
        return "currentNodeChanged(vtkMRMLNode*)"
    raise RuntimeError(f"Unable to create GUI connector from widget of type {cls} and data type {base}")


def _choices(info):
    return next(e.choices for e in info["validators"] if isinstance(e, Choice))


def _readWidget(widget, info):
    cls = widget.className
    if cls == "qMRMLNodeComboBox":
        return widget.currentNode()
    if cls in ("QCheckBox", "ctkCheckBox"):
        return bool(widget.checked)
    if cls in ("QComboBox", "ctkComboBox"):
        return _choices(info)[widget.currentIndex]
    return float(widget.value)


def _writeWidget(widget, info, value):
    cls = widget.className
    if cls == "qMRMLNodeComboBox":
        widget.setCurrentNode(value)
    elif cls in ("QCheckBox", "ctkCheckBox"):
        widget.checked = bool(value)
    elif cls in ("QComboBox", "ctkComboBox"):
        widget.currentIndex = _choices(info).index(value)
    else:
        widget.value = value


def _processClass(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    allParameters = {}
    for name, annotation in hints.items():
        base, extras = _split(annotation)
        serializer = _Serializer(base)
        default = getattr(cls, name) if hasattr(cls, name) else serializer.default()
        allParameters[name] = {"type": base, "validators": extras, "default": default, "serializer": serializer}
        setattr(cls, name, property(lambda self, n=name: self.getValue(n),
                                    lambda self, value, n=name: self.setValue(n, value)))
    cls.allParameters = allParameters

    # wrapper.py _initMethod: write the default of every parameter missing from the node
    def __init__(self, parameterNode, prefix=None):
        self.parameterNode = parameterNode
        self._guis: dict[int, dict] = {}
        self._nextTag = 0
        self._updatingGui = False
        for pname, info in allParameters.items():
            if not info["serializer"].isIn(parameterNode, pname):
                info["serializer"].write(parameterNode, pname, info["default"])

    # wrapper.py _Parameter.read: a parameter missing from the node (e.g. after Reset) gets its default
    def getValue(self, name):
        info = allParameters[name]
        if not info["serializer"].isIn(self.parameterNode, name):
            info["serializer"].write(self.parameterNode, name, info["default"])
        return info["serializer"].read(self.parameterNode, name)

    def setValue(self, name, value):
        info = allParameters[name]
        for validator in info["serializer"].validators + info["validators"]:
            validator.validate(value)
        wasModifying = self.parameterNode.StartModify()
        info["serializer"].write(self.parameterNode, name, value)
        self.parameterNode.EndModify(wasModifying)

    # wrapper.py _connectGui / _connectParametersToGui
    def connectGui(self, gui):
        widgets = gui.findChildren() if hasattr(gui, "findChildren") else list(gui.__dict__.values())
        mapping = {}
        for widget in widgets:
            pname = widget.property(SlicerParameterNamePropertyName) if hasattr(widget, "property") else None
            if not pname:
                continue
            if pname not in allParameters:
                raise ValueError(f"Cannot find a param with the given name: {pname}")
            signal = _connectorSignal(widget, allParameters[pname])
            for extra in allParameters[pname]["validators"]:
                if isinstance(extra, Choice):
                    widget.clear()
                    for choice in extra.choices:
                        widget.addItem(str(choice))

            def onChanged(*args, p=pname, w=widget):
                if not self._updatingGui:
                    self.setValue(p, _readWidget(w, allParameters[p]))

            widget.connect(signal, onChanged)
            mapping[pname] = (widget, signal, onChanged)
        tag = self._nextTag
        self._nextTag += 1
        self._guis[tag] = {"mapping": mapping,
                           "observer": self.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent,
                                                                      lambda caller, event: self._updateGui())}
        self._updateGui()
        return tag

    def disconnectGui(self, guiTag):
        gui = self._guis.pop(guiTag, None)
        if gui is None:
            return
        for widget, signal, slot in gui["mapping"].values():
            widget.disconnect(signal, slot)
        self.parameterNode.RemoveObserver(gui["observer"])

    def _updateGui(self):
        if self._updatingGui:
            return
        self._updatingGui = True
        try:
            for gui in self._guis.values():
                for pname, (widget, _, _) in gui["mapping"].items():
                    _writeWidget(widget, allParameters[pname], self.getValue(pname))
        finally:
            self._updatingGui = False

    cls.__init__ = __init__
    cls.getValue = getValue
    cls.setValue = setValue
    cls.connectGui = connectGui
    cls.disconnectGui = disconnectGui
    cls._updateGui = _updateGui
    cls.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback, priority)
    cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
    cls.Modified = lambda self: self.parameterNode.Modified()
    cls.StartModify = lambda self: self.parameterNode.StartModify()
    cls.EndModify = lambda self, wasModified: self.parameterNode.EndModify(wasModified)
    cls._is_parameter_node_wrapper = True
    return cls


# wrapper.py (5.12): def parameterNodeWrapper(classtype=None):
def parameterNodeWrapper(classtype=None):
    def wrap(cls):
        return _processClass(cls)

    if classtype is None:
        return wrap
    return wrap(classtype)


__all__ = ["parameterNodeWrapper", "WithinRange", "Choice", "NotNone", "IsInstance"]
