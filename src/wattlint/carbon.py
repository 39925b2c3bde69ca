"""Grid carbon intensity (gCO2e/kWh) and electricity price defaults.

Tables (shipped in ``wattlint/data/grid/`` with their licences):

* countries: ``global_energy_mix.json`` from CodeCarbon (MIT, ``LICENSE_codecarbon_MIT``), figures from
  Our World in Data / Ember (CC-BY-4.0), mostly years 2022-2023, keyed by ISO-3. ISO-2 codes map through
  ``iso2_to_iso3.json`` (ISO 3166-1).
* GCP regions: ``codecarbon_cloud_impact.csv`` from CodeCarbon (MIT, ``LICENSE_codecarbon_MIT``; shipped
  unchanged): Google's own location-based grid carbon intensity per Cloud region (gCO2eq/kWh, "average operational
  gross emissions per unit of energy from the grid", https://cloud.google.com/sustainability/region-carbon). The
  file gives no year; its 40 figures are Google's 2023 data (GoogleCloudPlatform/region-carbon-info
  data/yearly/2023.csv; CodeCarbon PR #610, July 2024). Every ``gcp:`` region it lists takes its figure (the 20
  the mlco2 table also has, and 20 it lacks); a GCP region it lacks would keep the rules below. The file spells
  Doha ``me-cenrtal1``: read as ``me-central1`` (:data:`_GOOGLE_REGION_FIXES`).
* other cloud regions: ``mlco2_impact_cloud_regions.csv`` from mlco2/impact (MIT, ``LICENSE_mlco2_impact_MIT``),
  because it covers AWS, GCP and Azure (CodeCarbon's file is GCP only). The mlco2 table itself gives Quebec two
  figures (aws:ca-central-1, azure:canadaeast, ovh:bhs 20; gcp:northamerica-northeast1 34.5, Hydro-Quebec); Google
  gives its Montreal region 2. Its figures date from 2016-2019 sources: a row's own figure is used only where it is a sub-national grid (US
  eGRID subregions, Canadian provinces: :data:`SUBNATIONAL_GRIDS`); every other region takes its country's newer
  figure from the country table (aws:eu-west-2: 623 in the table, the UK's 2023 grid 238 g/kWh).
* wattlint's corrections to that table: ``cloud_region_overrides.csv`` (one row per corrected field, with its
  source and reason; the third-party file itself is shipped unchanged): azure:centralus on MROW, azure:westcentralus
  on the national figure, two misplaced city/state fields, the Scaleway row's missing region name.
* world average: the generation-weighted mean of the country table (sum of intensity x TWh / sum of TWh),
  480.6 g/kWh — consistent with Ember's Global Electricity Review 2024 figure for 2023 (~480 g/kWh).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from importlib import resources

from .types import ConfigError

#: default electricity price when none is given (USD per kWh).
DEFAULT_PRICE_PER_KWH = 0.13
DEFAULT_PRICE_SOURCE = ("U.S. EIA Electric Power Monthly: 2023 average retail price to the commercial sector, "
                        "~12.7 US cents/kWh (rounded to $0.13); pass --price for your tariff")
COUNTRY_SOURCE = "Our World in Data / Ember via CodeCarbon global_energy_mix.json (CC-BY-4.0 / MIT)"
CLOUD_SOURCE = "mlco2/impact cloud region table (MIT)"
GOOGLE_SOURCE = ("Google's location-based grid carbon intensity for the region "
                 "(cloud.google.com/sustainability/region-carbon) via CodeCarbon cloud_impact.csv (MIT)")
#: the Google table's vintage: the file names no year; its figures equal Google's region-carbon-info 2023 data
GOOGLE_VINTAGE = "year 2023 (no year given in the file; its figures are Google's 2023 data)"
#: region names the Google table misspells
_GOOGLE_REGION_FIXES = {"me-cenrtal1": "me-central1"}
#: appended to every carbon intensity line: what the 5-95 % CO2 and cost ranges do not vary
RANGE_CLAUSE = ("; the 5-95 % CO2 and cost ranges vary only the energy and time: this intensity, the PUE and the "
                "price are held fixed")

_ALIASES_ISO2 = {"UK": "GB", "EL": "GR"}  # common non-ISO spellings (UK; Eurostat's EL for Greece)
#: common country names the table spells otherwise (keys accent-folded, lower case): former or UN/ISO 3166 short
#: names (Czech Republic -> Czechia, Viet Nam, Türkiye), English exonyms (Ivory Coast) and Britain.
_NAME_ALIASES = {"czech republic": "CZE", "ivory coast": "CIV", "turkiye": "TUR", "viet nam": "VNM",
                 "britain": "GBR", "great britain": "GBR", "united states of america": "USA"}
#: a country's grid figure at or above this is flagged (never changed): a grid average cannot exceed its most
#: carbon-intensive source, coal, whose life-cycle median is 820 gCO2e/kWh (IPCC AR5 WG3 Annex III, Table A.III.2).
PLAUSIBLE_MAX_G_PER_KWH = 1000.0
#: a country figure more than this many years older than the newest year of the table is flagged
STALE_YEARS = 5
#: what the mlco2/impact table's bare "eGRID" source means: the US rows are in the table's 2019 release (Lacoste et
#: al. 2019, "Quantifying the Carbon Emissions of Machine Learning", arXiv:1910.09700), which names no edition.
EGRID_VINTAGE = ("eGRID, edition not named: rows of the table's 2019 release (Lacoste et al. 2019, "
                 "arXiv:1910.09700), so eGRID2016 data or older")


def shown(figure: float | str, places: int = 1, *, significant: int | None = None) -> str:
    """A figure as the reports print it: rounded half-up on its decimal text (the source's own string, or a float's
    shortest repr, which is the decimal text it was read from), to ``places`` decimals or to ``significant`` digits,
    trailing zeros dropped as ``:g`` does (56, 369.5; 0.046 and 1e-05 to two significant digits). Binary rounding
    (``round(x, 1)``, ``f"{x:.1f}"``) sees a float, not its text: Germany's 380.95 g/kWh is 380.9499... in binary
    and printed 380.9. Display only: every computation uses the unrounded figure."""
    text = figure.strip() if isinstance(figure, str) else repr(float(figure))
    number = Decimal(text)
    if not number.is_finite():
        return f"{float(figure):g}"
    if significant is not None and number:  # rounded half-up, written by ``:g`` (0.046, 1e-05)
        out = number.quantize(Decimal(1).scaleb(number.adjusted() - significant + 1), rounding=ROUND_HALF_UP)
        return f"{float(out):g}"
    out = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return f"{out.normalize():f}" if out else f"{float(out):g}"


def _grid_file(name: str) -> str:
    return resources.files("wattlint").joinpath("data", "grid", name).read_text(encoding="utf-8-sig")


@lru_cache(maxsize=1)
def _countries() -> dict[str, dict]:
    return json.loads(_grid_file("global_energy_mix.json"))


@lru_cache(maxsize=1)
def _iso2() -> dict[str, str]:
    return json.loads(_grid_file("iso2_to_iso3.json"))["map"]


@lru_cache(maxsize=1)
def _overrides() -> dict[tuple[str, str], list[dict]]:
    """wattlint's corrections to the mlco2/impact rows, keyed by the row's (provider, region) as the table spells
    them (lower case; region '' for a row without one)."""
    out: dict[tuple[str, str], list[dict]] = {}
    for row in csv.DictReader(io.StringIO(_grid_file("cloud_region_overrides.csv"))):
        out.setdefault((row["provider"].strip().lower(), row["region"].strip().lower()), []).append(row)
    return out


@lru_cache(maxsize=1)
def _cloud() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for raw in csv.DictReader(io.StringIO(_grid_file("mlco2_impact_cloud_regions.csv"))):
        row = dict(raw)
        fixes = _overrides().get((row["provider"].strip().lower(), row["region"].strip().lower()), [])
        row["_table_impact"] = row["impact"]
        for fix in fixes:
            row[fix["field"]] = fix["value"]
        row["_overrides"] = fixes
        provider, region = row["provider"].strip().lower(), row["region"].strip().lower()
        if provider and region and row["impact"].strip():
            out[f"{provider}:{region}"] = row
    for key, g in _google().items():  # GCP regions only Google's table lists
        if key not in out:
            out[key] = {"provider": "gcp", "providerName": g["providerName"], "region": key.partition(":")[2],
                        "regionName": "", "city": g["city"], "state": g["state"],
                        "country": _countries().get(g["countryIsoCode"].strip().upper(), g)["country_name"],
                        "impact": g["impact"], "source": g["source"], "PUE": "", "PUE source": "", "comment": "",
                        "_table_impact": "", "_overrides": [], "_iso3": g["countryIsoCode"].strip().upper()}
    return out


@lru_cache(maxsize=1)
def _google() -> dict[str, dict]:
    """Google's per-region grid figures (CodeCarbon's copy), keyed 'gcp:<region>'."""
    out: dict[str, dict] = {}
    for row in csv.DictReader(io.StringIO(_grid_file("codecarbon_cloud_impact.csv"))):
        region = row["region"].strip().lower()
        if row["provider"].strip().lower() == "gcp" and region and row["impact"].strip():
            out[f"gcp:{_GOOGLE_REGION_FIXES.get(region, region)}"] = row
    return out


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower().strip()


@lru_cache(maxsize=1)
def _iso3_to_iso2() -> dict[str, str]:
    return {v: k for k, v in _iso2().items()}


def _country_in_name(name: str) -> str | None:
    """ISO-3 of a country a cloud region's name spells out (azure:swedencentral -> SWE), or None."""
    low = _fold(name)
    flat = re.sub(r"[^a-z]", "", low)
    best = ""
    found = None
    for iso, v in _countries().items():
        n = re.sub(r"[^a-z]", "", _fold(v["country_name"]))
        if len(n) >= 4 and n in flat and len(n) > len(best):
            best, found = n, iso
    if found:
        return found
    if "korea" in flat:
        return "KOR"
    tokens = [t for t in re.split(r"[^a-z]+", low) if t]
    for short, iso in (("uae", "ARE"), ("uk", "GBR"), ("us", "USA")):
        if short in tokens or (len(tokens) == 1 and (flat.startswith(short) if short != "us" else flat.endswith(short))):
            return iso
    return None


@lru_cache(maxsize=1)
def _cloud_bare() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in _cloud():
        out.setdefault(key.partition(":")[2], []).append(key)
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
        iso = _country_in_name(name)
        if iso is None:
            hint = _did_you_mean(key, list(_cloud()))
        else:  # never suggest a region on another country's grid
            same = [k for k in _cloud() if cloud_country(k) == iso]
            hint = _did_you_mean(key, same)
            if same and hint == "no close match":
                hint = f"the table's {_countries()[iso]['country_name']} regions: " + ", ".join(map(repr, same[:3]))
            elif not same:
                hint = f"the table has no region in {_countries()[iso]['country_name']}"
        raise ConfigError(f"unknown cloud region {region!r}; {hint}{_or_country(hint, iso or 'SWE')}")
    up = text.upper()
    up = _ALIASES_ISO2.get(up, up)
    if up in _countries():
        return up
    if up in _iso2():
        return _iso2()[up]
    folded = _fold(text)
    by_name = {_fold(v["country_name"]): k for k, v in _countries().items()}
    if folded in by_name:
        return by_name[folded]
    if folded in _NAME_ALIASES:
        return _NAME_ALIASES[folded]
    bare = _cloud_bare()
    if folded in bare:  # a cloud region's name without its provider
        hint = "did you mean " + " or ".join(repr(k) for k in bare[folded]) + "?"
    else:
        names = [*_iso2(), *_countries(), *(v["country_name"] for v in _countries().values()), *_NAME_ALIASES]
        hint = _did_you_mean(text, names)
        if hint == "no close match":
            close = difflib.get_close_matches(folded, list(bare), n=3, cutoff=0.8)
            if close:
                hint = "did you mean " + " or ".join(repr(k) for c in close for k in bare[c]) + "?"
    iso = _country_in_name(text)
    tail = _or_country(hint, iso) if iso else ""
    raise ConfigError(f"unknown region {region!r} (use an ISO-2/ISO-3 country code or provider:region such as "
                      f"aws:us-east-1); {hint}{tail}")


def _or_country(hint: str, iso: str) -> str:
    return (" Or" if hint.endswith("?") else "; or") + f" give the country, e.g. --region {_iso3_to_iso2().get(iso, iso)}"


def _did_you_mean(text: str, names: list[str]) -> str:
    lowered = {n.lower(): n for n in names}
    close = difflib.get_close_matches(text.lower(), list(lowered), n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(lowered[c]) for c in close) + "?"
    return "no close match"


def grid_intensity(region: str | None) -> tuple[float, str]:
    """Carbon intensity (gCO2e/kWh) of ``region`` and a provenance line for the assumptions list."""
    value, line = _grid_intensity(region)
    return value, line + RANGE_CLAUSE


def headline_region_label(region: str | None, given: bool) -> str:
    """What the CO2 headline names beside the plan's intensity: the region ('POL'), 'given; overrides POL' when the
    figure was given (--carbon-intensity or the configuration: Plan.carbon_intensity_given, recorded where it was
    resolved; review s52: inferring it from the value said 'gcp:us-central1' for a given 430 equal to the region's;
    callers pass :func:`intensity_given`, which also counts a hand-built Plan's own figure), 'given' with no region,
    else '' (the world average)."""
    if region:
        return f"given; overrides {region}" if given else region
    return "given" if given else ""


def intensity_given(plan) -> bool:
    """Whether ``plan``'s carbon intensity is a figure set for it rather than its region's own (what
    :func:`headline_region_label` and the JSON report's ``plan.carbon_intensity_given`` say). The rule: a plan that
    records it (``Plan.carbon_intensity_given``, set by wattlint.plan.build_plan where it resolved the figure, so a
    --carbon-intensity equal to the region's figure is still given: review s52) is given; a plan that does not is
    given when its figure differs from the one build_plan resolves without --carbon-intensity (:func:`grid_intensity`
    of its region; without a region the world average as build_plan rounds it) or its region is not in the tables.
    Such a plan was built by hand (a ``Plan(...)`` in Python: lint.testing.scenario, API users), since build_plan
    records every figure it was given: ``Plan.__post_init__`` sets its field from this rule. The reports ask this
    function, not the field alone: a plan whose figure was changed by ``dataclasses.replace`` carries the old field
    (review s53). A hand-built figure equal to its region's own is that region's figure."""
    if plan.carbon_intensity_given:
        return True
    try:
        own = grid_intensity(plan.region)[0]
    except ConfigError:  # a hand-built plan's region that no table has: its figure is not the region's
        return True
    return float(plan.carbon_intensity_g_per_kwh) != own


def _grid_intensity(region: str | None) -> tuple[float, str]:
    if region is None or not str(region).strip():
        return (round(world_average(), 1),
                f"carbon intensity {world_average():.1f} gCO2e/kWh: world average (no --region; generation-weighted "
                f"mean of {COUNTRY_SOURCE}, consistent with Ember's ~480 g/kWh for 2023)")
    key = normalize_region(str(region))
    if key in _google():
        value = float(_google()[key]["impact"])
        row = _cloud()[key]
        old = (row.get("_table_impact") or "").strip()
        src = (row.get("source") or "").strip()
        src = "eGRID2016 data or older" if src == "eGRID" else src
        return value, (f"carbon intensity {shown(value)} gCO2e/kWh: cloud region {key} ({_where(row)}), "
                       f"{GOOGLE_VINTAGE}, {GOOGLE_SOURCE}"
                       + (f" (the mlco2/impact table's {shown(old)} g/kWh, row source: {src}, is not used)"
                          if old else ""))
    if ":" in key:
        row = _cloud()[key]
        value = float(row["impact"])
        where = _where(row)
        src = (row.get("source") or "").strip()
        iso = cloud_country(key)
        fixes = {f["field"]: f for f in row["_overrides"]}
        national = "grid" in fixes or row.get("country", "").strip() not in SUBNATIONAL_GRIDS
        if iso is not None and national:
            c = _countries()[iso]
            now = float(c["carbon_intensity"])
            if "grid" in fixes:
                why = f"not used: {fixes['grid']['reason']} (wattlint cloud_region_overrides.csv)"
            else:
                why = ("a market-based claim, not the grid's" if value == 0 else
                       "from a 2016-2019 source, is not used")
            return now, (f"carbon intensity {shown(now)} gCO2e/kWh: cloud region {key} ({where}) draws from "
                         f"the {c['country_name']} grid, year {c.get('year')}, {COUNTRY_SOURCE} (the region table's "
                         f"{shown(value)} g/kWh, {why}" + (f"; row source: {src}" if src else "") + ")"
                         + _implausible(iso))
        if src.startswith("eGRID"):
            src = EGRID_VINTAGE + src[len("eGRID"):]
        comment = (row.get("comment") or "").strip()  # on rows with a PUE, the comment is the PUE's
        if comment and "impact" not in fixes and not (row.get("PUE") or "").strip():
            src = f"{src} ({comment})" if src else comment
        line = (f"carbon intensity {shown(value)} gCO2e/kWh: cloud region {key} ({where}), a sub-national grid "
                f"figure from {CLOUD_SOURCE}" + (f", row source: {src}" if src else ""))
        if "impact" in fixes:
            line += (f" (corrected from the table's {float(row['_table_impact']):g}: {fixes['impact']['reason']}; "
                     f"wattlint cloud_region_overrides.csv)")
        if iso is not None:
            c = _countries()[iso]
            line += (f"; the {c['country_name']} national figure for {c.get('year')} is "
                     f"{shown(c['carbon_intensity'])} g/kWh ({COUNTRY_SOURCE})")
        return value, line
    row = _countries()[key]
    value = float(row["carbon_intensity"])
    return value, (f"carbon intensity {shown(value)} gCO2e/kWh: {row['country_name']} ({key}), year {row.get('year')}, "
                   f"{COUNTRY_SOURCE}" + _implausible(key))


def _where(row: dict) -> str:
    """'region name, city, state, country' of a cloud row, each once, without the table's stray commas."""
    parts: list[str] = []
    for field in ("regionName", "city", "state", "country"):
        text = (row.get(field) or "").strip(" ,")
        if text and text not in parts:
            parts.append(text)
    return ", ".join(parts)


def _implausible(iso: str) -> str:
    """A warning appended to a country's line when its figure is outside the plausible range or stale ('' if not).
    The figure itself is used unchanged."""
    c = _countries()[iso]
    value = float(c["carbon_intensity"])
    newest = max(int(v["year"]) for v in _countries().values() if v.get("year"))
    issues = []
    if value <= 0:
        issues.append(f"{value:g} g/kWh is implausible for a grid: no generation source is carbon-free over its "
                      f"life cycle (IPCC AR5 WG3 Annex III, Table A.III.2)")
    elif value >= PLAUSIBLE_MAX_G_PER_KWH:
        issues.append(f"{shown(value)} g/kWh is implausible for a grid: at or above {PLAUSIBLE_MAX_G_PER_KWH:g}, "
                      f"more than coal's life-cycle median of 820 g/kWh (IPCC AR5 WG3 Annex III, Table A.III.2), the "
                      f"most carbon-intensive source")
    year = c.get("year")
    if year and int(year) < newest - STALE_YEARS:
        issues.append(f"the figure is from {year}, {newest - int(year)} years older than the table's newest ({newest})")
    if not issues:
        return ""
    twh = c.get("total_TWh")
    size = f"; the table gives this grid {twh:g} TWh a year" if twh is not None and float(twh) < 1 else ""
    return ("; WARNING: " + " and ".join(issues) + size
            + "; check it, or give --carbon-intensity for the supply you use")


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
    if _cloud()[key].get("_iso3") in _countries():  # a row of Google's table only: its ISO code
        return _cloud()[key]["_iso3"]
    name = (_cloud()[key].get("country") or "").strip().lower()
    by_name = {v["country_name"].lower(): k for k, v in _countries().items()}
    return by_name.get({"usa": "united states"}.get(name, name))


def cloud_pue_source(region: str) -> str:
    """Where the PUE of :func:`cloud_pue` comes from: the table's row, its comment, source and year (if it gives one)."""
    key = normalize_region(region)
    row = _cloud()[key]
    src = (row.get("PUE source") or "").strip()
    comment = (row.get("comment") or "").strip()
    years = sorted(set(re.findall(r"\b(?:19|20)\d\d\b", f"{src} {comment}")))
    detail = ", ".join(x for x in (comment.lower(), f"source: {src}" if src else "") if x)
    when = f", year {'/'.join(years)}" if years else ", no year given"
    return (f"listed for cloud region {region} in the mlco2/impact table" + (f": {detail}" if detail else "")
            + when)


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
