"""Verdict logic of the TransFGU reproduction (spec §9.4) on hand-made per-seed results, no training."""

from damokit.reproduce.result import Verdict
from damokit.reproduce.transfgu import _synth_rows
from damokit.segmentation.transfgu.backbone import GateScores


def _runs(transfgu: list[float], patch: list[float], cam: float = 30.0, decoder: float = 35.0) -> list[dict]:
    return [
        {"metrics": {"transfgu": (t, 60.0), "patch_kmeans": (p, 40.0), "pixel_kmeans": (9.0, 30.0),
                     "trivial": (12.0, 60.0), "cam_train": (cam, 50.0), "decoder_train": (decoder, 55.0)}}
        for t, p in zip(transfgu, patch)
    ]  # fmt: skip


def test_gate_failure_makes_the_comparison_not_comparable():
    rows = _synth_rows("ssl", [GateScores(0.3, 0.0)] * 3, _runs([30, 31, 32], [10, 11, 12]))
    assert rows[0].verdict is Verdict.DOES_NOT_HOLD  # the gate itself
    assert all(r.verdict is Verdict.NOT_COMPARABLE for r in rows[1:])
    assert "gate failed" in rows[1].note and "gate failed" in rows[3].note


def test_margin_and_non_overlapping_std_decide_the_headline():
    gate = [GateScores(0.7, 0.4)] * 3
    # means 31 vs 17 (floor = max(patch 17, trivial 12)), stds 1: +14 >= 5 and 30 > 18 -> holds
    rows = _synth_rows("sup", gate, _runs([30, 31, 32], [16, 17, 18]))
    assert [r.verdict for r in rows[:4]] == [Verdict.HOLDS] * 4
    # +4 points only: below the 5-point margin
    assert _synth_rows("sup", gate, _runs([20, 21, 22], [16, 17, 18]))[1].verdict is Verdict.DOES_NOT_HOLD
    # +5.3 on the mean but stds overlap (spread 10): does not hold
    assert _synth_rows("sup", gate, _runs([12.3, 22.3, 32.3], [16, 17, 18]))[1].verdict is Verdict.DOES_NOT_HOLD
    # bottom-up wins: reported as such; a decoder below its pseudo labels is a negative gain
    rows = _synth_rows("sup", gate, _runs([10, 11, 12], [20, 21, 22], decoder=25.0))
    assert rows[1].verdict is Verdict.DOES_NOT_HOLD and "patch k-means wins" in rows[1].note
    assert rows[3].verdict is Verdict.DOES_NOT_HOLD and rows[3].ours.startswith("-5.0")
