"""``damokit optim``: list and demo argument errors."""

from __future__ import annotations

from damokit.cli import main


def test_optim_list_shows_family_with_bounds(capsys):
    assert main(["optim", "list", "--grad-bound", "2"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("momentum_sgd"))
    assert line.split()[2:5] == ["identity", "1", "1"]  # h = 1: c_l = c_u = 1
    assert "adabound" in out and "named_in_abstract" in out


def test_optim_errors_are_one_line(capsys):
    assert main(["optim", "demo", "--exp", "E9"]) == 2
    assert "--exp='E9' is not one of E1, E2, E3, E4, E5" in capsys.readouterr().err
    assert main(["optim", "list", "--grad-bound", "0"]) == 2
    assert "--grad-bound=0.0 must be > 0" in capsys.readouterr().err
