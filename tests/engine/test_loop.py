"""The training loop: schedules, validation of settings, NaN stop, early stopping, resume, DDP."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from damokit.engine import TrainConfig, fit, load_checkpoint, schedule_factor

SCRIPT = Path(__file__).with_name("train_script.py")


def _regression_data(n=64):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=gen)
    return x, x.sum(1, keepdim=True)


def _mse(model, batch):
    return ((model(batch[0]) - batch[1]) ** 2).mean()


def test_cosine_schedule_warms_up_then_decays_to_min_ratio():
    # warm-up: (step + 1) / warmup_steps; then 0.5 * (1 + cos(pi * progress)) scaled into [min_ratio, 1]
    assert schedule_factor("cosine", 0, total_steps=100, warmup_steps=10) == pytest.approx(0.1)
    assert schedule_factor("cosine", 10, total_steps=100, warmup_steps=10) == pytest.approx(1.0)
    assert schedule_factor("cosine", 55, total_steps=100, warmup_steps=10) == pytest.approx(0.5)
    assert schedule_factor("cosine", 100, total_steps=100, warmup_steps=10, min_ratio=0.1) == pytest.approx(0.1)
    assert schedule_factor("linear", 50, total_steps=100) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown LR schedule 'cosin'"):
        schedule_factor("cosin", 0, total_steps=10)


def test_halve_per_epoch_matches_the_official_type1_adjustment():
    # official exp_main.py: after 0-based epoch e it calls adjust_learning_rate(e + 1), which sets
    # lr * 0.5 ** ((e + 1) - 1) for epoch e + 1; so epochs 0 and 1 train at lr, epoch 2 at lr / 2, epoch 3 at lr / 4
    factors = [schedule_factor("halve_per_epoch", s, total_steps=40, steps_per_epoch=10) for s in (0, 9, 10, 25, 35)]
    assert factors == [1.0, 1.0, 1.0, 0.5, 0.25]


def test_after_step_hook_sees_every_step():
    x, y = _regression_data()
    seen = []
    fit(
        torch.nn.Linear(3, 1),
        (x, y),
        loss_fn=_mse,
        after_step=lambda m, s: seen.append(s),
        config=TrainConfig(epochs=2, batch_size=16, progress=False),
    )
    assert seen == list(range(8))


def test_fit_applies_the_schedule_to_the_optimizer():
    x, y = _regression_data()
    model = torch.nn.Linear(3, 1)
    result = fit(
        model,
        (x, y),
        loss_fn=_mse,
        config=TrainConfig(epochs=2, batch_size=16, lr=0.1, schedule="linear", progress=False),
    )
    # 8 steps; the LR logged at the end of epoch 1 is the one of step 3: 0.1 * (1 - 3/8)
    assert result.history[0]["lr"] == pytest.approx(0.1 * (1 - 3 / 8))
    assert result.steps == 8


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "epochs must be >= 1"),
        ("lr", 0.0, "lr must be > 0"),
        ("schedule", "cosin", "schedule must be"),
        ("batch_size", 0, "batch_size must be >= 1"),
        ("monitor_mode", "up", "monitor_mode must be"),
        ("grad_clip", -1.0, "grad_clip must be > 0"),
        ("patience", 0, "patience must be >= 1"),
        ("max_steps", 0, "max_steps must be >= 1"),
    ],
)
def test_train_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_training_set_smaller_than_a_batch_is_an_error():
    x, y = _regression_data(8)
    with pytest.raises(ValueError, match="fewer than one batch"):
        fit(torch.nn.Linear(3, 1), (x, y), loss_fn=_mse, config=TrainConfig(batch_size=16, progress=False))


def test_non_finite_loss_stops_with_step_and_lr():
    x, y = _regression_data()
    with pytest.raises(FloatingPointError, match=r"non-finite loss nan at step 0 \(epoch 1, lr 0.001\)"):
        fit(
            torch.nn.Linear(3, 1),
            (x, y),
            loss_fn=lambda m, b: _mse(m, b) * float("nan"),
            config=TrainConfig(batch_size=16, progress=False),
        )


def test_loss_decreases_and_metrics_are_logged(tmp_path):
    x, y = _regression_data()
    result = fit(
        torch.nn.Linear(3, 1),
        (x, y),
        loss_fn=_mse,
        val_set=(x, y),
        out_dir=tmp_path,
        config=TrainConfig(epochs=5, batch_size=16, lr=0.05, progress=False),
        run_config={"model": "linear"},
    )
    losses = [row["val_loss"] for row in result.history]
    assert losses[-1] < 0.5 * losses[0]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == result.history
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["train"]["lr"] == 0.05 and saved["run"] == {"model": "linear"}


def test_early_stopping_restores_the_best_epoch():
    """Validation loss that rises after epoch 1 stops the run after `patience` epochs and restores epoch 1."""
    x, y = _regression_data()
    model = torch.nn.Linear(3, 1)
    snapshots = []
    calls = {"n": 0}

    def rising_val(m, batch):
        calls["n"] += 1
        if calls["n"] == 1:
            snapshots.append({k: v.detach().cpu().clone() for k, v in m.state_dict().items()})
        return torch.tensor(float(calls["n"]))  # one val batch per epoch: 1, 2, 3, ...

    result = fit(
        model,
        (x, y),
        loss_fn=_mse,
        val_set=(x, y),
        eval_fn=rising_val,
        config=TrainConfig(epochs=10, batch_size=16, patience=2, progress=False),
    )
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, snapshots[0][key])


def test_unknown_monitor_is_an_error():
    x, y = _regression_data()
    with pytest.raises(ValueError, match="monitor='val_acc' is not among the validation metrics"):
        fit(
            torch.nn.Linear(3, 1),
            (x, y),
            loss_fn=_mse,
            val_set=(x, y),
            config=TrainConfig(batch_size=16, monitor="val_acc", progress=False),
        )


def _run(args, env=None, **kwargs):
    env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, **kwargs)


def _final_state(out_dir: Path):
    return load_checkpoint(out_dir / "final.safetensors")["model"]


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    """Kill a run mid-way (SIGKILL, no cleanup), resume it, and compare with a run that was never stopped."""
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    assert _run([str(reference), "--dropout", "0.2", "--device", "auto"]).returncode == 0

    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(killed), "--slow", "--dropout", "0.2", "--device", "auto"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    ckpt = killed / "last.safetensors"
    while time.time() < deadline:  # wait until the run is past its first epoch-internal checkpoints
        if ckpt.exists() and load_checkpoint(ckpt)["step"] >= 9:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = load_checkpoint(ckpt)
    assert 9 <= state["step"] < 36, "the kill must land mid-run"
    assert not (killed / "final.safetensors").exists()

    resumed = _run([str(killed), "--resume", "--dropout", "0.2", "--device", "auto"])
    assert resumed.returncode == 0, resumed.stderr
    ref_state, res_state = _final_state(reference), _final_state(killed)
    for key in ref_state:
        torch.testing.assert_close(res_state[key], ref_state[key], rtol=0, atol=0)
    assert (killed / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_equal_single_process(tmp_path):
    """torchrun with 2 CPU processes (gloo) on the same global batch reaches the single-process weights."""
    single, multi = tmp_path / "single", tmp_path / "ddp"
    assert _run([str(single)]).returncode == 0
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(SCRIPT),
        str(multi),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref_state, ddp_state = _final_state(single), _final_state(multi)
    for key in ref_state:
        torch.testing.assert_close(ddp_state[key], ref_state[key], rtol=1e-5, atol=1e-6)
    ref_rows = [json.loads(r) for r in (single / "metrics.jsonl").read_text().splitlines()]
    ddp_rows = [json.loads(r) for r in (multi / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ddp_rows] == [r["step"] for r in ref_rows]
    for a, b in zip(ddp_rows, ref_rows, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


def test_max_steps_mid_epoch_resumes_inside_that_epoch(tmp_path):
    """A run stopped by max_steps in the middle of an epoch, resumed with a larger budget, equals one run."""
    x, y = _regression_data()

    def run(max_steps, out_dir, resume=False):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        config = TrainConfig(epochs=3, batch_size=16, max_steps=max_steps, progress=False)
        fit(model, (x, y), loss_fn=_mse, config=config, out_dir=out_dir, resume=resume)
        return model

    run(6, tmp_path / "a")  # 4 steps per epoch: stops after step 2 of epoch 2
    assert load_checkpoint(tmp_path / "a" / "last.safetensors")["batch_in_epoch"] == 2
    resumed = run(None, tmp_path / "a", resume=True)
    whole = run(None, tmp_path / "b")
    for a, b in zip(resumed.parameters(), whole.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_tensor_datasets_and_dataloaders_give_the_same_run():
    """The direct-indexing path for tensors equals the DataLoader path for the same samples."""
    x, y = _regression_data()

    class Wrapped(torch.utils.data.Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return x[i], y[i]

    models = []
    for data in ((x, y), Wrapped()):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        fit(model, data, loss_fn=_mse, config=TrainConfig(epochs=2, batch_size=16, progress=False))
        models.append(model)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("per_parameter", [True, False])
def test_gradient_clipping_global_or_per_parameter(per_parameter):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    x, y = _regression_data()
    reference = torch.autograd.grad(_mse(model, (x, y)), list(model.parameters()))
    norms = torch.stack([g.norm() for g in reference])
    clip = float(norms.median())  # some tensors above the threshold, some below
    seen = []
    config = TrainConfig(
        epochs=1, max_steps=1, batch_size=len(x), lr=1e-9, optimizer="sgd", grad_clip=clip,
        grad_clip_per_parameter=per_parameter, progress=False,
    )  # fmt: skip
    fit(model, (x, y), loss_fn=_mse, config=config, after_step=lambda m, _: seen.extend(p.grad for p in m.parameters()))
    if per_parameter:  # official DINO clip_gradients: each tensor scaled to at most `clip` on its own
        expected = [g * min(1.0, clip / (float(g.norm()) + 1e-6)) for g in reference]
    else:
        expected = [g * min(1.0, clip / (float(norms.norm()) + 1e-6)) for g in reference]
    for got, want in zip(seen, expected):
        torch.testing.assert_close(got, want)


def test_module_device_is_where_the_first_parameter_or_buffer_lives():
    from torch import nn

    from damokit.engine import module_device

    assert module_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(nn.Linear(2, 2, device="meta")) == torch.device("meta")
    buffers_only = nn.BatchNorm1d(3, affine=False, device="meta")  # running stats, no parameters
    assert module_device(buffers_only) == torch.device("meta")
    assert module_device(nn.Identity()) == torch.device("cpu")  # nothing to move: inputs stay on CPU


def test_torchrun_with_more_processes_than_gpus_is_told_how_to_fix_it(monkeypatch):
    from damokit.engine.distributed import device_for

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match=r"1 GPU\(s\); start at most 1 processes per node"):
        device_for("auto")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert device_for("auto") == torch.device("cuda", 0)
    assert device_for("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device='cuda:1' was asked for, but torch sees no GPU here"):
        device_for("cuda:1")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_fit_trains_on_the_gpu_and_hands_the_model_back_on_its_device():
    model = torch.nn.Linear(3, 1)
    x = torch.randn(32, 3)
    seen = set()

    def loss_fn(m, batch):
        seen.add(batch[0].device.type)
        return ((m(batch[0]) - batch[1]) ** 2).mean()

    fit(model, (x, x.sum(1, keepdim=True)), loss_fn=loss_fn, config=TrainConfig(batch_size=16, progress=False))
    assert seen == {"cuda"} and model.weight.device.type == "cpu"
