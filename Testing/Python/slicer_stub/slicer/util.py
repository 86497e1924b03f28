"""Stand-in for ``slicer.util`` (real: Base/Python/slicer/util.py, Slicer 5.12). Signatures as in
the real file; the comment above each function quotes it."""
from __future__ import annotations

import contextlib
import csv
import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

import slicer

calls: dict[str, list] = {"errorDisplay": [], "warningDisplay": [], "infoDisplay": [], "delayDisplay": [],
                          "confirmOkCancelDisplay": [], "confirmYesNoDisplay": [], "restart": [],
                          "setSliceViewerLayers": []}
answers = {"confirmOkCancelDisplay": True, "confirmYesNoDisplay": False}


# -- geometry helpers of the stand-in (not Slicer API) -----------------------------------------
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _sitkToNode(image, node):
    import SimpleITK as sitk

    direction = np.array(image.GetDirection()).reshape(3, 3)
    ijkToLps = np.eye(4)
    ijkToLps[:3, :3] = direction @ np.diag(image.GetSpacing())
    ijkToLps[:3, 3] = image.GetOrigin()
    node.ijkToRas = _LPS @ ijkToLps  # what vtkITKArchetypeImageSeriesReader does: LPS -> RAS
    node.array = sitk.GetArrayFromImage(image)


def _nodeToSitk(array, ijkToRas):
    import SimpleITK as sitk

    ijkToLps = _LPS @ ijkToRas
    spacing = np.linalg.norm(ijkToLps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((ijkToLps[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(ijkToLps[:3, 3].tolist())
    return image


def _resampleNearest(array, ijkToRas, shape, targetIjkToRas):
    """``array`` resampled (nearest neighbour) onto the grid (shape, targetIjkToRas)."""
    if array.shape == tuple(shape) and np.allclose(ijkToRas, targetIjkToRas, atol=1e-6):
        return array.copy()
    import SimpleITK as sitk

    reference = _nodeToSitk(np.zeros(shape, dtype=np.uint8), targetIjkToRas)
    moving = _nodeToSitk(array, ijkToRas)
    return sitk.GetArrayFromImage(sitk.Resample(moving, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))


def _writeVolume(node, fileName, useCompression=True):
    import SimpleITK as sitk

    sitk.WriteImage(_nodeToSitk(node.array, node.ijkToRas), str(fileName), useCompression)


from .util_ui import childWidgetVariables, loadUI  # noqa: E402,F401  (slicer.util.loadUI, ...)


# -- nodes and files ----------------------------------------------------------------------------
# def getNodesByClass(className, scene=None):
def getNodesByClass(className, scene=None):
    scene = scene or slicer.mrmlScene
    return [node for node in scene.GetNodes() if node.IsA(className)]


# def loadNodeFromFile(filename, filetype=None, properties={}, returnNode=False):
def loadNodeFromFile(filename, filetype=None, properties={}, returnNode=False):
    if not os.path.exists(filename):
        raise RuntimeError(f"Failed to load node from file: {filename}")
    if filetype == "ColorTableFile":
        return _loadColorTableCsv(filename)
    if filetype == "SegmentationFile":
        return _loadSegmentationFile(filename, properties)
    if filetype == "VolumeFile":
        import SimpleITK as sitk

        className = "vtkMRMLLabelMapVolumeNode" if properties.get("labelmap") else "vtkMRMLScalarVolumeNode"
        name = properties.get("name") or Path(filename).name.split(".")[0]
        node = slicer.mrmlScene.AddNewNodeByClass(className, name)
        node.CreateDefaultDisplayNodes()
        _sitkToNode(sitk.ReadImage(str(filename)), node)
        # qSlicerVolumesReader: the node keeps a storage node naming the file it was read from
        storageNode = slicer.mrmlScene.AddNode(slicer.vtkMRMLVolumeArchetypeStorageNode())
        storageNode.SetFileName(str(filename))
        node.SetAndObserveStorageNodeID(storageNode.GetID())
        if properties.get("colorNodeID"):
            node.GetDisplayNode().SetAndObserveColorNodeID(properties["colorNodeID"])
        return node
    raise NotImplementedError(f"stand-in: file type {filetype}")


def _loadColorTableCsv(filename):
    """vtkMRMLColorTableStorageNode::ReadCsvFile: LabelValue, Name, Color_R.._A (0-255), terminology."""
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode", Path(filename).name.split(".")[0])
    with open(filename, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if "LabelValue" not in row:
                raise RuntimeError(f"Failed to read color table file: '{filename}' due to missing 'LabelValue' column.")
            rgba = [float(row.get(f"Color_{c}") or (255 if c == "A" else 0)) / 255.0 for c in "RGBA"]

            def code(prefix):
                return "^".join(row.get(f"{prefix}_{part}", "") or "" for part in
                                ("CodingScheme", "CodeValue", "CodeMeaning"))

            # vtkMRMLColorNode::GetTerminologyAsString: "ctx~cat~type~typeMod~regionCtx~region~regionMod~"
            terminology = (f"~{code('Category')}~{code('Type')}~{code('TypeModifier')}~"
                           f"~{code('Region')}~{code('RegionModifier')}~")
            if not row.get("Category_CodeValue"):
                terminology = ""
            node._entries[int(row["LabelValue"])] = {"name": row.get("Name", ""), "rgba": rgba,
                                                     "terminology": terminology}
    return node


def _loadSegmentationFile(filename, properties):
    """vtkSlicerSegmentationsModuleLogic::LoadSegmentationFromFile (Modules/Loadable/Segmentations/
    Logic) for a .seg.nrrd: a storage node named "<name>_Storage" pointing at the file, the node
    (named ``properties["name"]``, else the file name without its extension) added to the scene
    before the segments are read (vtkMRMLSegmentationStorageNode::ReadData: ID, name, colour,
    terminology and label value of each segment, in file order), no display node."""
    import slicerio

    from .mrml_segmentation import vtkSegment

    if not str(filename).lower().endswith(".seg.nrrd"):
        raise NotImplementedError(f"stand-in: segmentation file type of {filename}")
    data = slicerio.read_segmentation(str(filename))
    name = properties.get("name") or Path(filename).name[: -len(".seg.nrrd")]
    storageNode = slicer.vtkMRMLSegmentationStorageNode()
    storageNode.SetName(name + "_Storage")
    storageNode.SetFileName(str(filename))
    slicer.mrmlScene.AddNode(storageNode)
    node = slicer.vtkMRMLSegmentationNode()
    node.SetName(name)
    node.SetAndObserveStorageNodeID(storageNode.GetID())
    slicer.mrmlScene.AddNode(node)
    voxels = np.asarray(data["voxels"])  # IJK, or layer first when segments overlap
    layers = voxels[np.newaxis] if voxels.ndim == 3 else voxels
    node.setSourceGrid(layers.shape[:0:-1], _LPS @ np.asarray(data["ijkToLPS"], float))
    for item in data["segments"]:
        segment = vtkSegment()
        segment.SetName(item.get("name", item["id"]))
        segment.SetColor(*item.get("color", (0.5, 0.5, 0.5))[:3])
        segment.SetLabelValue(item.get("labelValue", 1))
        if item.get("terminology"):
            segment.SetTerminology(_terminologyString(item["terminology"]))
        segment.mask = (layers[item.get("layer", 0)] == item.get("labelValue", 1)).transpose(2, 1, 0)
        node.GetSegmentation().AddSegment(segment, item["id"])
    return node


def _terminologyString(entry: dict) -> str:
    """The segment's "TerminologyEntry" tag as vtkSegment::GetTerminology returns it
    ("context~category~type~typeModifier~anatomicContext~region~regionModifier", codes
    "scheme^value^meaning"), from slicerio's parsed form."""
    def code(key):
        return "^".join(entry.get(key) or ("", "", ""))

    return "~".join([entry.get("contextName", ""), code("category"), code("type"), code("typeModifier"),
                     entry.get("anatomicContextName", ""), code("anatomicRegion"), code("anatomicRegionModifier")])


# def loadSegmentation(filename, properties={}, returnNode=False):
def loadSegmentation(filename, properties={}, returnNode=False):
    return loadNodeFromFile(filename, "SegmentationFile", properties, returnNode)


# def loadColorTable(filename, returnNode=False):
def loadColorTable(filename, returnNode=False):
    return loadNodeFromFile(filename, "ColorTableFile", {}, returnNode)


# def loadVolume(filename, properties={}, returnNode=False):
def loadVolume(filename, properties={}, returnNode=False):
    return loadNodeFromFile(filename, "VolumeFile", properties, returnNode)


# def loadLabelVolume(filename, properties={}, returnNode=False):
def loadLabelVolume(filename, properties={}, returnNode=False):
    properties["labelmap"] = True
    return loadNodeFromFile(filename, "VolumeFile", properties, returnNode)


# def saveNode(node, filename, properties={}):
def saveNode(node, filename, properties={}):
    if node.IsA("vtkMRMLSegmentationNode"):
        import slicerio

        shape, ijkToRas = node.referenceGrid()
        segmentation = slicerio.create_segmentation(shape[::-1], _LPS @ ijkToRas)
        seg = node.GetSegmentation()
        for index in range(seg.GetNumberOfSegments()):
            segmentId = seg.GetNthSegmentID(index)
            segment = seg.GetSegment(segmentId)
            mask = segment.mask if segment.mask is not None else np.zeros(shape, bool)
            slicerio.add_segment(segmentation, mask.transpose(2, 1, 0), {
                "id": segmentId, "name": segment.GetName(), "color": list(segment.GetColor())})
        slicerio.write_segmentation(str(filename), segmentation)
    else:
        _writeVolume(node, filename)
    storageNode = node.GetStorageNode()
    if storageNode is None:
        storageNode = slicer.mrmlScene.AddNode(slicer.vtkMRMLSegmentationStorageNode())
        node.SetNodeReferenceID("storage", storageNode.GetID())
    storageNode.SetFileName(str(filename))
    return True


# def arrayFromVolume(volumeNode):
def arrayFromVolume(volumeNode):
    return volumeNode.array


# def updateVolumeFromArray(volumeNode, narray):
def updateVolumeFromArray(volumeNode, narray):
    volumeNode.array = np.array(narray)
    volumeNode.Modified()


# def arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, referenceVolumeNode=None):
# As in Slicer, the segment goes through a temporary "__temp__" labelmap node added to (and then
# removed from) the scene, so NodeAdded/NodeRemoved observers see it.
def arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, referenceVolumeNode=None):
    import vtk

    if not referenceVolumeNode:
        referenceVolumeNode = segmentationNode.GetNodeReference(
            slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
        if not referenceVolumeNode:
            raise RuntimeError("No reference volume is found in the input segmentationNode, therefore a valid "
                               "referenceVolumeNode input is required.")
    segmentIds = vtk.vtkStringArray()
    segmentIds.InsertNextValue(segmentId)
    labelmapVolumeNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__temp__")
    try:
        if not slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
                segmentationNode, segmentIds, labelmapVolumeNode, referenceVolumeNode):
            raise RuntimeError("Export of segment failed.")
        narray = arrayFromVolume(labelmapVolumeNode)
    finally:
        if labelmapVolumeNode.GetDisplayNode():
            slicer.mrmlScene.RemoveNode(labelmapVolumeNode.GetDisplayNode().GetColorNode())
        slicer.mrmlScene.RemoveNode(labelmapVolumeNode)
    return narray


# def updateSegmentBinaryLabelmapFromArray(narray, segmentationNode, segmentId, referenceVolumeNode=None):
# Through a "__temp__" labelmap from slicer.modules.volumes.logic().CreateAndAddLabelVolume, as in Slicer.
def updateSegmentBinaryLabelmapFromArray(narray, segmentationNode, segmentId, referenceVolumeNode=None):
    import vtk

    if not referenceVolumeNode:
        referenceVolumeNode = segmentationNode.GetNodeReference(
            slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
        if not referenceVolumeNode:
            raise RuntimeError("No reference volume is found in the input segmentationNode, therefore a valid "
                               "referenceVolumeNode input is required.")
    labelmapVolumeNode = slicer.modules.volumes.logic().CreateAndAddLabelVolume(referenceVolumeNode, "__temp__")
    try:
        if narray.min() >= 0 and narray.max() <= 1:
            updateVolumeFromArray(labelmapVolumeNode, narray)
        else:
            narrayNormalized = np.zeros(narray.shape, np.uint8)
            narrayNormalized[narray > 0] = 1
            updateVolumeFromArray(labelmapVolumeNode, narrayNormalized)
        segmentIds = vtk.vtkStringArray()
        segmentIds.InsertNextValue(segmentId)
        if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(
                labelmapVolumeNode, segmentationNode, segmentIds):
            raise RuntimeError("Importing of segment failed.")
    finally:
        slicer.mrmlScene.RemoveNode(labelmapVolumeNode)


# def tempDirectory(key="__SlicerTemp__", tempDir=None, includeDateTime=True):
def tempDirectory(key="__SlicerTemp__", tempDir=None, includeDateTime=True):
    return tempfile.mkdtemp(prefix=key + "-", dir=tempDir or slicer.app.temporaryPath)


# def setSliceViewerLayers(background="keep-current", foreground="keep-current", label="keep-current",
#                          foregroundOpacity=None, labelOpacity=None, fit=False, rotateToVolumePlane=False):
def setSliceViewerLayers(background="keep-current", foreground="keep-current", label="keep-current",
                         foregroundOpacity=None, labelOpacity=None, fit=False, rotateToVolumePlane=False):
    calls["setSliceViewerLayers"].append({"background": background, "fit": fit})


# -- dialogs ------------------------------------------------------------------------------------
# def errorDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
def errorDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
    calls["errorDisplay"].append(text)


# def warningDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
def warningDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
    calls["warningDisplay"].append(text)


# def infoDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
def infoDisplay(text, windowTitle=None, parent=None, standardButtons=None, **kwargs):
    calls["infoDisplay"].append(text)


# def delayDisplay(message, autoCloseMsec=1000, parent=None, **kwargs):
def delayDisplay(message, autoCloseMsec=1000, parent=None, **kwargs):
    calls["delayDisplay"].append(message)


# def confirmOkCancelDisplay(text, windowTitle=None, parent=None, **kwargs):
def confirmOkCancelDisplay(text, windowTitle=None, parent=None, **kwargs):
    calls["confirmOkCancelDisplay"].append({"text": text, "windowTitle": windowTitle, **kwargs})
    if slicer.app.testingEnabled():  # _messageDisplay: no dialog, returns its testingReturnValue (True)
        return True
    return answers["confirmOkCancelDisplay"]


# def confirmYesNoDisplay(text, windowTitle=None, parent=None, **kwargs):
def confirmYesNoDisplay(text, windowTitle=None, parent=None, **kwargs):
    calls["confirmYesNoDisplay"].append({"text": text, "windowTitle": windowTitle, **kwargs})
    if slicer.app.testingEnabled():
        return True
    return answers["confirmYesNoDisplay"]


# def restart():
def restart():
    calls["restart"].append(True)


# def tryWithErrorDisplay(message=None, show=True, waitCursor=False):  (a contextmanager; re-raises)
@contextlib.contextmanager
def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
    try:
        yield
    except Exception as e:
        if show and not slicer.app.testingEnabled():
            errorDisplay(f"{message}\n\n{e}" if message is not None else str(e))
        raise


# -- processes ----------------------------------------------------------------------------------
# def launchConsoleProcess(args: list[str], useStartupEnvironment: bool = True,
#     updateEnvironment: dict[str, str] | None = None, cwd: str | None = None, blocking: bool = True,
#     logCallback: Callable[[str], None] | None = None,
#     completedCallback: Callable[[int], None] | None = None) -> Popen[str]:
def launchConsoleProcess(args: list[str], useStartupEnvironment: bool = True,
                         updateEnvironment: dict[str, str] | None = None, cwd: str | None = None,
                         blocking: bool = True, logCallback: Callable[[str], None] | None = None,
                         completedCallback: Callable[[int], None] | None = None):
    env = os.environ.copy()  # the stand-in has no separate startup environment
    if updateEnvironment:
        env.update(updateEnvironment)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, cwd=cwd)
    if blocking:
        return proc
    _startAsyncProcessHandling(proc, logCallback, completedCallback)
    return proc


# def _startAsyncProcessHandling(proc, logCallback=None, completedCallback=None) -> None:
def _startAsyncProcessHandling(proc, logCallback=None, completedCallback=None) -> None:
    import qt

    outputQueue = queue.Queue()

    def readOutputThread():
        while True:
            try:
                line = proc.stdout.readline()
                if not line:
                    break
                outputQueue.put(("line", line.rstrip()))
            except UnicodeDecodeError:
                pass
        proc.wait()
        outputQueue.put(("done", proc.returncode))

    def checkOutput():
        while True:
            try:
                msgType, data = outputQueue.get_nowait()
                if msgType == "line":
                    if logCallback:
                        logCallback(data)
                    else:
                        print(data)
                elif msgType == "done":
                    if completedCallback:
                        completedCallback(data)
                    return
            except queue.Empty:
                break
        qt.QTimer.singleShot(100, checkOutput)

    threading.Thread(target=readOutputThread, daemon=True).start()
    qt.QTimer.singleShot(0, checkOutput)


# -- observation ----------------------------------------------------------------------------------
# class VTKObservationMixin: addObserver(self, obj, event, method, group="none", priority=0.0),
# removeObserver(self, obj, event, method), removeObservers(self, method=None)
class VTKObservationMixin:
    def __init__(self):
        self.Observations = []

    def addObserver(self, obj, event, method, group="none", priority=0.0):
        for o, e, m, g, t, p in self.Observations:
            if o is obj and e == event and m == method:
                return
        tag = obj.AddObserver(event, method, priority)
        self.Observations.append([obj, event, method, group, tag, priority])

    def removeObserver(self, obj, event, method):
        for observation in list(self.Observations):
            o, e, m, g, t, p = observation
            if o is obj and e == event and m == method:
                o.RemoveObserver(t)
                self.Observations.remove(observation)

    def removeObservers(self, method=None):
        for observation in list(self.Observations):
            o, e, m, g, t, p = observation
            if method is None or m == method:
                o.RemoveObserver(t)
                self.Observations.remove(observation)
