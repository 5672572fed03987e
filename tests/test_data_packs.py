"""Bundled data packs: resolution, checksum verification and the errors for missing or corrupt files."""

import shutil

import pytest

from damokit.data import CHECKSUMS, DataPackError, load_npz, pack_path


def test_every_pack_is_present_and_verified():
    for relpath in CHECKSUMS:
        assert pack_path(relpath).is_file()


def test_load_npz_never_unpickles():
    arrays = load_npz("images/mnist_test.npz")
    assert all(a.dtype != object for a in arrays.values())


def test_missing_file_names_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("DAMOKIT_DATA", str(tmp_path))
    with pytest.raises(DataPackError, match=r"'forecasting/ETTh1.csv' not found .*DAMOKIT_DATA"):
        pack_path("forecasting/ETTh1.csv")


def test_modified_file_is_rejected(tmp_path, monkeypatch):
    (tmp_path / "forecasting").mkdir()
    target = tmp_path / "forecasting" / "ETTh1.csv"
    shutil.copy(pack_path("forecasting/ETTh1.csv"), target)
    with open(target, "a") as fh:
        fh.write("tampered\n")
    monkeypatch.setenv("DAMOKIT_DATA", str(tmp_path))
    with pytest.raises(DataPackError, match="corrupt or modified"):
        pack_path("forecasting/ETTh1.csv")
