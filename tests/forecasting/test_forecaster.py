"""Forecaster: fit/predict/evaluate over long DataFrames, save/load equality, every bad-input error."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from damokit.data.timeseries import wide_to_long
from damokit.forecasting.baselines import DLinear
from damokit.forecasting.forecaster import Forecaster
from damokit.registry import UnknownNameError

KW = {"max_steps": 15, "lr": 1e-2, "batch_size": 16, "progress": False}


def _long(n=300, ids=("a", "b"), level=100.0, freq="h"):
    t = np.arange(n)
    data = {"date": pd.date_range("2022-01-01", periods=n, freq=freq)}
    for k, uid in enumerate(ids):
        data[uid] = level * (k + 1) + 5 * np.sin(2 * np.pi * t / 24 + k)
    return wide_to_long(pd.DataFrame(data))


@pytest.fixture(scope="module")
def fitted():
    return Forecaster("dlinear", horizon=8, input_size=24, **KW).fit(_long())


def test_fit_predict_shapes_units_and_timestamps(fitted):
    out = fitted.predict()
    assert list(out.columns) == ["unique_id", "ds", "dlinear"]
    assert out["unique_id"].tolist() == ["a"] * 8 + ["b"] * 8
    assert out["ds"].iloc[0] == pd.Timestamp("2022-01-01") + pd.Timedelta(hours=300)
    assert (out["ds"].diff().dropna().iloc[:7] == pd.Timedelta(hours=1)).all()
    # in the input's units: series a lives near 100, b near 200
    a, b = out.loc[out.unique_id == "a", "dlinear"], out.loc[out.unique_id == "b", "dlinear"]
    assert 80 < a.mean() < 120 and 180 < b.mean() < 220


def test_fit_returns_self_and_is_deterministic():
    df = _long()
    one = Forecaster("dlinear", horizon=8, input_size=24, **KW)
    assert one.fit(df) is one
    two = Forecaster("dlinear", horizon=8, input_size=24, **KW).fit(df)
    pd.testing.assert_frame_equal(one.predict(), two.predict())


def test_trained_model_beats_repeat_on_a_sine(fitted):
    repeat = Forecaster("repeat_last", horizon=8, input_size=24).fit(_long())
    ours, naive = fitted.evaluate(), repeat.evaluate()
    assert ours["mse"] < naive["mse"]
    assert ours["drop_last_test"] is True and ours["windows"] % 32 == 0 and ours["windows_all"] >= ours["windows"]


def test_repeat_last_forecasts_the_last_value_exactly():
    df = _long(n=100)
    out = Forecaster("repeat_last", horizon=5, input_size=10).fit(df).predict()
    last = df.groupby("unique_id")["y"].last()
    np.testing.assert_allclose(out.groupby("unique_id")["repeat_last"].first(), last, rtol=1e-6)


def test_predict_on_new_history(fitted):
    df = _long(n=50)
    out = fitted.predict(df)
    assert out["ds"].iloc[0] == pd.Timestamp("2022-01-01") + pd.Timedelta(hours=50)


def test_save_load_reproduces_predictions_exactly(fitted, tmp_path):
    fitted.save(tmp_path / "fc")
    loaded = Forecaster.load(tmp_path / "fc")
    pd.testing.assert_frame_equal(loaded.predict(), fitted.predict())
    df = _long()
    assert loaded.evaluate(df) == fitted.evaluate(df)
    assert json.loads((tmp_path / "fc" / "config.json").read_text())["model"] == "dlinear"


def test_univariate_target_and_val_df_and_renamed_columns():
    df = _long(n=300).rename(columns={"unique_id": "series", "ds": "time", "y": "value"})
    train, val = df[df.time < "2022-01-11"], df[df.time >= "2022-01-11"]
    fc = Forecaster(
        "dlinear",
        horizon=8,
        input_size=24,
        features="S",
        target="b",
        id_col="series",
        time_col="time",
        target_col="value",
        **KW,
    ).fit(train, val_df=val)
    out = fc.predict()
    assert list(out.columns) == ["series", "time", "dlinear"] and set(out.series) == {"b"}
    assert out.time.iloc[0] == pd.Timestamp("2022-01-01") + pd.Timedelta(hours=300)  # after val_df


def test_training_follows_the_official_type1_lr_schedule():
    # spec §11: epochs 0 and 1 at the base LR, then halving each epoch: 1e-3, 1e-3, 5e-4, 2.5e-4
    fc = Forecaster("dlinear", horizon=8, input_size=16, epochs=4, patience=None, lr=1e-3, seed=0).fit(_long())
    assert [row["lr"] for row in fc.fit_result.history] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])


# ---- bad input: each message ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"horizon": 0, "input_size": 8}, "horizon"), ({"horizon": 4, "input_size": -2}, "input_size")]
)
def test_non_positive_sizes(kwargs, name):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        Forecaster("dlinear", **kwargs)


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownNameError, match="unknown model 'dlinaer'.*Did you mean: dlinear"):
        Forecaster("dlinaer", horizon=4, input_size=8)


def test_bad_options():
    with pytest.raises(ValueError, match="features='MS' is unknown"):
        Forecaster("dlinear", horizon=4, input_size=8, features="MS")
    with pytest.raises(ValueError, match="protocol='ett' is unknown"):
        Forecaster("dlinear", horizon=4, input_size=8, protocol="ett")
    with pytest.raises(ValueError, match="freq='a' is not supported"):
        Forecaster("dlinear", horizon=4, input_size=8, freq="a")
    with pytest.raises(ValueError, match="label_len must be in \\[0, input_size=8\\]"):
        Forecaster("dlinear", horizon=4, input_size=8, label_len=9)
    with pytest.raises(ValueError, match="device='gpu' is not a torch device; use 'auto', 'cpu', 'cuda'"):
        Forecaster("dlinear", horizon=4, input_size=8, device="gpu")


def test_device_is_where_fit_trains(tmp_path, monkeypatch):
    import json

    import torch

    fc = Forecaster("dlinear", horizon=8, input_size=24, out_dir=tmp_path, device="cpu", **KW).fit(_long())
    assert json.loads((tmp_path / "config.json").read_text())["device"] == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device='cuda' was asked for, but torch sees no GPU here"):
        Forecaster("dlinear", horizon=8, input_size=24, device="cuda", **KW).fit(_long())
    assert fc.predict().shape[0] > 0


def _fit(df, **kwargs):
    return Forecaster("dlinear", horizon=8, input_size=24, **{**KW, **kwargs}).fit(df)


def test_missing_date_and_target_columns():
    with pytest.raises(ValueError, match="no column 'ds' \\(time_col\\).*time_col="):
        _fit(_long().rename(columns={"ds": "date"}))
    with pytest.raises(ValueError, match="no column 'y' \\(target_col\\)"):
        _fit(_long().drop(columns="y"))
    with pytest.raises(ValueError, match="features='S' forecasts series 'OT', which is not among"):
        _fit(_long(), features="S")


def test_non_numeric_and_non_finite_values():
    df = _long().astype({"y": object})
    df.loc[5, "y"] = "oops"
    with pytest.raises(ValueError, match="series 'a': column 'y' holds non-numeric values \\(first at row 5"):
        _fit(df)
    df = _long()
    df.loc[[3, 310], "y"] = [np.nan, np.inf]
    with pytest.raises(ValueError, match="series 'a': column 'y' has 1 NaN/inf"):
        _fit(df)


def test_unsorted_and_duplicated_timestamps():
    df = _long()
    df.loc[[10, 11], "ds"] = df.loc[[11, 10], "ds"].to_numpy()
    with pytest.raises(ValueError, match="series 'a': timestamps in 'ds' are not sorted ascending \\(row 11"):
        _fit(df)
    df = _long()
    df.loc[12, "ds"] = df.loc[11, "ds"]
    with pytest.raises(ValueError, match="series 'a': timestamp .* appears more than once"):
        _fit(df)


def test_series_too_short_says_by_how_much():
    # custom protocol on 40 steps: 28 train rows, one window needs 24 + 8 = 32
    with pytest.raises(ValueError, match="train split of df .* has 28 time steps .* = 32 \\(short by 4\\)"):
        _fit(_long(n=40))
    fitted = _fit(_long())
    with pytest.raises(ValueError, match="df has 10 time steps but the model reads input_size = 24 \\(short by 14\\)"):
        fitted.predict(_long(n=10))


def test_predict_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        Forecaster("dlinear", horizon=4, input_size=8).predict()
    fitted = _fit(_long())
    with pytest.raises(ValueError, match="holds series \\['a', 'b', 'c'\\] but the model was fitted on \\['a', 'b'\\]"):
        fitted.predict(_long(n=50, ids=("a", "b", "c")))


def test_val_df_errors():
    df = _long()
    with pytest.raises(ValueError, match="val_df starts at .* not after df ends"):
        Forecaster("dlinear", horizon=8, input_size=24, **KW).fit(df, val_df=df)
    with pytest.raises(ValueError, match="val_df holds series \\['a'\\] but df holds \\['a', 'b'\\]"):
        Forecaster("dlinear", horizon=8, input_size=24, **KW).fit(df, val_df=_long(n=20, ids=("a",)))
    later = wide_to_long(
        pd.DataFrame({"date": pd.date_range("2023-01-01", periods=3, freq="h"), "a": [1.0, 2, 3], "b": [1.0, 2, 3]})
    )
    with pytest.raises(ValueError, match="val_df has 3 steps; validation needs at least horizon = 8"):
        Forecaster("dlinear", horizon=8, input_size=24, **KW).fit(df, val_df=later)


def test_checkpoint_from_another_config(tmp_path):
    df = _long()
    _fit(df).save(tmp_path / "h8")
    Forecaster("dlinear", horizon=12, input_size=24, **KW).fit(df).save(tmp_path / "h12")
    # config.json edited to another horizon: refused, naming the field
    config = json.loads((tmp_path / "h8" / "config.json").read_text())
    (tmp_path / "h8" / "config.json").write_text(json.dumps({**config, "horizon": 12}))
    with pytest.raises(ValueError, match="does not match the checkpoint.*horizon: checkpoint 8 vs config.json 12"):
        Forecaster.load(tmp_path / "h8")
    # the checkpoint of another configuration copied beside this config.json: refused the same way
    shutil.copy(tmp_path / "h12" / "forecaster.safetensors", tmp_path / "h8" / "forecaster.safetensors")
    (tmp_path / "h8" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="horizon: checkpoint 12 vs config.json 8"):
        Forecaster.load(tmp_path / "h8")


def test_weights_that_do_not_fit_the_model(tmp_path, monkeypatch):
    df = _long()
    _fit(df).save(tmp_path / "fc")
    # same config, but the model registered under this name now builds different shapes
    monkeypatch.setattr(Forecaster, "_build_model", lambda self, c: DLinear(input_size=24, horizon=9, enc_in=c))
    with pytest.raises(ValueError, match="mis-shaped: .*saved for another model configuration"):
        Forecaster.load(tmp_path / "fc")


def test_load_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no forecaster.safetensors in"):
        Forecaster.load(tmp_path)


def test_evaluate_windows_feeds_the_model_on_its_device():
    """After ``fit`` put a model on the GPU, test windows must follow it there (meta stands in for cuda)."""
    import torch
    from torch import nn

    from damokit.data.timeseries import WindowDataset
    from damokit.forecasting.forecaster import evaluate_windows

    class OnMeta(nn.Module):  # forecasts zeros on CPU; records where its inputs came from
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones((), device="meta"))
            self.seen = set()

        def forward(self, x, x_mark, y_mark):
            self.seen |= {x.device.type, x_mark.device.type, y_mark.device.type}
            return torch.zeros(len(x), 4, x.shape[-1])

    data = np.linspace(0, 1, 60, dtype=np.float32).reshape(30, 2)
    windows = WindowDataset(data, np.zeros((30, 3), np.float32), input_size=8, label_len=4, horizon=4)
    model = OnMeta()
    scores = evaluate_windows(model, windows, drop_last_test=False)
    assert model.seen == {"meta"}
    y = windows.tensors()[1][:, -4:].double()
    assert scores["mse"] == pytest.approx(float(y.pow(2).mean()))
