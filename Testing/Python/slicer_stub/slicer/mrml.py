"""MRML part of the stand-in: the scene and the node classes the module calls (Libs/MRML/Core,
Libs/vtkSegmentationCore, Modules/Loadable/Segmentations/MRML).

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


# Libs/vtkSegmentationCore/vtkSegment.h (5.12)
class vtkSegment(vtk.vtkObject):
    def __init__(self) -> None:
        super().__init__()
        self._name = ""
        self._color = (0.5, 0.5, 0.5)
        self._labelValue = 1
        self._terminology = ""
        self.mask: np.ndarray | None = None  # bool KJI on the segmentation's reference grid

    def GetName(self):
        return self._name

    def SetName(self, name):
        self._name = name

    def GetColor(self):
        return self._color

    def SetColor(self, r, g, b):
        self._color = (float(r), float(g), float(b))

    def GetLabelValue(self):
        return self._labelValue

    def SetLabelValue(self, value):
        self._labelValue = int(value)

    # void SetTerminology(std::string terminologyEntry); std::string GetTerminology()
    def SetTerminology(self, terminologyEntry):
        self._terminology = terminologyEntry

    def GetTerminology(self):
        return self._terminology


# Libs/vtkSegmentationCore/vtkSegmentation.h (5.12); the owning vtkMRMLSegmentationNode relays
# its events (vtkMRMLSegmentationNode::OnSegmentationModified and friends).
class vtkSegmentation(vtk.vtkObject):
    SourceRepresentationModified = 62100
    RepresentationModified = 62101
    SegmentAdded = 62102
    SegmentRemoved = 62103
    SegmentModified = 62104

    def __init__(self, owner=None) -> None:
        super().__init__()
        self._segments: dict[str, vtkSegment] = {}
        self._ids = itertools.count(1)
        self._owner = owner

    def _notify(self, event):
        if self._owner is not None:
            self._owner.InvokeEvent(event)

    def AddSegment(self, segment, segmentId="", insertBeforeSegmentId=""):
        segmentId = segmentId or f"Segment_{next(self._ids)}"
        self._segments[segmentId] = segment
        self._notify(self.SegmentAdded)
        return True

    # std::string AddEmptySegment(std::string segmentId="", std::string segmentName="", double color[3]=nullptr)
    def AddEmptySegment(self, segmentId="", segmentName="", color=None):
        segmentId = segmentId or f"Segment_{next(self._ids)}"
        segment = vtkSegment()
        segment.SetName(segmentName or segmentId)
        if color is not None:
            segment.SetColor(*color[:3])
        self._segments[segmentId] = segment
        self._notify(self.SegmentAdded)
        return segmentId

    def RemoveAllSegments(self):
        self._segments.clear()
        self._notify(self.SegmentRemoved)

    def RemoveSegment(self, segmentId):
        self._segments.pop(segmentId, None)
        self._notify(self.SegmentRemoved)

    def GetNumberOfSegments(self):
        return len(self._segments)

    def GetNthSegmentID(self, index):
        return list(self._segments)[index]

    def GetSegment(self, segmentId):
        return self._segments.get(segmentId)

    def GetSegmentIdBySegmentName(self, name):
        for segmentId, segment in self._segments.items():
            if segment.GetName() == name:
                return segmentId
        return ""


# Libs/MRML/Core/vtkMRMLSegmentationNode.h (5.12)
class vtkMRMLSegmentationNode(vtkMRMLDisplayableNode):
    def __init__(self) -> None:
        super().__init__()
        self._segmentation = vtkSegmentation(owner=self)
        self.closedSurface = False

    @staticmethod
    def GetReferenceImageGeometryReferenceRole():
        return "referenceImageGeometryRef"

    def GetSegmentation(self):
        return self._segmentation

    # virtual void SetReferenceImageGeometryParameterFromVolumeNode(vtkMRMLScalarVolumeNode* volumeNode)
    def SetReferenceImageGeometryParameterFromVolumeNode(self, volumeNode):
        self.SetNodeReferenceID(self.GetReferenceImageGeometryReferenceRole(), volumeNode.GetID())

    def referenceGrid(self):
        """Stand-in only: (shape KJI, IJK->RAS) of the reference geometry."""
        reference = self.GetNodeReference(self.GetReferenceImageGeometryReferenceRole())
        if reference is None:
            raise RuntimeError("stand-in: segmentation has no reference geometry")
        return reference.array.shape, reference.ijkToRas

    def CreateClosedSurfaceRepresentation(self):
        self.closedSurface = True
        return True


# Libs/MRML/Core/vtkMRMLTableNode.h (5.12): the table is a real vtkTable.
class vtkMRMLTableNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self._table = vtk.vtkTable()
        self._columnProperties: dict[str, dict[str, str]] = {}
        self.locked = False
        self.useColumnTitleAsColumnHeader = False

    def GetTable(self):
        return self._table

    def RemoveAllColumns(self):
        self._table.RemoveAllColumns()
        self._columnProperties.clear()
        return True

    # vtkAbstractArray* AddColumn(vtkAbstractArray* column = nullptr)
    def AddColumn(self, column=None):
        self._table.AddColumn(column)
        return column

    def GetNumberOfRows(self):
        return self._table.GetNumberOfRows()

    def GetNumberOfColumns(self):
        return self._table.GetNumberOfColumns()

    def GetColumnName(self, columnIndex):
        return self._table.GetColumn(columnIndex).GetName()

    def GetCellText(self, rowIndex, columnIndex):
        return str(self._table.GetColumn(columnIndex).GetValue(rowIndex))

    def _setProperty(self, columnName, key, value):
        self._columnProperties.setdefault(columnName, {})[key] = value

    # void SetColumnTitle(const std::string& columnName, const std::string& description) (and Unit/Description)
    def SetColumnTitle(self, columnName, description):
        self._setProperty(columnName, "title", description)

    def GetColumnTitle(self, columnName):
        return self._columnProperties.get(columnName, {}).get("title", "")

    def SetColumnUnitLabel(self, columnName, unitLabel):
        self._setProperty(columnName, "unitLabel", unitLabel)

    def GetColumnUnitLabel(self, columnName):
        return self._columnProperties.get(columnName, {}).get("unitLabel", "")

    def SetColumnDescription(self, columnName, description):
        self._setProperty(columnName, "description", description)

    def GetColumnDescription(self, columnName):
        return self._columnProperties.get(columnName, {}).get("description", "")

    def SetUseColumnTitleAsColumnHeader(self, flag):
        self.useColumnTitleAsColumnHeader = bool(flag)

    def SetLocked(self, flag):
        self.locked = bool(flag)


# Modules/Loadable/Segmentations/MRML/vtkMRMLSegmentEditorNode.h (5.12)
class vtkMRMLSegmentEditorNode(vtkMRMLNode):
    pass


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
        from . import mrml

        cls = getattr(mrml, className, None)
        return cls() if isinstance(cls, type) else None

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
