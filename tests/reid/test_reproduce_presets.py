"""The TransReID-SSL miniature's presets are complete and ordered by scale, and one seed's units resume from
the run log (the quick and full runs themselves are the reproduction, too slow for the suite)."""

import dataclasses
import io

import pytest
import torch
from tqdm import tqdm

from damokit.reproduce import transreid_ssl
from damokit.reproduce.runlog import RunLog
from damokit.reproduce.transreid_ssl import PRESETS, UNITS_PER_SEED, MiniPreset


def test_presets_valid_and_ordered():
    assert set(PRESETS) == {"smoke", "quick", "full"}
    for preset in PRESETS.values():
        assert isinstance(preset, MiniPreset) and preset.seeds
        for f in dataclasses.fields(preset):
            value = getattr(preset, f.name)
            assert value is None or isinstance(value, tuple) or value >= 1, f.name
    assert PRESETS["smoke"].pool < PRESETS["quick"].pool < PRESETS["full"].pool
    assert len(PRESETS["full"].seeds) == 3  # the spec asks for 3 seeds


def test_a_seed_rerun_into_its_folder_trains_nothing_and_gives_the_same_scores(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    with tqdm(total=UNITS_PER_SEED, file=io.StringIO()) as bar:
        first = transreid_ssl._one_seed(PRESETS["smoke"], 0, RunLog(tmp_path), bar)
        assert bar.n == UNITS_PER_SEED
    assert not any((tmp_path / "checkpoints").iterdir())  # the DINO checkpoints are spent once saved

    def trained(*args, **kwargs):
        raise AssertionError("a logged unit ran again")

    for name in ("_pretrain", "_finetune", "train_usl", "cfs_scores"):
        monkeypatch.setattr(transreid_ssl, name, trained)
    with tqdm(total=UNITS_PER_SEED, file=io.StringIO()) as bar:
        assert transreid_ssl._one_seed(PRESETS["smoke"], 0, RunLog(tmp_path), bar) == first
    with pytest.raises(AssertionError, match="ran again"):  # another seed is not in the log
        transreid_ssl._one_seed(PRESETS["smoke"], 1, RunLog(tmp_path), tqdm(disable=True))


def test_dino_pretraining_killed_midway_resumes_to_the_uninterrupted_teacher(tmp_path, monkeypatch):
    from damokit.nn import dino

    torch.set_num_threads(1)
    images = torch.randint(0, 256, (48, 3, 64, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    whole = transreid_ssl._pretrain("patchify", images, 2, 16, 0)  # 2 epochs x 3 steps
    monkeypatch.setattr(transreid_ssl, "CHECKPOINT_EVERY", 2)
    real_fit, steps, die_at = dino.fit, [], [4]

    def counted_fit(*args, loss_fn, **kwargs):
        def counted(model, batch):
            steps.append(1)
            if len(steps) == die_at[0]:
                raise KeyboardInterrupt  # dies in step 4; the last checkpoint is at step 3 (epoch end)
            return loss_fn(model, batch)

        return real_fit(*args, loss_fn=counted, **kwargs)

    monkeypatch.setattr(dino, "fit", counted_fit)
    with pytest.raises(KeyboardInterrupt):
        transreid_ssl._pretrain("patchify", images, 2, 16, 0, tmp_path)
    steps.clear()
    die_at[0] = None
    resumed = transreid_ssl._pretrain("patchify", images, 2, 16, 0, tmp_path)
    assert len(steps) == 3  # steps 4-6 only
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_full_mode_comparison_below_raw_pixels_claims_nothing(tmp_path, monkeypatch):
    from damokit.reproduce.result import Verdict

    seed0 = {  # values like full mode seed 0 (mAPs as measured, rounded): DINO-only and USL below raw pixels
        "pixels_mAP": 0.053, "pixels_r1": 0.1, "pixels_AtoB_mAP": 0.02, "pixels_AtoB_r1": 0.02,
        "scratch_mAP": 0.218, "scratch_r1": 0.13, "full_mAP": 0.498, "full_r1": 0.48, "full_AtoB_mAP": 0.013,
        "full_AtoB_r1": 0.01, "cfs_high_relevant": 0.6, "cfs_low_relevant": 0.4, "cfs_direction_high": 1.0,
        "cfs_mAP": 0.392, "cfs_r1": 0.32, "random_mAP": 0.331, "random_r1": 0.25, "ics_mAP": 0.687, "ics_r1": 0.72,
        "ics_AtoB_mAP": 0.074, "ics_AtoB_r1": 0.07, "dino_only_mAP": 0.007, "dino_only_r1": 0.0, "usl_mAP": 0.011,
        "usl_r1": 0.0, "pixels_pku_mAP": 0.2, "pku_scratch_mAP": 0.383, "pku_scratch_r1": 0.34,
        "pku_ssl_mAP": 0.531, "pku_ssl_r1": 0.58, "pku_usl_mAP": 0.219, "pku_usl_r1": 0.27,
    }  # fmt: skip
    monkeypatch.setattr(transreid_ssl, "_one_seed", lambda p, seed, log, bar: seed0)
    rows = {row.claim: row for row in transreid_ssl.run(False, tmp_path, preset="full").rows}
    usl = rows["USL (cluster contrast) improves on the SSL features"]
    assert usl.verdict is Verdict.NOT_COMPARABLE and "no model beats raw pixels (5.3)" in usl.note
    assert rows["SSL pre-training beats training from scratch (domain A)"].verdict is Verdict.HOLDS
