"""``damokit video train|eval|fuse`` end to end on a tiny synthetic split."""

import pytest

from damokit.cli import main


@pytest.mark.slow
def test_train_eval_fuse_round_trip(tmp_path, capsys):
    common = ["--data", "synth:B", "--clips-per-class", "4"]
    for modality in ("rgb", "depth"):
        args = [
            "video",
            "train",
            *common,
            "--modality",
            modality,
            "--model",
            "motion_rgbd_tiny",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / modality),
        ]
        assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("test accuracy:") == 2
    assert main(["video", "eval", *common, "--checkpoint", str(tmp_path / "rgb" / "model.safetensors")]) == 0
    evaluated = capsys.readouterr().out
    first_rgb = out.split("test accuracy:")[1].split("%")[0].strip()
    assert f"test accuracy: {first_rgb} %" in evaluated  # the saved model reproduces its score
    fuse = [
        "video",
        "fuse",
        *common,
        "--rgb",
        str(tmp_path / "rgb" / "model.safetensors"),
        "--depth",
        str(tmp_path / "depth" / "model.safetensors"),
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "capf"),
    ]
    assert main(fuse) == 0
    table = capsys.readouterr().out
    for name in ("RGB", "depth", "late fusion", "CAPF"):
        assert name in table


def test_bad_sources_are_reported(tmp_path, capsys):
    assert main(["video", "train", "--data", "synth:Q", "--out", str(tmp_path)]) == 2
    assert "unknown synthetic split 'Q'" in capsys.readouterr().err
    assert main(["video", "eval", "--data", "synth:B", "--checkpoint", str(tmp_path / "none.safetensors")]) != 0
