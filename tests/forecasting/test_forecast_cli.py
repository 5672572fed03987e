"""`damokit forecast train|eval|predict` end to end on a small CSV."""

import json

import numpy as np
import pandas as pd

from damokit.cli import main


def _csv(path, n=240):
    t = np.arange(n)
    pd.DataFrame(
        {"date": pd.date_range("2023-01-01", periods=n, freq="h"), "a": np.sin(t / 4), "OT": np.cos(t / 6)}
    ).to_csv(path, index=False)
    return path


def test_train_eval_predict(tmp_path, capsys):
    data = str(_csv(tmp_path / "toy.csv"))
    out = tmp_path / "run"
    common = ["--data", data, "--model", "dlinear", "--horizon", "8", "--input-size", "24"]
    assert (
        main(["forecast", "train", *common, "--max-steps", "5", "--lr", "0.01", "--out", str(out), "--no-progress"])
        == 0
    )
    text = capsys.readouterr().out
    assert "test, whole batches of 32 (paper)" in text and "test, all windows" in text
    assert (out / "forecast.png").stat().st_size > 0 and (out / "forecaster.safetensors").exists()
    assert main(["forecast", "eval", "--checkpoint", str(out), "--data", data, "--all-test-windows"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("test, all windows")  # the requested headline comes first
    assert (
        main(["forecast", "predict", "--checkpoint", str(out), "--data", data, "--output", str(tmp_path / "p.csv")])
        == 0
    )
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["unique_id", "ds", "dlinear"] and len(pred) == 16
    assert (out / "predict.png").exists()


def test_user_errors_are_one_line(tmp_path, capsys):
    data = str(_csv(tmp_path / "toy.csv"))
    args = ["forecast", "train", "--data", data, "--model", "dlinear", "--horizon", "0", "--input-size", "24"]
    assert main(args) == 2
    assert "horizon must be a positive integer" in capsys.readouterr().err
    assert main(["forecast", "eval", "--checkpoint", str(tmp_path), "--data", data]) == 2
    assert "no forecaster.safetensors" in capsys.readouterr().err


def test_reproduce_subset_names_bad_choices(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    assert main(["forecast", "reproduce", "--datasets", "weather", *out]) == 2
    assert "unknown dataset 'weather'" in capsys.readouterr().err
    assert main(["forecast", "reproduce", "--datasets", "ILI", "--horizons", "96", *out]) == 2
    assert "national_illness has no paper horizon 96" in capsys.readouterr().err
    assert main(["forecast", "reproduce", "--datasets", "ILI", "--models", "FEDformer", *out]) == 2
    assert "unknown table row 'FEDformer'" in capsys.readouterr().err
    assert main(["forecast", "reproduce", "--datasets", "ILI", "--jobs", "0", *out]) == 2
    assert "--jobs must be >= 1, got 0" in capsys.readouterr().err
    assert main(["forecast", "reproduce", *out]) == 2
    assert "say what to run: --datasets" in capsys.readouterr().err
    assert main(["forecast", "reproduce", "--runs", "ILI|24|M|repeat_last|0", "--seeds", "1", *out]) == 2
    assert "--runs names whole runs: drop --seeds" in capsys.readouterr().err
    assert main(["forecast", "reproduce", "--runs", "ILI|24|repeat_last|0", *out]) == 2
    assert "--runs 'ILI|24|repeat_last|0': expected 'DATASET|HORIZON|M or S|ROW|SEED'" in capsys.readouterr().err
    assert main(["forecast", "reproduce", "--runs", "ILI|96|M|repeat_last|0", *out]) == 2
    assert "national_illness has no paper horizon 96" in capsys.readouterr().err
    assert main(["forecast", "reproduce", "--runs", "ILI|24|M|FEDformer|0", *out]) == 2
    assert "unknown table row 'FEDformer'" in capsys.readouterr().err


def test_reproduce_subset_writes_a_report(tmp_path, capsys):
    args = ["--datasets", "ILI", "--horizons", "24", "--seeds", "0", "--models", "repeat_last", "--out", str(tmp_path)]
    assert main(["forecast", "reproduce", *args, "--no-progress"]) == 0
    assert "repeat_last on ILI-24 (M)" in capsys.readouterr().out
    assert (tmp_path / "report.md").is_file() and (tmp_path / "runs.jsonl").is_file()


def test_reproduce_runs_trains_the_listed_runs_alone(tmp_path, capsys):
    args = ["--runs", "ILI|36|M|repeat_last|0", "Exchange|96|S|repeat_last|1", "--out", str(tmp_path), "--no-progress"]
    assert main(["forecast", "reproduce", *args]) == 0
    out = capsys.readouterr().out
    assert "repeat_last on ILI-36 (M)" in out and "repeat_last on Exchange-96 (S)" in out
    logged = sorted(json.loads(line)["key"] for line in (tmp_path / "runs.jsonl").read_text().splitlines())
    assert logged == ["exchange_rate|96|S|repeat_last|1", "national_illness|36|M|repeat_last|0"]
