"""Shared pytest fixtures: location of the real development data, thread limits."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when the development data is absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real MS development data not found at {SHARED_DATA} (only present on development machines)")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _limit_threads() -> None:
    """Keep torch to one thread per test process: CI machines have 2 cores."""
    try:
        import torch
    except ImportError:  # torch is a dependency, but the fixture must not be the place that fails
        return
    torch.set_num_threads(1)


TINY_MODEL = dict(base_channels=4, depth=2, max_channels=8, head_channels=4, head_mlp=(4,))


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    """A one-member model file with random weights and the tiny test architecture."""
    from allnet.model import ModelConfig, random_bundle, save_model_file

    bundle = random_bundle(ModelConfig(**TINY_MODEL), n=1)
    path = tmp_path / "tiny.pt"
    save_model_file(path, bundle.config, [m.state_dict() for m in bundle.members], {"name": "tiny"})
    return path


@pytest.fixture()
def module():
    """The ALLNetSegment Slicer module, imported against the Slicer stand-in on a clean scene."""
    import importlib

    from helpers_slicer import resetSlicer

    resetSlicer()
    return importlib.import_module("ALLNetSegment")


@pytest.fixture()
def panel(module, tmp_path, monkeypatch):
    """The module's panel set up with the core replaced by a stand-in process (helpers_slicer)."""
    from helpers_slicer import makePanel

    return makePanel(module, tmp_path, monkeypatch)
