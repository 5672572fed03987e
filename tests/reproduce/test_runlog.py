"""The full-mode run log: finished units are recorded once and skipped on a rerun into the same folder."""

import dataclasses

import pytest
import torch

from damokit.reproduce import zendet
from damokit.reproduce.result import Verdict
from damokit.reproduce.runlog import RUN_LOG, RunLog, digest


def test_run_log_records_and_reloads_and_ignores_a_cut_short_line(tmp_path):
    calls = []

    def unit():
        calls.append(1)
        return {"map": 0.25}

    log = RunLog(tmp_path)
    assert log.get_or_run("a", unit) == {"map": 0.25}
    assert log.get_or_run("a", unit) == {"map": 0.25} and len(calls) == 1
    with (tmp_path / RUN_LOG).open("a") as f:
        f.write('{"key": "b", "map": 0.')  # the process died mid-write
    again = RunLog(tmp_path)
    assert again.get("a") == {"map": 0.25} and again.get("b") is None
    assert again.get_or_run("a", unit) == {"map": 0.25} and len(calls) == 1


def test_run_log_without_a_folder_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = RunLog(None)
    log.record("a", {"x": 1})
    assert log.get("a") == {"x": 1} and not list(tmp_path.iterdir())


def test_tensor_artifacts_are_saved_once_and_reloaded_exactly(tmp_path):
    calls = []

    def unit():
        calls.append(1)
        return {"blocks.0.weight": torch.randn(3, 4), "pos": torch.arange(5)}

    first = RunLog(tmp_path).tensors_or_run("backbone_seed0", unit)
    again = RunLog(tmp_path).tensors_or_run("backbone_seed0", unit)
    assert len(calls) == 1 and first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    RunLog(None).tensors_or_run("backbone_seed0", unit)
    assert len(calls) == 2  # no folder: nothing is remembered
    with pytest.raises(ValueError, match="artifact name"):
        RunLog(tmp_path).tensors_or_run("../escape", unit)


def test_digest_names_settings_and_changes_with_them():
    @dataclasses.dataclass(frozen=True)
    class Plan:
        epochs: int
        lr: float

    assert digest(Plan(3, 0.1)) == digest(Plan(3, 0.1)) != digest(Plan(4, 0.1))
    assert len(digest(Plan(3, 0.1))) == 10


def test_zendet_full_mode_detector_trainings_resume_from_the_log(tmp_path, monkeypatch):
    trained = []

    def fake_train(structure, seed, epochs, n_train, n_test, progress):
        trained.append((seed, epochs))
        return 0.1 + 0.01 * seed + (0.005 if structure == searched else 0.0)

    monkeypatch.setattr(zendet, "_train_detector", fake_train)
    searched = zendet.SMALL_SPACE_INIT
    first = zendet._detection_rows(searched, quick=False, log=RunLog(tmp_path))
    assert len(trained) == 6 and {e for _, e in trained} == {30}  # 2 detectors x 3 seeds, 30 epochs
    assert first[0].verdict is Verdict.HOLDS and "per seed 10.5/10.0, 11.5/11.0" in first[0].note
    again = zendet._detection_rows(searched, quick=False, log=RunLog(tmp_path))
    assert len(trained) == 6  # nothing retrained
    assert again[0].ours == first[0].ours


def test_transfgu_full_mode_seed_units_resume_from_the_log(tmp_path, monkeypatch):
    import torch

    from damokit.reproduce import transfgu
    from damokit.segmentation.transfgu.backbone import GateScores

    calls = []
    maps = torch.randint(0, 4, (3, 6, 32, 32))
    panel = (torch.rand(6, 3, 32, 32), maps[0], maps[1], maps[2])
    monkeypatch.setattr(transfgu, "_pretrain", lambda *a: calls.append("pretrain"))
    monkeypatch.setattr(transfgu, "make_objects", lambda n, seed: type("Objects", (), {"images": 0, "labels": 0}))
    monkeypatch.setattr(transfgu, "backbone_gate", lambda *a, **k: GateScores(0.6, 0.3))
    monkeypatch.setattr(transfgu, "_synth_run", lambda *a: {"metrics": {"transfgu": (19.6, 70.1)}, "panel": panel})
    first = transfgu._synth_unit("sup", transfgu.FULL, 1, False, RunLog(tmp_path), tmp_path)
    gate, again = transfgu._synth_unit("sup", transfgu.FULL, 1, False, RunLog(tmp_path), tmp_path)
    assert calls == ["pretrain"]  # the second call read the log and the panel file
    assert gate == first[0] and again["metrics"] == {"transfgu": [19.6, 70.1]}
    assert all(torch.equal(a, b) for a, b in zip(again["panel"], panel))


@pytest.mark.parametrize("variant", ["sup", "dino"])
def test_transfgu_backbone_pretraining_killed_midway_resumes_to_the_uninterrupted_weights(
    tmp_path, monkeypatch, variant
):
    from damokit.nn import dino
    from damokit.reproduce import transfgu
    from damokit.segmentation.transfgu import backbone

    torch.set_num_threads(1)
    plan = dataclasses.replace(transfgu.FULL, n_objects=128, sup_steps=6, sup_batch=32, ssl_steps=6)
    whole = transfgu._pretrain(variant, plan, 0, False).state_dict()
    monkeypatch.setattr(transfgu, "CHECKPOINT_EVERY", 2)
    module = backbone if variant == "sup" else dino  # where the engine's fit is called
    real_fit, steps, die_at = module.fit, [], [5]

    def counted_fit(*args, loss_fn, **kwargs):
        def counted(model, batch):
            steps.append(1)
            if len(steps) == die_at[0]:
                raise KeyboardInterrupt  # the process dies in step 5; the last checkpoint is at step 4
            return loss_fn(model, batch)

        return real_fit(*args, loss_fn=counted, **kwargs)

    monkeypatch.setattr(module, "fit", counted_fit)
    with pytest.raises(KeyboardInterrupt):
        transfgu._pretrain(variant, plan, 0, False, tmp_path)
    steps.clear()
    die_at[0] = None
    resumed = transfgu._pretrain(variant, plan, 0, False, tmp_path).state_dict()
    assert len(steps) == 2  # steps 5 and 6 only: it continued from the checkpoint
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
