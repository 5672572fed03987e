"""The TransReID-SSL miniature's presets are complete and ordered by scale (the runs themselves are the
reproduction, too slow for the suite; ``smoke`` was run end to end when the module was written)."""

import dataclasses

from damokit.reproduce.transreid_ssl import PRESETS, MiniPreset


def test_presets_valid_and_ordered():
    assert set(PRESETS) == {"smoke", "quick", "full"}
    for preset in PRESETS.values():
        assert isinstance(preset, MiniPreset) and preset.seeds
        for f in dataclasses.fields(preset):
            value = getattr(preset, f.name)
            assert value is None or isinstance(value, tuple) or value >= 1, f.name
    assert PRESETS["smoke"].pool < PRESETS["quick"].pool < PRESETS["full"].pool
    assert len(PRESETS["full"].seeds) == 3  # the spec asks for 3 seeds
