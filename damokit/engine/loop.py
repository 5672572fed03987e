"""The one training loop every method uses: ``fit(model, train_set, loss_fn=..., config=...)``.

The same code runs in one process and under ``torchrun`` (DDP: gloo on CPU, nccl on GPU). The data order
of an epoch is a permutation drawn from ``seed + epoch`` alone, and the global batch is split across
processes, so a run with N processes sees the same batches as one process with the same global batch.
Checkpoints hold the position inside the epoch, hence a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from damokit.engine import distributed as ddp
from damokit.engine.checkpoint import load_checkpoint, load_weights, save_checkpoint
from damokit.engine.schedules import SCHEDULES, schedule_factor

__all__ = ["TrainConfig", "FitResult", "fit", "seed_everything", "build_optimizer", "move_to"]

LossOutput = torch.Tensor | tuple[torch.Tensor, Mapping[str, float]]


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (architecture lives in the model, not here)."""

    epochs: int = 10
    """Passes over the training set; the run may stop earlier (``max_steps``, early stopping)."""
    max_steps: int | None = None
    """Hard cap on optimizer steps (None: epochs decide). Used by smoke tests to stay in seconds."""
    batch_size: int = 32
    """Global batch size, split evenly across processes under torchrun."""
    lr: float = 1e-3
    optimizer: str = "adam"
    """A name from ``damokit list optimizers`` (torch's sgd/adam/adamw and damokit.optim's family)."""
    weight_decay: float = 0.0
    optimizer_kwargs: tuple[tuple[str, Any], ...] = ()
    """Extra optimizer arguments as (name, value) pairs, e.g. (("betas", (0.9, 0.99)),)."""
    schedule: str = "constant"
    """LR schedule, a function of the step: constant, cosine or linear (see engine.schedules)."""
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    """Max global gradient norm (None: no clipping)."""
    grad_clip_per_parameter: bool = False
    """Clip each parameter's gradient norm to ``grad_clip`` separately instead (official DINO ``clip_gradients``)."""
    patience: int | None = None
    """Early stopping: epochs without improvement of ``monitor`` before stopping (None: never stop)."""
    monitor: str = "val_loss"
    monitor_mode: str = "min"
    restore_best: bool = True
    """At the end, load the weights of the best validation epoch (when there is a validation set)."""
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = True
    checkpoint_every: int = 0
    """Also checkpoint every this many steps (0: only at the end of each epoch)."""
    device: str = "auto"
    """``"auto"``: this process's GPU when there is one (LOCAL_RANK's under torchrun), else the CPU; or ``"cpu"``,
    ``"cuda:1"``. The model trains there and is handed back on the device it came on."""
    progress: bool | None = None
    """Show tqdm bars (None: only when stderr is a terminal)."""

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {sorted(SCHEDULES)}, got {self.schedule!r}"),
            (self.monitor_mode in ("min", "max"), f"monitor_mode must be 'min' or 'max', got {self.monitor_mode!r}"),
            (self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}"),
            (self.patience is None or self.patience >= 1, f"patience must be >= 1, got {self.patience}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")


@dataclass
class FitResult:
    """What ``fit`` returns."""

    steps: int
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int | None = None
    stopped_early: bool = False
    out_dir: Path | None = None


def _clip_gradients(model: nn.Module, max_norm: float, *, per_parameter: bool) -> None:
    if not per_parameter:
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        return
    for p in model.parameters():  # one scale per tensor, as DINO's utils.clip_gradients (same 1e-6 guard)
        if p.grad is not None:
            p.grad.mul_(torch.clamp(max_norm / (p.grad.norm() + 1e-6), max=1.0))


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and keep cuDNN to deterministic kernels, so a seeded GPU run repeats.

    damokit code never draws from the random/numpy globals.
    """
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def module_device(module: nn.Module) -> torch.device:
    """Where ``module`` lives (its first parameter or buffer), CPU for a module with neither.

    Code that feeds a model asks it where to send the inputs: its user may have moved it to a GPU.
    """
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return torch.device("cpu") if tensor is None else tensor.device


def move_to(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [move_to(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def build_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, **kwargs) -> torch.optim.Optimizer:
    """An optimizer from the registry by name (``damokit list optimizers``)."""
    from damokit import registry

    return registry.get("optimizer", name).fn(params, lr=lr, weight_decay=weight_decay, **kwargs)


def _batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    if isinstance(batch, Mapping):
        return _batch_size(next(iter(batch.values())))
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_size(batch[0])
    raise TypeError(f"cannot tell the batch size of a {type(batch).__name__}")


def _epoch_batches(n: int, cfg: TrainConfig, epoch: int) -> list[list[int]]:
    """This process's index lists for ``epoch``: a permutation from seed+epoch, cut into global batches."""
    if cfg.shuffle:
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = torch.randperm(n, generator=gen).tolist()
    else:
        order = list(range(n))
    world, rank = ddp.world_size(), ddp.rank()
    batches = []
    for start in range(0, n, cfg.batch_size):
        batch = order[start : start + cfg.batch_size]
        if cfg.drop_last and len(batch) < cfg.batch_size:
            break
        batches.append(batch[rank::world])
    return batches


def _batches(dataset: Dataset, batches: list[list[int]], collate_fn: Callable | None) -> Iterator:
    """The batches of one epoch. Tensor datasets are indexed directly (one gather per tensor instead of one
    ``__getitem__`` per sample); other datasets go through a DataLoader."""
    if isinstance(dataset, TensorDataset) and collate_fn is None:
        for batch in batches:
            index = torch.tensor(batch, dtype=torch.long)
            yield [t[index] for t in dataset.tensors]  # a list, as default_collate returns
        return
    # a private generator: creating a DataLoader iterator draws a seed, which must not consume the global RNG
    # (dropout masks) or a resumed run would diverge from an uninterrupted one
    yield from DataLoader(dataset, batch_sampler=batches, collate_fn=collate_fn, generator=torch.Generator())


def _as_dataset(data: Dataset | Sequence[torch.Tensor] | torch.Tensor) -> Dataset:
    if isinstance(data, torch.Tensor):
        return TensorDataset(data)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        return TensorDataset(*data)
    return data


def _split_loss(out: LossOutput) -> tuple[torch.Tensor, dict[str, float]]:
    if isinstance(out, tuple):
        return out[0], {k: float(v) for k, v in out[1].items()}
    return out, {}


class _MetricsLog:
    """``metrics.jsonl`` (one JSON object per epoch) and ``config.json``, written by the main process."""

    def __init__(self, out_dir: Path | None):
        self.path = out_dir / "metrics.jsonl" if out_dir else None

    def truncate_after(self, step: int) -> list[dict[str, Any]]:
        """Keep the rows up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
        if self.path is None or not self.path.exists():
            return []
        rows = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["step"] <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def append(self, row: dict[str, Any]) -> None:
        if self.path is not None and ddp.is_main():
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")


def _evaluate(model: nn.Module, loader: Iterator, eval_fn, device: torch.device) -> dict[str, float]:
    """Batch-size-weighted mean of each metric that ``eval_fn`` returns."""
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    with torch.no_grad():
        for batch in loader:
            batch = move_to(batch, device)
            n = _batch_size(batch)
            out = eval_fn(model, batch)
            if isinstance(out, torch.Tensor):
                out = {"loss": out}
            for key, value in out.items():
                totals[key] = totals.get(key, 0.0) + float(value) * n
            count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("the validation set is empty")
    return {f"val_{k}": v / count for k, v in totals.items()}


def fit(
    model: nn.Module,
    train_set: Dataset | Sequence[torch.Tensor],
    *,
    loss_fn: Callable[[nn.Module, Any], LossOutput],
    config: TrainConfig = TrainConfig(),
    val_set: Dataset | Sequence[torch.Tensor] | None = None,
    eval_fn: Callable[[nn.Module, Any], torch.Tensor | Mapping[str, torch.Tensor]] | None = None,
    collate_fn: Callable | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    run_config: Mapping[str, Any] | None = None,
    after_step: Callable[[nn.Module, int], None] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_set`` and return the history.

    Args:
        model: the module to train (wrapped in DDP when several processes run). It trains on
            ``config.device`` (a GPU when there is one) and is handed back on the device it came on, so code
            that feeds it afterwards needs no device bookkeeping; move it yourself to predict on the GPU.
        train_set: a map-style dataset or a tuple of equally long tensors.
        loss_fn: ``loss_fn(model, batch) -> loss`` or ``(loss, {name: value})``; it must call ``model(...)``
            (under DDP ``model`` is the wrapper, which only forwards ``__call__``).
        config: the run's settings.
        val_set: evaluated at the end of each epoch; drives early stopping and best-weight restoring.
        eval_fn: ``eval_fn(model, batch) -> loss or {metric: value}`` (default: ``loss_fn``'s loss).
        collate_fn: passed to the DataLoader.
        optimizer: a ready optimizer (default: built from ``config.optimizer``).
        out_dir: where ``config.json``, ``metrics.jsonl``, ``last.safetensors`` and ``best.safetensors`` go.
        resume: continue from ``out_dir/last.safetensors`` when it exists.
        run_config: extra settings (model name, data) saved in ``config.json`` beside the TrainConfig.
        after_step: ``after_step(model, step)`` called after each optimizer step (e.g. a DINO teacher EMA).
            State it changes must live in ``model`` (buffers or parameters) so that checkpoints hold it.

    Raises:
        FloatingPointError: the loss became NaN/inf (the message gives step, epoch and LR).
        ValueError: the training set is smaller than one batch.

    Example:
        >>> import torch
        >>> from damokit.engine import TrainConfig, fit
        >>> x = torch.randn(64, 3); y = x.sum(1, keepdim=True)
        >>> net = torch.nn.Linear(3, 1)
        >>> res = fit(net, (x, y), loss_fn=lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(),
        ...           config=TrainConfig(epochs=2, batch_size=16, progress=False))
        >>> res.steps
        8
    """
    from tqdm.auto import tqdm

    device = ddp.device_for(config.device)
    ddp.init_from_env(device)
    home = module_device(model)
    out_path = Path(out_dir) if out_dir is not None else None
    train_set = _as_dataset(train_set)
    n_train = len(train_set)
    if n_train < config.batch_size and config.drop_last:
        raise ValueError(
            f"the training set has {n_train} samples, fewer than one batch "
            f"(batch_size={config.batch_size}); lower batch_size or add data"
        )
    if config.batch_size % ddp.world_size():
        raise ValueError(
            f"batch_size={config.batch_size} must be divisible by the number of processes ({ddp.world_size()})"
        )
    eval_fn = eval_fn or (lambda m, b: _split_loss(loss_fn(m, b))[0])
    progress = sys.stderr.isatty() if config.progress is None else config.progress
    progress = progress and ddp.is_main()

    model.to(device)
    optimizer = optimizer or build_optimizer(
        config.optimizer, model.parameters(), config.lr, config.weight_decay, **dict(config.optimizer_kwargs)
    )
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    train_model: nn.Module = model
    if ddp.world_size() > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    steps_per_epoch = len(_epoch_batches(n_train, config, 0))
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    def lr_factor(at_step: int) -> float:
        return schedule_factor(
            config.schedule,
            at_step,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            warmup_steps=config.warmup_steps,
            min_ratio=config.min_lr_ratio,
        )

    log = _MetricsLog(out_path)
    step, epoch, skip = 0, 0, 0
    best, best_epoch, bad_epochs = None, None, 0
    best_weights: dict[str, torch.Tensor] | None = None
    loss_sum, loss_count = 0.0, 0  # running sums of the current epoch, checkpointed with it
    history: list[dict[str, Any]] = []
    last_ckpt = out_path / "last.safetensors" if out_path else None
    if out_path and ddp.is_main():
        out_path.mkdir(parents=True, exist_ok=True)
    if resume and last_ckpt is not None and last_ckpt.exists():
        state = load_checkpoint(last_ckpt)
        load_weights(model, state["model"], source=str(last_ckpt))
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and "cuda_rng" in state:  # dropout masks drawn on the GPU continue too
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        step, epoch, skip = state["step"], state["epoch"], state["batch_in_epoch"]
        best, best_epoch, bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
        loss_sum, loss_count = state["loss_sum"], state["loss_count"]
        history = log.truncate_after(step) if ddp.is_main() else []
        if best_epoch is not None and (out_path / "best.safetensors").exists():
            best_weights = load_checkpoint(out_path / "best.safetensors")["model"]
    else:
        seed_everything(config.seed)
        if out_path and ddp.is_main():
            (out_path / "metrics.jsonl").write_text("")
    if out_path and ddp.is_main():
        resolved = {
            "train": dataclasses.asdict(config),
            "run": dict(run_config or {}),
            "world_size": ddp.world_size(),
            "device": str(device),
            "torch": torch.__version__,
        }
        (out_path / "config.json").write_text(json.dumps(resolved, indent=2, default=str))

    def checkpoint(batch_in_epoch: int) -> None:
        if last_ckpt is None or not ddp.is_main():
            return
        save_checkpoint(
            last_ckpt,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state(),
                **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                "step": step,
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
                "best": best,
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "loss_sum": loss_sum,
                "loss_count": loss_count,
            },
        )

    val_loader = None
    if val_set is not None:
        val_loader = DataLoader(
            _as_dataset(val_set),
            batch_size=config.batch_size,
            shuffle=False,
            collate_fn=collate_fn,
            generator=torch.Generator(),
        )
    sign = 1.0 if config.monitor_mode == "min" else -1.0
    stopped_early = False
    train_model.train()
    factor = lr_factor(step)
    while epoch < config.epochs and step < total_steps and not stopped_early:
        batches = _epoch_batches(n_train, config, epoch)[skip:]
        bar = tqdm(
            _batches(train_set, batches, collate_fn),
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not progress,
            leave=False,
            total=len(batches),
        )
        batch_in_epoch = skip
        for batch in bar:
            if step >= total_steps:
                break
            factor = lr_factor(step)
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor
            loss, extras = _split_loss(loss_fn(train_model, move_to(batch, device)))
            if not torch.isfinite(loss.detach()).all():
                raise FloatingPointError(
                    f"non-finite loss {loss.item()} at step {step} (epoch {epoch + 1}, "
                    f"lr {base_lrs[0] * factor:.3g}); lower the learning rate or set grad_clip"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                _clip_gradients(model, config.grad_clip, per_parameter=config.grad_clip_per_parameter)
            optimizer.step()
            if after_step is not None:
                after_step(model, step)
            step += 1
            batch_in_epoch += 1
            loss_sum += float(loss.detach())
            loss_count += 1
            bar.set_postfix(loss=f"{loss.item():.4g}", lr=f"{base_lrs[0] * factor:.3g}", **extras)
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < total_steps:
                checkpoint(batch_in_epoch)
        bar.close()
        row: dict[str, Any] = {"epoch": epoch + 1, "step": step, "lr": base_lrs[0] * factor}
        row["train_loss"] = float(ddp.all_reduce_mean(torch.tensor(loss_sum / max(loss_count, 1))))
        if val_loader is not None:
            row.update(_evaluate(model, val_loader, eval_fn, device))
            if config.monitor not in row:
                raise ValueError(f"monitor={config.monitor!r} is not among the validation metrics {sorted(row)}")
            value = row[config.monitor]
            if best is None or sign * value < sign * best:
                best, best_epoch, bad_epochs = value, epoch + 1, 0
                best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if out_path and ddp.is_main():
                    save_checkpoint(
                        out_path / "best.safetensors",
                        {"model": model.state_dict(), "epoch": epoch + 1, config.monitor: value},
                    )
            else:
                bad_epochs += 1
                stopped_early = config.patience is not None and bad_epochs >= config.patience
        if not math.isfinite(row["train_loss"]):
            raise FloatingPointError(f"non-finite mean training loss in epoch {epoch + 1}")
        history.append(row)
        log.append(row)
        if progress:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
            tqdm.write(shown)
        if batch_in_epoch < steps_per_epoch:  # max_steps ended the run mid-epoch: a resume continues this epoch
            checkpoint(batch_in_epoch)
            break
        epoch, skip = epoch + 1, 0
        loss_sum, loss_count = 0.0, 0
        checkpoint(0)

    if config.restore_best and best_weights is not None:
        load_weights(model, best_weights, source="the best epoch's weights")
    model.to(home)
    return FitResult(
        steps=step,
        epochs_run=epoch,
        history=history,
        best=best,
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        out_dir=out_path,
    )
