"""``damokit pretrain`` and ``damokit probe`` end to end on tiny files."""

import numpy as np
import pytest

from damokit.cli import main


def _images(tmp_path, n=64):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 12, 12), dtype=np.uint8)
    y = np.arange(n) % 4
    path = tmp_path / "imgs.npz"
    np.savez(path, x=x, y=y)
    return path


def test_pretrain_look_then_probe(tmp_path, capsys):
    data = _images(tmp_path)
    out = tmp_path / "run"
    argv = ["pretrain", "look", "--data", str(data), "--model", "convnet_tiny", "--k", "3", "--epochs", "1"]
    assert main([*argv, "--batch-size", "16", "--out", str(out)]) == 0
    assert (out / "encoder.safetensors").exists() and (out / "last.safetensors").exists()
    feats = np.load(out / "features.npz")
    assert feats["feats"].shape == (64, 8) and feats["labels"].tolist() == (np.arange(64) % 4).tolist()
    assert "no-positive fraction per epoch" in capsys.readouterr().out
    assert main(["probe", "--features", str(out / "features.npz"), "--probe", "knn", "--k", "3"]) == 0
    assert "knn probe (all labels, 32 test samples)" in capsys.readouterr().out
    assert main(["probe", "--features", str(out / "features.npz"), "--shots", "2", "--seeds", "0", "1"]) == 0
    assert "over 2 run(s)" in capsys.readouterr().out


def test_pretrain_ce_coarse(tmp_path, capsys):
    data = _images(tmp_path)
    argv = ["pretrain", "ce", "--data", str(data), "--model", "convnet_tiny", "--coarse", "--epochs", "1"]
    assert main([*argv, "--batch-size", "16", "--out", str(tmp_path / "ce")]) == 0
    assert np.load(tmp_path / "ce" / "features.npz")["labels"].max() == 1  # two super-classes


def test_cli_errors(tmp_path, capsys):
    assert main(["pretrain", "look", "--data", str(tmp_path / "none.npz")]) == 2
    assert "neither one of" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 3, 3), np.uint8))
    assert main(["pretrain", "ce", "--data", str(bad)]) == 2
    assert "must hold arrays 'x' and 'y'" in capsys.readouterr().err
    assert main(["probe", "--features", str(bad)]) == 2
    assert "missing ['feats', 'labels']" in capsys.readouterr().err
    assert main(["probe", "--features", str(tmp_path / "nope.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pretrain", "look", "--data", "digits", "--bank", "ring"])
