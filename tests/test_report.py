"""Report formats: unit formatting, markdown, self-contained HTML, text."""

from __future__ import annotations

import json
import re

import pytest

from wattlint.api import estimate, estimate_many
from wattlint.report import html, markdown, text, units as u
from _estimate_fixtures import mlp_graph


def test_units():
    assert u.energy_kwh(14.285) == "14.3 kWh"
    assert u.energy_kwh(0.0123) == "12.3 Wh"
    assert u.energy_kwh(2500) == "2.50 MWh"
    assert u.energy_j(3.6e6) == "1.00 kWh"
    assert u.energy_j(16.1) == "16.1 J"
    assert u.duration(0.0663) == "66.3 ms"
    assert u.duration(36.9 * 3600) == "36.9 h"
    assert u.duration(5 * 86400) == "5.00 days"
    assert u.duration(700 * 86400) == "700 days"  # under two years: days
    assert u.duration(366963 * 86400) == "1,005 years"  # 366,963 / 365.25 (review: '366,963 days')
    assert u.duration(5e-6) == "5.00 µs"
    assert u.co2_kg(6.866) == "6.87 kg CO2e"
    assert u.co2_kg(1234) == "1.23 t CO2e"
    assert u.usd(1.857) == "$1.86" and u.usd(12345.6) == "$12,346" and u.usd(None) == "—"
    assert u.bytes_(2.49 * 2**30) == "2.49 GiB"
    assert u.flops(7.79e11) == "779 GFLOP"
    assert u.count(25_507_944) == "25.5 M"
    assert u.pct(0.0242) == "2.4 %"
    assert u.gpu_hours(36.9) == "36.9 GPU-h" and u.gpu_hours(0.5) == "30.0 GPU-min" and u.gpu_hours(1e-4) == "0.360 GPU-s"
    assert u.usd(0.001) == "$0.0010"  # two significant digits: "<$0.01" said nothing of a sub-cent cost (review)
    # a budget compared with an estimate shows its digits, never a bound (review: 'exceeds the budget of <$0.01')
    assert u.pair(0.0214, 0.001, "cost_usd") == ("$0.0214", "$0.001")
    assert u.pair(0.02141, 0.0214, "cost_usd") == ("$0.02141", "$0.02140")
    assert u.pair(5.0, 3.0, "cost_usd") == ("$5.00", "$3.00")
    assert u.energy_j(0.0688) == "68.8 mJ" and u.duration(1.06e-9) == "1.06 ns" and u.duration(0) == "0 s"


@pytest.fixture(scope="module")
def ests():
    g = mlp_graph()
    return estimate_many(g, ["a100", "h100", "t4"], steps=1000)


def test_text_reports_carry_no_trailing_blanks(ests):
    """Review: every line of the text report (blank ones too) was padded with spaces to 100 columns, into -o files."""
    for doc in (text.render(ests[:1]), text.render(ests)):
        assert doc.endswith("\n") and not any(line != line.rstrip() for line in doc.splitlines())


def test_text_single_and_compare(ests):
    one = text.render(ests[:1], top=3, group_by="name")
    assert "Top 3 layers by energy (of 8)" in one and "Assumptions" in one and "Provenance" in one
    merged = text.render(ests[:1], top=3)  # 4 blocks: layers.*.fc (x4), layers.*.act (x4), the root's optimizer
    assert "layers.*.fc (x4)" in merged and "layers.*.act (x4)" in merged
    assert "\x1b[" not in one  # no colour codes when not asked
    cmp_ = text.render(ests)
    assert cmp_.count("★") >= 2 and "t4-16gb" in cmp_


def test_markdown(ests):
    md = markdown.render(ests[:1], top=4)
    assert md.startswith("### wattlint estimate")
    # a heading's code span keeps the name as it is (review: 'x<b>\\|y.onnx' showed its backslash)
    from wattlint.report.markdown import _code

    assert _code("x|y.onnx") == "`x|y.onnx`" and _code("a`b.onnx") == "`` a`b.onnx ``"
    assert "| phase | time / step | GPU energy / step | share |" in md
    assert "<details>" in md
    md2 = markdown.render(ests)
    assert "most energy-efficient" in md2


def test_html_self_contained(ests):
    for doc in (html.render(ests[:1]), html.render(ests)):
        assert doc.startswith("<!DOCTYPE html>")
        assert "<svg" in doc
        assert "<script" not in doc.lower()
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", doc, re.I)
        assert "@import" not in doc and "url(" not in doc
        # the only URL is the SVG namespace
        assert set(re.findall(r"https?://[^\s\"'<>]+", doc)) <= {"http://www.w3.org/2000/svg"}
    assert "GPU comparison" in html.render(ests)
    assert "Energy by layer" in html.render(ests[:1])


def test_html_escapes_names():
    g = mlp_graph()
    g = type(g)(**{**g.__dict__, "model": type(g.model)(source="<b>x</b>.onnx", format="onnx",
                                                          params=g.model.params, param_bytes=g.model.param_bytes)})
    doc = html.render([estimate(g, gpu="a100", steps=1)])
    assert "<b>x</b>" not in doc and "&lt;b&gt;x&lt;/b&gt;" in doc


def test_units_pick_one_unit_per_column_and_range():
    assert u.column([0.0238, 0.0442, 0.00284], u.DURATION) == ["23.8 ms", "44.2 ms", "2.84 ms"]
    assert u.column([2.39 * 3600, 78.7 * 60], u.DURATION) == ["2.39 h", "1.31 h"]  # never "2.39 h" beside "78.7 min"
    assert u.range_hours(1.51, 7.39, central=3.36) == "1.51 h – 7.39 h"
    assert u.range_kwh(0.681, 3.33, central=1.51) == "0.681 kWh – 3.33 kWh"
    # human magnitudes for tiny runs: 6.77e-05 kWh is 244 J, not "6.77e-05 kWh"
    assert u.energy_kwh(6.77e-05) == "244 J" and u.energy_kwh(0.0003) == "0.300 Wh"
    assert u.co2_kg(0.000865) == "0.865 g CO2e"


def test_layer_grouping_natural_order_and_shortening():
    from wattlint.report.layers import group_layers, natural_key, shorten
    from wattlint.types import LayerEstimate

    def le(name, typ, e):
        return LayerEstimate(name=name, type=typ, flops=10, time_s=1.0, gpu_energy_j=e, share=e / 100)

    layers = [le(f"h.{i}.mlp", "MLP", 5.0) for i in (0, 1, 2, 10, 11)] + [le("head", "Linear", 7.0)]
    by_name = group_layers(layers, "name")
    assert [r.name for r in by_name] == ["head", "h.0.mlp", "h.1.mlp", "h.2.mlp", "h.10.mlp", "h.11.mlp"]
    block = group_layers(layers, "block")
    assert [(r.name, r.count, r.gpu_energy_j) for r in block] == [("h.*.mlp", 5, 25.0), ("head", 1, 7.0)]
    assert [(r.name, r.count) for r in group_layers(layers, "type")] == [("MLP", 5), ("Linear", 1)]
    assert [r.name for r in group_layers(layers, "depth", depth=2)][:2] == ["head", "h.0"]
    assert natural_key("a.2") < natural_key("a.10")
    assert shorten("transformer.h.11.mlp.act", 16) == "…h.11.mlp.act"  # whole components only
    assert shorten("transformer.h.11.mlp.act", 40) == "transformer.h.11.mlp.act"


def test_text_report_fits_the_width_and_escapes_control_characters():
    g = mlp_graph(layers=2)
    recs = [r.__class__(**{**{f: getattr(r, f) for f in r.__slots__}, "module": "x\n::error file=a::pwned"})
            if r.module == "layers.0.fc" else r for r in g.records]
    g = type(g)(**{**g.__dict__, "records": tuple(recs)})
    e = estimate(g, gpu="a100", steps=10)
    for width in (60, 80, 100, 160):
        out = text.render([e], top=10, width=width, group_by="name")
        table = out[out.index("Top "):out.index("Findings") if "Findings" in out else out.index("Assumptions")]
        assert max(len(line) for line in table.splitlines()) <= width, width
        assert not any(line.startswith("::error") for line in out.splitlines())
        assert "x\\x0a::error" in out
    md = markdown.render([e], group_by="name")
    assert "\n::error" not in md and "x\\x0a::error" in md


def test_compare_table_keeps_each_gpus_energy_model_at_the_default_width(run_cli, monkeypatch):
    """At the default 100 columns the compare table used to drop its provenance column ('model') first; the
    assumptions list is deduplicated across GPUs, so a GPU sharing another's energy model had its provenance stated
    nowhere. The energy model of every row must stay (README: every number says where it comes from)."""
    monkeypatch.setenv("COLUMNS", "100")
    code, out, _ = run_cli("examples/resnet50.onnx", "--gpu", "h200", "--compare", "a100,mi300x,h100", "--epochs",
                           "90", "--precision", "bf16")
    assert code == 0
    lines = out.splitlines()
    header = next(ln for ln in lines if ln.lstrip().startswith("GPU "))
    assert "model" in header.split()
    want = {"h200-sxm-141gb": "measured", "a100-sxm4-80gb": "public-fit", "mi300x-192gb": "prior",
            "h100-sxm5-80gb": "public-fit"}
    for key, model in want.items():
        row = next(ln for ln in lines if f"{key} x1" in ln)
        assert row.rstrip().endswith(model) or f" {model} " in row, row
    assert all(len(ln) <= 100 for ln in lines if "x1" in ln)


def test_html_summary_shows_every_summary_row():
    """The HTML cards showed 7 of the summary rows: not the GPU energy, and not the goodput, so with goodput 0.8 its
    time and GPU-hours included 25 % non-productive time (1 / 0.8 - 1) without saying so; and '(aws:us-east-1)'
    lost its ')' to a strip of the card's parentheses."""
    g = mlp_graph()
    est = estimate(g, gpu="a100", steps=1000, goodput=0.8, region="aws:us-east-1")
    doc = html.render([est])
    cards = re.findall(r'<div class="k">([^<]*)</div><div class="v">([^<]*)</div><div class="s[^"]*">([^<]*)</div>',
                       doc)
    by = {k: (v, s) for k, v, s in cards}
    assert [k for k, _ in text_rows(est)] == list(by)
    assert by["Goodput"] == ("80%", "of wall time in productive steps (time and GPU-hours include the rest)")
    assert by["GPU energy"][0] == u.energy_kwh(est.total.gpu_energy_kwh)
    assert by["CO2"][1].endswith("(aws:us-east-1)")
    # the time shown is the productive time / 0.8 (goodput): the same number as the text report's
    assert est.total.time_h == pytest.approx(1000 * est.per_step.time_s / 3600 / 0.8)
    assert by["Time"][0] == u.hours(est.total.time_h)


def text_rows(est):
    from wattlint.report.tables import summary_rows

    return [(k.strip(), v) for k, v in summary_rows(est)]


def test_counts_pick_their_unit_after_rounding():
    from wattlint.report import units

    assert units.count(999_999) == "1.00 M"  # was "1,000 k"
    assert units.count(2e12) == "2.00 T"  # was "2,000 B" (Llama-2's 2 T tokens)
    assert units.count(1_234_567) == "1.23 M"
    assert units.count(12_345) == "12.3 k"
    assert units.count(9_999) == "9,999"
    assert units.count(999_499_999) == "999 M"


def test_compare_says_when_the_model_fits_on_none_of_the_gpus(run_cli):
    """The ★ falls back to all GPUs when the model fits on none: the report must say so, not claim "among GPUs
    where it fits" (fuzz review). GPT-2 small at 64 x 1024 tokens per step in fp16 needs far more than 16-24 GB."""
    args = ("examples/gpt2-small/config.json", "--gpu", "t4", "--compare", "l4", "--batch-size", "64",
            "--seq-len", "1024", "--steps", "10", "--precision", "fp16")
    code, out, err = run_cli(*args, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert [e["memory"]["fits"] for e in doc["estimates"]] == [False, False]
    # every GPU's findings are in every format (review: text and markdown printed none, HTML only the best GPU's,
    # which hid the WL201 'does not fit' errors behind a 'fits NO' column)
    wl201 = {e["hardware"]["gpu"]: [f for f in e["findings"] if f["code"] == "WL201"] for e in doc["estimates"]}
    assert all(len(v) == 1 for v in wl201.values()), wl201
    for fmt in ("text", "markdown", "html"):
        code, out, err = run_cli(*args, "--format", fmt)  # one run per format (each traces GPT-2 at 64 x 1024)
        assert code == 0, err
        out = " ".join(out.split())
        if fmt != "html":
            assert "the model fits on none of these GPUs as planned" in out
            assert "among GPUs where it fits" not in out
        for key in wl201:
            assert (f"{key}: WL201 error" in out or f"`{key}` **WL201** error" in out
                    or f"<code>{key}</code> <b>WL201</b> error" in out or
                    (fmt == "html" and f"{key}: detail" in out and "<b>WL201</b> error" in out)), (fmt, key)


def test_single_reports_state_the_energy_model_source_and_unconfirmed_specs_once():
    """The energy model's source and the GPU's unconfirmed spec values are stated once per report, under
    Provenance (the header and the assumptions each repeated them: three copies of a 300-character line)."""
    from html import escape

    est = estimate(mlp_graph(), gpu="rtx3090", steps=10)
    src = est.calibration_source
    unconfirmed = ", ".join(est.gpu.unconfirmed)
    assert src and unconfirmed  # the RTX 3090 has unconfirmed spec fields (tf32 / bf16 / int8 peaks)
    docs = {"text": text.render([est], width=2000), "markdown": markdown.render([est]),
            "html": html.render([est])}
    for fmt, doc in docs.items():
        s, un = (escape(src), escape(unconfirmed)) if fmt == "html" else (src, unconfirmed)
        assert doc.count(s) == 1, fmt
        assert doc.count(un) == 1, fmt
        assert doc.index(s) > doc.index("Provenance" if fmt != "markdown" else "Assumptions and provenance"), fmt
    # the header still names the model and how much of the step it priced
    head = docs["text"].splitlines()[2]
    assert f"energy model: {est.calibration}" in head
    if est.calibration_coverage < 0.995:
        assert f"{est.calibration_coverage:.0%} of the op time" in head
    # the JSON keeps every assumption line
    from wattlint.report.json_out import to_dict
    assert any(a.startswith(f"energy model: {est.calibration} (") for a in to_dict(est)["assumptions"])


def test_layer_table_fits_when_a_name_is_kept_whole():
    """A layer name with a path component longer than the name column is kept whole (never cut inside a word); the
    table then ran past the width and every bar row wrapped (HF Llama at 100 columns). The bar gives up the room
    now, and is dropped when less than 4 cells are left (then the type column, if still too wide)."""
    from types import SimpleNamespace

    from wattlint.report.text import _layer_table

    long = "model.layers.*.post_attention_layernorm"
    rows = [[long, "Qwen2MoeSparseMoeBlock", "1.19 MFLOP", "19.0 mJ", "6.2 %"],
            ["lm_head", "Linear", "0.393 GFLOP", "26.7 mJ", "30.0 %"]]
    groups = [SimpleNamespace(count=2, share=0.062), SimpleNamespace(count=1, share=0.3)]
    for width, bar in ((80, False), (96, False), (100, True), (120, True)):
        lines = _layer_table(rows, groups, width).plain.splitlines()
        assert max(len(line) for line in lines) <= width, (width, [len(x) for x in lines])
        assert any("post_attention_layernorm (x2)" in line for line in lines)
        assert any("█" in line for line in lines) is bar, width


def test_plan_line_says_when_whole_steps_cost_more_tokens_than_asked(run_cli):
    """Review: `--tokens 100` read '100 tokens · 1 step' while one whole step of 8 x 256 tokens was costed."""
    code, out, err = run_cli("examples/gpt2-tiny.onnx", "--gpu", "a100", "--tokens", "100")
    assert code == 0, err
    assert "Plan: 100 tokens · 1 step = 2,048 tokens costed (whole steps) · batch 8" in out  # 1 x 8 x 256
    code, out, err = run_cli("examples/gpt2-tiny.onnx", "--gpu", "a100", "--tokens", "2e8")
    assert code == 0 and "200 M tokens · 97.7 k steps · batch 8" in out  # ceil(2e8 / 2048) = 97,657: within 0.5 %


def test_markdown_never_lets_a_names_html_through():
    """Review: a node named x`<img src=x onerror=alert(1)>`y closed the layer cell's single-backtick span, and an
    output named <img ...> went raw into an assumption line, in a report meant for pull-request comments."""
    import dataclasses

    from wattlint.report.markdown import _esc

    bad = "x`<img src=x onerror=alert(1)>`y"
    g = mlp_graph(layers=1)
    g = dataclasses.replace(g, records=tuple(dataclasses.replace(r, module=r.module.replace("layers.0", bad))
                                             for r in g.records))
    md = markdown.render([estimate(g, gpu="a100", steps=10)], top=4, group_by="name")
    row = next(ln for ln in md.splitlines() if "onerror" in ln)
    assert row.startswith(f"| `` {bad}.") and " `` |" in row  # one double-backtick span: the name stays literal
    assert _esc("output '<img src=x>' & more") == "output '&lt;img src=x&gt;' &amp; more"


def test_html_does_not_fit_card_has_one_class_attribute(monkeypatch):
    """Review: the memory card of a model that does not fit was written `<div class="s" class="bad">`: parsers keep
    the first attribute, so the warning was never styled."""
    from html.parser import HTMLParser

    est = estimate(mlp_graph(), gpu="a100", steps=10)
    monkeypatch.setattr(html, "summary_rows", lambda e: [("Memory", "90.0 GiB  of 80.0 GiB: DOES NOT FIT")])
    doc = html._cards(est)
    seen = []

    class Attrs(HTMLParser):
        def handle_starttag(self, tag, attrs):
            seen.append([k for k, _ in attrs])

    Attrs().feed(doc)
    assert all(len(a) == len(set(a)) for a in seen)
    assert '<div class="s bad">of 80.0 GiB: DOES NOT FIT</div>' in doc


def test_co2_line_states_a_small_grid_intensity():
    """Review: --carbon-intensity 0.04 printed 'at 0 g/kWh' beside a non-zero CO2."""
    from wattlint.report.tables import summary_rows

    for ci, shown in ((0.04, "0.04"), (56.0, "56"), (369.5, "369.5"), (0.0, "0")):
        est = estimate(mlp_graph(), gpu="a100", steps=10, carbon_intensity=ci)
        row = dict((k.strip(), v) for k, v in summary_rows(est))["CO2"]
        assert f"at {shown} g/kWh" in row, row


def test_compare_reports_state_every_gpus_assumptions_with_its_key():
    """Review: the HTML comparison listed only the most efficient GPU's assumptions (the others' fallback precision,
    GPU-hour price and host power were missing), ignored --group-by in its detail, and text / Markdown printed the
    lines that differ between GPUs without saying whose they were. Now each line once, led by the GPUs it is about
    unless all share it, in all three formats."""
    ests = estimate_many(mlp_graph(), ["a100", "v100"], steps=100, precision="bf16",
                         gpu_hour_price={"a100": 1.8, "v100": 0.3})
    v100 = next(e for e in ests if e.gpu.key.startswith("v100"))
    fallback = next(a for a in v100.assumptions if "bf16" in a and "v100" in a.lower())
    shared = next(a for a in v100.assumptions if a in ests[0].assumptions)
    line = f"[{v100.gpu.key}] {fallback}"
    doc = html.render(ests, group_by="name")
    assert f"<li>{html.escape(line)}</li>" in doc and f"<li>{html.escape(shared)}</li>" in doc
    assert doc != html.render(ests, group_by="block")  # the detail's layers follow --group-by
    assert f"- {line}" in markdown.render(ests).replace("\\[", "[").replace("\\]", "]")
    assert " ".join(line.split()) in " ".join(text.render(ests, width=200).split())


def test_units_are_chosen_after_rounding_and_large_values_keep_three_digits():
    """Review: the unit was picked before rounding, so one quantity read in two units in one report ('Time 120 s'
    beside '2.00 GPU-min' for 119.95 s; '1,000 ms', '120 min', '1,000 kg CO2e', '100.0 Wh'), and large values printed
    every integer digit of a three-digit number ('2,169,915 GPU-h' where the JSON has 2169920)."""
    assert u.duration(119.95) == "2.00 min" and u.gpu_hours(119.95 / 3600) == "2.00 GPU-min"
    assert u.duration(0.9999) == "1.00 s" and u.hours(1.999) == "2.00 h"
    assert u.co2_kg(999.99) == "1.00 t CO2e" and u.energy_kwh(0.09996) == "0.100 kWh"
    assert u.gpu_hours(0.99999) == "1.00 GPU-h"
    assert u.gpu_hours(2_169_915) == "2.17 M GPU-h" and u.gpu_hours(15_400) == "15.4 k GPU-h"
    assert u.gpu_hours(9_990) == "9,990 GPU-h" and u.gpu_hours(9_999) == "10.0 k GPU-h"  # 4 digits stay whole
    assert u.count(2_169_915) == "2.17 M" and u.flops(123_456.0) == "123 kFLOP"


def test_money_and_shares_keep_their_sign_and_zero():
    """Review: usd(-150.2) read '$-150', usd(-0.004) '<$0.01' (sign lost), usd(nan) '$nan'; pct(0) read '<0.1 %'."""
    assert u.usd(-150.2) == "-$150" and u.usd(-0.004) == "-$0.0040" and u.usd(-1.5) == "-$1.50"
    assert u.usd(float("nan")) == "n/a" and u.usd(float("inf")) == "n/a" and u.usd(0) == "$0.00"
    assert u.pct(0) == "0 %" and u.pct(0.0004) == "<0.1 %" and u.pct(0.25) == "25.0 %" and u.pct(-0.25) == "-25.0 %"


def test_co2_row_shows_the_range_the_json_carries():
    """Every format shows each total's 5-95 % range; the CO2 row had none (JSON review, 2026-12-07). By hand: the CO2
    range is the energy range x the grid intensity (480.6 g/kWh, world average, no --region)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    args = [sys.executable, "-m", "wattlint", "examples/resnet50.onnx", "--gpu", "rtx3090", "--epochs", "50"]
    root = Path(__file__).resolve().parents[1]
    doc = json.loads(subprocess.run(args + ["--format", "json"], cwd=root, capture_output=True, text=True,
                                    check=True).stdout)
    lo, hi = doc["total"]["energy_kwh_range"]
    assert doc["total"]["co2_kg_range"][0] == pytest.approx(lo * 0.4806, rel=1e-4)
    text = subprocess.run(args, cwd=root, capture_output=True, text=True, check=True).stdout
    row = next(line for line in text.splitlines() if line.lstrip().startswith("CO2"))
    assert f"(5–95 %: {lo * 0.4806:.3g} kg CO2e – {hi * 0.4806:.3g} kg CO2e)" in row, row
