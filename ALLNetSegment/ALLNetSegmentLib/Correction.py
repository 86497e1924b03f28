"""The Segment Editor embedded in the panel's *Correct* section, with the life cycle of Slicer's
own Segment Editor module (Modules/Scripted/SegmentEditor/SegmentEditor.py): a singleton editor
node that survives *File > Close Scene*; keyboard shortcuts and view observations only while the
module is shown, so that painting does not keep capturing the mouse in other modules."""
from __future__ import annotations

import slicer

EDITOR_NODE_TAG = "ALLNetSegment"  # singleton tag of this panel's vtkMRMLSegmentEditorNode


class Correction:
    """Owns ``editor`` (a ``qMRMLSegmentEditorWidget``); call enter/exit and the scene-close hooks."""

    def __init__(self, parentLayout) -> None:
        self.editor = slicer.qMRMLSegmentEditorWidget()
        self.editorNode = None
        # The editor node first, then the scene, so that selections made when the scene is set are kept.
        self.selectEditorNode()
        self.editor.setMRMLScene(slicer.mrmlScene)
        parentLayout.addWidget(self.editor)

    def selectEditorNode(self) -> None:
        """Use the singleton editor node of this panel, creating it if the scene has none."""
        node = slicer.mrmlScene.GetSingletonNode(EDITOR_NODE_TAG, "vtkMRMLSegmentEditorNode")
        if node is None:
            # AddNewNodeByClass rather than CreateNodeByClass + AddNode: no reference to release.
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentEditorNode", "ALLNet segment editor")
            node.SetSingletonTag(EDITOR_NODE_TAG)
        if node is not self.editorNode:
            self.editorNode = node
            self.editor.setMRMLSegmentEditorNode(node)

    def show(self, segmentationNode, sourceVolumeNode) -> None:
        self.editor.setSegmentationNode(segmentationNode)
        if sourceVolumeNode is not None:
            self.editor.setSourceVolumeNode(sourceVolumeNode)

    def enter(self) -> None:
        self.editor.installKeyboardShortcuts()
        self.selectEditorNode()
        self.editor.updateWidgetFromMRML()

    def exit(self) -> None:
        # What SegmentEditorWidget.exit does: no effect may stay active outside the module.
        self.editor.setActiveEffect(None)
        self.editor.uninstallKeyboardShortcuts()
        self.editor.removeViewObservations()

    def onSceneStartClose(self) -> None:
        self.editorNode = None
        self.editor.setSegmentationNode(None)
        self.editor.removeViewObservations()

    def onSceneEndClose(self, entered: bool) -> None:
        if entered:
            self.selectEditorNode()
            self.editor.updateWidgetFromMRML()
