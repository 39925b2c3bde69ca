"""Grid carbon intensity and price defaults."""

import pytest

from wattlint.carbon import cloud_pue, grid_intensity, normalize_region, price_per_kwh, region_names
from wattlint.types import ConfigError


def test_fr_lower_than_de():
    fr, fr_note = grid_intensity("FR")
    de, de_note = grid_intensity("DE")
    assert fr < de
    assert fr == pytest.approx(56.0, abs=0.1) and de == pytest.approx(381.0, abs=0.1)
    assert "France" in fr_note and "Ember" in fr_note


@pytest.mark.parametrize("region,iso3", [("FR", "FRA"), ("fra", "FRA"), ("FRA", "FRA"), ("uk", "GBR"),
                                         ("GB", "GBR"), ("us", "USA"), ("France", "FRA"), (" de ", "DEU"),
                                         ("KR", "KOR"), ("CZ", "CZE")])
def test_iso2_iso3_and_names(region, iso3):
    assert normalize_region(region) == iso3


def test_sample_values_from_readme():
    for region, value in (("US", 369.5), ("CN", 582.3), ("IN", 713.4), ("SE", 40.7)):
        assert grid_intensity(region)[0] == pytest.approx(value, abs=0.1)


def test_world_average_is_stated():
    # independent of carbon.py: the generation-weighted mean of the shipped country table, summed here from the raw
    # JSON (countries with both a carbon intensity and a total generation in TWh)
    import json
    from importlib import resources

    raw = json.loads(resources.files("wattlint").joinpath("data", "grid", "global_energy_mix.json").read_text())
    num = den = 0.0
    for row in raw.values():
        if isinstance(row, dict) and row.get("total_TWh") and row.get("carbon_intensity") is not None:
            num += float(row["carbon_intensity"]) * float(row["total_TWh"])
            den += float(row["total_TWh"])
    value, note = grid_intensity(None)
    assert value == pytest.approx(num / den, abs=0.1)
    assert 450 < value < 500  # Ember / IEA put the 2022-2023 world grid at ~460-480 gCO2e/kWh
    assert "world average" in note


@pytest.mark.parametrize("region,value", [("aws:us-east-1", 367.8), ("AWS:US-EAST-1", 367.8),
                                          ("azure:canadaeast", 20), ("aws:ca-central-1", 20)])  # GCP: Google's
def test_cloud_regions_from_mlco2_table(region, value):
    v, note = grid_intensity(region)
    assert v == pytest.approx(value)
    assert "mlco2/impact" in note


def test_azure_and_gcp_regions_exist():
    names = region_names()
    assert any(n.startswith("azure:") for n in names)
    assert "gcp:europe-west1" in names


@pytest.mark.parametrize("region,match", [
    ("XX", "unknown region 'XX'"), ("FRR", "did you mean"), ("aws:us-east-9", "did you mean 'aws:us-east-"),
    ("nowhere:xyz", "unknown cloud region"),
])
def test_unknown_region(region, match):
    with pytest.raises(ConfigError, match=match):
        grid_intensity(region)


def test_price_default_is_stated():
    price, note = price_per_kwh(None)
    assert price > 0 and "EIA" in note
    assert price_per_kwh("FRA")[0] == price


def test_cloud_pue_only_for_cloud_rows():
    assert cloud_pue("FR") is None
    assert cloud_pue("gcp:asia-east1") == pytest.approx(1.12)


def test_licences_ship_beside_data():
    from importlib import resources

    grid = resources.files("wattlint").joinpath("data", "grid")
    names = {p.name for p in grid.iterdir()}
    assert {"global_energy_mix.json", "mlco2_impact_cloud_regions.csv", "LICENSE_codecarbon_MIT",
            "LICENSE_mlco2_impact_MIT"} <= names


_CLOUD_ROWS = {"aws:eu-west-2": 623, "azure:uksouth": 623, "azure:westeurope": 569, "seeweb:fro2": 0,
               "aws:ap-east-1": 702, "gcp:asia-east2": 702}  # the cloud table's rows, read by hand


# Expected values read by hand from src/wattlint/data/grid/global_energy_mix.json (OWID / Ember): GBR 237.589 (2023),
# NLD 267.622 (2023), ITA 330.718 (2023), HKG 699.499 (2022); the cloud table's own rows are 623, 569, 0 and 702.
@pytest.mark.parametrize("region,value,country", [
    ("aws:eu-west-2", 237.589, "United Kingdom"), ("azure:uksouth", 237.589, "United Kingdom"),
    ("azure:westeurope", 267.622, "Netherlands"), ("seeweb:fro2", 330.718, "Italy"),
    ("aws:ap-east-1", 699.499, "Hong Kong"),  # gcp:asia-east2 takes Google's 360 (test_carbon_regions_s52)
])
def test_a_national_cloud_row_takes_its_countrys_newer_grid_figure(region, value, country):
    v, note = grid_intensity(region)
    assert v == pytest.approx(value)
    assert f"the {country} grid" in note
    assert f"the region table's {_CLOUD_ROWS[region]:g} g/kWh" in note  # the replaced figure is named


def test_the_market_based_zero_is_named_as_such():
    _, note = grid_intensity("seeweb:fro2")
    assert "0 g/kWh, a market-based claim" in note


@pytest.mark.parametrize("region,value", [("aws:us-west-2", 297.6), ("azure:centralus", 566.3),  # 566.3: MROW override
                                          ("azure:canadacentral", 69.3), ("coreweave:lga1", 282.75)])
def test_a_subnational_cloud_row_keeps_its_own_grid(region, value):
    v, note = grid_intensity(region)
    assert v == pytest.approx(value)
    assert "sub-national grid" in note
