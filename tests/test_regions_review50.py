"""Region / carbon-intensity review: vintage of US rows, wrong or unsourced US subregions, bare and foreign cloud
region names, the cloud PUE's source, implausible country figures, the Scaleway row, swapped place fields, country
name aliases.

Expected values are read here from the shipped data files (raw CSV / JSON), never from wattlint.carbon.
"""

import csv
import io
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from wattlint import carbon
from wattlint.carbon import grid_intensity, normalize_region, region_names
from wattlint.types import ConfigError

_GRID = resources.files("wattlint").joinpath("data", "grid")


def _table() -> dict[str, dict]:
    rows = csv.DictReader(io.StringIO(_GRID.joinpath("mlco2_impact_cloud_regions.csv").read_text(encoding="utf-8-sig")))
    return {f"{r['provider']}:{r['region']}".lower(): r for r in rows}


def _countries() -> dict:
    return json.loads(_GRID.joinpath("global_energy_mix.json").read_text(encoding="utf-8"))


def _overrides() -> list[dict]:
    return list(csv.DictReader(io.StringIO(_GRID.joinpath("cloud_region_overrides.csv").read_text(encoding="utf-8"))))


# 1. US eGRID rows: the table's vintage and the 2023 national figure beside them
@pytest.mark.parametrize("region", ["aws:us-east-1", "aws:us-east-2", "azure:eastus"])  # gcp: Google's figure
def test_us_egrid_rows_state_their_vintage_and_the_national_figure(region):
    assert _table()[region]["source"] == "eGRID"  # the row names no edition
    usa = _countries()["USA"]
    value, note = grid_intensity(region)
    assert value == pytest.approx(float(_table()[region]["impact"]))
    assert "edition not named" in note and "2019 release" in note and "arXiv:1910.09700" in note
    assert f"United States national figure for {usa['year']} is {round(usa['carbon_intensity'], 1):g} g/kWh" in note


# 2. azure:centralus (Des Moines, Iowa) is on MROW like gcp:us-central1 (Council Bluffs, Iowa)
def test_azure_centralus_uses_the_tables_own_iowa_mrow_figure():
    table = _table()
    assert table["azure:centralus"]["state"] == table["gcp:us-central1"]["state"] == "Iowa"
    assert float(table["azure:centralus"]["impact"]) == 736.6  # the third-party file is unchanged
    value, note = grid_intensity("azure:centralus")
    assert value == pytest.approx(float(table["gcp:us-central1"]["impact"]))  # 566.3
    assert "MROW" in note and "corrected from the table's 736.6" in note
    fix = [o for o in _overrides() if (o["provider"], o["region"], o["field"]) == ("azure", "centralus", "impact")]
    assert len(fix) == 1 and fix[0]["source"] and "MROW" in fix[0]["reason"]


# 3. azure:westcentralus (Wyoming): no RMPA row in the table -> the US national figure, with the reason
def test_azure_westcentralus_takes_the_us_national_figure():
    table = _table()
    assert not table["azure:westcentralus"]["source"]  # unsourced guess in the table
    assert not any(r["state"] in ("Wyoming", "Colorado") for k, r in table.items() if k != "azure:westcentralus")
    value, note = grid_intensity("azure:westcentralus")
    assert value == pytest.approx(_countries()["USA"]["carbon_intensity"])  # 369.5
    assert "the United States grid" in note and "RMPA" in note and "297.6" in note


# 4. bare cloud names and country-bound suggestions
@pytest.mark.parametrize("region,key", [("us-east-1", "aws:us-east-1"), ("westeurope", "azure:westeurope"),
                                        ("europe-west4", "gcp:europe-west4")])
def test_a_bare_cloud_region_name_suggests_its_provider(region, key):
    with pytest.raises(ConfigError, match=f"did you mean '{key}'"):
        normalize_region(region)


def test_a_named_country_keeps_suggestions_on_its_grid():
    table = _table()
    swedish = sorted(k for k, r in table.items() if r["country"] == "Sweden")  # ['aws:eu-north-1']
    with pytest.raises(ConfigError) as err:
        normalize_region("azure:swedencentral")
    msg = str(err.value)
    assert "westcentralus" not in msg and "us" not in msg.replace("--region", "")
    assert all(repr(k) in msg for k in swedish)
    assert "or give the country, e.g. --region SE" in msg and "\n" not in msg


def test_unknown_region_is_one_stderr_line_and_exit_2(tmp_path):
    model = Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx"
    proc = subprocess.run([sys.executable, "-m", "wattlint", str(model), "--gpu", "a100", "--steps", "1",
                           "--region", "azure:swedencentral"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "--region SE" in proc.stderr


# 5. the cloud PUE's source (the table gives no year for it)
def test_cloud_pue_line_names_the_rows_source():
    row = _table()["gcp:europe-west4"]
    note = carbon.cloud_pue_source("gcp:europe-west4")
    assert row["PUE source"] in note and "datacenter-specific" in note and "no year given" in note


def test_the_plan_prints_the_cloud_pue_source(tmp_path):
    model = Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx"
    proc = subprocess.run([sys.executable, "-m", "wattlint", str(model), "--gpu", "a100", "--steps", "1",
                           "--region", "gcp:europe-west4"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())  # the text report wraps lines
    assert "PUE 1.09 (listed for cloud region gcp:europe-west4" in out
    assert f"source: {_table()['gcp:europe-west4']['PUE source']}" in out and "no year given" in out


# 6. implausible or stale country figures are flagged, never changed
@pytest.mark.parametrize("iso3,why", [("TKM", "implausible"), ("UZB", "implausible"), ("CAF", "implausible"),
                                      ("MSR", "implausible"), ("SHN", "implausible"), ("ESH", "from 2009")])
def test_implausible_or_old_country_figures_warn(iso3, why):
    raw = _countries()[iso3]
    value, note = grid_intensity(iso3)
    assert value == pytest.approx(raw["carbon_intensity"])  # unchanged
    assert "WARNING" in note and why in note


@pytest.mark.parametrize("iso3", ["FRA", "USA", "POL", "IND", "ZAF"])
def test_ordinary_country_figures_do_not_warn(iso3):
    assert "WARNING" not in grid_intensity(iso3)[1]


# 7. the Scaleway row (empty region field) is reachable
def test_scaleway_paris_is_reachable():
    row = _table()["scaleway:"]
    assert row["regionName"] == "Paris" and row["country"] == "France"
    assert "scaleway:paris" in region_names()
    value, note = grid_intensity("scaleway:paris")
    assert value == pytest.approx(_countries()["FRA"]["carbon_intensity"])  # a national row: France's figure
    assert "the France grid" in note


# 8. misplaced place fields
def test_place_fields_are_corrected():
    assert _table()["coreweave:las1"]["city"] == "Nevada"  # swapped in the third-party file
    assert "(US West, Las Vegas, Nevada, USA)" in grid_intensity("coreweave:LAS1")[1]
    assert "Dublin, Ohio, USA" in grid_intensity("aws:us-gov-east-1")[1]


def test_every_override_has_a_source_and_a_reason():
    table = _table()
    for o in _overrides():
        assert o["source"].strip() and o["reason"].strip()
        assert f"{o['provider']}:{o['region']}".lower() in table


# 9. common country names
@pytest.mark.parametrize("name,iso3", [("Czech Republic", "CZE"), ("Ivory Coast", "CIV"), ("Türkiye", "TUR"),
                                       ("Viet Nam", "VNM"), ("Britain", "GBR"), ("Côte d'Ivoire", "CIV")])
def test_common_country_names(name, iso3):
    assert iso3 in _countries()
    assert normalize_region(name) == iso3
