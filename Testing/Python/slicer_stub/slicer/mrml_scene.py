"""The scene of the MRML stand-in (Slicer 5.12, Libs/MRML/Core/vtkMRMLScene.h / .cxx)."""
from __future__ import annotations

import itertools

import vtk

from . import mrml, mrml_segmentation
from .mrml import vtkMRMLDisplayableNode, vtkMRMLDisplayNode, vtkMRMLNode, vtkMRMLSubjectHierarchyNode


# Libs/MRML/Core/vtkMRMLScene.h / .cxx (5.12)
class vtkMRMLScene(vtk.vtkObject):
    # enum SceneEventType: NodeAboutToBeAddedEvent = 0x2000, NodeAddedEvent, ...; StartCloseEvent =
    # StateEvent | StartEvent | CloseState (0x2000 | 0x0100 | 0x0003), EndCloseEvent likewise.
    NodeAddedEvent = 0x2001
    NodeAboutToBeRemovedEvent = 0x2002
    NodeRemovedEvent = 0x2003
    StartCloseEvent = 0x2103
    EndCloseEvent = 0x2203

    def __init__(self) -> None:
        super().__init__()
        self._nodes: dict[str, vtkMRMLNode] = {}
        self._ids = itertools.count(1)
        self._subjectHierarchy = vtkMRMLSubjectHierarchyNode()
        self._subjectHierarchy.SetSingletonTag("SubjectHierarchy")
        self.AddNode(self._subjectHierarchy)

    # void Clear(int removeSingletons = 0): StartCloseEvent, every node removed except singletons
    # (unless asked), singletons Reset, EndCloseEvent. File > Close Scene calls Clear(0).
    def Clear(self, removeSingletons=0):
        self.InvokeEvent(self.StartCloseEvent)
        for node in list(self._nodes.values()):
            if removeSingletons or node.GetSingletonTag() is None:
                self.RemoveNode(node)
        for node in list(self._nodes.values()):
            node.Reset(None)
        self.InvokeEvent(self.EndCloseEvent)

    def AddNode(self, node):
        singletonTag = node.GetSingletonTag()
        if singletonTag is not None:
            # vtkMRMLScene::AddNode: a singleton already in the scene is updated and returned instead.
            existing = self.GetSingletonNode(singletonTag, node.GetClassName())
            if existing is not None:
                return existing
        node._id = f"{node.GetClassName()}{next(self._ids)}"
        node._scene = self
        self._nodes[node._id] = node
        if not isinstance(node, (vtkMRMLSubjectHierarchyNode, vtkMRMLDisplayNode)):
            sh = self._subjectHierarchy
            sh._newItem(sh.GetSceneItemID(), node.GetName(), node)
        self.InvokeEvent(self.NodeAddedEvent, node)
        return node

    # vtkMRMLNode* CreateNodeByClass(const char* className)
    def CreateNodeByClass(self, className):
        for module in (mrml, mrml_segmentation):
            cls = getattr(module, className, None)
            if isinstance(cls, type):
                return cls()
        return None

    # vtkMRMLNode* AddNewNodeByClass(std::string className, std::string nodeBaseName = "")
    def AddNewNodeByClass(self, className, nodeBaseName=""):
        node = self.CreateNodeByClass(className)
        if node is None:
            return None
        node.SetName(nodeBaseName or className.replace("vtkMRML", "").replace("Node", ""))
        return self.AddNode(node)  # like the real scene, no display node is created here

    # void RemoveNode(vtkMRMLNode* n): NodeAboutToBeRemovedEvent, removal, NodeRemovedEvent.
    # Display nodes of a removed displayable node go with it (vtkMRMLDisplayableNode::OnNodeReferenceRemoved).
    def RemoveNode(self, node):
        if node is None or node.GetID() not in self._nodes:
            return
        self.InvokeEvent(self.NodeAboutToBeRemovedEvent, node)
        del self._nodes[node.GetID()]
        sh = self._subjectHierarchy
        sh._dataNode = {i: n for i, n in sh._dataNode.items() if n is not node}
        self.InvokeEvent(self.NodeRemovedEvent, node)
        if isinstance(node, vtkMRMLDisplayableNode):
            display = node.GetNodeReferenceID("display")
            if display in self._nodes:
                self.RemoveNode(self._nodes[display])
        node._scene = None

    def GetNodeByID(self, nodeID):
        return self._nodes.get(nodeID)

    def GetNodes(self):
        return list(self._nodes.values())

    def GetFirstNodeByClass(self, className):
        for node in self._nodes.values():
            if node.IsA(className):
                return node
        return None

    # vtkMRMLNode* GetFirstNode(const char* byName = nullptr, const char* byClass = nullptr, ...)
    def GetFirstNode(self, byName=None, byClass=None, byHideFromEditors=None, exactNameMatch=True):
        for node in self._nodes.values():
            if (byClass is None or node.IsA(byClass)) and (byName is None or node.GetName() == byName):
                return node
        return None

    # vtkMRMLNode* GetSingletonNode(const char* singletonTag, const char* className)
    def GetSingletonNode(self, singletonTag, className):
        for node in self._nodes.values():
            if node.IsA(className) and node.GetSingletonTag() == singletonTag:
                return node
        return None

    def IsNodePresent(self, node):
        return node is not None and self._nodes.get(node.GetID()) is node

    def GenerateUniqueName(self, baseName):
        return baseName
