"""Registry: registration, lookup with suggestions, wildcard listing, metadata."""

import subprocess
import sys

import pytest

from damokit import registry


@pytest.fixture
def scratch_model(monkeypatch):
    """A model entry that disappears after the test."""
    registry._discover()  # first, so that discovery does not run into the scratch table
    table = dict(registry._REGISTRY["model"])
    monkeypatch.setitem(registry._REGISTRY, "model", table)

    @registry.register_model(task="demo", paper="0000.00000", input_layout="(B, C)")
    def scratch_linear(width: int = 3):
        """A linear layer used by the registry tests."""
        import torch

        return torch.nn.Linear(width, width)

    return scratch_linear


def test_create_model_applies_overrides_and_drops_none(scratch_model):
    model = registry.create_model("scratch_linear", width=5)
    assert model.in_features == 5
    assert registry.create_model("scratch_linear", width=None).in_features == 3


def test_unknown_name_suggests_close_matches(scratch_model):
    with pytest.raises(registry.UnknownNameError, match="Did you mean: scratch_linear"):
        registry.create_model("scratch_linaer")


def test_list_models_wildcard_and_metadata(scratch_model):
    assert "scratch_linear" in registry.list_models("scratch_*")
    assert registry.list_models("no_such_prefix_*") == []
    info = registry.model_info("scratch_linear")
    assert info["task"] == "demo" and info["paper"] == "0000.00000"
    assert info["doc"] == "A linear layer used by the registry tests."


def test_registering_twice_warns(scratch_model):
    with pytest.warns(UserWarning, match="registered twice"):

        @registry.register_model
        def scratch_linear():
            return None


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown registry kind"):
        registry.register("widget")


def test_import_is_cheap_and_silent():
    """`import damokit` must not import torch or print (the registry is filled lazily)."""
    code = "import sys, damokit; assert 'torch' not in sys.modules, 'torch imported'; print(damokit.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == __import__("damokit").__version__
    assert out.stderr == ""
