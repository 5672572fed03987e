"""CLI: help, listing, unknown names, and the reproduction report."""

import json

import pytest

from damokit.cli import main


def test_help_lists_the_foundation_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("list", "reproduce", "bench"):
        assert command in out


def test_list_optimizers(capsys):
    assert main(["list", "optimizers"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"sgd", "adam", "adamw"} <= set(names)


def test_unknown_reproduction_is_one_clear_line(capsys):
    assert main(["reproduce", "fedformr", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown reproduction 'fedformr'" in err and "Did you mean: fedformer" in err
    assert "Traceback" not in err


def test_unknown_benchmark_is_one_clear_line(capsys, tmp_path):
    assert main(["bench", "no_such_benchmark", "--out", str(tmp_path)]) == 2
    assert "unknown benchmark 'no_such_benchmark'" in capsys.readouterr().err


@pytest.fixture
def no_reproductions(monkeypatch):
    """An empty reproduction table (discovery first, so that it does not refill the table)."""
    from damokit import registry

    registry._discover()
    monkeypatch.setitem(registry._REGISTRY, "reproduction", {})
    return registry


def test_reproduce_writes_report_and_json(tmp_path, capsys, no_reproductions):
    """A paper without a reproduction is reported as such, never as a result."""
    assert main(["reproduce", "look", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| look |" in out and "not yet implemented" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results[0]["paper"] == "look" and results[0]["rows"][0]["verdict"] == "not yet implemented"
    assert "not yet implemented" in (tmp_path / "report.md").read_text()


def test_failing_reproduction_gives_error_row_and_exit_1(tmp_path, capsys, no_reproductions):
    @no_reproductions.register_reproduction("look")
    def broken(quick, out_dir):
        raise RuntimeError("boom")

    assert main(["reproduce", "look", "--out", str(tmp_path), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "error: RuntimeError: boom" in captured.out
    assert "reproductions failed: look" in captured.err


def test_python_dash_m_damokit_runs_the_cli():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "damokit", "list", "optimizers"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "adam" in proc.stdout
