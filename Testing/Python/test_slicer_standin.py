"""The Slicer stand-in behaves like Slicer 5.12 where the module depends on it: strict parameter
types, scene close keeping singletons, nothing installed in testing mode, temporary nodes of
slicer.util's array helpers, self-test registration, the real VTK; and every stand-in function
names the Slicer source it mirrors."""
from __future__ import annotations

import ast
import re
from typing import Annotated

import pytest

from helpers_slicer import STUB, loadCase, resetSlicer

import slicer  # noqa: E402  (the stand-in)
import vtk  # noqa: E402
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper  # noqa: E402


@parameterNodeWrapper
class _Parameters:
    flag: bool = False
    level: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    name: str = "a"
    volume: slicer.vtkMRMLScalarVolumeNode


@pytest.fixture()
def parameters():
    resetSlicer()
    node = slicer.mrmlScene.AddNode(slicer.vtkMRMLScriptedModuleNode())
    return _Parameters(node)


def test_parameters_refuse_values_of_the_wrong_type_like_slicers_serializers(parameters):
    with pytest.raises(TypeError):
        parameters.flag = "false"  # bool("false") would be True
    with pytest.raises(TypeError):
        parameters.level = "0.5"
    with pytest.raises(TypeError):
        parameters.name = 3
    with pytest.raises(TypeError):
        parameters.volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    with pytest.raises(ValueError):
        parameters.level = 1.5
    parameters.flag, parameters.level = True, 1  # an int is a valid float, as in Slicer
    assert parameters.parameterNode.GetParameter("flag") == "True" and parameters.level == 1.0


def test_node_parameters_are_references_that_empty_when_the_node_leaves_the_scene(parameters):
    volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T1")
    parameters.volume = volume
    assert parameters.volume is volume
    slicer.mrmlScene.RemoveNode(volume)
    assert parameters.volume is None


def test_scene_clear_keeps_singletons_by_default_and_resets_them(parameters):
    node = parameters.parameterNode
    node.SetSingletonTag("Module")
    parameters.name = "changed"
    other = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode")
    events = []
    slicer.mrmlScene.AddObserver(slicer.mrmlScene.StartCloseEvent, lambda c, e: events.append("start"))
    slicer.mrmlScene.AddObserver(slicer.mrmlScene.EndCloseEvent, lambda c, e: events.append("end"))
    slicer.mrmlScene.Clear()  # vtkMRMLScene::Clear(int removeSingletons = 0)
    assert events == ["start", "end"]
    assert slicer.mrmlScene.IsNodePresent(node) and not slicer.mrmlScene.IsNodePresent(other)
    assert parameters.name == "a"  # Reset dropped the value; the wrapper reads its default back
    slicer.mrmlScene.Clear(1)
    assert not slicer.mrmlScene.IsNodePresent(node)


def test_pip_ensure_installs_nothing_in_testing_mode():
    resetSlicer()
    slicer.app.testing = True
    assert slicer.packaging.pip_ensure(["allnet-package-that-does-not-exist>=1"], prompt_install=False) is None
    assert slicer.packaging.installs == []
    slicer.packaging.pip_ensure(["allnet-package-that-does-not-exist>=1"], prompt_install=False,
                                skip_in_testing=False)
    assert len(slicer.packaging.installs) == 1


def test_segment_array_helpers_add_and_remove_temporary_nodes(tmp_path):
    resetSlicer()
    _, (_, _, flair) = loadCase(tmp_path)
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(flair)
    segmentId = segmentation.GetSegmentation().AddEmptySegment("", "lesion")
    added, removed = [], []
    slicer.mrmlScene.AddObserver(slicer.mrmlScene.NodeAddedEvent,
                                 lambda c, e: added.append(slicer.mrmlScene.GetNodes()[-1].GetName()))
    slicer.mrmlScene.AddObserver(slicer.mrmlScene.NodeRemovedEvent, lambda c, e: removed.append(e))
    before = len(slicer.mrmlScene.GetNodes())
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, flair)
    mask[2:4, 2:4, 2:4] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, segmentId, flair)
    assert "__temp__" in added and len(removed) >= 2
    assert len(slicer.mrmlScene.GetNodes()) == before  # the temporary nodes are gone again
    assert slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segmentId, flair).sum() == 8


def test_modules_register_their_runTest_in_selfTests():
    resetSlicer()
    import types

    import ALLNetSegment

    ALLNetSegment.ALLNetSegment(types.SimpleNamespace())
    assert callable(slicer.selfTests["ALLNetSegment"])


def test_the_standin_uses_the_real_vtk():
    assert vtk.vtkObject.__module__.startswith("vtkmodules")
    assert isinstance(slicer.mrmlScene, vtk.vtkObject)
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode").GetTable()
    assert isinstance(table, vtk.vtkTable)
    assert not (STUB / "vtk.py").exists()


SLICER_PATH = re.compile(r"(Base|Libs|Modules)/[\w/.]+")


def _publicDefinitions(tree):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield node


@pytest.mark.parametrize("path", sorted((STUB / "slicer").glob("*.py")), ids=lambda p: p.name)
def test_every_standin_function_names_the_slicer_source_and_release_it_mirrors(path):
    source = path.read_text()
    tree = ast.parse(source)
    docstring = ast.get_docstring(tree) or ""
    assert "5.12" in docstring and SLICER_PATH.search(docstring), f"{path.name}: docstring names no Slicer file/release"
    lines = source.splitlines()
    for node in _publicDefinitions(tree):
        first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
        comments = []
        index = first - 1
        while index >= 0 and lines[index].lstrip().startswith("#"):
            comments.insert(0, lines[index])
            index -= 1
        text = "\n".join(comments)
        assert comments, f"{path.name}: {node.name} has no comment naming what it mirrors"
        assert SLICER_PATH.search(text) or re.search(rf"(def|class) {node.name}\b|\.py", text), \
            f"{path.name}: the comment above {node.name} names no Slicer source"


def test_qt_standin_timers_run_only_when_events_are_processed():
    import qt

    resetSlicer()
    fired = []
    qt.QTimer.singleShot(0, lambda: fired.append(1))
    assert fired == []
    qt.processEvents()
    assert fired == [1]
