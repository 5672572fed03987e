"""ReID data loaders (PKU-Reid mini pack, Market-1501 folders) and the `damokit reid` CLI's user errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from damokit.cli import main
from damokit.engine import save_checkpoint
from damokit.reid.data import load_image_folder, load_pku_reid, parse_market_name, resize_images
from damokit.reid.model import transreid_ssl_ics_tiny


def test_parse_market_names():
    assert parse_market_name("0002_c1s1_000451_03.jpg") == (2, 0)
    assert parse_market_name("-1_c3s2_000001_00.jpg") == (-1, 2)
    with pytest.raises(ValueError, match="cannot read identity and camera from 'person2.jpg'"):
        parse_market_name("person2.jpg")


def _write(folder, names, size=(40, 20)):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((*size, 3), 10 * i, dtype=np.uint8)).save(folder / name)


def test_image_folder_drops_junk_and_resizes(tmp_path):
    _write(tmp_path / "q", ["0001_c1s1_0.jpg", "0001_c2s1_0.jpg", "-1_c1s1_0.jpg", "0000_c3s1_0.jpg"])
    split = load_image_folder(tmp_path / "q", size=(16, 8))
    assert split.images.shape == (3, 3, 16, 8) and split.images.dtype == torch.uint8
    assert split.pids.tolist() == [0, 1, 1] and split.camids.tolist() == [2, 0, 1]  # distractor pid 0 kept


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        load_image_folder(tmp_path / "empty")
    _write(tmp_path / "bad", ["img_001.jpg"])
    with pytest.raises(ValueError, match="expected Market-1501 naming"):
        load_image_folder(tmp_path / "bad")


def test_pku_cross_camera_split():
    d = load_pku_reid((64, 32), query_camera=1)
    assert d["train"].images.shape == (992, 3, 64, 32)
    assert torch.unique(d["train"].pids).tolist() == list(range(62))
    assert (d["query"].camids == 1).all() and (d["gallery"].camids == 0).all()
    assert len(d["query"].pids) == len(d["gallery"].pids) == 96  # 12 val identities x 8 orientations
    with pytest.raises(ValueError, match="query_camera must be 0 or 1"):
        load_pku_reid(query_camera=2)


def test_resize_keeps_constant_images():
    x = torch.full((2, 3, 128, 48), 77, dtype=torch.uint8)
    assert torch.equal(resize_images(x, (64, 32)), torch.full((2, 3, 64, 32), 77, dtype=torch.uint8))


def test_cli_user_errors(tmp_path, capsys):
    assert main(["reid", "eval", "--model", "vit_tiny", "--checkpoint", str(tmp_path / "x.pth")]) == 2
    assert "must be a transreid_ssl_* model" in capsys.readouterr().err
    assert main(["reid", "eval", "--checkpoint", str(tmp_path / "x.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
    other = tmp_path / "ics.safetensors"
    save_checkpoint(other, {"model": transreid_ssl_ics_tiny().state_dict()})
    assert main(["reid", "eval", "--checkpoint", str(other)]) == 2  # an ICS checkpoint into a patchify model
    assert "mis-shaped: patch_embed.proj.weight" in capsys.readouterr().err
    assert (
        main(
            [
                "reid",
                "eval",
                "--data",
                str(tmp_path / "nowhere"),
                "--checkpoint",
                str(other),
                "--model",
                "transreid_ssl_ics_tiny",
            ]
        )
        == 2
    )
    assert "neither 'pku', 'synthetic' nor an existing folder" in capsys.readouterr().err
