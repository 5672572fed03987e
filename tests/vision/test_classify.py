"""Image-classification helpers, ``damokit vision train|eval`` and the ELSA reproduction's smoke preset."""

from dataclasses import replace

import pytest
import torch

from damokit import registry
from damokit.cli import main
from damokit.reproduce import elsa as elsa_repro
from damokit.reproduce.elsa import PRESETS, run_recipe, train_variant
from damokit.reproduce.runlog import RunLog
from damokit.vision.classify import (
    confusion_matrix,
    load_classification_data,
    load_image_folder,
    shift_flip_loss,
)


def _folder(root, classes=("cat", "dog"), n=6, size=(10, 12)):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n):
            # class 0 dark, class 1 bright: learnable from the mean grey level
            pixels = (torch.rand(*size, 3, generator=g) * 100 + 150 * label).to(torch.uint8)
            Image.fromarray(pixels.numpy()).save(root / name / f"{i}.png")
    return root


def test_image_folder_loader(tmp_path):
    x, y, classes = load_image_folder(_folder(tmp_path / "imgs"), img_size=8)
    assert x.shape == (12, 3, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert classes == ("cat", "dog") and y.tolist() == [0] * 6 + [1] * 6
    assert x[y == 1].mean() > x[y == 0].mean() + 0.4
    data = load_classification_data(str(tmp_path / "imgs"), img_size=8, seed=1, test_fraction=0.5)
    assert len(data.y_train) == len(data.y_test) == 6 and data.y_test.bincount().tolist() == [3, 3]  # stratified


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        load_image_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="neither one of"):
        load_classification_data(str(tmp_path / "nope"))
    _folder(tmp_path / "split" / "train")
    _folder(tmp_path / "split" / "test", classes=("cat", "cow"))
    with pytest.raises(ValueError, match="same class folders"):
        load_classification_data(str(tmp_path / "split"))


def test_named_data_splits():
    digits = load_classification_data("digits", seed=3)
    assert digits.x_train.shape == (1000, 1, 8, 8) and len(digits.y_test) == 797
    again = load_classification_data("digits", seed=3)
    assert torch.equal(digits.y_test, again.y_test)


def test_confusion_matrix_golden():
    # hand count: true 0 -> pred 0 once, pred 1 once; true 1 -> pred 1; true 2 -> pred 0
    cm = confusion_matrix(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 0, 1, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_shift_flip_loss_draws_from_the_seeded_global_rng():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    batch = (torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 0, 1]))
    loss = shift_flip_loss(1, True)
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        runs.append([loss(model, batch).item() for _ in range(8)])
    assert runs[0] == runs[1] and len(set(runs[0])) > 1  # seeded, and the batch is really transformed


def test_cli_train_eval_on_image_folder(tmp_path, capsys):
    data = _folder(tmp_path / "imgs", n=10, size=(8, 8))
    out = tmp_path / "run"
    common = ["--model", "elsa_swin_digits", "--data", str(data), "--img-size", "8", "--out", str(out)]
    assert main(["vision", "train", *common, "--epochs", "2", "--batch-size", "8", "--lr", "3e-3"]) == 0
    printed = capsys.readouterr().out
    assert "test top-1" in printed and (out / "confusion.png").is_file() and (out / "best.safetensors").is_file()
    assert main(["vision", "eval", *common, "--checkpoint", str(out / "best.safetensors")]) == 0
    evaluated = capsys.readouterr().out
    # same weights, same split: eval reproduces train's test accuracy
    assert printed.split("test top-1: ")[1].split()[0] == evaluated.split("test top-1: ")[1].split()[0]


def test_cli_errors(tmp_path, capsys, monkeypatch):
    assert main(["vision", "train", "--model", "elsa_swin_digits", "--data", str(tmp_path / "nope")]) == 2
    assert "neither one of" in capsys.readouterr().err
    assert main(["vision", "eval", "--model", "elsa_swin_digits", "--data", "digits", "--checkpoint", "x.st"]) == 2
    assert "--checkpoint x.st does not exist" in capsys.readouterr().err
    # a registered model that is not an image classifier (filed for this test only)
    entry = registry.Entry("not_a_classifier", "model", lambda horizon=1: torch.nn.Identity())
    registry.names("model")  # discover the real entries first
    monkeypatch.setitem(registry._REGISTRY["model"], "not_a_classifier", entry)
    assert main(["vision", "train", "--model", "not_a_classifier", "--data", "digits"]) == 2
    assert "does not take in_chans/num_classes/img_size" in capsys.readouterr().err


@pytest.mark.slow
def test_reproduction_smoke_both_variants_train():
    # CI-sized (spec §9): 3 epochs of 4 steps on 256 digits, one seed; both variants train (the loss falls)
    runs = run_recipe(PRESETS["smoke"])
    assert {r["variant"] for r in runs} == {"lsa", "elsa"}
    for r in runs:
        assert r["train_loss"][-1] < r["train_loss"][0], r
    short = replace(PRESETS["smoke"], epochs=1, max_steps=3)
    first, second = train_variant(short, "elsa", 0), train_variant(short, "elsa", 0)
    second["seconds_per_step"] = first["seconds_per_step"]  # the only field allowed to differ
    assert first == second


def test_reproduction_runs_resume_from_the_log(tmp_path, monkeypatch):
    trained = []

    def fake_train(recipe, variant, seed, progress=False, checkpoint_dir=None):
        trained.append((variant, seed))
        return {"variant": variant, "seed": seed, "top1": 0.5 + seed / 10}

    monkeypatch.setattr(elsa_repro, "train_variant", fake_train)
    recipe = replace(PRESETS["smoke"], seeds=(0, 1))
    first = run_recipe(recipe, log=RunLog(tmp_path))
    assert len(trained) == 4 and [r["seed"] for r in first] == [0, 0, 1, 1]
    assert run_recipe(recipe, log=RunLog(tmp_path)) == first and len(trained) == 4  # nothing retrained
    run_recipe(replace(recipe, lr=1e-3), log=RunLog(tmp_path))  # other settings: other runs
    assert len(trained) == 8


def test_reproduction_run_killed_mid_training_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    recipe = replace(PRESETS["smoke"], max_shift=1, flip=True)  # 3 epochs x 4 steps, augmentation on
    torch.set_num_threads(1)
    whole = train_variant(recipe, "elsa", 0)
    monkeypatch.setattr(elsa_repro, "CHECKPOINT_EVERY", 2)
    real_loss = elsa_repro.shift_flip_loss

    def killed_at_step_7(*args):
        loss, calls = real_loss(*args), []

        def counted(model, batch):
            calls.append(1)
            if len(calls) == 7:
                raise KeyboardInterrupt  # the process dies mid-epoch 2; the last checkpoint is at step 6
            return loss(model, batch)

        return counted

    monkeypatch.setattr(elsa_repro, "shift_flip_loss", killed_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        train_variant(recipe, "elsa", 0, checkpoint_dir=tmp_path)
    steps_after_resume = []

    def counted_loss(*args):
        loss = real_loss(*args)
        return lambda model, batch: steps_after_resume.append(1) or loss(model, batch)

    monkeypatch.setattr(elsa_repro, "shift_flip_loss", counted_loss)
    resumed = train_variant(recipe, "elsa", 0, checkpoint_dir=tmp_path)
    assert len(steps_after_resume) == 6  # steps 7-12 only: it continued from the checkpoint
    assert resumed["top1"] == whole["top1"] and resumed["train_loss"] == whole["train_loss"]


def test_reproduction_errors():
    with pytest.raises(ValueError, match="variant must be one of"):
        train_variant(PRESETS["smoke"], "nla", 0)
