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

    def trained(*args, **kwargs):
        raise AssertionError("a logged unit ran again")

    for name in ("_pretrain", "_finetune", "train_usl", "cfs_scores"):
        monkeypatch.setattr(transreid_ssl, name, trained)
    with tqdm(total=UNITS_PER_SEED, file=io.StringIO()) as bar:
        assert transreid_ssl._one_seed(PRESETS["smoke"], 0, RunLog(tmp_path), bar) == first
    with pytest.raises(AssertionError, match="ran again"):  # another seed is not in the log
        transreid_ssl._one_seed(PRESETS["smoke"], 1, RunLog(tmp_path), tqdm(disable=True))
