"""Stand-in for the ``slicer`` package: a scene, the MRML node classes ALLNetSegmentLib calls,
module logics and the application object. Method names and signatures follow Slicer's C++
headers (named above each class); bodies are minimal imitations for tests."""
from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
import qt
import vtk
from vtk import vtkObject


# ---------------------------------------------------------------------------------------------
# Libs/MRML/Core/vtkMRMLNode.h
class vtkMRMLNode(vtkObject):
    def __init__(self) -> None:
        super().__init__()
        self._id = None
        self._name = ""
        self._attributes: dict[str, str] = {}
        self._references: dict[str, object] = {}
        self._displayNode = None
        self._storageNode = None
        self._scene = None
        self._modifyDepth = 0
        self._pendingModified = False

    def GetID(self):
        return self._id

    def GetName(self):
        return self._name

    def SetName(self, name):
        self._name = name

    def SetAttribute(self, name, value):
        self._attributes[name] = value

    def GetAttribute(self, name):
        return self._attributes.get(name)

    def GetNodeReference(self, referenceRole):
        return self._references.get(referenceRole)

    def SetNodeReferenceID(self, referenceRole, referencedNodeID):
        self._references[referenceRole] = self._scene.GetNodeByID(referencedNodeID) if referencedNodeID else None

    def StartModify(self):
        self._modifyDepth += 1
        return self._modifyDepth - 1

    def EndModify(self, previousDisableModifiedEventState):
        self._modifyDepth = previousDisableModifiedEventState
        if self._modifyDepth == 0 and self._pendingModified:
            self._pendingModified = False
            self.InvokeEvent(vtk.vtkCommand.ModifiedEvent)

    def Modified(self):
        if self._modifyDepth:
            self._pendingModified = True
        else:
            self.InvokeEvent(vtk.vtkCommand.ModifiedEvent)

    def GetDisplayNode(self):
        return self._displayNode

    def CreateDefaultDisplayNodes(self):
        if self._displayNode is None:
            self._displayNode = _DisplayNode()

    def GetStorageNode(self):
        return self._storageNode


class _DisplayNode(vtkMRMLNode):
    """Union of the display node calls the module makes (volume, labelmap, segmentation)."""

    def __init__(self) -> None:
        super().__init__()
        self.colorNode = None
        self.autoWindowLevel = True
        self.windowLevelMinMax = None
        self.visibility3D = False

    # Libs/MRML/Core/vtkMRMLDisplayNode.h: virtual void SetAndObserveColorNodeID(const char* ColorNodeID)
    def SetAndObserveColorNodeID(self, colorNodeID):
        self.colorNode = mrmlScene.GetNodeByID(colorNodeID)

    def GetColorNode(self):
        return self.colorNode

    # Libs/MRML/Core/vtkMRMLScalarVolumeDisplayNode.h
    def SetAutoWindowLevel(self, flag):
        self.autoWindowLevel = bool(flag)

    def SetWindowLevelMinMax(self, min, max):
        self.windowLevelMinMax = (float(min), float(max))

    # Libs/MRML/Core/vtkMRMLDisplayNode.h: virtual void SetVisibility3D(int)
    def SetVisibility3D(self, visible):
        self.visibility3D = bool(visible)


# Libs/MRML/Core/vtkMRMLScriptedModuleNode.h
class vtkMRMLScriptedModuleNode(vtkMRMLNode):
    def __init__(self) -> None:
        super().__init__()
        self._singletonTag = None

    def SetSingletonTag(self, tag):
        self._singletonTag = tag


# Libs/MRML/Core/vtkMRMLVolumeNode.h / vtkMRMLScalarVolumeNode.h
class vtkMRMLVolumeNode(vtkMRMLNode):
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


class vtkMRMLScalarVolumeNode(vtkMRMLVolumeNode):
    pass


class vtkMRMLLabelMapVolumeNode(vtkMRMLVolumeNode):
    pass


# Libs/MRML/Core/vtkMRMLColorNode.h, vtkMRMLColorTableNode.h
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


# Libs/vtkSegmentationCore/vtkSegment.h
class vtkSegment(vtkObject):
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


# Libs/vtkSegmentationCore/vtkSegmentation.h
class vtkSegmentation(vtkObject):
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
        if self._owner is not None:  # vtkMRMLSegmentationNode relays segmentation events
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


# Libs/MRML/Core/vtkMRMLSegmentationNode.h
class vtkMRMLSegmentationNode(vtkMRMLNode):
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
        self._references[self.GetReferenceImageGeometryReferenceRole()] = volumeNode

    def referenceGrid(self):
        """Stand-in only: (shape KJI, IJK->RAS) of the reference geometry."""
        reference = self.GetNodeReference(self.GetReferenceImageGeometryReferenceRole())
        if reference is None:
            raise RuntimeError("stand-in: segmentation has no reference geometry")
        return reference.array.shape, reference.ijkToRas

    def CreateClosedSurfaceRepresentation(self):
        self.closedSurface = True
        return True


# Libs/MRML/Core/vtkMRMLTableNode.h
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


class vtkMRMLSegmentEditorNode(vtkMRMLNode):
    pass


# Libs/MRML/Core/vtkMRMLStorageNode.h, vtkMRMLVolumeArchetypeStorageNode.h
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


class vtkMRMLSegmentationStorageNode(vtkMRMLVolumeArchetypeStorageNode):
    pass


# Libs/MRML/Core/vtkMRMLSubjectHierarchyNode.h
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


# Libs/MRML/Core/vtkMRMLScene.h
class vtkMRMLScene(vtkObject):
    NodeAddedEvent = 66000
    NodeRemovedEvent = 66001
    StartCloseEvent = 66010
    EndCloseEvent = 66011

    def __init__(self) -> None:
        super().__init__()
        self.Clear()

    def Clear(self, removeSingletons=True):
        self._nodes: dict[str, vtkMRMLNode] = {}
        self._ids = itertools.count(1)
        self._subjectHierarchy = vtkMRMLSubjectHierarchyNode()

    def AddNode(self, node):
        node._id = f"{type(node).__name__}{next(self._ids)}"
        node._scene = self
        self._nodes[node._id] = node
        if not isinstance(node, (vtkMRMLSubjectHierarchyNode, _DisplayNode)):
            sh = self._subjectHierarchy
            sh._newItem(sh.GetSceneItemID(), node.GetName(), node)
        self.InvokeEvent(self.NodeAddedEvent, node)
        return node

    # vtkMRMLNode* AddNewNodeByClass(std::string className, std::string nodeBaseName = "")
    def AddNewNodeByClass(self, className, nodeBaseName=""):
        node = globals()[className]()
        node.SetName(nodeBaseName or className.replace("vtkMRML", "").replace("Node", ""))
        self.AddNode(node)  # like the real scene, no display node is created here
        return node

    def RemoveNode(self, node):
        if node is not None and node.GetID() in self._nodes:
            del self._nodes[node.GetID()]
            sh = self._subjectHierarchy
            sh._dataNode = {i: n for i, n in sh._dataNode.items() if n is not node}

    def GetNodeByID(self, nodeID):
        return self._nodes.get(nodeID)

    def GetNodes(self):
        return list(self._nodes.values())

    def GetFirstNodeByClass(self, className):
        for node in self._nodes.values():
            if node.IsA(className):
                return node
        return None

    # vtkMRMLNode* GetSingletonNode(const char* singletonTag, const char* className)
    def GetSingletonNode(self, singletonTag, className):
        for node in self._nodes.values():
            if node.IsA(className) and getattr(node, "_singletonTag", None) == singletonTag:
                return node
        return None

    def GenerateUniqueName(self, baseName):
        return baseName


mrmlScene = vtkMRMLScene()


# ---------------------------------------------------------------------------------------------
# Modules/Loadable/Segmentations/Logic/vtkSlicerSegmentationsModuleLogic.h
class _SegmentationsLogic:
    # static bool ImportLabelmapToSegmentationNode(vtkMRMLLabelMapVolumeNode* labelmapNode,
    #     vtkMRMLSegmentationNode* segmentationNode, std::string insertBeforeSegmentId = "",
    #     vtkMRMLMessageCollection* userMessages = nullptr)
    def ImportLabelmapToSegmentationNode(self, labelmapNode, segmentationNode, insertBeforeSegmentId="",
                                         userMessages=None):
        from . import util

        if labelmapNode is None or labelmapNode.array is None:
            return False
        colorNode = labelmapNode.GetDisplayNode().GetColorNode() if labelmapNode.GetDisplayNode() else None
        shape, ijkToRas = segmentationNode.referenceGrid()
        labels = util._resampleNearest(labelmapNode.array, labelmapNode.ijkToRas, shape, ijkToRas)
        values = [int(v) for v in np.unique(labels) if v != 0]
        for value in values:
            segment = vtkSegment()
            segment.SetLabelValue(value)
            name = colorNode.GetColorName(value) if colorNode else None
            if name is None and len(values) == 1:
                name = labelmapNode.GetName()
            segment.SetName(name or f"Label_{value}")
            if colorNode is not None:
                rgba = [0.0, 0.0, 0.0, 0.0]
                colorNode.GetColor(value, rgba)
                segment.SetColor(*rgba[:3])
            segment.mask = labels == value
            segmentationNode.GetSegmentation().AddSegment(segment)
        return True


# Modules/Loadable/Markups/Logic/vtkSlicerMarkupsLogic.h
class _MarkupsLogic:
    def __init__(self) -> None:
        self.jumps: list[tuple] = []

    # void JumpSlicesToLocation(double x, double y, double z, bool centered, int viewGroup = -1,
    #                           vtkMRMLSliceNode* exclude = nullptr)
    def JumpSlicesToLocation(self, x, y, z, centered, viewGroup=-1, exclude=None):
        self.jumps.append((float(x), float(y), float(z), bool(centered)))


class _Module:
    def __init__(self, logic) -> None:
        self._logic = logic

    def logic(self):
        return self._logic


class _Modules:
    def __init__(self) -> None:
        self.segmentations = _Module(_SegmentationsLogic())
        self.markups = _Module(_MarkupsLogic())


modules = _Modules()


# Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h
class qMRMLSegmentEditorWidget(qt.FakeWidget):
    def __init__(self) -> None:
        super().__init__("qMRMLSegmentEditorWidget", "segmentEditorWidget")
        self.segmentEditorNode = self.segmentationNode = self.sourceVolumeNode = None

    def setMRMLSegmentEditorNode(self, newSegmentEditorNode):
        self.segmentEditorNode = newSegmentEditorNode

    def setSegmentationNode(self, node):
        self.segmentationNode = node

    def setSourceVolumeNode(self, node):
        self.sourceVolumeNode = node


class qMRMLNodeComboBox(qt.FakeWidget):
    pass


class qMRMLTableView(qt.FakeWidget):
    pass


class qMRMLWidget(qt.FakeWidget):
    pass


# ---------------------------------------------------------------------------------------------
# Base/QTCore/qSlicerCoreApplication.h (the parts used)
class _App:
    def __init__(self) -> None:
        self.testing = False
        self.temporaryPath = tempfile.mkdtemp(prefix="slicer_stub_")

    def processEvents(self):
        return qt.processEvents()

    def testingEnabled(self):
        return self.testing

    def setOverrideCursor(self, cursor):
        pass

    def restoreOverrideCursor(self):
        pass


app = _App()
selfTests: dict = {}

from . import util  # noqa: E402  (util needs the classes above)
