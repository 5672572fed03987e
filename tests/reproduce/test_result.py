"""Reproduction verdicts: the paired-over-seeds rule."""

import pytest

from damokit.reproduce.result import Verdict, paired_verdict


@pytest.mark.parametrize(
    ("differences", "expected"),
    [
        ([0.010, 0.012, 0.011], Verdict.HOLDS),  # consistent gain: far beyond 2 s.e.
        ([0.030, -0.020, 0.002], Verdict.WITHIN_NOISE),  # mean +0.004, s.e. 0.014
        ([-0.010, -0.012, -0.011], Verdict.DOES_NOT_HOLD),
        ([0.0, 0.0, 0.0], Verdict.WITHIN_NOISE),  # no difference at all is not a gain
        ([0.004], Verdict.HOLDS),  # one seed: the sign decides, and the note says so
    ],
)
def test_paired_verdict(differences, expected):
    verdict, summary = paired_verdict(differences)
    assert verdict is expected
    assert ("no noise estimate" in summary) == (len(differences) == 1)


def test_paired_verdict_summary_states_mean_and_standard_error():
    _, summary = paired_verdict([0.01, 0.03])  # mean 0.02, s.e. = stdev 0.01414 / sqrt 2 = 0.01
    assert summary.startswith("paired Δ +0.0200 ± 0.0100 (s.e. over 2 seeds")
