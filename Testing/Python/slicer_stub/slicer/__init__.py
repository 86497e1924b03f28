"""Stand-in for the ``slicer`` package (Slicer/Slicer, release 5.12; Base/Python/slicer/__init__.py
and the wrapped C++ classes): the scene and MRML node classes (``slicer/mrml.py``), module logics,
MRML widgets and the application object. Method names
and signatures follow Slicer's sources, named above each class; bodies are minimal imitations."""
from __future__ import annotations

import tempfile

import numpy as np
import qt
import vtk

from .mrml import (vtkMRMLColorTableNode, vtkMRMLDisplayableNode, vtkMRMLDisplayNode,  # noqa: F401
                   vtkMRMLLabelMapVolumeNode, vtkMRMLNode, vtkMRMLScalarVolumeNode,
                   vtkMRMLScriptedModuleNode, vtkMRMLSegmentationStorageNode, vtkMRMLSubjectHierarchyNode,
                   vtkMRMLVolumeArchetypeStorageNode, vtkMRMLVolumeNode)
from .mrml_scene import vtkMRMLScene
from .mrml_segmentation import (vtkMRMLSegmentationNode, vtkMRMLSegmentEditorNode,  # noqa: F401
                                vtkMRMLTableNode, vtkSegment, vtkSegmentation)

mrmlScene = vtkMRMLScene()


# ---------------------------------------------------------------------------------------------
# Modules/Loadable/Segmentations/Logic/vtkSlicerSegmentationsModuleLogic.h (5.12)
class _SegmentationsLogic:
    # static bool ImportLabelmapToSegmentationNode(vtkMRMLLabelMapVolumeNode* labelmapNode,
    #     vtkMRMLSegmentationNode* segmentationNode, std::string insertBeforeSegmentId = "",
    #     vtkMRMLMessageCollection* userMessages = nullptr)
    # static bool ImportLabelmapToSegmentationNode(vtkMRMLLabelMapVolumeNode* labelmapNode,
    #     vtkMRMLSegmentationNode* segmentationNode, vtkStringArray* updatedSegmentIDs, ...)
    #     (label value n replaces the segment updatedSegmentIDs[n-1])
    def ImportLabelmapToSegmentationNode(self, labelmapNode, segmentationNode, insertBeforeSegmentId="",
                                         userMessages=None):
        from . import util

        if labelmapNode is None or labelmapNode.array is None:
            return False
        shape, ijkToRas = segmentationNode.referenceGrid()
        labels = util._resampleNearest(labelmapNode.array, labelmapNode.ijkToRas, shape, ijkToRas)
        segmentation = segmentationNode.GetSegmentation()
        if isinstance(insertBeforeSegmentId, vtk.vtkStringArray):
            for index in range(insertBeforeSegmentId.GetNumberOfValues()):
                segment = segmentation.GetSegment(insertBeforeSegmentId.GetValue(index))
                if segment is None:
                    return False
                segment.mask = labels == index + 1
            segmentationNode.InvokeEvent(vtkSegmentation.SourceRepresentationModified)
            return True
        displayNode = labelmapNode.GetDisplayNode()
        colorNode = displayNode.GetColorNode() if displayNode else None
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
            segmentation.AddSegment(segment)
        return True

    # static bool ExportSegmentsToLabelmapNode(vtkMRMLSegmentationNode* segmentationNode,
    #     vtkStringArray* segmentIDs, vtkMRMLLabelMapVolumeNode* labelmapNode,
    #     vtkMRMLVolumeNode* referenceVolumeNode = nullptr, ...)
    def ExportSegmentsToLabelmapNode(self, segmentationNode, segmentIDs, labelmapNode, referenceVolumeNode=None,
                                     extentComputationMode=None, colorTableNode=None):
        from . import util

        reference = referenceVolumeNode or segmentationNode.GetNodeReference(
            vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
        shape, ijkToRas = segmentationNode.referenceGrid()
        labels = np.zeros(reference.array.shape, np.uint8)
        for index in range(segmentIDs.GetNumberOfValues()):
            segment = segmentationNode.GetSegmentation().GetSegment(segmentIDs.GetValue(index))
            if segment is None:
                return False
            mask = segment.mask if segment.mask is not None else np.zeros(shape, bool)
            resampled = util._resampleNearest(mask.astype(np.uint8), ijkToRas, reference.array.shape,
                                              reference.ijkToRas)
            labels[resampled > 0] = index + 1
        labelmapNode.array, labelmapNode.ijkToRas = labels, reference.ijkToRas.copy()
        labelmapNode.CreateDefaultDisplayNodes()
        return True


# Modules/Loadable/Volumes/Logic/vtkSlicerVolumesLogic.h (5.12)
class _VolumesLogic:
    # vtkMRMLLabelMapVolumeNode* CreateAndAddLabelVolume(vtkMRMLVolumeNode* volumeNode, const char* name)
    def CreateAndAddLabelVolume(self, volumeNode, name):
        node = mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
        node.array = np.zeros(volumeNode.array.shape, np.int16)
        node.ijkToRas = volumeNode.ijkToRas.copy()
        node.CreateDefaultDisplayNodes()
        return node


# Modules/Loadable/Markups/Logic/vtkSlicerMarkupsLogic.h (5.12)
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
        self.volumes = _Module(_VolumesLogic())


modules = _Modules()


# ---------------------------------------------------------------------------------------------
# Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h (5.12). State the tests read:
# the active effect, whether keyboard shortcuts are installed and whether views are observed
# (setActiveEffect with an effect sets up view observations; with None it removes them).
class qMRMLSegmentEditorWidget(qt.FakeWidget):
    def __init__(self) -> None:
        super().__init__("qMRMLSegmentEditorWidget", "segmentEditorWidget")
        self._editorNode = self._segmentationNode = self._sourceVolumeNode = None
        self._activeEffect = None
        self.shortcutsInstalled = False
        self.viewsObserved = False

    def setMRMLSegmentEditorNode(self, newSegmentEditorNode):
        self._editorNode = newSegmentEditorNode

    def mrmlSegmentEditorNode(self):
        return self._editorNode

    def setSegmentationNode(self, node):
        self._segmentationNode = node

    def segmentationNode(self):
        return self._segmentationNode

    def setSourceVolumeNode(self, node):
        self._sourceVolumeNode = node

    def sourceVolumeNode(self):
        return self._sourceVolumeNode

    # void setActiveEffectByName(const QString& effectName); Q_INVOKABLE void setActiveEffect(effect)
    def setActiveEffectByName(self, effectName):
        self.setActiveEffect(effectName or None)

    def setActiveEffect(self, effect):
        self._activeEffect = effect
        self.viewsObserved = effect is not None

    def activeEffect(self):
        return self._activeEffect

    # void installKeyboardShortcuts(QWidget* parent = nullptr); void uninstallKeyboardShortcuts()
    def installKeyboardShortcuts(self, parent=None):
        self.shortcutsInstalled = True

    def uninstallKeyboardShortcuts(self):
        self.shortcutsInstalled = False

    # Q_INVOKABLE void removeViewObservations()
    def removeViewObservations(self):
        self.viewsObserved = False

    def updateWidgetFromMRML(self):
        pass


# Libs/MRML/Widgets/qMRMLNodeComboBox.h (5.12): with noneEnabled false the combo box selects the
# first node of its types as soon as one is in the scene, and a removed current node is replaced.
class qMRMLNodeComboBox(qt.FakeWidget):
    def setMRMLScene(self, scene):
        super().setMRMLScene(scene)
        if scene is None:
            return
        scene.AddObserver(scene.NodeAddedEvent, lambda caller, event: self._fillIfEmpty())
        scene.AddObserver(scene.NodeRemovedEvent, lambda caller, event: self._dropIfRemoved())
        self._fillIfEmpty()

    def _candidates(self):
        types = self.property("nodeTypes") or []
        if self.property("showChildNodeTypes") is False:  # e.g. a labelmap is no scalar volume here
            return [n for n in self.mrmlScene.GetNodes() if n.GetClassName() in types]
        return [n for n in self.mrmlScene.GetNodes() if any(n.IsA(t) for t in types)]

    def _fillIfEmpty(self):
        if self.property("noneEnabled") or self.currentNode() is not None or self.mrmlScene is None:
            return
        candidates = self._candidates()
        if candidates:
            self.setCurrentNode(candidates[0])

    def _dropIfRemoved(self):
        node = self.currentNode()
        if node is not None and not self.mrmlScene.IsNodePresent(node):
            self.setCurrentNode(None)
            self._fillIfEmpty()

    # void setCurrentNode(vtkMRMLNode* node): emits currentNodeChanged(vtkMRMLNode*) on a change
    def setCurrentNode(self, node):
        if node is self.currentNode():
            return
        self._currentNode = node
        self.emit("currentNodeChanged(vtkMRMLNode*)", node)


# Libs/MRML/Widgets/qMRMLTableView.h (5.12): setMRMLTableNode (in qt.FakeWidget)
class qMRMLTableView(qt.FakeWidget):
    pass


# Libs/MRML/Widgets/qMRMLWidget.h (5.12): setMRMLScene passed on through the .ui connections
class qMRMLWidget(qt.FakeWidget):
    pass


# ---------------------------------------------------------------------------------------------
# Base/QTCore/qSlicerCoreApplication.h (5.12): the parts used. majorVersion/minorVersion are
# Q_PROPERTYs; tests set them to imitate an older Slicer.
class _App:
    def __init__(self) -> None:
        self.testing = False
        self.majorVersion = 5
        self.minorVersion = 12
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
# Base/Python/slicer/ScriptedLoadableModule.py (5.12) creates slicer.selfTests on first use and
# stores each module's runTest there.
selfTests: dict = {}

from . import util  # noqa: E402  (util needs the classes above)
