"""The official data protocol: borders, train-only scaling, timeF features, windows, validation errors."""

import numpy as np
import pandas as pd
import pytest
import torch

from damokit.data.timeseries import (
    ETT_HOUR_TEST_END,
    ETT_HOUR_TRAIN_END,
    ETT_HOUR_VAL_END,
    StandardScaler,
    WindowDataset,
    future_timestamps,
    kept_test_windows,
    load_series,
    long_to_wide,
    n_time_features,
    split_borders,
    time_features,
    validate_wide,
    wide_to_long,
)


def _wide(n=40, cols=("a", "b"), freq="h", start="2021-01-01"):
    rng = np.random.default_rng(0)
    data = {"date": pd.date_range(start, periods=n, freq=freq)}
    data.update({c: rng.normal(size=n) for c in cols})
    return pd.DataFrame(data)


def test_ett_hour_borders_match_official_constants():
    # official Dataset_ETT_hour: 12*30*24, 12*30*24 + 4*30*24, 12*30*24 + 8*30*24
    assert (ETT_HOUR_TRAIN_END, ETT_HOUR_VAL_END, ETT_HOUR_TEST_END) == (8640, 11520, 14400)
    b = split_borders(17420, 96, "ett_hour")
    assert (b.train, b.val, b.test) == ((0, 8640), (8640 - 96, 11520), (11520 - 96, 14400))


@pytest.mark.parametrize(
    ("n", "sizes"),
    # spec §2.2: Exchange n=7588 -> 5311/760/1517, ILI n=966 -> 676/97/193
    [(7588, (5311, 760, 1517)), (966, (676, 97, 193))],
)
def test_custom_borders_match_official_arithmetic(n, sizes):
    b = split_borders(n, 36, "custom")
    n_train, n_val, n_test = sizes
    assert b.train == (0, n_train)
    assert b.val == (n_train - 36, n_train + n_val)
    assert b.test == (n - n_test - 36, n)


@pytest.mark.parametrize(
    ("name", "input_size", "horizon", "counts"),
    # spec §2.4 window counts
    [
        ("ETTh1", 96, 96, (8449, 2785, 2785)),
        ("exchange_rate", 96, 96, (5120, 665, 1422)),
        ("national_illness", 36, 24, (617, 74, 170)),
    ],
)
def kept_test_windowss_match_spec(name, input_size, horizon, counts):
    data = load_series(name, input_size=input_size, horizon=horizon)
    assert tuple(len(data.split(s)) for s in ("train", "val", "test")) == counts


def test_custom_protocol_moves_target_last_and_ett_keeps_file_order():
    ili = load_series("national_illness", input_size=36, horizon=24, target="% WEIGHTED ILI")
    assert ili.columns[-1] == "% WEIGHTED ILI" and ili.columns[0] == "%UNWEIGHTED ILI"
    ett = load_series("ETTh1", input_size=96, horizon=96, target="HUFL")
    assert ett.columns == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert load_series("ETTh1", input_size=96, horizon=96, features="S").columns == ["OT"]


# DLinear paper Table 2, "Repeat" column, quoted in spec §16.6 (the ETT MAEs read from the paper's table itself).
# Reproduced only with the paper's test loader, which drops the last partial batch of 32 (drop_last=True).
REPEAT_PUBLISHED = {
    ("exchange_rate", 96): [(96, 0.081, 0.196), (192, 0.167, 0.289), (336, 0.305, 0.396), (720, 0.823, 0.681)],
    ("national_illness", 36): [(24, 6.587, 1.701), (36, 7.130, 1.884), (48, 6.575, 1.798), (60, 5.893, 1.677)],
    ("ETTh1", 96): [(96, 1.295, 0.713), (192, 1.325, 0.733), (336, 1.323, 0.744), (720, 1.339, 0.756)],
    ("ETTh2", 96): [(96, 0.432, 0.422), (192, 0.534, 0.473), (336, 0.591, 0.508), (720, 0.588, 0.517)],
}


def _repeat_metrics(name, input_size, horizon, drop_last):
    data = load_series(name, input_size=input_size, horizon=horizon)
    test = data.split("test")
    x, y, _, _ = test.tensors(kept_test_windows(len(test), drop_last=drop_last))
    err = x[:, -1:, :] - y[:, -horizon:]  # repeat the last input value over the horizon
    return float(err.pow(2).mean()), float(err.abs().mean())


@pytest.mark.parametrize(("name", "input_size"), list(REPEAT_PUBLISHED))
def test_repeat_last_reproduces_published_repeat_figures(name, input_size):
    for horizon, mse, mae in REPEAT_PUBLISHED[(name, input_size)]:
        got_mse, got_mae = _repeat_metrics(name, input_size, horizon, drop_last=True)
        assert round(got_mse, 3) == mse, (name, horizon, got_mse)
        assert round(got_mae, 3) == mae, (name, horizon, got_mae)


def test_repeat_on_all_ili_windows_differs_from_published():
    # spec §2.6: ILI O=48 repeat MSE 6.575 with the dropped batch vs 7.851 on all windows
    assert round(_repeat_metrics("national_illness", 36, 48, drop_last=False)[0], 3) == 7.851


def test_kept_test_windows_drops_partial_batch():
    assert kept_test_windows(2785, drop_last=True) == 2784
    assert kept_test_windows(170, drop_last=True) == 160
    assert kept_test_windows(170, drop_last=False) == 170


def test_scaler_is_fitted_on_training_rows_only():
    data = load_series("national_illness", input_size=36, horizon=24)
    train = data.raw[: data.borders.train[1]]
    np.testing.assert_allclose(data.scaler.mean, train.mean(0))
    np.testing.assert_allclose(data.scaler.scale, train.std(0))  # population std, as sklearn
    np.testing.assert_allclose(data.scaled[:676].mean(0), 0.0, atol=1e-9)
    assert np.abs(data.scaled[676:].mean(0)).max() > 0.1  # later rows are not re-centred
    np.testing.assert_allclose(data.scaler.inverse_transform(data.scaled), data.raw)


def test_scaler_constant_column_and_unfitted_error():
    s = StandardScaler().fit(np.array([[1.0, 2.0], [1.0, 4.0]]))
    np.testing.assert_allclose(s.scale, [1.0, 1.0])  # zero std -> 1, as sklearn
    with pytest.raises(RuntimeError, match="not fitted"):
        StandardScaler().transform(np.zeros((2, 2)))


def test_time_features_hourly_hand_computed():
    # 2016-07-01 00:00 is a Friday (dayofweek 4), day-of-month 1, day 183 of the leap year 2016
    got = time_features(pd.to_datetime(["2016-07-01 00:00", "2016-12-31 23:00"]), "h")
    want = np.array(
        [
            [0 / 23 - 0.5, 4 / 6 - 0.5, 0 / 30 - 0.5, 182 / 365 - 0.5],
            [23 / 23 - 0.5, 5 / 6 - 0.5, 30 / 30 - 0.5, 365 / 365 - 0.5],  # Saturday, day 366
        ],
        dtype=np.float32,
    )
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)


def test_time_features_other_frequencies():
    d = pd.to_datetime(["2020-03-02 04:05:06"])  # Monday, ISO week 10, day 62
    assert time_features(d, "d")[0].tolist() == pytest.approx([0 / 6 - 0.5, 1 / 30 - 0.5, 61 / 365 - 0.5])
    assert time_features(d, "w")[0].tolist() == pytest.approx([1 / 30 - 0.5, 9 / 52 - 0.5])
    assert time_features(d, "m")[0].tolist() == pytest.approx([2 / 11 - 0.5])
    assert time_features(d, "15min")[0, 0] == pytest.approx(5 / 59 - 0.5)
    assert time_features(d, "s")[0, 0] == pytest.approx(6 / 59 - 0.5)
    assert [n_time_features(f) for f in ("h", "t", "s", "m", "w", "d", "b")] == [4, 5, 6, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="freq='a' is not supported"):
        time_features(d, "a")


def test_exchange_uses_hourly_features_as_the_paper():
    data = load_series("exchange_rate", input_size=96, horizon=96)  # the paper passes freq='h' everywhere
    assert data.marks.shape[1] == 4
    assert np.all(data.marks[:, 0] == -0.5)  # hour is always 0 in daily data
    assert data.marks.min() >= -0.5 and data.marks.max() <= 0.5


def test_window_dataset_matches_official_getitem():
    n, c, d = 30, 2, 4
    data = np.arange(n * c, dtype=np.float32).reshape(n, c)
    marks = np.arange(n * d, dtype=np.float32).reshape(n, d)
    ds = WindowDataset(data, marks, input_size=8, label_len=4, horizon=5)
    assert len(ds) == n - 8 - 5 + 1
    x, y, xm, ym = ds[3]
    assert torch.equal(x, torch.from_numpy(data[3:11])) and torch.equal(y, torch.from_numpy(data[7:16]))
    assert torch.equal(xm, torch.from_numpy(marks[3:11])) and torch.equal(ym, torch.from_numpy(marks[7:16]))
    torch.testing.assert_close(y[:4], x[-4:])
    stacked = ds.tensors()
    for i in (0, 5, len(ds) - 1):
        for a, b in zip(stacked, ds[i]):
            assert torch.equal(a[i], b)
    with pytest.raises(IndexError, match="out of range"):
        ds[len(ds)]


def test_wide_long_round_trip():
    wide = _wide(5)
    long = wide_to_long(wide)
    assert list(long.columns) == ["unique_id", "ds", "y"] and len(long) == 10
    dates, values, ids = long_to_wide(long)
    assert ids == ["a", "b"]
    np.testing.assert_array_equal(values, wide[["a", "b"]].to_numpy())
    assert (dates == pd.DatetimeIndex(wide["date"])).all()


def test_future_timestamps_fixed_and_calendar_steps():
    hourly = pd.date_range("2021-01-01", periods=4, freq="h")
    assert future_timestamps(hourly, 2).tolist() == list(pd.date_range("2021-01-01 04:00", periods=2, freq="h"))
    monthly = pd.date_range("2021-01-31", periods=4, freq="ME")
    assert future_timestamps(monthly, 1)[0] == pd.Timestamp("2021-05-31")
    with pytest.raises(ValueError, match="not regular"):
        future_timestamps(pd.to_datetime(["2021-01-01", "2021-01-02", "2021-01-05", "2021-01-06"]), 1)


# ---- bad input: each message ------------------------------------------------------------------------------


def test_missing_date_column():
    with pytest.raises(ValueError, match="no timestamp column 'date'.*date_col="):
        validate_wide(_wide().rename(columns={"date": "when"}))


def test_missing_target_column():
    with pytest.raises(ValueError, match="target column 'OT' not found.*target="):
        load_series(_wide(200), input_size=8, horizon=4)


def test_non_numeric_values():
    df = _wide().astype({"a": object})
    df.loc[7, "a"] = "n/a"
    with pytest.raises(ValueError, match="column 'a' holds non-numeric values \\(first at row 7: 'n/a'\\)"):
        validate_wide(df)


def test_nan_and_inf_values():
    df = _wide()
    df.loc[3, "b"] = np.nan
    df.loc[9, "b"] = np.inf
    with pytest.raises(ValueError, match="column 'b' has 2 NaN/inf value\\(s\\) \\(first at row 3\\)"):
        validate_wide(df)


def test_unsorted_timestamps():
    df = _wide()
    df.loc[[4, 5], "date"] = df.loc[[5, 4], "date"].to_numpy()
    with pytest.raises(ValueError, match="not sorted ascending \\(row 5"):
        validate_wide(df)


def test_duplicated_timestamps():
    df = _wide()
    df.loc[6, "date"] = df.loc[5, "date"]
    with pytest.raises(ValueError, match="appears more than once"):
        validate_wide(df)


def test_unparseable_timestamps():
    df = _wide()
    df["date"] = df["date"].astype(str)
    df.loc[2, "date"] = "not a date"
    with pytest.raises(ValueError, match="does not parse as dates"):
        validate_wide(df)


def test_series_too_short_says_by_how_much():
    df = _wide(100, cols=("OT",))  # custom split: train 70 rows
    with pytest.raises(ValueError, match="train split has 70 rows .* = 80 \\(short by 10\\)"):
        load_series(df, input_size=60, horizon=20)
    with pytest.raises(ValueError, match="needs 14400 hourly rows .*short by 14300"):
        load_series(df, input_size=8, horizon=4, protocol="ett_hour")


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"input_size": 0, "horizon": 4}, "input_size"), ({"input_size": 8, "horizon": -1}, "horizon")]
)
def test_non_positive_sizes(kwargs, name):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        load_series(_wide(200, cols=("OT",)), **kwargs)


def test_bad_label_len_features_protocol_split():
    df = _wide(200, cols=("OT",))
    with pytest.raises(ValueError, match="label_len must be an integer in \\[0, input_size=8\\]"):
        load_series(df, input_size=8, horizon=4, label_len=9)
    with pytest.raises(ValueError, match="features='MS' is unknown"):
        load_series(df, input_size=8, horizon=4, features="MS")
    with pytest.raises(ValueError, match="protocol='weird' is unknown"):
        load_series(df, input_size=8, horizon=4, protocol="weird")
    with pytest.raises(ValueError, match="split='dev' is unknown"):
        load_series(df, input_size=8, horizon=4).split("dev")


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_series("/nonexistent/file.csv", input_size=8, horizon=4)


def test_long_format_errors():
    long = wide_to_long(_wide(6))
    with pytest.raises(ValueError, match="no column 'y' \\(target_col\\)"):
        long_to_wide(long.rename(columns={"y": "value"}))
    with pytest.raises(ValueError, match="series 'b' has 5 timestamps that differ"):
        long_to_wide(long.drop(index=long.index[-1]))
    with pytest.raises(ValueError, match="no rows"):
        long_to_wide(long.iloc[:0])
