"""``damokit forecast train|eval|predict``: the Forecaster over wide CSV files (ETTh1 style: ``date`` + columns).

Examples:
    damokit forecast train --data ETTh1 --model dlinear --horizon 96 --input-size 96 --out runs/etth1
    damokit forecast eval --checkpoint runs/etth1 --data ETTh1
    damokit forecast predict --checkpoint runs/etth1 --data my.csv --output forecast.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("forecast", help="train, evaluate and run forecasting models on CSV files")
    sub = p.add_subparsers(dest="forecast_command", metavar="ACTION", required=True)

    def data_args(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--data",
            required=True,
            help="wide CSV (a date column plus one column per series) or a bundled name: ETTh1, ETTh2, "
            "exchange_rate, national_illness, WTH",
        )
        q.add_argument("--date-col", default="date", help="name of the timestamp column (default: date)")
        q.add_argument("--plot", type=Path, default=None, help="PNG of forecast vs truth (default: in the run folder)")

    t = sub.add_parser("train", help="fit a model, report test MSE/MAE, save it")
    data_args(t)
    t.add_argument("--model", required=True, help="registered model, e.g. fedformer_fourier, dlinear, repeat_last")
    t.add_argument("--horizon", type=int, required=True, help="steps to forecast (paper: 96/192/336/720; ILI 24-60)")
    t.add_argument("--input-size", type=int, required=True, help="look-back window (paper: 96; ILI 36)")
    t.add_argument("--label-len", type=int, default=None, help="decoder warm-up (default: input-size // 2)")
    t.add_argument("--features", choices=["M", "S"], default="M", help="M: all columns jointly; S: --target only")
    t.add_argument("--target", default="OT", help="column forecast with --features S (default: OT)")
    t.add_argument("--freq", default="h", help="time-feature frequency (paper: h for every dataset)")
    t.add_argument(
        "--protocol",
        choices=["auto", "custom", "ett_hour"],
        default="auto",
        help="split: ett_hour 12/4/4 months, custom 70/10/20 (auto: ett_hour for ETTh1/ETTh2)",
    )
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--patience", type=int, default=3, help="early-stopping epochs without val improvement")
    t.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps (quick runs)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, default=Path("runs/forecast"), help="folder for the checkpoint and plot")
    t.add_argument("--no-progress", action="store_true", help="hide progress bars")
    t.add_argument("--device", default="auto", help="where to train: auto (a GPU when there is one), cpu, cuda:1")
    t.add_argument("--all-test-windows", action="store_true", help=_ALL_WINDOWS_HELP)
    t.set_defaults(func=_train)

    e = sub.add_parser("eval", help="test MSE/MAE of a saved model on a CSV")
    data_args(e)
    e.add_argument("--checkpoint", type=Path, required=True, help="folder written by `forecast train`")
    e.add_argument("--all-test-windows", action="store_true", help=_ALL_WINDOWS_HELP)
    e.set_defaults(func=_eval)

    r = sub.add_parser("predict", help="forecast the steps after the end of a CSV")
    data_args(r)
    r.add_argument("--checkpoint", type=Path, required=True, help="folder written by `forecast train`")
    r.add_argument("--output", type=Path, default=None, help="CSV of the forecasts (default: print them)")
    r.set_defaults(func=_predict)

    g = sub.add_parser(
        "reproduce",
        help="run part of the FEDformer paper grid at paper sizes (full mode of `damokit reproduce fedformer`)",
    )
    g.add_argument(
        "--datasets", nargs="+", metavar="NAME",
        help="the grid's datasets: ETTh1 ETTh2 exchange_rate national_illness (aliases: Exchange, ILI)",
    )  # fmt: skip
    g.add_argument("--horizons", nargs="+", type=int, default=None, help="default: the paper's four per dataset")
    g.add_argument("--features", nargs="+", choices=["M", "S"], default=None, help="default: M")
    g.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 1 2")
    g.add_argument("--models", nargs="+", default=None, metavar="ROW", help="rows (default: all): FEDformer-f ...")
    g.add_argument(
        "--runs", nargs="+", metavar="KEY",
        help="instead of a grid, these runs, keyed as runs.jsonl keys them: 'DATASET|HORIZON|M or S|ROW|SEED', "
        "e.g. 'Exchange|720|M|FEDformer-f|2'; the report covers the settings, rows and seeds they span",
    )  # fmt: skip
    g.add_argument("--out", type=Path, required=True, help="report folder (report.md, results.json, plot)")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")
    g.add_argument("--report-only", action="store_true", help="train nothing: report the runs --out has logged")
    g.add_argument(
        "--jobs", type=int, default=1,
        help="runs trained at once in worker processes (default 1); they split the cores and take the GPUs in turn",
    )  # fmt: skip
    g.set_defaults(func=_reproduce)


_ALL_WINDOWS_HELP = (
    "headline figure over every test window (default: the paper's loader, which drops the last partial batch "
    "of 32; both figures are printed)"
)


def _load(args: argparse.Namespace):
    """(long frame, protocol of a bundled benchmark or None) for ``--data``."""
    from damokit.data import pack_path
    from damokit.data.timeseries import BENCHMARKS, read_wide_csv, wide_to_long

    path = Path(args.data)
    if not path.exists() and args.data in BENCHMARKS:
        relpath, protocol = BENCHMARKS[args.data]
        path = pack_path(relpath)
    else:
        protocol = BENCHMARKS.get(path.stem, (None, None))[1]
    return wide_to_long(read_wide_csv(path, date_col=args.date_col), date_col=args.date_col), protocol


def _metrics_table(metrics: dict, headline_all: bool) -> str:
    rows = [
        ("test, whole batches of 32 (paper)", metrics["windows"], metrics["mse"], metrics["mae"]),
        ("test, all windows", metrics["windows_all"], metrics["mse_all"], metrics["mae_all"]),
    ]
    if headline_all:
        rows.reverse()
    lines = [f"{'split (standardised units)':<36} {'windows':>8} {'MSE':>9} {'MAE':>9}"]
    lines += [f"{name:<36} {n:>8d} {mse:>9.4f} {mae:>9.4f}" for name, n, mse, mae in rows]
    return "\n".join(lines)


def _plot_last_window(fc, df, path: Path, title: str) -> Path:
    """Forecast the last ``horizon`` steps of ``df`` from what precedes them and plot against the truth."""
    from damokit.forecasting.forecaster import plot_forecast

    cfg = fc.config
    dates = sorted(df[cfg.time_col].unique())
    cut = dates[-cfg.horizon]
    history, truth = df[df[cfg.time_col] < cut], df[df[cfg.time_col] >= cut]
    return plot_forecast(history, fc.predict(history), path, truth=truth, title=title)


def _report(fc, df, args, out_dir: Path) -> None:
    metrics = fc.evaluate(df, drop_last_test=True)  # returns the all-windows figures beside
    print(_metrics_table(metrics, args.all_test_windows))
    plot = _plot_last_window(fc, df, args.plot or out_dir / "forecast.png", f"{fc.config.model}: last window")
    print(f"plot: {plot}")


def _train(args: argparse.Namespace) -> int:
    from damokit.forecasting.forecaster import Forecaster

    df, bundled_protocol = _load(args)
    protocol = args.protocol if args.protocol != "auto" else (bundled_protocol or "custom")
    fc = Forecaster(
        args.model,
        args.horizon,
        args.input_size,
        label_len=args.label_len,
        seed=args.seed,
        features=args.features,
        target=args.target,
        freq=args.freq,
        protocol=protocol,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience,
        max_steps=args.max_steps,
        id_col="unique_id",
        progress=not args.no_progress,
        out_dir=args.out / "train",
        device=args.device,
    )
    fc.fit(df)
    fc.save(args.out)
    result = fc.fit_result
    if result is not None:
        print(f"trained {args.model}: {result.steps} steps, {result.epochs_run} epochs, best val MSE {result.best:.4f}")
    _report(fc, df, args, args.out)
    print(f"saved: {args.out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from damokit.forecasting.forecaster import Forecaster

    fc = Forecaster.load(args.checkpoint)
    df, _ = _load(args)
    _report(fc, df, args, args.checkpoint)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from damokit.forecasting.forecaster import Forecaster, plot_forecast

    fc = Forecaster.load(args.checkpoint)
    df, _ = _load(args)
    out = fc.predict(df)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(args.output, index=False)
        print(f"forecasts: {args.output} ({len(out)} rows)")
    else:
        print(out.to_string(index=False, max_rows=40))
    plot = plot_forecast(df, out, args.plot or args.checkpoint / "predict.png", title=f"{fc.config.model} forecast")
    print(f"plot: {plot}")
    return 0


_DATASET_ALIASES = {"exchange": "exchange_rate", "ili": "national_illness", "illness": "national_illness"}


def _settings(dataset: str, horizons: list[int] | None, features: list[str]) -> list:
    """The reproduction settings of ``dataset`` (or an alias) at paper ``horizons`` (None: all four)."""
    from damokit.errors import DamokitError
    from damokit.reproduce import fedformer

    name = _DATASET_ALIASES.get(dataset.lower(), dataset)
    if name not in fedformer.DATASETS:
        known = ", ".join(fedformer.DATASETS)
        raise DamokitError(f"unknown dataset {name!r}; choose from {known} (or Exchange, ILI)")
    paper_horizons = fedformer.DATASETS[name][1]
    for h in horizons or ():
        if h not in paper_horizons:
            raise DamokitError(f"{name} has no paper horizon {h}; the paper's are {list(paper_horizons)}")
    return [fedformer.Setting(name, h, f) for h in horizons or paper_horizons for f in features]


def _check_row(row: str) -> None:
    from damokit.errors import DamokitError
    from damokit.reproduce import fedformer

    if row not in fedformer.MODELS:
        raise DamokitError(f"unknown table row {row!r}; choose from {', '.join(fedformer.MODELS)}")


def _parse_runs(keys: list[str]):
    """Settings, rows, seeds and run keys of ``--runs`` 'DATASET|HORIZON|FEATURES|ROW|SEED' keys."""
    from damokit.errors import DamokitError
    from damokit.reproduce import fedformer

    settings, rows, seeds, only = [], set(), set(), []
    for key in keys:
        parts = key.split("|")
        if len(parts) != 5 or not parts[1].isdigit() or not parts[4].isdigit() or parts[2] not in ("M", "S"):
            expected = "expected 'DATASET|HORIZON|M or S|ROW|SEED', e.g. 'ILI|24|M|FEDformer-f|0'"
            raise DamokitError(f"--runs {key!r}: {expected}")
        dataset, horizon, features, row, seed = parts
        (setting,) = _settings(dataset, [int(horizon)], [features])
        _check_row(row)
        settings.append(setting)
        rows.add(row)
        seeds.add(int(seed))
        only.append(fedformer._run_key(setting, row, int(seed)))  # runs.jsonl's own key format
    return settings, [r for r in fedformer.MODELS if r in rows], sorted(seeds), only


def _reproduce(args: argparse.Namespace) -> int:
    from damokit.errors import DamokitError
    from damokit.reproduce import fedformer
    from damokit.reproduce.runner import format_table, write_report

    if args.jobs < 1:
        raise DamokitError(f"--jobs must be >= 1, got {args.jobs}")
    grid_flags = [flag for flag in ("datasets", "horizons", "features", "seeds", "models") if getattr(args, flag)]
    if args.runs and grid_flags:
        raise DamokitError(f"--runs names whole runs: drop --{', --'.join(grid_flags)}")
    if args.runs:
        settings, models, seeds, only = _parse_runs(args.runs)
    elif args.datasets:
        for row in args.models or ():
            _check_row(row)
        features = args.features or ["M"]
        settings = [s for name in args.datasets for s in _settings(name, args.horizons, features)]
        models, seeds, only = args.models or list(fedformer.MODELS), args.seeds or [0, 1, 2], None
    else:
        raise DamokitError("say what to run: --datasets (a grid; --horizons/--features/--seeds/--models) or --runs")
    result = fedformer.run_grid(
        list(dict.fromkeys(settings)),
        quick=False,
        out_dir=args.out,
        seeds=tuple(seeds),
        models=tuple(models),
        progress=not args.no_progress,
        report_only=args.report_only,
        jobs=args.jobs,
        only=only,
    )
    print(format_table([result]))
    print(f"report: {write_report([result], args.out)}")
    return 0
