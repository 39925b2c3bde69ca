"""Grid carbon intensity (gCO2e/kWh) and electricity price defaults.

Tables (shipped in ``wattlint/data/grid/`` with their licences):

* countries: ``global_energy_mix.json`` from CodeCarbon (MIT, ``LICENSE_codecarbon_MIT``), figures from
  Our World in Data / Ember (CC-BY-4.0), mostly years 2022-2023, keyed by ISO-3. ISO-2 codes map through
  ``iso2_to_iso3.json`` (ISO 3166-1).
* cloud regions: ``mlco2_impact_cloud_regions.csv`` from mlco2/impact (MIT, ``LICENSE_mlco2_impact_MIT``).
  Chosen over CodeCarbon's ``cloud_impact.csv`` because it covers AWS, GCP and Azure (CodeCarbon's file is GCP
  only); where the two disagree (e.g. Quebec 20 vs 34.5) this table's value is used and its per-row source kept.
  Its figures date from 2016-2019 sources: a row's own figure is used only where it is a sub-national grid (US
  eGRID subregions, Canadian provinces: :data:`SUBNATIONAL_GRIDS`); every other region takes its country's newer
  figure from the country table (aws:eu-west-2: 623 in the table, the UK's 2023 grid 238 g/kWh).
* world average: the generation-weighted mean of the country table (sum of intensity x TWh / sum of TWh),
  480.6 g/kWh — consistent with Ember's Global Electricity Review 2024 figure for 2023 (~480 g/kWh).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
from functools import lru_cache
from importlib import resources

from .types import ConfigError

#: default electricity price when none is given (USD per kWh).
DEFAULT_PRICE_PER_KWH = 0.13
DEFAULT_PRICE_SOURCE = ("U.S. EIA Electric Power Monthly: 2023 average retail price to the commercial sector, "
                        "~12.7 US cents/kWh (rounded to $0.13); pass --price for your tariff")
COUNTRY_SOURCE = "Our World in Data / Ember via CodeCarbon global_energy_mix.json (CC-BY-4.0 / MIT)"
CLOUD_SOURCE = "mlco2/impact cloud region table (MIT)"

_ALIASES_ISO2 = {"UK": "GB", "EL": "GR"}  # common non-ISO spellings (UK; Eurostat's EL for Greece)


def _grid_file(name: str) -> str:
    return resources.files("wattlint").joinpath("data", "grid", name).read_text(encoding="utf-8-sig")


@lru_cache(maxsize=1)
def _countries() -> dict[str, dict]:
    return json.loads(_grid_file("global_energy_mix.json"))


@lru_cache(maxsize=1)
def _iso2() -> dict[str, str]:
    return json.loads(_grid_file("iso2_to_iso3.json"))["map"]


@lru_cache(maxsize=1)
def _cloud() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for row in csv.DictReader(io.StringIO(_grid_file("mlco2_impact_cloud_regions.csv"))):
        provider, region = row["provider"].strip().lower(), row["region"].strip().lower()
        if provider and region and row["impact"].strip():
            out[f"{provider}:{region}"] = row
    return out


@lru_cache(maxsize=1)
def world_average() -> float:
    """Generation-weighted mean intensity of the country table (gCO2e/kWh)."""
    rows = [v for v in _countries().values() if v.get("total_TWh") and v.get("carbon_intensity") is not None]
    twh = sum(float(v["total_TWh"]) for v in rows)
    return sum(float(v["carbon_intensity"]) * float(v["total_TWh"]) for v in rows) / twh


def region_names() -> list[str]:
    """Every region spelling accepted: ISO-2, ISO-3 and provider:region."""
    return sorted({*_iso2(), *_countries(), *_cloud()})


def normalize_region(region: str) -> str:
    """Canonical form: ISO-3 for countries, 'provider:region' (lower case) for cloud regions."""
    text = region.strip()
    if ":" in text:
        provider, _, name = text.partition(":")
        key = f"{provider.strip().lower()}:{name.strip().lower()}"
        if key in _cloud():
            return key
        raise ConfigError(f"unknown cloud region {region!r}; {_did_you_mean(key, list(_cloud()))}")
    up = text.upper()
    up = _ALIASES_ISO2.get(up, up)
    if up in _countries():
        return up
    if up in _iso2():
        return _iso2()[up]
    by_name = {v["country_name"].lower(): k for k, v in _countries().items()}
    if text.lower() in by_name:
        return by_name[text.lower()]
    names = [*_iso2(), *_countries(), *(v["country_name"] for v in _countries().values())]
    raise ConfigError(f"unknown region {region!r} (use an ISO-2/ISO-3 country code or provider:region such as "
                      f"aws:us-east-1); {_did_you_mean(text, names)}")


def _did_you_mean(text: str, names: list[str]) -> str:
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(text.lower(), list(lowered), n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(lowered[c]) for c in close) + "?"
    return "no close match"


def grid_intensity(region: str | None) -> tuple[float, str]:
    """Carbon intensity (gCO2e/kWh) of ``region`` and a provenance line for the assumptions list."""
    if region is None or not str(region).strip():
        return (round(world_average(), 1),
                f"carbon intensity {world_average():.1f} gCO2e/kWh: world average (no --region; generation-weighted "
                f"mean of {COUNTRY_SOURCE}, consistent with Ember's ~480 g/kWh for 2023)")
    key = normalize_region(str(region))
    if ":" in key:
        row = _cloud()[key]
        value = float(row["impact"])
        where = ", ".join(x for x in (row.get("regionName"), row.get("city"), row.get("country")) if x)
        src = (row.get("source") or "").strip()
        iso = cloud_country(key)
        if iso is not None and row.get("country", "").strip() not in SUBNATIONAL_GRIDS:
            c = _countries()[iso]
            now = float(c["carbon_intensity"])
            why = ("a market-based claim, not the grid's" if value == 0 else
                   "from a 2016-2019 source, is not used")
            return now, (f"carbon intensity {round(now, 1):g} gCO2e/kWh: cloud region {key} ({where}) draws from "
                         f"the {c['country_name']} grid, year {c.get('year')}, {COUNTRY_SOURCE} (the region table's "
                         f"{round(value, 1):g} g/kWh, {why}" + (f"; row source: {src}" if src else "") + ")")
        return value, (f"carbon intensity {round(value, 1):g} gCO2e/kWh: cloud region {key} ({where}), a "
                       f"sub-national grid figure from {CLOUD_SOURCE}" + (f", row source: {src}" if src else ""))
    row = _countries()[key]
    value = float(row["carbon_intensity"])
    return value, (f"carbon intensity {round(value, 1):g} gCO2e/kWh: {row['country_name']} ({key}), year {row.get('year')}, "
                   f"{COUNTRY_SOURCE}")


#: countries whose cloud rows give the region's own (sub-national) grid: US eGRID subregions and electricityMap
#: zones, Canadian provincial utilities (Hydro-Quebec 20 against Canada's 170 g/kWh). Every other row gives a
#: national figure from 2016-2019 sources (UK 623 g/kWh against 238 in 2023): the country table's newer one is used.
SUBNATIONAL_GRIDS = frozenset({"USA", "Canada"})
#: cloud regions whose table row names another country than the grid they draw from (Hong Kong listed as China)
_CLOUD_COUNTRY = {"aws:ap-east-1": "HKG", "gcp:asia-east2": "HKG"}


def cloud_country(key: str) -> str | None:
    """ISO-3 of the country whose grid the cloud region ``key`` (normalized) draws from, or None where the country
    table has no such country."""
    if key in _CLOUD_COUNTRY:
        return _CLOUD_COUNTRY[key]
    name = (_cloud()[key].get("country") or "").strip().lower()
    by_name = {v["country_name"].lower(): k for k, v in _countries().items()}
    return by_name.get({"usa": "united states"}.get(name, name))


def cloud_pue(region: str) -> float | None:
    """The PUE the cloud table lists for a region, when it has one (few rows do)."""
    if ":" not in region:
        return None
    row = _cloud().get(normalize_region(region))
    try:
        return float(row["PUE"]) if row and row.get("PUE") else None
    except ValueError:
        return None


def price_per_kwh(region: str | None = None) -> tuple[float, str]:
    """Electricity price (USD/kWh) and its provenance. No per-region price table ships yet: the stated default."""
    where = f" (no price table for region {region}; " if region else " ("
    return DEFAULT_PRICE_PER_KWH, (f"electricity price ${DEFAULT_PRICE_PER_KWH:.2f}/kWh{where}default: "
                                   f"{DEFAULT_PRICE_SOURCE})")
