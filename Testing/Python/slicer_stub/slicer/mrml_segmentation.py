"""Segmentation and table part of the MRML stand-in (Slicer 5.12, Libs/vtkSegmentationCore,
Libs/MRML/Core, Modules/Loadable/Segmentations/MRML): segments are boolean arrays (KJI) on their
segmentation's reference grid; a table node holds a real ``vtkTable``."""
from __future__ import annotations

import itertools

import numpy as np
import vtk

from .mrml import vtkMRMLDisplayableNode, vtkMRMLNode


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
        self._sourceGrid = None  # (shape KJI, IJK->RAS) of segments read from a file

    def setSourceGrid(self, shape, ijkToRas):
        """Stand-in only: the grid of segments read from a file (vtkMRMLSegmentationStorageNode keeps
        a loaded segmentation's labelmap geometry until a reference volume is set)."""
        self._sourceGrid = (tuple(int(n) for n in shape), np.array(ijkToRas, dtype=float))

    @staticmethod
    def GetReferenceImageGeometryReferenceRole():
        return "referenceImageGeometryRef"

    def GetSegmentation(self):
        return self._segmentation

    # virtual void SetReferenceImageGeometryParameterFromVolumeNode(vtkMRMLScalarVolumeNode* volumeNode)
    # Segments here live on the reference grid, so segments already present are resampled onto
    # the new one (in Slicer they keep their own geometry and are resampled when exported).
    def SetReferenceImageGeometryParameterFromVolumeNode(self, volumeNode):
        from . import util

        old = self._sourceGrid
        reference = self.GetNodeReference(self.GetReferenceImageGeometryReferenceRole())
        if reference is not None:
            old = (reference.array.shape, reference.ijkToRas)
        self.SetNodeReferenceID(self.GetReferenceImageGeometryReferenceRole(), volumeNode.GetID())
        if old is None:
            return
        for segmentId in list(self._segmentation._segments):
            segment = self._segmentation.GetSegment(segmentId)
            if segment.mask is not None:
                segment.mask = util._resampleNearest(segment.mask.astype(np.uint8), old[1], volumeNode.array.shape,
                                                     volumeNode.ijkToRas) > 0

    def referenceGrid(self):
        """Stand-in only: (shape KJI, IJK->RAS) of the reference geometry (else of the file read)."""
        reference = self.GetNodeReference(self.GetReferenceImageGeometryReferenceRole())
        if reference is None and self._sourceGrid is not None:
            return self._sourceGrid
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
