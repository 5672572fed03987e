"""``damokit segment pretrain|discover|train|eval`` end to end on tiny SynthShapes, and its user errors."""

import json

import numpy as np
import pytest

from damokit.cli import main


@pytest.mark.slow  # ~6 CPU-seconds: a 2-step pre-training, the 40-object gate, concepts, 2 decoder epochs
def test_pretrain_discover_train_eval_round_trip(tmp_path, capsys):
    backbone, concepts, model = tmp_path / "b.safetensors", tmp_path / "c.safetensors", tmp_path / "m.safetensors"
    small = ["--data", "synth", "--n", "24", "--size", "16"]
    assert main(["segment", "pretrain", *small, "--variant", "sup", "--steps", "2", "--batch-size", "8", "--gate", "40",
                 "--out", str(backbone)]) == 0  # fmt: skip
    assert "gate: 1-NN shape accuracy" in capsys.readouterr().out
    seg = ["--backbone", str(backbone), "--preset", "smoke"]
    assert main(["segment", "discover", *small, *seg, "--out", str(concepts)]) == 0
    assert "4 concepts from 24 images" in capsys.readouterr().out
    assert main(["segment", "train", *small, *seg, "--concepts", str(concepts), "--epochs", "2",
                 "--out", str(model)]) == 0  # fmt: skip
    scores_file = tmp_path / "scores.json"
    test = ["--data", "synth", "--n", "8", "--size", "16", "--seed", "1"]
    assert main(["segment", "eval", *test, "--backbone", str(backbone), "--model", str(model),
                 "--json", str(scores_file)]) == 0  # fmt: skip
    assert "mIoU" in capsys.readouterr().out
    scores = json.loads(scores_file.read_text())
    assert 0 < scores["miou"] <= 100 and 0 < scores["pixel_accuracy"] <= 100
    # a concepts-only checkpoint has no decoder to evaluate
    assert main(["segment", "eval", *test, "--backbone", str(backbone), "--model", str(concepts)]) == 2
    assert "holds concepts only" in capsys.readouterr().err


def test_user_errors_are_one_line(tmp_path, capsys):
    missing = tmp_path / "none.safetensors"
    assert main(["segment", "discover", "--data", "synth", "--backbone", str(missing), "--out", "x"]) == 2
    assert "--backbone" in capsys.readouterr().err
    unlabeled = tmp_path / "photos.npz"
    np.savez(unlabeled, image=np.zeros((4, 16, 16, 3), dtype=np.uint8))
    assert main(["segment", "pretrain", "--data", str(unlabeled), "--variant", "sup", "--out", "x"]) == 2
    assert "--variant sup needs shape labels" in capsys.readouterr().err
    assert main(["segment", "pretrain", "--data", "nowhere.npz", "--out", "x"]) == 2
    assert "neither synth, coco128 nor an existing .npz" in capsys.readouterr().err
    assert main(["segment", "pretrain", "--data", "synth", "--n", "4", "--size", "18", "--out", "x"]) == 2
    assert "multiple of the backbone's stride 4" in capsys.readouterr().err
    nokey = tmp_path / "bad.npz"
    np.savez(nokey, x=np.zeros(3))
    assert main(["segment", "pretrain", "--data", str(nokey), "--out", "x"]) == 2
    assert "has no 'image' array" in capsys.readouterr().err
    model = tmp_path / "m.safetensors"
    args = ["segment", "eval", "--data", str(unlabeled), "--size", "16", "--backbone", str(missing)]
    assert main([*args, "--model", str(model)]) == 2
    assert "--model" in capsys.readouterr().err
    model.write_bytes(b"")
    assert main([*args, "--model", str(model)]) == 2
    assert "no masks to evaluate against" in capsys.readouterr().err
