"""The FEDformer reproduction's bookkeeping: exact Repeat rows, verdicts, missing models, the headline row."""

import pytest

from damokit import registry
from damokit.reproduce.fedformer import PAPER, Setting, run_grid
from damokit.reproduce.result import Verdict
from damokit.reproduce.runlog import RUN_LOG


def test_repeat_row_reproduces_the_published_figure_and_missing_models_are_reported(tmp_path, monkeypatch):
    real_names = registry.names
    # pretend Autoformer is not written yet: its row must say so instead of crashing the reproduction
    monkeypatch.setattr(
        registry, "names", lambda kind, pattern="*": [n for n in real_names(kind, pattern) if n != "autoformer_tiny"]
    )
    result = run_grid(
        [Setting("national_illness", 24)],
        quick=True,
        out_dir=tmp_path,
        models=("repeat_last", "Autoformer"),
        progress=False,
    )
    repeat, auto, headline = result.rows
    assert repeat.paper == 6.587 and repeat.ours == 6.5871 and repeat.verdict is Verdict.HOLDS
    assert "all 170 test windows: MSE 6.213" in repeat.note  # spec §2.6: the full-test figure beside it
    assert auto.verdict is Verdict.NOT_IMPLEMENTED and "not registered" in auto.note
    assert headline.verdict is Verdict.PENDING  # implemented, but no setting has both models' runs
    # paper headline for ILI-24: 1 - 3.228 / 3.483 (FEDformer Table 2)
    assert headline.paper == round(1 - 3.228 / 3.483, 3)
    assert result.plots and result.plots[0].exists()


def test_paper_tables_are_complete():
    for (dataset, features), table in PAPER.items():
        horizons = {h for h, _ in table}
        assert len(horizons) == 4, (dataset, features)
        for model in ("FEDformer-f", "FEDformer-w", "Autoformer", "Informer"):
            assert all((h, model) in table for h in horizons), (dataset, features, model)


def test_full_grid_logs_each_run_and_resumes_without_rerunning(tmp_path, monkeypatch):
    from damokit.reproduce import fedformer

    setting = Setting("national_illness", 24)
    first = run_grid([setting], quick=False, out_dir=tmp_path, models=("repeat_last",), progress=False)
    log = tmp_path / RUN_LOG
    assert len(log.read_text().splitlines()) == 1
    with log.open("a") as f:
        f.write('{"key": "cut short by a ki')  # a line a killed process left half-written is ignored

    def must_not_run(*args, **kwargs):
        raise AssertionError("a run recorded in runs.jsonl was run again")

    monkeypatch.setattr(fedformer, "run_setting", must_not_run)
    again = run_grid([setting], quick=False, out_dir=tmp_path, models=("repeat_last",), progress=False)
    assert again.rows[0].ours == first.rows[0].ours == 6.5871
    # report only: the logged run is reported, the missing one is listed as pending, nothing trains
    report = run_grid(
        [setting], quick=False, out_dir=tmp_path, models=("repeat_last", "Autoformer"), progress=False, report_only=True
    )
    assert [row.claim for row in report.rows] == ["repeat_last on ILI-24 (M)"]
    assert report.conditions["pending_runs"].startswith("1 ")
    assert "| Autoformer | pending |" in report.notes
    # a partial grid still plots the settings it has (bars are relative to each setting's repeat_last)
    partial = run_grid(
        [setting, Setting("national_illness", 36)],
        quick=False,
        out_dir=tmp_path,
        models=("repeat_last",),
        progress=False,
        report_only=True,
    )
    assert partial.conditions["pending_runs"].startswith("1 ")
    assert "| repeat_last | 6.587 / 1.701 (6.587 / 1.701) | pending |" in partial.notes
    assert partial.plots and partial.plots[0].exists()


def test_paper_figure_sources_say_what_was_checked():
    # multivariate FEDformer-f/Autoformer/Informer were checked against the DLinear paper's Table 2, which quotes
    # them (e.g. ILI-24 FEDformer-f 3.228/1.260); FEDformer-w and the univariate table were not
    ili = PAPER[("national_illness", "M")]
    assert ili[(24, "FEDformer-f")] == (3.228, 1.260, "FEDformer Table 2, as quoted in DLinear paper Table 2")
    for (dataset, features), table in PAPER.items():
        for (h, model), (_, _, source) in table.items():
            checked = features == "M" and model in ("FEDformer-f", "Autoformer", "Informer")
            assert ("unverified" in source) == (not checked and model != "repeat_last"), (dataset, h, model)


@pytest.mark.slow
def test_full_mode_run_cut_short_continues_from_its_checkpoint(tmp_path, monkeypatch):
    from damokit.reproduce import fedformer

    setting = Setting("national_illness", 24)
    uninterrupted = fedformer.run_setting(setting, "dlinear", quick=False, checkpoint_dir=tmp_path / "a")

    real_fit = fedformer.fit

    def fit_killed_at_step_30(*args, **kwargs):
        def kill(model, step):
            if step == 30:
                raise KeyboardInterrupt

        return real_fit(*args, **kwargs, after_step=kill)

    monkeypatch.setattr(fedformer, "fit", fit_killed_at_step_30)
    with pytest.raises(KeyboardInterrupt):
        fedformer.run_setting(setting, "dlinear", quick=False, checkpoint_dir=tmp_path / "b")
    monkeypatch.setattr(fedformer, "fit", real_fit)
    assert (tmp_path / "b" / "last.safetensors").is_file()
    resumed = fedformer.run_setting(setting, "dlinear", quick=False, checkpoint_dir=tmp_path / "b")
    assert resumed["steps"] == uninterrupted["steps"]
    assert resumed["mse"] == pytest.approx(uninterrupted["mse"], rel=1e-6)


def test_full_grid_deletes_a_logged_runs_checkpoints(tmp_path):
    run_grid([Setting("national_illness", 24)], quick=False, out_dir=tmp_path, models=("dlinear",), progress=False)
    assert (tmp_path / "runs.jsonl").is_file()
    assert not any((tmp_path / "checkpoints").glob("*"))


def test_univariate_grid_runs_and_quotes_table_3(tmp_path):
    result = run_grid(
        [Setting("exchange_rate", 96, "S")],
        quick=True,
        out_dir=tmp_path,
        models=("repeat_last", "FEDformer-f"),
        progress=False,
    )
    repeat, fed, headline = result.rows
    assert repeat.claim == "repeat_last on Exchange-96 (S)" and repeat.paper is None  # no univariate Repeat figure
    assert fed.claim == "FEDformer-f on Exchange-96 (S)"
    assert fed.paper == PAPER[("exchange_rate", "S")][(96, "FEDformer-f")][0]
    assert fed.ours > 0 and fed.ours != repeat.ours
    assert headline.verdict is Verdict.PENDING  # Autoformer not run: no headline
    assert "no setting has runs of both" in headline.note


def test_headline_compares_with_the_paper_over_the_settings_measured():
    from damokit.reproduce.fedformer import _headline_row

    ili, exchange = Setting("national_illness", 24), Setting("exchange_rate", 96)
    # Exchange pending
    measured = {(ili, "FEDformer-f"): [{"seed": 0, "mse": 3.0}], (ili, "Autoformer"): [{"seed": 0, "mse": 4.0}]}
    row = _headline_row([ili, exchange], measured, quick=False)
    assert row.ours == 0.25 and row.paper == round(1 - 3.228 / 3.483, 3)  # not averaged with Exchange's 0.249
    nothing = _headline_row([ili, exchange], {}, quick=False)
    assert nothing.verdict is Verdict.PENDING and nothing.ours is None
    assert nothing.paper == round(((1 - 3.228 / 3.483) + (1 - 0.148 / 0.197)) / 2, 3)


def test_multivariate_and_univariate_settings_get_a_headline_each(tmp_path):
    from damokit.reproduce.fedformer import _headline_row

    m24, s24 = Setting("national_illness", 24, "M"), Setting("national_illness", 24, "S")
    measured = {
        (m24, "FEDformer-f"): [{"seed": 0, "mse": 3.0}],
        (m24, "Autoformer"): [{"seed": 0, "mse": 4.0}],
        (s24, "FEDformer-f"): [{"seed": 0, "mse": 0.6}],
        (s24, "Autoformer"): [{"seed": 0, "mse": 1.0}],
    }
    multi, uni = _headline_row([m24], measured, quick=False), _headline_row([s24], measured, quick=False)
    assert multi.ours == 0.25 and multi.paper == round(1 - 3.228 / 3.483, 3) and "14.8%" in multi.note
    assert uni.ours == 0.4 and uni.paper == round(1 - 0.708 / 0.948, 3) and "22.6%" in uni.note  # Table 3
    assert multi.claim.endswith("(multivariate)") and uni.claim.endswith("(univariate)")
    with pytest.raises(ValueError):  # one claim never averages the two tables
        _headline_row([m24, s24], measured, quick=False)
    grid = run_grid([m24, s24], quick=True, out_dir=tmp_path, models=("repeat_last",), progress=False)
    assert [r.claim for r in grid.rows if "reduces" in r.claim] == [multi.claim, uni.claim]


def test_trained_row_is_judged_against_the_paper_within_ten_percent_and_says_by_how_much():
    from damokit.reproduce.fedformer import _model_row

    exchange = Setting("exchange_rate", 336)
    paper = PAPER[("exchange_rate", "M")]  # Autoformer at 336: 0.509
    runs = [{"mse": 0.4275, "mse_all": 0.424, "mae": 0.4835, "windows_all": 1182}]
    lower = _model_row(exchange, "Autoformer", runs, paper, quick=False)
    assert lower.verdict is Verdict.DOES_NOT_HOLD and "-16.0% vs paper" in lower.note  # better than published
    close = _model_row(exchange, "Autoformer", [{**runs[0], "mse": 0.55}], paper, quick=False)
    assert close.verdict is Verdict.HOLDS and "+8.1% vs paper" in close.note


def test_row_names_the_seeds_it_averages_and_a_lone_seed_of_a_multi_seed_grid():
    from damokit.reproduce.fedformer import _model_row

    ili = Setting("national_illness", 24)
    paper = PAPER[("national_illness", "M")]
    run = {"mse": 3.0, "mse_all": 3.1, "mae": 1.2, "windows_all": 170}
    three = [{**run, "seed": s, "mse": m} for s, m in ((0, 3.0), (1, 3.2), (2, 3.4))]
    row = _model_row(ili, "FEDformer-f", three, paper, quick=False, seeds=(0, 1, 2))
    assert row.ours == 3.2 and "mean of seeds 0, 1, 2 (std 0.163)" in row.note
    lone = _model_row(ili, "FEDformer-f", three[:1], paper, quick=False, seeds=(0, 1, 2))
    assert lone.ours == 3.0 and "seed 0 only" in lone.note
    single_seed_grid = _model_row(ili, "FEDformer-f", three[:1], paper, quick=False, seeds=(0,))
    assert "seed" not in single_seed_grid.note


def test_headline_gives_each_seeds_reduction_over_the_settings_it_ran():
    from damokit.reproduce.fedformer import _headline_row

    ili24, ili36 = Setting("national_illness", 24), Setting("national_illness", 36)
    measured = {
        (ili24, "FEDformer-f"): [{"seed": 0, "mse": 3.0}, {"seed": 1, "mse": 4.4}],
        (ili24, "Autoformer"): [{"seed": 0, "mse": 4.0}, {"seed": 1, "mse": 5.5}],
        (ili36, "FEDformer-f"): [{"seed": 0, "mse": 2.0}],
        (ili36, "Autoformer"): [{"seed": 0, "mse": 2.5}],
    }
    row = _headline_row([ili24, ili36], measured, quick=False)
    # seed 0: mean(0.25, 0.2); seed 1 ran only ILI-24: 1 - 4.4 / 5.5
    assert "by seed: 0 +22.5% (2 settings), 1 +20.0% (1 setting)" in row.note
    one_seed = {key: runs[:1] for key, runs in measured.items()}
    assert "by seed" not in _headline_row([ili24, ili36], one_seed, quick=False).note


def test_each_run_records_its_device_and_the_report_counts_runs_by_device(tmp_path):
    from damokit.reproduce.fedformer import _runs_by_device

    result = run_grid(
        [Setting("national_illness", 24)], quick=False, out_dir=tmp_path, models=("repeat_last",), progress=False
    )
    logged = (tmp_path / RUN_LOG).read_text()
    assert '"device": "cpu"' in logged and '"torch": ' in logged
    assert result.conditions["runs_by_device"] == {"cpu": 1}
    ili = Setting("national_illness", 24)
    measured = {
        (ili, "FEDformer-f"): [{"seed": 0}, {"seed": 1, "device": "cuda (NVIDIA H200)"}],  # seed 0: logged before
        (ili, "Autoformer"): [{"seed": 0, "device": "cpu"}, {"seed": 1, "device": "cuda (NVIDIA H200)"}],
    }
    assert _runs_by_device(measured) == {"cpu": 2, "cuda (NVIDIA H200)": 2}


def test_parallel_jobs_log_every_run_and_name_the_ones_that_failed(tmp_path):
    """--jobs 2 runs in spawned workers and the parent alone logs; a failed run is named once the rest are logged."""
    from damokit.errors import DamokitError

    good, bad = Setting("national_illness", 24), Setting("national_illness", 48, features="X")  # X: load_series raises
    with pytest.raises(DamokitError, match=r"1 of 2 runs failed .*\n.*national_illness\|48\|X\|repeat_last\|0: "
                       r"ValueError: features='X' is unknown"):  # fmt: skip
        run_grid([good, bad], quick=False, out_dir=tmp_path, models=("repeat_last",), progress=False, jobs=2)
    logged = (tmp_path / RUN_LOG).read_text().splitlines()
    assert len(logged) == 1 and '"device": "cpu"' in logged[0]  # the good run, logged by the parent
    report = run_grid([good], quick=False, out_dir=tmp_path, models=("repeat_last",), progress=False, report_only=True)
    assert report.rows[0].ours == 6.5871  # the paper's Repeat figure, 6.587


def test_paper_style_table_has_a_row_per_model_and_a_column_per_horizon():
    from damokit.reproduce.fedformer import _paper_style_tables

    ili24, ili36 = Setting("national_illness", 24), Setting("national_illness", 36)
    run = {"mse": 3.0, "mae": 1.2}
    measured = {
        (ili24, "FEDformer-f"): [{**run, "seed": 0, "mse": 3.0}, {**run, "seed": 1, "mse": 3.2}],
        (ili36, "FEDformer-f"): [{**run, "seed": 0}],
        (ili24, "FEDformer-w"): [{**run, "seed": 0}, {**run, "seed": 1}],
    }
    text = _paper_style_tables([ili24, ili36], ("FEDformer-f", "FEDformer-w", "Autoformer"), (0, 1), measured)
    lines = text.splitlines()
    header = lines.index("| model | ILI-24 (M) | ILI-36 (M) |")
    assert lines[header + 1] == "|---|---|---|"
    fed, wavelet = lines[header + 2], lines[header + 3]
    assert fed == "| FEDformer-f | 3.100 ± 0.100 / 1.200 (3.228 / 1.260) | 3.000 / 1.200 (2.679 / 1.080) [seed 0] |"
    assert wavelet == "| FEDformer-w | 3.000 ± 0.000 / 1.200 (2.203 / 0.963)* | pending |"  # * unverified figure
    assert lines[header + 4] == "| Autoformer | pending | pending |"  # nothing run yet
    assert _paper_style_tables([ili24], ("Autoformer",), (0,), measured) == ""
    assert "Quick mode" not in text and "Quick mode" in _paper_style_tables(
        [ili24], ("FEDformer-f",), (0,), measured, True
    )


def test_figure_has_one_log_scale_panel_per_dataset_and_features():
    from damokit.reproduce.fedformer import _figure

    ili = [Setting("national_illness", h) for h in (24, 36)]
    exchange_s = Setting("exchange_rate", 96, "S")
    no_repeat = Setting("ETTh1", 96)  # no repeat_last run: left out, bars are relative to it
    measured = {
        (s, m): [{"seed": 0, "mse": v}]
        for s in [*ili, exchange_s]
        for m, v in (("repeat_last", 2.0), ("FEDformer-f", 1.0))
    }
    measured[(no_repeat, "FEDformer-f")] = [{"seed": 0, "mse": 0.4}]
    fig = _figure([*ili, exchange_s, no_repeat], measured, quick=False)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["ILI (multivariate)", "Exchange (univariate)"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["24", "36"]
    assert all(ax.get_yscale() == "log" for ax in panels)
    heights = sorted(round(bar.get_height(), 3) for bar in panels[0].patches)
    assert heights == [0.5, 0.5, 1.0, 1.0]  # FEDformer-f and repeat_last at both horizons, relative to repeat_last
    assert _figure([no_repeat], measured, quick=False) is None


def test_only_trains_the_named_runs_and_reports_the_rest_as_pending(tmp_path, monkeypatch):
    from damokit.reproduce import fedformer

    ili24, ili36 = Setting("national_illness", 24), Setting("national_illness", 36)
    result = run_grid(
        [ili24, ili36], quick=False, out_dir=tmp_path, models=("repeat_last",), progress=False,
        only={"national_illness|36|M|repeat_last|0"},
    )  # fmt: skip
    logged = (tmp_path / RUN_LOG).read_text().splitlines()
    assert len(logged) == 1 and '"key": "national_illness|36|M|repeat_last|0"' in logged[0]
    assert [row.claim for row in result.rows] == ["repeat_last on ILI-36 (M)"]
    assert result.conditions["pending_runs"].startswith("1 ")
    # parallel workers get the named runs only, less the ones already logged
    handed = []
    monkeypatch.setattr(fedformer, "_run_parallel", lambda todo, *args: handed.extend(todo))
    only = {"national_illness|24|M|repeat_last|0", "national_illness|36|M|repeat_last|0"}
    run_grid([ili24, ili36], quick=False, out_dir=tmp_path, models=("repeat_last",), progress=False, only=only, jobs=2)
    assert handed == [(ili24, "repeat_last", 0)]
    with pytest.raises(ValueError, match=r"outside the grid: national_illness\|60\|M\|repeat_last\|0"):
        run_grid(
            [ili24],
            quick=False,
            out_dir=tmp_path,
            models=("repeat_last",),
            only={"national_illness|60|M|repeat_last|0"},
        )
