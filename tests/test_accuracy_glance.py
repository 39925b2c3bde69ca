"""docs/ACCURACY.md's "Open targets at a glance" quotes the committed results files (a figure from an older run is
caught here, as the README's accuracy sentence is in tests/test_readme.py)."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def test_glance_figures_are_the_committed_results():
    text = " ".join((ROOT / "docs" / "ACCURACY.md").read_text().split())
    zeus = json.loads((RESULTS / "prior_vs_public.json").read_text())["summary"]["zeus_named"]["all"]
    assert (f"time {zeus['time']['mape_pct']:.1f} % and energy {zeus['energy']['mape_pct']:.1f} % (targets 25, met), "
            f"average power **{zeus['power']['mape_pct']:.1f} % against 10: missed by "
            f"{zeus['power']['mape_pct'] - 10:.1f}** (naive: power = TDP, {zeus['naive_power']['mape_pct']:.1f} %)") in text
    fit = json.loads((RESULTS / "public_accuracy.json").read_text())["zeus"]["all"]
    e = fit["public_fit_logo_energy"]["mape_pct"]
    assert (f"energy **{e:.1f} % against 15: missed by {e - 15:.1f}** (naive "
            f"{fit['naive_energy']['mape_pct']:.1f} %)") in text
    f = json.loads((RESULTS / "parallel_accuracy.json").read_text())["foundry"]["bf16_all"]
    share = f["wattlint"]["share_within_5_points_pct"]
    held = json.loads((RESULTS / "parallel_accuracy.json").read_text())["foundry"]["bf16_held_out_13b_70b"]
    assert share >= 80
    assert (f"**{share:.1f} % of {f['wattlint']['n']} rows against 80 %: met** (held-out 13b / 70b rows "
            f"{held['wattlint']['share_within_5_points_pct']:.1f} %; naive 6·N·D at 40 %: "
            f"{f['naive_6nd']['share_within_5_points_pct']:.1f} %)") in text
