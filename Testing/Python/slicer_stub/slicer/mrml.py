"""MRML part of the stand-in: the node classes the module calls (Libs/MRML/Core); segmentation
and table nodes are in ``mrml_segmentation.py``, the scene in ``mrml_scene.py``.

Each class names the Slicer 5.12 header it mirrors (Slicer/Slicer, tag v5.12.0). Nodes derive from
the real ``vtk.vtkObject`` (VTK from PyPI), so observers, ``Modified`` and ``InvokeEvent`` are
VTK's own; the MRML behaviour on top is the smallest faithful imitation. Volumes are numpy arrays
(KJI) with an IJK->RAS matrix; segments are boolean arrays on their segmentation's reference grid.
"""
from __future__ import annotations

import itertools

import numpy as np
import vtk


def _isA(obj, className: str) -> bool:
    return any(cls.__name__ == className for cls in type(obj).__mro__)


# Libs/MRML/Core/vtkMRMLNode.h (5.12): ID, name, attributes, node references, singleton tag,
# StartModify/EndModify, Reset.
class vtkMRMLNode(vtk.vtkObject):
    def __init__(self) -> None:
        super().__init__()
        self._id = None
        self._name = ""
        self._attributes: dict[str, str] = {}
        self._references: dict[str, str | None] = {}  # role -> node ID, resolved through the scene
        self._scene = None
        self._singletonTag = None
        self._modifyDepth = 0
        self._pendingModified = False

    # vtkObject::IsA / GetClassName answer for the C++ class; MRML classes here are Python classes.
    def IsA(self, className):
        return _isA(self, className)

    def GetClassName(self):
        return type(self).__name__

    def GetID(self):
        return self._id

    def GetName(self):
        return self._name

    def SetName(self, name):
        self._name = name
        self.Modified()

    def GetScene(self):
        return self._scene

    def SetAttribute(self, name, value):
        self._attributes[name] = value

    def GetAttribute(self, name):
        return self._attributes.get(name)

    # vtkMRMLNode* GetNodeReference(const char* referenceRole): None once the node left the scene
    def GetNodeReference(self, referenceRole):
        nodeID = self._references.get(referenceRole)
        return self._scene.GetNodeByID(nodeID) if (nodeID and self._scene is not None) else None

    def GetNodeReferenceID(self, referenceRole):
        return self._references.get(referenceRole)

    # vtkMRMLNode* SetNodeReferenceID(const char* referenceRole, const char* referencedNodeID)
    def SetNodeReferenceID(self, referenceRole, referencedNodeID):
        self._references[referenceRole] = referencedNodeID or None
        self.Modified()

    def RemoveNodeReferenceIDs(self, referenceRole):
        self._references.pop(referenceRole, None)

    # void SetSingletonTag(const char*); const char* GetSingletonTag()
    def SetSingletonTag(self, tag):
        self._singletonTag = tag

    def GetSingletonTag(self):
        return self._singletonTag

    # int StartModify(); int EndModify(int previousDisableModifiedEventState)
    def StartModify(self):
        self._modifyDepth += 1
        return self._modifyDepth - 1

    def EndModify(self, previousDisableModifiedEventState):
        self._modifyDepth = previousDisableModifiedEventState
        if self._modifyDepth == 0 and self._pendingModified:
            self._pendingModified = False
            vtk.vtkObject.Modified(self)

    def Modified(self):
        if self._modifyDepth:
            self._pendingModified = True
        else:
            vtk.vtkObject.Modified(self)

    # virtual void Reset(vtkMRMLNode* defaultNode): what vtkMRMLScene::Clear(0) does to singletons.
    # The copy of a fresh node drops attributes, references and (scripted module node) parameters;
    # ID and singleton tag are kept.
    def Reset(self, defaultNode=None):
        self._attributes.clear()
        self._references.clear()
        self.Modified()


# Libs/MRML/Core/vtkMRMLDisplayNode.h, vtkMRMLScalarVolumeDisplayNode.h,
# vtkMRMLSegmentationDisplayNode.h (5.12): the union of the calls the module makes.
class vtkMRMLDisplayNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self.autoWindowLevel = True
        self.windowLevelMinMax = None
        self.visibility3D = True

    # virtual void SetAndObserveColorNodeID(const char* ColorNodeID)
    def SetAndObserveColorNodeID(self, colorNodeID):
        self.SetNodeReferenceID("colorNodeID", colorNodeID)

    def GetColorNode(self):
        return self.GetNodeReference("colorNodeID")

    def SetAutoWindowLevel(self, flag):
        self.autoWindowLevel = bool(flag)

    def SetWindowLevelMinMax(self, min, max):
        self.windowLevelMinMax = (float(min), float(max))

    # virtual void SetVisibility3D(int); int GetVisibility3D()
    def SetVisibility3D(self, visible):
        self.visibility3D = bool(visible)

    def GetVisibility3D(self):
        return int(self.visibility3D)


# Libs/MRML/Core/vtkMRMLDisplayableNode.h (5.12): GetDisplayNode(), CreateDefaultDisplayNodes().
# A node made by AddNewNodeByClass has no display node until CreateDefaultDisplayNodes is called.
class vtkMRMLDisplayableNode(vtkMRMLNode):
    def GetDisplayNode(self):
        return self.GetNodeReference("display")

    def CreateDefaultDisplayNodes(self):
        if self.GetDisplayNode() is not None:
            return
        if self._scene is None:  # vtkErrorMacro in Slicer: "Scene is invalid"
            raise RuntimeError(f"{self.GetClassName()}::CreateDefaultDisplayNodes failed: scene is invalid")
        displayNode = vtkMRMLDisplayNode()
        self._scene.AddNode(displayNode)
        self.SetNodeReferenceID("display", displayNode.GetID())

    # vtkMRMLStorableNode.h: GetStorageNode(), SetAndObserveStorageNodeID(const char* storageNodeID)
    def GetStorageNode(self):
        return self.GetNodeReference("storage")

    def SetAndObserveStorageNodeID(self, storageNodeID):
        self.SetNodeReferenceID("storage", storageNodeID)


# Libs/MRML/Core/vtkMRMLScriptedModuleNode.h (5.12): string parameters.
class vtkMRMLScriptedModuleNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self._parameters: dict[str, str] = {}

    def HasParameter(self, name):
        return name in self._parameters

    def SetParameter(self, name, value):
        if not isinstance(value, str):  # std::string in C++: PythonQt/VTK refuse other types
            raise TypeError(f"SetParameter: value must be str, got {type(value).__name__}")
        if self._parameters.get(name) != value:
            self._parameters[name] = value
            self.Modified()

    def GetParameter(self, name):
        return self._parameters.get(name, "")

    def UnsetParameter(self, name):
        self._parameters.pop(name, None)

    def GetParameterNames(self):
        return list(self._parameters)

    def Reset(self, defaultNode=None):
        self._parameters.clear()
        super().Reset(defaultNode)


# Libs/MRML/Core/vtkMRMLVolumeNode.h, vtkMRMLScalarVolumeNode.h, vtkMRMLLabelMapVolumeNode.h (5.12)
class vtkMRMLVolumeNode(vtkMRMLDisplayableNode):
    def __init__(self) -> None:
        super().__init__()
        self.array: np.ndarray | None = None  # KJI, as slicer.util.arrayFromVolume returns
        self.ijkToRas = np.eye(4)

    # void GetIJKToRASMatrix(vtkMatrix4x4* mat)
    def GetIJKToRASMatrix(self, mat):
        for r in range(4):
            for c in range(4):
                mat.SetElement(r, c, self.ijkToRas[r, c])

    # void SetIJKToRASMatrix(vtkMatrix4x4* mat)
    def SetIJKToRASMatrix(self, mat):
        self.ijkToRas = np.array([[mat.GetElement(r, c) for c in range(4)] for r in range(4)])


# Libs/MRML/Core/vtkMRMLScalarVolumeNode.h (5.12)
class vtkMRMLScalarVolumeNode(vtkMRMLVolumeNode):
    pass


# Libs/MRML/Core/vtkMRMLLabelMapVolumeNode.h (5.12)
class vtkMRMLLabelMapVolumeNode(vtkMRMLVolumeNode):
    pass


# Libs/MRML/Core/vtkMRMLColorNode.h, vtkMRMLColorTableNode.h (5.12)
class vtkMRMLColorTableNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self._entries: dict[int, dict] = {}

    def GetColorName(self, ind):
        entry = self._entries.get(ind)
        return entry["name"] if entry else None

    # virtual bool GetColor(int ind, double color[4])
    def GetColor(self, ind, color):
        entry = self._entries.get(ind)
        if entry is None:
            return False
        color[:] = entry["rgba"]
        return True

    def GetNumberOfColors(self):
        return max(self._entries) + 1 if self._entries else 0

    # std::string GetTerminologyAsString(int ind)
    def GetTerminologyAsString(self, ind):
        entry = self._entries.get(ind)
        return entry["terminology"] if entry else ""


# Libs/MRML/Core/vtkMRMLStorageNode.h, vtkMRMLVolumeArchetypeStorageNode.h (5.12)
class vtkMRMLVolumeArchetypeStorageNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self._fileName = ""
        self._useCompression = 1

    def SetFileName(self, fileName):
        self._fileName = fileName

    def GetFileName(self):
        return self._fileName

    def UseCompressionOff(self):
        self._useCompression = 0

    # virtual int WriteData(vtkMRMLNode* refNode)
    def WriteData(self, refNode):
        from . import util

        util._writeVolume(refNode, self._fileName, bool(self._useCompression))
        return 1


# Libs/MRML/Core/vtkMRMLSegmentationStorageNode.h (5.12)
class vtkMRMLSegmentationStorageNode(vtkMRMLVolumeArchetypeStorageNode):
    pass


# Libs/MRML/Core/vtkMRMLSubjectHierarchyNode.h (5.12)
class vtkMRMLSubjectHierarchyNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self._items = itertools.count(2)
        self._sceneItem = 1
        self._parent: dict[int, int] = {}
        self._dataNode: dict[int, object] = {}
        self._names: dict[int, str] = {}

    # static vtkMRMLSubjectHierarchyNode* GetSubjectHierarchyNode(vtkMRMLScene* scene)
    @staticmethod
    def GetSubjectHierarchyNode(scene):
        return scene._subjectHierarchy

    def GetSceneItemID(self):
        return self._sceneItem

    def _newItem(self, parentItemID, name, dataNode=None):
        item = next(self._items)
        self._parent[item] = parentItemID
        self._names[item] = name
        if dataNode is not None:
            self._dataNode[item] = dataNode
        return item

    # vtkIdType CreateSubjectItem(vtkIdType parentItemID, std::string name) (and CreateStudyItem)
    def CreateSubjectItem(self, parentItemID, name):
        return self._newItem(parentItemID, name)

    def CreateStudyItem(self, parentItemID, name):
        return self._newItem(parentItemID, name)

    # vtkIdType GetItemByDataNode(vtkMRMLNode* dataNode)
    def GetItemByDataNode(self, dataNode):
        for item, node in self._dataNode.items():
            if node is dataNode:
                return item
        return 0  # INVALID_ITEM_ID

    def GetItemParent(self, itemID):
        return self._parent.get(itemID, 0)

    # void SetItemParent(vtkIdType itemID, vtkIdType parentItemID, bool enableCircularCheck=true)
    def SetItemParent(self, itemID, parentItemID, enableCircularCheck=True):
        self._parent[itemID] = parentItemID

    def GetItemName(self, itemID):
        return self._names.get(itemID, "")

    def Reset(self, defaultNode=None):
        self._parent.clear()
        self._dataNode.clear()
        self._names.clear()
        super().Reset(defaultNode)
