"""Benchmark time series for long-horizon forecasting: CSV loading, splits, scaling, timeF features, windows.

Follows the data pipeline of the FEDformer/Autoformer official code (``data_provider/data_loader.py``,
``utils/timefeatures.py`` of MAZiqing/FEDformer), which produced the published tables:

- ETT hourly files use fixed borders of 12/4/4 "months" of 30 days (``ETT_HOUR_*`` constants); the rows after
  20 months are never used. Other ("custom") files use 70/10/20 with the target column moved last.
- Windows of a split may start before it, so that every *target* lies in the split (``split_borders``).
- A StandardScaler (population std) is fitted on the training rows only and applied to the whole file.
- ``timeF`` calendar features are scaled to [-0.5, 0.5]; which ones depends on ``freq`` (``time_features``).
- The paper's test loader drops the last partial batch of 32 (``PAPER_DROP_LAST_TEST``): the numbers of FEDformer
  and its contemporaries were computed that way, and the naive repeat forecast reproduces the DLinear paper's
  *Repeat* column exactly only with it. ``kept_test_windows`` applies it explicitly; report which one was used.

Deviations: timestamps must parse, be unique and sorted, and values must be finite numbers (the official
loader silently accepts anything pandas reads). Yearly data (``freq='a'``) is refused: the official code gives
it zero timeF features while its embedding expects one.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from damokit.data.packs import pack_path

__all__ = [
    "ETT_HOUR_MONTH",
    "ETT_HOUR_TRAIN_END",
    "ETT_HOUR_VAL_END",
    "ETT_HOUR_TEST_END",
    "CUSTOM_TRAIN_FRACTION",
    "CUSTOM_TEST_FRACTION",
    "PAPER_TEST_BATCH",
    "PAPER_DROP_LAST_TEST",
    "BENCHMARKS",
    "Borders",
    "StandardScaler",
    "WindowDataset",
    "SeriesData",
    "read_wide_csv",
    "validate_wide",
    "split_borders",
    "time_features",
    "n_time_features",
    "kept_test_windows",
    "load_series",
    "wide_to_long",
    "long_to_wide",
    "infer_step",
    "future_timestamps",
]

# ETT hourly borders (official Dataset_ETT_hour): a "month" is 30 days of hourly rows.
ETT_HOUR_MONTH = 30 * 24
ETT_HOUR_TRAIN_END = 12 * ETT_HOUR_MONTH  # 8640: months 0-12 train
ETT_HOUR_VAL_END = ETT_HOUR_TRAIN_END + 4 * ETT_HOUR_MONTH  # 11520: months 12-16 validation
ETT_HOUR_TEST_END = ETT_HOUR_VAL_END + 4 * ETT_HOUR_MONTH  # 14400: months 16-20 test; later rows unused

# "custom" protocol (official Dataset_Custom): int(0.7 n) train rows, int(0.2 n) test rows, the rest validation.
CUSTOM_TRAIN_FRACTION = 0.7
CUSTOM_TEST_FRACTION = 0.2

# The official test DataLoader: batch 32, drop_last=True (up to 31 test windows are skipped).
PAPER_TEST_BATCH = 32
PAPER_DROP_LAST_TEST = True

# Bundled benchmark files: name -> (pack path, split protocol).
BENCHMARKS: dict[str, tuple[str, str]] = {
    "ETTh1": ("forecasting/ETTh1.csv", "ett_hour"),
    "ETTh2": ("forecasting/ETTh2.csv", "ett_hour"),
    "exchange_rate": ("forecasting/exchange_rate.csv", "custom"),
    "national_illness": ("forecasting/national_illness.csv", "custom"),
    "WTH": ("forecasting/WTH.csv", "custom"),
}
PROTOCOLS = ("ett_hour", "custom")
FEATURE_MODES = ("M", "S")


# ---------------------------------------------------------------------------------------------------------
# Time features (official utils/timefeatures.py, timeenc=1): each calendar field scaled into [-0.5, 0.5].

_CALENDAR = {
    "second": lambda i: i.second / 59.0 - 0.5,
    "minute": lambda i: i.minute / 59.0 - 0.5,
    "hour": lambda i: i.hour / 23.0 - 0.5,
    "dayofweek": lambda i: i.day_of_week / 6.0 - 0.5,
    "dayofmonth": lambda i: (i.day - 1) / 30.0 - 0.5,
    "dayofyear": lambda i: (i.day_of_year - 1) / 365.0 - 0.5,
    "month": lambda i: (i.month - 1) / 11.0 - 0.5,
    "weekofyear": lambda i: (i.isocalendar().week.to_numpy() - 1) / 52.0 - 0.5,
}
# Which fields each frequency gets, in the official order (features_by_offsets).
_FEATURES_BY_FREQ = {
    "s": ("second", "minute", "hour", "dayofweek", "dayofmonth", "dayofyear"),
    "t": ("minute", "hour", "dayofweek", "dayofmonth", "dayofyear"),
    "h": ("hour", "dayofweek", "dayofmonth", "dayofyear"),
    "d": ("dayofweek", "dayofmonth", "dayofyear"),
    "b": ("dayofweek", "dayofmonth", "dayofyear"),
    "w": ("dayofmonth", "weekofyear"),
    "m": ("month",),
    "q": ("month",),
}
_FREQ_ALIASES = {"min": "t", "ms": "m", "me": "m", "qs": "q", "qe": "q"}


def _freq_key(freq: str) -> str:
    """'h', '15min', 'T', 'D', 'W-TUE', 'ME' -> a key of ``_FEATURES_BY_FREQ``."""
    base = str(freq).lstrip("0123456789").split("-")[0].lower()
    key = _FREQ_ALIASES.get(base, base)
    if key not in _FEATURES_BY_FREQ:
        raise ValueError(
            f"freq={freq!r} is not supported for timeF features; use one of "
            f"{sorted(_FEATURES_BY_FREQ)} (with an optional multiple such as '15min'); the paper uses 'h' everywhere"
        )
    return key


def n_time_features(freq: str) -> int:
    """Number of timeF columns for ``freq`` (h: 4, t: 5, s: 6, d/b: 3, w: 2, m/q: 1): the models' ``d_mark``."""
    return len(_FEATURES_BY_FREQ[_freq_key(freq)])


def time_features(dates: Sequence | pd.DatetimeIndex, freq: str = "h") -> np.ndarray:
    """Calendar features of ``dates`` as the official ``time_features(..., freq)``, transposed to rows.

    Example: 2016-07-01 00:00 (a Friday, day 183 of a leap year) with ``freq='h'`` gives
    ``[0/23 - .5, 4/6 - .5, 0/30 - .5, 182/365 - .5]``.

    Shapes:
        dates: (N,) -> (N, n_time_features(freq)), float32, values in [-0.5, 0.5]
    """
    index = pd.DatetimeIndex(dates)
    fields = _FEATURES_BY_FREQ[_freq_key(freq)]
    cols = [np.asarray(_CALENDAR[name](index), dtype=np.float64) for name in fields]
    return np.stack(cols, axis=1).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Validation and loading


def _first_bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_timestamps(dates: pd.Series, where: str) -> pd.DatetimeIndex:
    """Parse ``dates`` and require them unique and ascending; return the parsed index."""
    try:
        index = pd.DatetimeIndex(pd.to_datetime(dates))
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{where}: the timestamp column {dates.name!r} does not parse as dates ({err}); "
            "fix the values or pass the right column as the time column"
        ) from err
    if index.isna().any():
        row = _first_bad_row(np.asarray(index.isna()))
        raise ValueError(f"{where}: timestamp column {dates.name!r} is empty at row {row}; fill or drop that row")
    if index.has_duplicates:
        first = index[index.duplicated()][0]
        raise ValueError(
            f"{where}: timestamp {first} appears more than once in {dates.name!r}; "
            "drop the duplicate rows or aggregate them before forecasting"
        )
    values = index.asi8
    back = np.zeros(len(values), dtype=bool)
    back[1:] = values[1:] < values[:-1]
    if back.any():
        row = _first_bad_row(back)
        raise ValueError(
            f"{where}: timestamps in {dates.name!r} are not sorted ascending (row {row}: {index[row]} comes after "
            f"{index[row - 1]}); sort the rows by time first"
        )
    return index


def _check_values(frame: pd.DataFrame, where: str) -> np.ndarray:
    """Require numeric, finite values; return them as a float64 array (N, C)."""
    for col in frame.columns:
        series = frame[col]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            numeric = pd.to_numeric(series, errors="coerce")
            bad = numeric.isna() & series.notna()
            row = _first_bad_row(bad.to_numpy()) if bad.any() else 0
            raise ValueError(
                f"{where}: column {col!r} holds non-numeric values (first at row {row}: {series.iloc[row]!r}); "
                "convert it to numbers or leave it out of the value columns"
            )
    values = frame.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise ValueError(
            f"{where}: column {frame.columns[cols[0]]!r} has {int(bad[:, cols[0]].sum())} NaN/inf value(s) "
            f"(first at row {rows[0]}); {int(bad.sum())} in all. Fill (e.g. interpolate) or drop them first"
        )
    return values


def validate_wide(
    df: pd.DataFrame, *, date_col: str = "date", value_cols: Sequence[str] | None = None, where: str = "data"
) -> tuple[pd.DatetimeIndex, np.ndarray, list[str]]:
    """Check a wide frame (one timestamp column, one column per variable) and return its parts.

    Returns:
        (timestamps, values (N, C) float64, value column names)

    Raises:
        ValueError: missing columns, unparseable/duplicated/unsorted timestamps, non-numeric or non-finite values.
    """
    if date_col not in df.columns:
        raise ValueError(
            f"{where}: no timestamp column {date_col!r}; columns are {list(df.columns)[:12]}. "
            "Pass date_col=<name of the column holding the dates>"
        )
    cols = [c for c in df.columns if c != date_col] if value_cols is None else list(value_cols)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: value column(s) {missing} not found; columns are {list(df.columns)[:12]}")
    if not cols:
        raise ValueError(f"{where}: no value columns beside {date_col!r}; add at least one numeric column")
    index = _check_timestamps(df[date_col], where)
    values = _check_values(df[cols], where)
    return index, values, [str(c) for c in cols]


def read_wide_csv(path: str | os.PathLike, *, date_col: str = "date") -> pd.DataFrame:
    """Read a wide benchmark CSV (``date`` plus one column per variable); raises on a missing file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"CSV file {path} does not exist; pass the path of a wide CSV with a {date_col!r} column"
        )
    return pd.read_csv(path)


# ---------------------------------------------------------------------------------------------------------
# Splits, scaling, windows


@dataclass(frozen=True)
class Borders:
    """Row ranges ``[start, end)`` of each split; ``start`` reaches ``input_size`` rows back (official b1/b2)."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]

    @property
    def train_rows(self) -> int:
        """Rows the scaler is fitted on (the training targets)."""
        return self.train[1]


def split_borders(n_rows: int, input_size: int, protocol: str = "custom") -> Borders:
    """Official border arithmetic for ``n_rows`` rows.

    ``ett_hour``: targets in rows [0, 8640), [8640, 11520), [11520, 14400). ``custom``: 70/10/20 with
    ``n_train = int(0.7 n)``, ``n_test = int(0.2 n)``. Val and test windows start ``input_size`` rows before
    their split, so the test targets do not depend on ``input_size``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r} is unknown; use one of {PROTOCOLS}")
    if protocol == "ett_hour":
        if n_rows < ETT_HOUR_TEST_END:
            raise ValueError(
                f"the ett_hour protocol needs {ETT_HOUR_TEST_END} hourly rows (20 months of 30 days); the data has "
                f"{n_rows} (short by {ETT_HOUR_TEST_END - n_rows}). Use protocol='custom' for other files"
            )
        ends = (ETT_HOUR_TRAIN_END, ETT_HOUR_VAL_END, ETT_HOUR_TEST_END)
    else:
        n_train = int(n_rows * CUSTOM_TRAIN_FRACTION)
        n_test = int(n_rows * CUSTOM_TEST_FRACTION)
        ends = (n_train, n_rows - n_test, n_rows)
    return Borders(
        train=(0, ends[0]),
        val=(ends[0] - input_size, ends[1]),
        test=(ends[1] - input_size, ends[2]),
    )


class StandardScaler:
    """Per-column standardisation with the population std, as sklearn's (a zero std is replaced by 1)."""

    def __init__(self, mean: np.ndarray | None = None, scale: np.ndarray | None = None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float64)

    def fit(self, values: np.ndarray) -> StandardScaler:
        """Fit on ``values`` (N, C): the training rows only."""
        values = np.asarray(values, dtype=np.float64)
        self.mean = values.mean(axis=0)
        std = values.std(axis=0)
        self.scale = np.where(std < 10 * np.finfo(np.float64).eps, 1.0, std)
        return self

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.scale is None:
            raise RuntimeError("StandardScaler is not fitted; call fit(train_values) first")
        return self.mean, self.scale

    def transform(self, values: np.ndarray) -> np.ndarray:
        mean, scale = self._fitted()
        return (np.asarray(values, dtype=np.float64) - mean) / scale

    def inverse_transform(self, values: np.ndarray | torch.Tensor) -> np.ndarray:
        """Back to the input's units; the last axis is the column axis."""
        mean, scale = self._fitted()
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().double().numpy()
        return np.asarray(values, dtype=np.float64) * scale + mean


class WindowDataset(Dataset):
    """Sliding windows over one split, as the official ``__getitem__``.

    Sample ``i``: ``x = data[i : i+L]``, ``y = data[i+L-Lb : i+L+H]`` (its first ``Lb`` rows repeat the end of
    ``x``), and the matching rows of the time features.

    Shapes:
        data: (N, C), marks: (N, d) -> x (L, C), y (Lb + H, C), x_mark (L, d), y_mark (Lb + H, d)
    """

    def __init__(self, data: np.ndarray, marks: np.ndarray, *, input_size: int, label_len: int, horizon: int):
        if len(data) != len(marks):
            raise ValueError(f"data has {len(data)} rows but marks has {len(marks)}; they must align")
        self.data = torch.as_tensor(np.asarray(data, dtype=np.float32))
        self.marks = torch.as_tensor(np.asarray(marks, dtype=np.float32))
        self.input_size, self.label_len, self.horizon = input_size, label_len, horizon

    def __len__(self) -> int:
        return max(0, len(self.data) - self.input_size - self.horizon + 1)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} out of range for {len(self)} windows")
        s_end = i + self.input_size
        r_begin = s_end - self.label_len
        r_end = s_end + self.horizon
        return self.data[i:s_end], self.data[r_begin:r_end], self.marks[i:s_end], self.marks[r_begin:r_end]

    def tensors(self, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first ``count`` windows (default all) stacked in one go, without a Python loop over windows.

        Shapes:
            -> x (W, L, C), y (W, Lb + H, C), x_mark (W, L, d), y_mark (W, Lb + H, d)
        """
        n = len(self) if count is None else min(count, len(self))
        span = self.input_size + self.horizon
        start = self.input_size - self.label_len

        def windows(t: torch.Tensor) -> torch.Tensor:
            # (N, C) -> (N - span + 1, C, span) -> (n, span, C)
            return t.unfold(0, span, 1)[:n].transpose(1, 2)

        full, marks = windows(self.data), windows(self.marks)
        return full[:, : self.input_size], full[:, start:], marks[:, : self.input_size], marks[:, start:]


def kept_test_windows(n_windows: int, *, drop_last: bool = PAPER_DROP_LAST_TEST, batch_size: int = PAPER_TEST_BATCH):
    """Test windows the paper's loader keeps: all, or whole batches of 32 only (``drop_last``)."""
    return (n_windows // batch_size) * batch_size if drop_last else n_windows


@dataclass
class SeriesData:
    """A benchmark file after the official pipeline: scaled values, features, borders and the three splits."""

    name: str
    columns: list[str]
    dates: pd.DatetimeIndex
    raw: np.ndarray
    """(N, C) values in the file's units, float64."""
    scaled: np.ndarray
    """(N, C) standardised with the training rows' statistics, float64."""
    marks: np.ndarray
    """(N, d) timeF features, float32."""
    scaler: StandardScaler
    borders: Borders
    input_size: int
    label_len: int
    horizon: int
    freq: str

    def split(self, name: str) -> WindowDataset:
        """Windows of ``train``, ``val`` or ``test`` on the scaled values."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split={name!r} is unknown; use 'train', 'val' or 'test'")
        start, end = getattr(self.borders, name)
        return WindowDataset(
            self.scaled[start:end],
            self.marks[start:end],
            input_size=self.input_size,
            label_len=self.label_len,
            horizon=self.horizon,
        )


def _check_sizes(input_size: int, horizon: int, label_len: int) -> None:
    for name, value in (("input_size", input_size), ("horizon", horizon)):
        if not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}; e.g. {name}=96")
    if not isinstance(label_len, (int, np.integer)) or not 0 <= label_len <= input_size:
        raise ValueError(
            f"label_len must be an integer in [0, input_size={input_size}], got {label_len!r}; "
            "the default is input_size // 2"
        )


def load_series(
    source: str | os.PathLike | pd.DataFrame,
    *,
    input_size: int,
    horizon: int,
    label_len: int | None = None,
    features: str = "M",
    target: str = "OT",
    freq: str = "h",
    protocol: str | None = None,
    date_col: str = "date",
    scale: bool = True,
) -> SeriesData:
    """Load a wide series (a bundled benchmark name, a CSV path or a DataFrame) with the official pipeline.

    Args:
        source: ``"ETTh1"``, ``"ETTh2"``, ``"exchange_rate"``, ``"national_illness"``, ``"WTH"`` (bundled, from
            ``pack_path``), a CSV path, or a wide DataFrame.
        input_size: L (official ``seq_len``).
        horizon: H (official ``pred_len``).
        label_len: decoder warm-up length Lb (default ``input_size // 2``).
        features: ``"M"`` all columns (multivariate) or ``"S"`` the ``target`` column only.
        target: the univariate target; in the ``custom`` protocol it is moved to the last column.
        freq: timeF frequency code; the paper passes ``'h'`` for every dataset.
        protocol: ``"ett_hour"`` or ``"custom"`` (default: the benchmark's own, else ``"custom"``).
        scale: standardise with the training rows' statistics (the paper always does).

    Raises:
        ValueError: bad sizes, columns or values, or a split too short for one window.

    Example:
        >>> data = load_series("national_illness", input_size=36, horizon=24)
        >>> len(data.split("train")), len(data.split("val")), len(data.split("test"))
        (617, 74, 170)
    """
    label_len = input_size // 2 if label_len is None and isinstance(input_size, int) else label_len
    _check_sizes(input_size, horizon, label_len)
    if features not in FEATURE_MODES:
        raise ValueError(f"features={features!r} is unknown; use 'M' (all columns) or 'S' (the target only)")
    if isinstance(source, pd.DataFrame):
        name, df = "data", source
    elif str(source) in BENCHMARKS:
        name = str(source)
        relpath, default_protocol = BENCHMARKS[name]
        protocol = protocol or default_protocol
        df = read_wide_csv(pack_path(relpath), date_col=date_col)
    else:
        name, df = Path(source).stem, read_wide_csv(source, date_col=date_col)
    protocol = protocol or "custom"
    where = f"{name}"
    if date_col not in df.columns:
        validate_wide(df, date_col=date_col, where=where)  # raises the missing-column error
    if target not in df.columns:
        raise ValueError(
            f"{where}: target column {target!r} not found; columns are {list(df.columns)[:12]}. "
            "Pass target=<name of the column to forecast>"
        )
    others = [c for c in df.columns if c not in (date_col, target)]
    if protocol == "custom":
        # official Dataset_Custom: reorder to date, <others in file order>, target
        cols = others + [target] if features == "M" else [target]
    else:
        # official Dataset_ETT_hour keeps the file order
        cols = [c for c in df.columns if c != date_col] if features == "M" else [target]
    dates, raw, cols = validate_wide(df, date_col=date_col, value_cols=cols, where=where)
    borders = split_borders(len(raw), input_size, protocol)
    span = input_size + horizon
    for split in ("train", "val", "test"):
        start, end = getattr(borders, split)
        if end - max(start, 0) < span or start < 0:
            have = end - max(start, 0)
            raise ValueError(
                f"{where}: the {split} split has {have} rows but one window needs input_size + horizon = {span} "
                f"(short by {span - have}); lower input_size or horizon, or use a longer series"
            )
    if scale:
        scaler = StandardScaler().fit(raw[: borders.train_rows])  # training rows only
    else:
        scaler = StandardScaler(np.zeros(raw.shape[1]), np.ones(raw.shape[1]))
    return SeriesData(
        name=name,
        columns=cols,
        dates=dates,
        raw=raw,
        scaled=scaler.transform(raw),
        marks=time_features(dates, freq),
        scaler=scaler,
        borders=borders,
        input_size=input_size,
        label_len=label_len,
        horizon=horizon,
        freq=freq,
    )


# ---------------------------------------------------------------------------------------------------------
# Long <-> wide and future timestamps


def wide_to_long(df: pd.DataFrame, *, date_col: str = "date", value_cols: Sequence[str] | None = None) -> pd.DataFrame:
    """ETTh1-style wide frame -> long ``unique_id, ds, y`` (one series per value column, in column order).

    Example:
        >>> wide = pd.DataFrame({"date": pd.date_range("2020", periods=2, freq="h"), "a": [1.0, 2.0], "b": [3.0, 4.0]})
        >>> wide_to_long(wide)["unique_id"].tolist()
        ['a', 'a', 'b', 'b']
    """
    dates, values, cols = validate_wide(df, date_col=date_col, value_cols=value_cols, where="wide data")
    n, c = values.shape
    return pd.DataFrame(
        {
            "unique_id": np.repeat(np.asarray(cols, dtype=object), n),
            "ds": np.tile(dates.to_numpy(), c),
            "y": values.T.reshape(-1),
        }
    )


def long_to_wide(
    df: pd.DataFrame, *, id_col: str = "unique_id", time_col: str = "ds", target_col: str = "y"
) -> tuple[pd.DatetimeIndex, np.ndarray, list[str]]:
    """Long frame -> (timestamps, values (N, C), series ids), requiring every series on the same timestamps.

    Series keep their order of first appearance. Raises ValueError naming the missing column, a non-numeric
    or non-finite value, an unsorted or duplicated timestamp within a series, or misaligned series.
    """
    for role, col in (("id_col", id_col), ("time_col", time_col), ("target_col", target_col)):
        if col not in df.columns:
            raise ValueError(
                f"long data: no column {col!r} ({role}); columns are {list(df.columns)[:12]}. "
                f"Rename it or pass {role}=<column name>"
            )
    if df.empty:
        raise ValueError("long data: the frame has no rows; pass at least input_size + horizon rows per series")
    ids = list(pd.unique(df[id_col]))
    first_dates = None
    columns = []
    for uid in ids:
        part = df.loc[df[id_col] == uid]
        where = f"series {uid!r}"
        dates = _check_timestamps(part[time_col].reset_index(drop=True), where)
        values = _check_values(part[[target_col]].reset_index(drop=True), where)
        if first_dates is None:
            first_dates = dates
        elif len(dates) != len(first_dates) or not (dates == first_dates).all():
            raise ValueError(
                f"long data: series {uid!r} has {len(dates)} timestamps that differ from those of series {ids[0]!r} "
                f"({len(first_dates)}); a multivariate model needs every series on the same timestamps "
                "(align them, or forecast them separately with features='S')"
            )
        columns.append(values[:, 0])
    return first_dates, np.stack(columns, axis=1), [str(u) for u in ids]


def infer_step(dates: pd.DatetimeIndex) -> pd.Timedelta | pd.DateOffset:
    """The series' step: a fixed Timedelta when every gap is equal, else a calendar offset (monthly, ...)."""
    if len(dates) < 2:
        raise ValueError("cannot infer the time step from fewer than 2 timestamps; pass a longer series")
    gaps = np.diff(dates.to_numpy())  # timedelta64, whatever the index's resolution
    if (gaps == gaps[0]).all():
        return pd.Timedelta(gaps[0])
    option = "future.infer_freq_returns_offset"
    ctx = contextlib.nullcontext()
    with contextlib.suppress(KeyError, pd.errors.OptionError):
        pd.get_option(option)
        ctx = pd.option_context(option, True)
    with ctx:
        freq = pd.infer_freq(dates) if len(dates) >= 3 else None
    if freq is None:
        row = int(np.flatnonzero(gaps != gaps[0])[0]) + 1
        raise ValueError(
            f"timestamps are not regular (the gap before row {row} is {pd.Timedelta(gaps[row - 1])}, "
            f"the first gap is {pd.Timedelta(gaps[0])}); resample to a fixed frequency first"
        )
    return pd.tseries.frequencies.to_offset(freq)


def future_timestamps(dates: pd.DatetimeIndex, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps after ``dates[-1]`` at the series' inferred step."""
    return pd.date_range(dates[-1], periods=horizon + 1, freq=infer_step(dates))[1:]
