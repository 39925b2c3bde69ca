"""Report formats: unit formatting, markdown, self-contained HTML, text."""

from __future__ import annotations

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
    assert u.duration(5e-6) == "5.00 µs"
    assert u.co2_kg(6.866) == "6.87 kg CO2e"
    assert u.co2_kg(1234) == "1.23 t CO2e"
    assert u.usd(1.857) == "$1.86" and u.usd(12345.6) == "$12,346" and u.usd(None) == "—"
    assert u.bytes_(2.49 * 2**30) == "2.49 GiB"
    assert u.flops(7.79e11) == "779 GFLOP"
    assert u.count(25_507_944) == "25.5 M"
    assert u.pct(0.0242) == "2.4 %"
    assert u.gpu_hours(36.9) == "36.9 GPU-h" and u.gpu_hours(0.5) == "30.0 GPU-min" and u.gpu_hours(1e-4) == "0.360 GPU-s"
    assert u.usd(0.001) == "<$0.01"
    assert u.energy_j(0.0688) == "68.8 mJ" and u.duration(1.06e-9) == "1.06 ns" and u.duration(0) == "0 s"


@pytest.fixture(scope="module")
def ests():
    g = mlp_graph()
    return estimate_many(g, ["a100", "h100", "t4"], steps=1000)


def test_text_single_and_compare(ests):
    one = text.render(ests[:1], top=3)
    assert "Top 3 layers" in one and "Assumptions" in one and "Provenance" in one
    assert "\x1b[" not in one  # no colour codes when not asked
    cmp_ = text.render(ests)
    assert cmp_.count("★") >= 2 and "t4-16gb" in cmp_


def test_markdown(ests):
    md = markdown.render(ests[:1], top=4)
    assert md.startswith("### wattlint estimate")
    assert "| phase | time | GPU energy | share |" in md
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
