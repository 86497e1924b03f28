"""Stand-in for the .ui helpers of Base/Python/slicer/util.py (Slicer 5.12): ``loadUI`` builds
``qt.FakeWidget`` trees from a Qt Designer file, ``childWidgetVariables`` names them."""
from __future__ import annotations

import os
import types
import xml.etree.ElementTree as ET

import slicer


def _widgetClass(className):
    import ctk
    import qt

    for module in (qt, ctk, slicer):
        cls = getattr(module, className, None)
        if isinstance(cls, type) and issubclass(cls, qt.FakeWidget):
            return cls
    return qt.FakeWidget


def _propertyValue(element):
    child = list(element)[0]
    if child.tag == "bool":
        return child.text == "true"
    if child.tag in ("double",):
        return float(child.text)
    if child.tag == "number":
        return int(child.text)
    if child.tag == "stringlist":
        return [s.text for s in child]
    return child.text or ""


# def loadUI(path):
def loadUI(path):
    if not os.path.isfile(path):
        raise RuntimeError("Could not load UI file: file not found " + str(path) + "\n\n")
    root = ET.parse(path).getroot()

    def build(element, parent):
        properties = {p.get("name"): _propertyValue(p) for p in element.findall("property")}
        widget = _widgetClass(element.get("class"))(element.get("class"), element.get("name"), properties)
        if parent is not None:
            parent._children.append(widget)
        for child in element.iter("widget"):
            if child is element:
                continue
            # direct widget descendants only (through layouts/items)
            if _nearestWidgetAncestor(child, element) is element:
                build(child, widget)
        return widget

    parentOf = {c: p for p in root.iter() for c in p}

    def _nearestWidgetAncestor(element, stop):
        node = parentOf.get(element)
        while node is not None and node.tag != "widget":
            node = parentOf.get(node)
        return node

    top = build(root.find("widget"), None)
    byName = {w.objectName: w for w in [top, *top.findChildren()]}
    top.sceneReceivers = [byName[c.findtext("receiver")] for c in root.iter("connection")
                          if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"]
    return top


# def childWidgetVariables(widget):
def childWidgetVariables(widget):
    ui = types.SimpleNamespace()
    for child in widget.findChildren():
        if child.objectName:
            setattr(ui, child.objectName, child)
    return ui


