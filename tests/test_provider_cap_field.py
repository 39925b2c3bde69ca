"""gpus.toml ``tdp_is_provider_cap``: a board whose power is a cloud provider's cap (the AWS A10G's 300 W NVML cap)
sets neither its own nor its generation's core power (it was a frozenset of keys in energy/prior.py)."""

import dataclasses

import pytest

from wattlint.energy import prior
from wattlint.hardware import load_gpus


def test_the_a10g_is_flagged_in_the_database_with_a_source():
    g = load_gpus()["a10g-24gb"]
    assert g.tdp_is_provider_cap and "NVML cap" in g.sources["tdp_is_provider_cap"]
    assert not load_gpus()["a40-48gb"].tdp_is_provider_cap


def test_a_capped_board_takes_the_generation_reference_not_its_own_cap():
    # GA10x reference = the A40's 225 W core power over 84 SMs x 1.74 GHz (the docstring's figure, recomputed from
    # the function itself on the A40); the A10G: that W per SM-GHz x its own 80 SMs x 1.71 GHz
    gpus = load_gpus()
    a40, a10g = gpus["a40-48gb"], gpus["a10g-24gb"]
    k = prior.core_power_ref(a40) / (a40.sm_count * a40.boost_mhz / 1000)
    assert prior.core_power_ref(a10g) == pytest.approx(k * 80 * 1.71, rel=1e-9)
    # the same board without the flag: its own 300 W cap would set a higher W per SM-GHz than the A40's
    assert prior.core_power_ref(dataclasses.replace(a10g, tdp_is_provider_cap=False)) > prior.core_power_ref(a10g)


def test_a_provider_cap_needs_a_source(tmp_path):
    from wattlint.hardware import _provider_cap

    with pytest.raises(ValueError, match="no source for tdp_is_provider_cap"):
        _provider_cap("x", {"tdp_is_provider_cap": True, "sources": {}})
    with pytest.raises(ValueError, match="true or false"):
        _provider_cap("x", {"tdp_is_provider_cap": "yes", "sources": {"tdp_is_provider_cap": "s"}})
