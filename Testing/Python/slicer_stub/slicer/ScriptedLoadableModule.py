"""Stand-in for Base/Python/slicer/ScriptedLoadableModule.py (Slicer 5.12): class names,
constructors and the runTest registration as there."""
from __future__ import annotations

import importlib
import unittest

import qt

import slicer


# Base/Python/slicer/ScriptedLoadableModule.py: class ScriptedLoadableModule
class ScriptedLoadableModule:
    # def __init__(self, parent): sets template defaults, then slicer.selfTests[moduleName] = self.runTest
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = self.__class__.__name__
        parent.title = ""
        parent.categories = []
        parent.dependencies = []
        parent.contributors = []
        parent.helpText = ""
        parent.acknowledgementText = ""
        slicer.selfTests[self.moduleName] = self.runTest

    # def runTest(self, msec=100, **kwargs): runs <ModuleName>Test().runTest(**kwargs)
    def runTest(self, msec=100, **kwargs):
        module = importlib.import_module(self.__module__)
        className = self.moduleName + "Test"
        try:
            TestCaseClass = getattr(module, className)
        except AttributeError:
            raise AssertionError(f"Test case class not found: {self.__module__}.{className} ")
        testCase = TestCaseClass()
        testCase.messageDelay = msec
        testCase.runTest(**kwargs)


# Base/Python/slicer/ScriptedLoadableModule.py: class ScriptedLoadableModuleWidget
class ScriptedLoadableModuleWidget:
    # def __init__(self, parent=None): self.parent is the module panel (qSlicerScriptedLoadableModuleWidget,
    # whose isEntered property is True between enter() and exit()); self.layout = parent.layout()
    def __init__(self, parent=None):
        self.parent = parent
        if self.parent is not None and not hasattr(self.parent, "isEntered"):
            self.parent.isEntered = False
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Widget"):
            self.moduleName = self.moduleName[:-6]
        self.layout = qt.FakeLayout()

    def setup(self):
        pass

    def cleanup(self):
        pass


# Base/Python/slicer/ScriptedLoadableModule.py: class ScriptedLoadableModuleLogic
class ScriptedLoadableModuleLogic:
    # def __init__(self, parent=None):
    def __init__(self, parent=None):
        self.moduleName = self.__class__.__name__
        if self.moduleName.endswith("Logic"):
            self.moduleName = self.moduleName[:-5]

    # def getParameterNode(self):  (singleton vtkMRMLScriptedModuleNode tagged with the module name)
    def getParameterNode(self):
        node = slicer.mrmlScene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is not None and node.GetAttribute("ModuleName") != self.moduleName:
            node.SetAttribute("ModuleName", self.moduleName)  # Reset by a scene close
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(self.moduleName)
            node.SetName(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
            node = slicer.mrmlScene.AddNode(node)
        return node


# Base/Python/slicer/ScriptedLoadableModule.py: class ScriptedLoadableModuleTest(unittest.TestCase)
class ScriptedLoadableModuleTest(unittest.TestCase):
    # def delayDisplay(self, message, requestedDelay=None, msec=None): calls slicer.util.delayDisplay
    def delayDisplay(self, message, requestedDelay=None, msec=None):
        slicer.util.delayDisplay(message)
