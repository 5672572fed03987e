"""``Forecaster``: fit any registered forecasting model on a pandas DataFrame, predict, evaluate, save, load.

Two levels, as neuralforecast: the models take and return tensors; ``Forecaster`` takes and returns
DataFrames in the long format ``unique_id, ds, y`` (``wide_to_long`` converts ETTh1-style CSVs). Training
follows the official FEDformer recipe through ``damokit.engine.fit``: Adam, lr 1e-4, batch 32, at most 10
epochs, early stopping after 3 epochs without a strictly lower validation MSE, best weights restored.

The LR follows the official ``lradj='type1'`` (the engine's ``halve_per_epoch`` schedule).

Deviations from the official recipe:
- Validation MSE is the sample-weighted mean over all validation windows (official: the mean of per-batch
  means over shuffled, last-batch-dropped batches).

Example:
    >>> import pandas as pd
    >>> from damokit.data.timeseries import read_wide_csv, wide_to_long
    >>> from damokit.data import pack_path
    >>> df = wide_to_long(read_wide_csv(pack_path("forecasting/national_illness.csv")))
    >>> fc = Forecaster("dlinear", horizon=24, input_size=36, max_steps=20, lr=1e-2).fit(df)
    >>> fc.predict().shape  # 7 series x 24 steps
    (168, 3)
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from damokit import registry
from damokit.data.timeseries import (
    PAPER_DROP_LAST_TEST,
    PAPER_TEST_BATCH,
    PROTOCOLS,
    StandardScaler,
    WindowDataset,
    future_timestamps,
    kept_test_windows,
    long_to_wide,
    n_time_features,
    split_borders,
    time_features,
)
from damokit.engine import (
    CheckpointError,
    FitResult,
    TrainConfig,
    fit,
    load_checkpoint,
    load_weights,
    module_device,
    save_checkpoint,
)

__all__ = ["Forecaster", "ForecasterConfig", "forecast_loss", "evaluate_windows", "plot_forecast"]

_CHECKPOINT = "forecaster.safetensors"
_CONFIG = "config.json"


def forecast_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """MSE of the forecast against the last H rows of ``y`` (official training loss, standardised units).

    Shapes:
        batch: x (B, L, C), y (B, Lb + H, C), x_mark (B, L, d), y_mark (B, Lb + H, d)
    """
    x, y, x_mark, y_mark = batch
    pred = model(x, x_mark, y_mark)  # (B, H, c_out)
    return torch.mean((pred - y[:, -pred.shape[1] :, -pred.shape[2] :]) ** 2)


@torch.no_grad()
def evaluate_windows(
    model: nn.Module,
    windows: WindowDataset,
    *,
    drop_last_test: bool = PAPER_DROP_LAST_TEST,
    batch_size: int = PAPER_TEST_BATCH,
    chunk_size: int = 256,
) -> dict[str, float | int | bool]:
    """Test MSE/MAE over the windows, in standardised units, as the paper reports them.

    With ``drop_last_test`` (the paper's loader) only whole batches of ``batch_size`` count; the figure over all
    windows is returned beside it (``mse_all``, ``mae_all``). Forward passes run ``chunk_size`` windows at a
    time (the models treat samples independently in eval mode, so chunking does not change the forecasts).
    """
    was_training = model.training
    model.eval()
    x, y, x_mark, y_mark = windows.tensors()
    device = module_device(model)
    preds = []
    for start in range(0, len(x), chunk_size):
        s = slice(start, start + chunk_size)
        preds.append(model(x[s].to(device), x_mark[s].to(device), y_mark[s].to(device)).cpu())
    model.train(was_training)
    pred = torch.cat(preds)  # (W, H, c_out)
    err = pred.double() - y[:, -pred.shape[1] :, -pred.shape[2] :].double()
    kept = kept_test_windows(len(err), drop_last=drop_last_test, batch_size=batch_size)
    if kept == 0:
        raise ValueError(
            f"the test split has {len(err)} windows, fewer than one batch of {batch_size}; "
            "pass drop_last_test=False or use a longer test split"
        )
    return {
        "mse": float(err[:kept].pow(2).mean()),
        "mae": float(err[:kept].abs().mean()),
        "mse_all": float(err.pow(2).mean()),
        "mae_all": float(err.abs().mean()),
        "windows": kept,
        "windows_all": len(err),
        "drop_last_test": drop_last_test,
    }


@dataclass(frozen=True)
class ForecasterConfig:
    """Everything that defines a Forecaster (saved with it, compared on load)."""

    model: str
    """A registered model name, e.g. ``fedformer_fourier``, ``dlinear``, ``repeat_last``."""
    horizon: int
    """H: steps to forecast."""
    input_size: int
    """L: look-back window (the paper uses 96, 36 on ILI)."""
    label_len: int | None = None
    """Decoder warm-up Lb (default ``input_size // 2``)."""
    seed: int = 0
    features: str = "M"
    """``M``: all series jointly (multivariate); ``S``: only the series ``target``."""
    target: str = "OT"
    """The ``unique_id`` forecast with ``features='S'``."""
    freq: str = "h"
    """timeF frequency of the time features (the paper uses 'h' for every dataset)."""
    protocol: str = "custom"
    """Train/val/test split of ``fit``'s data when no ``val_df`` is given: ``custom`` 70/10/20 or ``ett_hour``."""
    lr: float = 1e-4
    batch_size: int = 32
    epochs: int = 10
    patience: int | None = 3
    max_steps: int | None = None
    """Cap on optimizer steps (None: epochs and early stopping decide)."""
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    """Extra architecture arguments for ``create_model`` as (name, value) pairs."""
    id_col: str = "unique_id"
    time_col: str = "ds"
    target_col: str = "y"

    @property
    def resolved_label_len(self) -> int:
        return self.input_size // 2 if self.label_len is None else self.label_len


class Forecaster:
    """Fit a registered forecasting model on long-format data and forecast in the input's units.

    Args:
        model: registered model name (``damokit list models``).
        horizon: H, steps to forecast.
        input_size: L, look-back window.
        label_len, seed, features, target, freq, protocol, lr, batch_size, epochs, patience, max_steps,
        id_col, time_col, target_col: see ``ForecasterConfig``.
        model_kwargs: architecture overrides passed to ``create_model``.
        progress: show progress bars (None: when stderr is a terminal).
        out_dir: where the engine writes metrics and checkpoints during ``fit`` (None: nowhere).
        device: where ``fit`` trains: ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
            The fitted model comes back to the CPU, where ``predict`` and ``evaluate`` run.

    Raises:
        ValueError: non-positive horizon/input_size, unknown features/protocol, a device torch does not know.
        damokit.registry.UnknownNameError: a model name that is not registered (close matches suggested).
    """

    def __init__(
        self,
        model: str,
        horizon: int,
        input_size: int,
        *,
        label_len: int | None = None,
        seed: int = 0,
        features: str = "M",
        target: str = "OT",
        freq: str = "h",
        protocol: str = "custom",
        lr: float = 1e-4,
        batch_size: int = 32,
        epochs: int = 10,
        patience: int | None = 3,
        max_steps: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        id_col: str = "unique_id",
        time_col: str = "ds",
        target_col: str = "y",
        progress: bool | None = None,
        out_dir: str | os.PathLike | None = None,
        device: str = "auto",
    ):
        for name, value in (("horizon", horizon), ("input_size", input_size)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}; e.g. {name}=96")
        if label_len is not None and not 0 <= label_len <= input_size:
            raise ValueError(f"label_len must be in [0, input_size={input_size}], got {label_len}")
        if features not in ("M", "S"):
            raise ValueError(f"features={features!r} is unknown; use 'M' (all series jointly) or 'S' (target only)")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol={protocol!r} is unknown; use one of {PROTOCOLS}")
        n_time_features(freq)  # raises on an unsupported freq
        if device != "auto":
            try:
                torch.device(device)
            except RuntimeError as error:
                hint = "use 'auto', 'cpu', 'cuda' or 'cuda:1'"
                raise ValueError(f"device={device!r} is not a torch device; {hint}") from error
        registry.get("model", model)  # raises UnknownNameError with close matches
        self.config = ForecasterConfig(
            model=model,
            horizon=int(horizon),
            input_size=int(input_size),
            label_len=label_len,
            seed=seed,
            features=features,
            target=target,
            freq=freq,
            protocol=protocol,
            lr=lr,
            batch_size=batch_size,
            epochs=epochs,
            patience=patience,
            max_steps=max_steps,
            model_kwargs=tuple(sorted((model_kwargs or {}).items())),
            id_col=id_col,
            time_col=time_col,
            target_col=target_col,
        )
        self.progress = progress
        self.out_dir = out_dir
        self.device = device
        self.model: nn.Module | None = None
        self.scaler: StandardScaler | None = None
        self.series: list[str] = []
        self.fit_result: FitResult | None = None
        self._context_dates: pd.DatetimeIndex | None = None
        self._context: np.ndarray | None = None  # (N, C) raw values of the end of the training data
        self._full: tuple[pd.DatetimeIndex, np.ndarray] | None = None  # fit's data, for evaluate()

    # ------------------------------------------------------------------------------------------------- data

    def _wide(self, df: pd.DataFrame, what: str) -> tuple[pd.DatetimeIndex, np.ndarray, list[str]]:
        """Long frame -> (dates, values (N, C), series) restricted to what the model forecasts."""
        cfg = self.config
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"{what} must be a pandas DataFrame in long format ({cfg.id_col}, {cfg.time_col}, ...)")
        dates, values, ids = long_to_wide(df, id_col=cfg.id_col, time_col=cfg.time_col, target_col=cfg.target_col)
        if cfg.features == "S":
            if cfg.target not in ids:
                raise ValueError(
                    f"{what}: features='S' forecasts series {cfg.target!r}, which is not among the "
                    f"{cfg.id_col} values {ids[:10]}; pass target=<one of them>"
                )
            keep = ids.index(cfg.target)
            values, ids = values[:, keep : keep + 1], [cfg.target]
        return dates, values, ids

    def _windows(self, dates: pd.DatetimeIndex, scaled: np.ndarray, start: int, end: int) -> WindowDataset:
        cfg = self.config
        return WindowDataset(
            scaled[start:end],
            time_features(dates[start:end], cfg.freq),
            input_size=cfg.input_size,
            label_len=cfg.resolved_label_len,
            horizon=cfg.horizon,
        )

    def _check_length(self, rows: int, what: str) -> None:
        need = self.config.input_size + self.config.horizon
        if rows < need:
            raise ValueError(
                f"{what} has {rows} time steps per series but one training window needs input_size + horizon = "
                f"{need} (short by {need - rows}); lower input_size or horizon, or pass a longer series"
            )

    def _build_model(self, channels: int) -> nn.Module:
        cfg = self.config
        torch.manual_seed(cfg.seed)  # construction-time randomness (weights, FEDformer's modes) from the seed
        return registry.create_model(
            cfg.model,
            input_size=cfg.input_size,
            horizon=cfg.horizon,
            label_len=cfg.resolved_label_len,
            enc_in=channels,
            c_out=channels,
            d_mark=n_time_features(cfg.freq),
            **dict(cfg.model_kwargs),
        )

    # -------------------------------------------------------------------------------------------------- API

    def fit(self, df: pd.DataFrame, val_df: pd.DataFrame | None = None) -> Forecaster:
        """Train on ``df`` (long format) and return ``self``.

        Without ``val_df``, ``df`` is split by ``protocol`` (official borders): training on the first part,
        early stopping on the validation part, and the test part held out for ``evaluate``. With ``val_df``,
        all of ``df`` trains and ``val_df`` (continuing ``df`` in time) validates.
        """
        cfg = self.config
        dates, values, ids = self._wide(df, "df")
        if val_df is None:
            borders = split_borders(len(values), cfg.input_size, cfg.protocol)
            for split in ("train", "val"):
                start, end = getattr(borders, split)
                self._check_length(end - max(start, 0), f"the {split} split of df ({cfg.protocol} protocol)")
            train_end = borders.train_rows
        else:
            v_dates, v_values, v_ids = self._wide(val_df, "val_df")
            if v_ids != ids:
                raise ValueError(f"val_df holds series {v_ids[:10]} but df holds {ids[:10]}; pass the same series")
            if v_dates[0] <= dates[-1]:
                raise ValueError(
                    f"val_df starts at {v_dates[0]}, not after df ends ({dates[-1]}); pass the period after df"
                )
            self._check_length(len(values), "df")
            train_end = len(values)
            dates = dates.append(v_dates)
            values = np.concatenate([values, v_values])
            borders = None
        self.scaler = StandardScaler().fit(values[:train_end])  # training rows only
        scaled = self.scaler.transform(values)
        train = self._windows(dates, scaled, 0, train_end)
        val_start, val_end = borders.val if borders else (train_end - cfg.input_size, len(values))
        val = self._windows(dates, scaled, val_start, val_end)
        if len(val) == 0:
            raise ValueError(
                f"val_df has {val_end - train_end} steps; validation needs at least horizon = {cfg.horizon}"
            )
        self.series = ids
        self.model = self._build_model(len(ids))
        n_params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        if n_params:
            train_cfg = TrainConfig(
                epochs=cfg.epochs,
                max_steps=cfg.max_steps,
                batch_size=min(cfg.batch_size, len(train)),
                lr=cfg.lr,
                optimizer="adam",
                schedule="halve_per_epoch",
                patience=cfg.patience,
                seed=cfg.seed,
                progress=self.progress,
                device=self.device,
            )
            self.fit_result = fit(
                self.model,
                train,
                loss_fn=forecast_loss,
                config=train_cfg,
                val_set=val,
                out_dir=self.out_dir,
                run_config=dataclasses.asdict(cfg),
            )
        self.model.eval()
        keep = max(cfg.input_size, 3)  # >= 3 steps to infer the frequency of future timestamps
        self._context_dates, self._context = dates[-keep:], values[-keep:]
        self._full = (dates, values)
        return self

    def _require_fitted(self) -> nn.Module:
        if self.model is None or self.scaler is None:
            raise RuntimeError("this Forecaster is not fitted; call fit(df) or Forecaster.load(path) first")
        return self.model

    def predict(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        """Forecast the ``horizon`` steps after the end of ``df`` (default: the end of ``fit``'s data).

        Returns:
            A long DataFrame ``unique_id, ds, <model name>`` in the input's units, ``ds`` continuing the series
            at its inferred frequency.
        """
        model = self._require_fitted()
        cfg = self.config
        if df is None:
            dates, values = self._context_dates, self._context
        else:
            dates, values, ids = self._wide(df, "df")
            if ids != self.series:
                raise ValueError(f"df holds series {ids[:10]} but the model was fitted on {self.series[:10]}")
            if len(values) < cfg.input_size:
                raise ValueError(
                    f"df has {len(values)} time steps but the model reads input_size = {cfg.input_size} "
                    f"(short by {cfg.input_size - len(values)}); pass a longer history"
                )
        future = future_timestamps(dates, cfg.horizon)
        x = torch.as_tensor(self.scaler.transform(values[-cfg.input_size :]), dtype=torch.float32)[None]
        lb = cfg.resolved_label_len
        decoder_dates = dates[len(dates) - lb :].append(future) if lb else future
        x_mark = torch.as_tensor(time_features(dates[-cfg.input_size :], cfg.freq))[None]
        y_mark = torch.as_tensor(time_features(decoder_dates, cfg.freq))[None]
        device = module_device(model)
        with torch.no_grad():
            pred = model.eval()(x.to(device), x_mark.to(device), y_mark.to(device))[0].cpu()  # (H, C)
        pred = self.scaler.inverse_transform(pred)
        return pd.DataFrame(
            {
                cfg.id_col: np.repeat(np.asarray(self.series, dtype=object), cfg.horizon),
                cfg.time_col: np.tile(future.to_numpy(), len(self.series)),
                cfg.model: pred.T.reshape(-1),
            }
        )

    def evaluate(
        self, df: pd.DataFrame | None = None, *, drop_last_test: bool = PAPER_DROP_LAST_TEST
    ) -> dict[str, float | int | bool]:
        """MSE/MAE on the standardised test split of ``df`` (default: ``fit``'s data), as the paper reports.

        The test split follows ``protocol``; ``drop_last_test`` (default: the paper's loader) keeps whole batches
        of 32 only, and the figures over all windows are returned beside (``mse_all``, ``mae_all``).
        """
        model = self._require_fitted()
        cfg = self.config
        if df is None:
            if self._full is None:
                raise ValueError("evaluate() needs df after Forecaster.load: pass the series to evaluate on")
            dates, values = self._full
        else:
            dates, values, ids = self._wide(df, "df")
            if ids != self.series:
                raise ValueError(f"df holds series {ids[:10]} but the model was fitted on {self.series[:10]}")
        start, end = split_borders(len(values), cfg.input_size, cfg.protocol).test
        self._check_length(end - max(start, 0), f"the test split ({cfg.protocol} protocol)")
        windows = self._windows(dates, self.scaler.transform(values), start, end)
        return evaluate_windows(model, windows, drop_last_test=drop_last_test)

    # ------------------------------------------------------------------------------------------ persistence

    def _config_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self.config)))

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``forecaster.safetensors`` (weights, scaler, context, config) and ``config.json`` into ``path``."""
        model = self._require_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = self._config_json()
        save_checkpoint(
            path / _CHECKPOINT,
            {
                "model": model.state_dict(),
                "scaler_mean": torch.as_tensor(self.scaler.mean),
                "scaler_scale": torch.as_tensor(self.scaler.scale),
                "context": torch.as_tensor(self._context),
                "context_ds": [str(t) for t in self._context_dates],
                "series": list(self.series),
                "config": config,
            },
        )
        (path / _CONFIG).write_text(json.dumps(config, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Forecaster:
        """Rebuild a saved Forecaster; predictions equal those before saving.

        Raises:
            FileNotFoundError: no checkpoint in ``path``.
            ValueError: ``config.json`` differs from the checkpoint's config, or the weights do not fit the model
                that config builds (the message lists missing, unexpected and mis-shaped keys).
        """
        path = Path(path)
        if not (path / _CHECKPOINT).is_file():
            raise FileNotFoundError(f"no {_CHECKPOINT} in {path}; pass a folder written by Forecaster.save")
        state = load_checkpoint(path / _CHECKPOINT)
        saved = state["config"]
        config_file = path / _CONFIG
        config = json.loads(config_file.read_text()) if config_file.is_file() else saved
        changed = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
        if changed:
            diffs = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs config.json {config.get(k)!r}" for k in changed)
            raise ValueError(
                f"{config_file} does not match the checkpoint it sits beside ({diffs}); restore config.json or "
                "train a new Forecaster with the new settings"
            )
        kwargs = {k: v for k, v in config.items() if k != "model_kwargs"}
        kwargs["model_kwargs"] = {k: v for k, v in config["model_kwargs"]}
        name, horizon, input_size = kwargs.pop("model"), kwargs.pop("horizon"), kwargs.pop("input_size")
        self = cls(name, horizon, input_size, **kwargs)
        self.series = list(state["series"])
        self.model = self._build_model(len(self.series))
        try:
            load_weights(self.model, state["model"], source=str(path / _CHECKPOINT))
        except CheckpointError as err:
            raise ValueError(f"{err}. The checkpoint was saved for another model configuration") from err
        self.model.eval()
        self.scaler = StandardScaler(state["scaler_mean"].numpy(), state["scaler_scale"].numpy())
        self._context = state["context"].numpy()
        self._context_dates = pd.DatetimeIndex(pd.to_datetime(state["context_ds"]))
        return self


def plot_forecast(
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    path: str | os.PathLike,
    *,
    truth: pd.DataFrame | None = None,
    series: str | None = None,
    id_col: str = "unique_id",
    time_col: str = "ds",
    target_col: str = "y",
    title: str = "",
) -> Path:
    """Save a PNG of one series: its recent history, the forecast and (if given) the true future.

    ``history`` and ``truth`` are long frames with ``target_col``; ``forecast`` is ``predict``'s output (every
    column beside the id and time is drawn as one forecast). ``series`` defaults to the last series.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state is touched

    series = series if series is not None else str(forecast[id_col].iloc[-1])
    past = history.loc[history[id_col].astype(str) == series]
    fut = forecast.loc[forecast[id_col].astype(str) == series]
    span = 4 * len(fut)
    fig = Figure(figsize=(9, 3.5))
    ax = fig.subplots()
    ax.plot(pd.to_datetime(past[time_col]).iloc[-span:], past[target_col].iloc[-span:], color="0.3", label="history")
    if truth is not None:
        true = truth.loc[truth[id_col].astype(str) == series]
        ax.plot(pd.to_datetime(true[time_col]), true[target_col], color="k", ls="--", label="truth")
    for col in [c for c in fut.columns if c not in (id_col, time_col)]:
        ax.plot(pd.to_datetime(fut[time_col]), fut[col], label=col)
    ax.set_title(title or f"series {series}")
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
