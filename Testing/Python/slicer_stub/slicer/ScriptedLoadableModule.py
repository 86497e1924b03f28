"""Stand-in for Base/Python/slicer/ScriptedLoadableModule.py (class names and constructors as there)."""
from __future__ import annotations

import unittest

import qt
import slicer


class ScriptedLoadableModule:
    # def __init__(self, parent):
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = self.__class__.__name__
        slicer.selfTests[self.moduleName] = getattr(self, "runTest", None)


class ScriptedLoadableModuleWidget:
    # def __init__(self, parent=None):
    def __init__(self, parent=None):
        self.parent = parent
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Widget"):
            self.moduleName = self.moduleName[:-6]
        self.layout = qt.FakeLayout()

    def setup(self):
        pass

    def cleanup(self):
        pass


class ScriptedLoadableModuleLogic:
    # def __init__(self, parent=None):
    def __init__(self, parent=None):
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Logic"):
            self.moduleName = self.moduleName[:-5]

    # def getParameterNode(self):  (singleton vtkMRMLScriptedModuleNode tagged with the module name)
    def getParameterNode(self):
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(self.moduleName)
            node.SetName(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
            slicer.mrmlScene.AddNode(node)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, msec=100):
        print(message)
