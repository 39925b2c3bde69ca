"""Public-data licences travel with the repository.

* No tracked Markdown file sends a reader to a workspace-only path (``../shared/...``, ``/work/shared/...``): a user
  with a clone or a wheel cannot open it.
* The shipped public-fit model (derived from NeuSight's MIT-licensed measurements) carries that licence's text, and
  the copyright line its card names.
* Every licence text under ``benchmarks/public/licences/`` is non-empty.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_FIT = ROOT / "src" / "wattlint" / "models" / "public-fit"
NEUSIGHT_LICENCE = PUBLIC_FIT / "LICENSE-NeuSight-data.txt"
LICENCES = ROOT / "benchmarks" / "public" / "licences"
WORKSPACE_PATHS = ("../shared", "/work/shared")
MIT_PERMISSION = "Permission is hereby granted, free of charge, to any person obtaining a"
BSD_REDISTRIBUTION = "Redistribution and use in source and binary forms"
CC_BY_SA_4 = "Attribution-ShareAlike 4.0 International Public License"


def _tracked_markdown() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z", "--", "*.md"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return [ROOT / p for p in out.split("\0") if p]


def test_markdown_has_no_workspace_paths():
    files = _tracked_markdown()
    assert len(files) > 10, "git ls-files found too few Markdown files to mean anything"
    bad = []
    for f in files:
        if not f.is_file():  # deleted in the working tree, not yet committed
            continue
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if any(w in line for w in WORKSPACE_PATHS):
                bad.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not bad, "workspace-only paths a repository user cannot open:\n" + "\n".join(bad)


def _neusight_card_licence() -> str:
    card = json.loads((PUBLIC_FIT / "card.json").read_text())
    sources = [s for s in card["data_sources"] if "neusight" in s["name"].lower()]
    assert len(sources) == 1, f"card.json should name exactly one NeuSight data source, got {sources}"
    return sources[0]["licence"]


def test_public_fit_ships_neusight_licence():
    licence = _neusight_card_licence()
    assert licence.startswith("MIT"), licence
    # "MIT, (c) 2025 Georgia Institute of Technology and Microsoft Corporation" -> the holder and year it names
    m = re.search(r"\(c\)\s*(\d{4})\s+(.+?)\s*$", licence, flags=re.IGNORECASE)
    assert m, f"card.json's licence names no '(c) <year> <holder>': {licence!r}"
    year, holder = m.group(1), m.group(2)

    assert NEUSIGHT_LICENCE.is_file(), f"{NEUSIGHT_LICENCE.relative_to(ROOT)} missing"
    text = NEUSIGHT_LICENCE.read_text(encoding="utf-8")
    assert "MIT License" in text
    assert MIT_PERMISSION in text
    assert "The above copyright notice and this permission notice shall be included" in text
    copyright_lines = [ln.strip() for ln in text.splitlines() if ln.strip().lower().startswith("copyright")]
    assert any(year in ln and holder in ln for ln in copyright_lines), (
        f"no copyright line with {year!r} and {holder!r} in {NEUSIGHT_LICENCE.name}: {copyright_lines}")


def test_public_fit_licence_is_package_data():
    # pyproject's package-data must cover the licence beside the model files (checked on the declaration; the wheel
    # build itself is too slow for the unit suite)
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomli = pytest.importorskip("tomli")
        tomllib = tomli
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["wattlint"]
    pkg = ROOT / "src" / "wattlint"
    covered = {p.resolve() for g in globs for p in pkg.glob(g) if p.is_file()}
    assert NEUSIGHT_LICENCE.resolve() in covered, f"package-data {globs} does not ship {NEUSIGHT_LICENCE.name}"


def test_benchmark_licences_non_empty():
    files = sorted(p for p in LICENCES.rglob("*") if p.is_file())
    assert files, f"no licence files under {LICENCES.relative_to(ROOT)}"
    empty = [p.name for p in files if not p.read_text(encoding="utf-8", errors="replace").strip()]
    assert not empty, f"empty licence files: {empty}"
    for p in files:
        text = p.read_text(encoding="utf-8")
        assert any(s in text for s in ("Apache License", MIT_PERMISSION, BSD_REDISTRIBUTION, CC_BY_SA_4)), (
            f"{p.name} is no Apache-2.0, MIT, BSD or CC BY-SA 4.0 licence text")
