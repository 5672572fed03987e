"""``damokit select`` and ``damokit finetune joint`` end to end on tiny files."""

import numpy as np

from damokit.cli import main


def _coverage_means(tmp_path):
    """The S3 construction as class-mean files: UOT picks sources 10-12 first."""
    e = np.eye(16)
    src = [e[0] + 0.05 * e[2 + i] for i in range(10)] + [e[1] + 0.9 * e[12 + j] for j in range(3)]
    src += [-e[0] - e[1] + 0.3 * e[2 + (i % 14)] for i in range(20)]
    np.savez(tmp_path / "src.npz", means=np.stack(src))
    np.savez(tmp_path / "tgt.npz", means=np.stack([e[0], e[1]]))
    return tmp_path / "src.npz", tmp_path / "tgt.npz"


def test_select_uot_writes_ids(tmp_path, capsys):
    src, tgt = _coverage_means(tmp_path)
    out = tmp_path / "sel.txt"
    assert main(["select", "uot", "--src-feats", str(src), "--tgt-feats", str(tgt), "--k", "3", "--out", str(out)]) == 0
    assert sorted(int(t) for t in out.read_text().split()) == [10, 11, 12]
    text = capsys.readouterr().out
    assert "Sinkhorn converged" in text and "selected 3 of 33" in text


def test_select_from_per_image_features(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "s.npz", feats=rng.normal(size=(40, 5)), labels=np.arange(40) % 8)
    np.savez(tmp_path / "t.npz", feats=rng.normal(size=(9, 5)), labels=np.arange(9) % 3)
    argv = ["select", "nn_max_cos", "--src-feats", str(tmp_path / "s.npz"), "--tgt-feats", str(tmp_path / "t.npz")]
    assert main([*argv, "--k", "4"]) == 0
    assert "selected 4 of 8 source classes for 3 target classes" in capsys.readouterr().out
    np.savez(tmp_path / "gap.npz", feats=rng.normal(size=(4, 5)), labels=np.array([0, 0, 2, 2]))
    argv[3] = str(tmp_path / "gap.npz")
    assert main([*argv, "--k", "1"]) == 2
    assert "classes [1] have no samples" in capsys.readouterr().err


def test_finetune_joint_cli(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "tgt.npz", x=rng.integers(0, 256, (24, 10, 10), dtype=np.uint8), y=np.arange(24) % 3)
    np.savez(tmp_path / "src.npz", x=rng.integers(0, 256, (40, 10, 10), dtype=np.uint8), y=np.arange(40) % 5)
    (tmp_path / "sel.txt").write_text("1\n3\n")
    argv = ["finetune", "joint", "--model", "convnet_tiny", "--target", str(tmp_path / "tgt.npz")]
    argv += ["--source", str(tmp_path / "src.npz"), "--selected", str(tmp_path / "sel.txt"), "--epochs", "1"]
    assert main([*argv, "--batch-size", "4", "--out", str(tmp_path / "run")]) == 0
    assert "16 source images" in capsys.readouterr().out  # classes 1 and 3 of 5, 8 images each
    assert main([*argv, "--test-fraction", "1.5"]) == 2
    assert "--test-fraction must be in (0, 1)" in capsys.readouterr().err
