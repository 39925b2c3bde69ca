"""Reports, second review: code spans no name can close, the estimate's output format, merge counts and mixed types
in layer rows, small MFU, money digits, names cut to the column, the best GPU's layers and every GPU's provenance in
a comparison, and the HTML tables' caption / header markup. Expected values worked out by hand in the comments."""

from __future__ import annotations

import dataclasses
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from wattlint.api import estimate, estimate_many
from wattlint.report import html, markdown, text, units as u
from wattlint.report.layers import group_layers, shorten
from wattlint.types import LayerEstimate
from _estimate_fixtures import mlp_graph

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pair():
    """The 4-layer MLP on two GPUs (layers.i.fc Linear + layers.i.act ReLU: 8 modules, 2 types)."""
    return estimate_many(mlp_graph(), ["a100", "h100"], steps=100)


def test_markdown_code_span_fence_outlasts_every_backtick_run():
    """Review: the fence was always two backticks, so a name holding `` closed it early and what followed (an
    <img onerror> in a layer name or a model path) rendered as HTML in CommonMark. The fence is now one backtick
    longer than the longest run inside, padded with a space each side when the text holds a backtick."""
    from wattlint.report.markdown import _code

    assert _code("x``<img src=x>``y") == "``` x``<img src=x>``y ```"  # longest run 2 -> fence of 3
    assert _code("a```b") == "```` a```b ````"  # longest run 3 -> fence of 4
    assert _code("`a") == "`` `a ``"  # starts with a backtick: padded, else the fence would read ```a
    assert _code("plain.onnx") == "`plain.onnx`"
    assert _code("a|b", table=True) == "`a\\|b`"

    bad = "x``<img src=x onerror=alert(1)>``y"
    g = mlp_graph(layers=1)
    g = dataclasses.replace(g, records=tuple(dataclasses.replace(r, module=r.module.replace("layers.0", bad))
                                             for r in g.records),
                            model=dataclasses.replace(g.model, source="m``<img src=x>``/config.json"))
    md = markdown.render([estimate(g, gpu="a100", steps=10)], top=4, group_by="name")
    assert md.startswith("### wattlint estimate: ``` m``<img src=x>``/config.json ```")
    markdown_it = pytest.importorskip("markdown_it")
    doc = markdown_it.MarkdownIt("commonmark").enable("table").render(md)
    assert "<img" not in doc  # every name stays code: escaped, never a tag
    assert "<code>m``&lt;img src=x&gt;``/config.json</code>" in doc
    assert "<code>x``&lt;img src=x onerror=alert(1)&gt;``y.fc</code>" in doc


def test_estimate_ignores_the_check_format_of_the_config(run_cli, tmp_path, monkeypatch):
    """Review: `format = "json"` in [tool.wattlint] (check's output format; docs/CONFIG.md: the estimate's report
    options are command-line only) turned the estimate's report into JSON."""
    shutil.copy(ROOT / "examples" / "gpt2-tiny.onnx", tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\nformat = "json"\n')
    code, out, err = run_cli("m.onnx", "--gpu", "a100", "--steps", "1")
    assert code == 0, err
    assert out.startswith("wattlint estimate: m.onnx\n")
    code, out, err = run_cli("m.onnx", "--gpu", "a100", "--steps", "1", "--format", "json")
    assert code == 0 and json.loads(out)["schema"] == "wattlint.estimate/1"


def test_html_layer_rows_show_their_merge_count(pair):
    """Review: the HTML layer table printed `layers.*.fc` where text, Markdown and the SVG chart say it merges the
    4 blocks' modules: `layers.*.fc (x4)`."""
    doc = html.render(pair[:1])
    assert "<td><code>layers.*.fc (x4)</code></td>" in doc and "<td><code>layers.*.act (x4)</code></td>" in doc
    named = html.render(pair[:1], group_by="name")  # one module per row: no count
    assert "<td><code>layers.0.fc</code></td>" in named and "(x1)" not in named


def test_merged_rows_of_different_types_say_mixed():
    """Review: `--group-by depth` named a truncated group after its heaviest child's type (`h (x22)
    NewGELUActivation`). h.0 holds an Attention and an MLP: (mixed); k.0 two Linear: Linear."""
    def le(name, typ, e):
        return LayerEstimate(name=name, type=typ, flops=10, time_s=1.0, gpu_energy_j=e, share=e / 100)

    layers = [le("h.0.attn", "Attention", 5.0), le("h.0.mlp", "MLP", 7.0), le("k.0.a", "Linear", 2.0),
              le("k.0.b", "Linear", 1.0)]
    assert [(r.name, r.type, r.count) for r in group_layers(layers, "depth", depth=2)] == [
        ("h.0", "(mixed)", 2), ("k.0", "Linear", 2)]
    assert [(r.name, r.type) for r in group_layers(layers, "block")][0] == ("h.*.mlp", "MLP")


def test_small_mfu_reads_below_a_tenth_of_a_percent(tmp_path):
    """Review: a tiny Llama on an H100 printed 'MFU 0.0% · HFU 0.0%' for non-zero values; the reports' rule for
    shares (units.pct) says '<0.1 %'. Same in the assumption line."""
    pytest.importorskip("transformers")
    from wattlint.report.tables import summary_rows

    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=64,
                                   intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=1000)))
    est = estimate(str(cfg), gpu="h100", precision="bf16", steps=1000, seq_len=128, batch_size=8, lint=False)
    assert 0 < est.utilization.hfu < 0.0005 and 0 < est.utilization.mfu < 0.0005  # would print 0.0%
    row = dict((k.strip(), v) for k, v in summary_rows(est))["Throughput"]
    assert "MFU <0.1 % · HFU <0.1 %" in row, row
    assert any(a.startswith("MFU <0.1 %, HFU <0.1 %, ") for a in est.assumptions)
    big = dataclasses.replace(est, utilization=dataclasses.replace(est.utilization, mfu=0.4567, hfu=0.5))
    assert "MFU 45.7 % · HFU 50.0 %" in dict((k.strip(), v) for k, v in summary_rows(big))["Throughput"]


def test_money_has_the_json_digits():
    """Review: text printed $3,254,873 where the JSON (6 significant digits) has 3254870.0; cents stay under $100."""
    from wattlint.report.json_out import _r

    assert u.usd(3_254_873.4) == "$3,254,870" and _r(3_254_873.4) == 3_254_870.0
    assert u.usd(1_234_567.0) == "$1,234,570" and u.usd(123_456.7) == "$123,457" and u.usd(100.4) == "$100"
    assert u.usd(99.5) == "$99.50" and u.usd(1.857) == "$1.86"


def test_names_are_cut_to_the_column():
    """Review: shorten() returned '…' + a dotless name whole (longer than asked), and a dotted path whose last
    component alone is too long kept it whole. Now the end of a dotted path, the start of a dotless name."""
    assert shorten("block_with_a_rather_long_attribute_name", 10) == "block_wit…"  # 9 characters + …
    assert shorten("model.layers.*.post_attention_layernorm", 10) == "…layernorm"  # … + the last 9
    assert shorten("transformer.h.11.mlp.act", 16) == "…h.11.mlp.act"  # whole components where they fit
    assert shorten("AVeryLongModuleTypeNameThatKeepsGoing", 20) == "AVeryLongModuleType…"


LONG_NAMES = """import torch
from torch import nn


class AVeryLongModuleTypeNameThatKeepsGoing(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(64, 64))

    def forward(self, x):
        return x @ self.w


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block_with_a_rather_long_attribute_name = AVeryLongModuleTypeNameThatKeepsGoing()
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.block_with_a_rather_long_attribute_name(x))


def net():
    return Net(), (torch.randn(8, 64),)
"""


@pytest.mark.parametrize("columns", [60, 100])
def test_text_layer_table_fits_a_long_dotless_name_and_type(run_cli, tmp_path, monkeypatch, columns):
    """Review: at 100 columns the row of a 39-character attribute of a 37-character module type ran past the width
    and wrapped (the type column was never cut). At 100 columns the name fits once the bar gives up its room, the
    type is cut to the 20-character column; at 60 (no type column) the name is cut to what is left."""
    pytest.importorskip("torch")
    (tmp_path / "lt.py").write_text(LONG_NAMES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = run_cli("lt.py:net", "--gpu", "a100", "--steps", "10")
    assert code == 0, err
    table = out[out.index("Top "):out.index("\n\n", out.index("Top "))].splitlines()
    assert max(len(line) for line in table) <= columns, table
    row = next(line for line in table if "block_with" in line)
    assert row.rstrip().endswith("%"), table  # one line: not wrapped
    if columns == 100:
        assert "block_with_a_rather_long_attribute_name   AVeryLongModuleType…" in row
    else:
        assert "…" in row and "AVeryLong" not in row


def test_compare_text_and_markdown_show_the_best_gpus_layers(pair):
    """Review: with --compare, --top / --group-by / --depth were taken and ignored by text and Markdown (HTML shows
    the best GPU's layers). The mlp has 8 modules of 2 types."""
    from wattlint.report.json_out import most_efficient

    key = pair[most_efficient(pair)].gpu.key
    for render in (text.render, markdown.render):
        by_name = render(pair, top=3, group_by="name")
        assert f"{key}: Top 3 layers by energy (of 8)" in by_name, render
        assert f"{key}: Top 2 module types by energy (of 2)" in render(pair, top=5, group_by="type")
        assert f"{key}: Top 1 modules at depth 1 by energy (of 1)" in render(pair, group_by="depth", depth=1)
    assert " layers.1.fc " in text.render(pair, top=3, group_by="name")
    assert "| `layers.1.fc` | Linear |" in markdown.render(pair, top=3, group_by="name")


def test_markdown_lists_every_gpu_spec_source():
    """Review: the Markdown report listed no GPU-spec source (HTML and JSON list all, text one)."""
    est = estimate(mlp_graph(), gpu="a100", steps=10)
    md = markdown.render([est])
    assert est.gpu.sources
    for k, v in est.gpu.sources.items():
        assert f"- {est.gpu.key} {k}: {markdown._esc(str(v))}" in md


def test_compare_reports_state_each_gpus_provenance(pair):
    """Review: text and Markdown comparisons had no provenance section (the single-GPU reports do): now each GPU's
    energy model and source, its spec sources and unconfirmed fields, stated once."""
    from wattlint.report.tables import energy_model_source

    flat = " ".join(text.render(pair, width=200).split())
    md = markdown.render(pair)
    assert "Provenance" in flat and "Assumptions and provenance" in md
    for e in pair:
        line = f"{e.gpu.key} energy model: {e.calibration} — {energy_model_source(e)}"
        assert flat.count(line) == 1 and md.count(markdown._esc(line)) == 1, e.gpu.key
        assert f"{e.gpu.key} GPU spec ({len(e.gpu.sources)} sourced fields)" in flat
        for k, v in e.gpu.sources.items():
            assert f"- {e.gpu.key} {k}: {markdown._esc(str(v))}" in md


class _Tables(HTMLParser):
    """Per <table>: its child tags in order, and the <th> tags with the section (thead / tbody / none) and scope."""

    def __init__(self):
        super().__init__()
        self.tables, self.stack = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"children": [], "th": []})
        elif self.tables and self.stack and self.stack[-1] == "table":
            self.tables[-1]["children"].append(tag)
        if tag == "th":
            section = next((t for t in reversed(self.stack) if t in ("thead", "tbody", "table")), None)
            self.tables[-1]["th"].append((section, dict(attrs).get("scope")))
        self.stack.append(tag)

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop() != tag:
            pass


def test_html_tables_have_caption_thead_and_column_scope(pair):
    """Review: the HTML tables had no <caption>, <thead> or scope (screen readers read them as bare grids)."""
    for doc in (html.render(pair[:1]), html.render(pair)):
        p = _Tables()
        p.feed(doc)
        assert len(p.tables) == (2 if doc.count("compare:") == 0 else 3)
        for t in p.tables:
            assert t["children"][:2] == ["caption", "thead"], t["children"]
            assert t["th"] and all(th == ("thead", "col") for th in t["th"]), t["th"]
