"""Checkpoints: round trip of nested state, atomic replacement, clear errors for corrupt or mismatched files."""

import os

import pytest
import torch

from damokit.engine import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from damokit.engine import checkpoint as ckpt_module


def _adam_state():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return model, opt


def test_round_trip_of_model_optimizer_and_scalars(tmp_path):
    model, opt = _adam_state()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": torch.get_rng_state(),
        "step": 7,
        "best": None,
        "pair": (1, "a"),
    }
    path = save_checkpoint(tmp_path / "c.safetensors", state)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7 and loaded["best"] is None and loaded["pair"] == (1, "a")
    torch.testing.assert_close(loaded["rng"], state["rng"])
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=0.1)
    fresh.load_state_dict(loaded["optimizer"])  # integer param ids survive the JSON header
    torch.testing.assert_close(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_tied_weights_are_saved(tmp_path):
    shared = torch.nn.Linear(2, 2)
    model = torch.nn.Sequential(shared, shared)
    save_checkpoint(tmp_path / "tied.safetensors", {"model": model.state_dict()})
    loaded = load_checkpoint(tmp_path / "tied.safetensors")["model"]
    torch.testing.assert_close(loaded["0.weight"], loaded["1.weight"])


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.safetensors", {"step": 1, "w": torch.ones(2)})

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(2)})
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["last.safetensors"]  # no temporary file left behind


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=f"{bad.name} is corrupt"):
        load_checkpoint(bad)
    good = save_checkpoint(tmp_path / "good.safetensors", {"w": torch.ones(3)})
    good.write_bytes(good.read_bytes()[:-4])  # truncated
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(good)


def test_unstorable_values_are_rejected(tmp_path):
    with pytest.raises(TypeError, match="cannot store object at 'thing'"):
        save_checkpoint(tmp_path / "x.safetensors", {"thing": object()})


def test_load_weights_lists_missing_unexpected_and_misshaped_keys():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    state = dict(model.state_dict())
    state.pop("1.bias")
    state["0.weight"] = torch.zeros(5, 3)
    state["extra"] = torch.zeros(1)
    with pytest.raises(
        CheckpointError,
        match=r"missing: 1.bias; unexpected: extra; mis-shaped: 0.weight: "
        r"checkpoint \(5, 3\) vs model \(2, 3\)",
    ):
        load_weights(model, state, source="ckpt")
