"""Reports, walk-through review: a --compare table written to a file or pipe kept only the columns that fit 100, the
compare table's cost header did not say what it adds up, the cost assumption and the pipeline layer note printed
exponents at scale ('cost $1.526e+05 = 1.174e+06 kWh', '4.009e+06 J'), a zero CO2 row mixed kg and g, a sub-cent
cost read '<$0.01 (5-95 %: <$0.01 - <$0.01)', the plan line dropped a numeric --dataset, tokens/s/GPU did not say
it leaves out the goodput losses, and the HTML goodput card dropped its 'of'."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from wattlint import api
from wattlint.api import estimate, estimate_many
from wattlint.report import html, json_out, markdown, text, units as u
from wattlint.report.tables import compare_rows, plan_line, summary_rows
from wattlint.types import CostGraph, GpuSpec, ModelInfo, OpKind, OpRecord, Phase, Plan, Utilization
from _estimate_fixtures import mlp_graph

ROOT = Path(__file__).resolve().parents[1]
RESNET = ROOT / "examples" / "resnet50.onnx"
COMPARE = [str(RESNET), "--gpu", "a100", "--compare", "h100,l40s,rtx4090,h200", "--epochs", "90", "--precision",
           "bf16"]
EVERY_COLUMN = ("GPU-hours", "CO2", "cost (electricity)", "memory / GPU", "fits", "model")


@pytest.fixture(scope="module")
def pair():
    return estimate_many(mlp_graph(), ["a100", "h100"], steps=100)


# ---- 1. a file or a pipe has no width ---------------------------------------------------------------------------

def _table_header(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(" GPU "))


def test_compare_to_a_pipe_keeps_every_column(run_cli, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # captured stdout is no terminal
    code, out, err = run_cli(*COMPARE)
    assert code == 0, err
    assert "columns left out" not in out
    header = _table_header(out)
    assert all(c in header for c in EVERY_COLUMN), header
    rows = [line for line in out.splitlines() if re.match(r" (★ )?\S+ x1 ", line)]
    assert len(rows) == 5 and all(line.rstrip().endswith(")") or line.rstrip().endswith("measured") for line in rows)


def test_compare_to_a_file_keeps_every_column(run_cli, monkeypatch, tmp_path):
    monkeypatch.delenv("COLUMNS", raising=False)
    out_file = tmp_path / "cmp.txt"
    code, _, err = run_cli(*COMPARE, "-o", out_file)
    assert code == 0, err
    out = out_file.read_text()
    assert "columns left out" not in out and all(c in _table_header(out) for c in EVERY_COLUMN)


def test_compare_at_a_stated_width_still_leaves_columns_out(run_cli, monkeypatch):
    """COLUMNS (or a terminal) gives the table a width: the columns that do not fit go, as before."""
    monkeypatch.setenv("COLUMNS", "100")
    code, out, err = run_cli(*COMPARE)
    assert code == 0, err
    assert "columns left out at 100 columns" in out
    assert max(len(line) for line in out.splitlines()) <= 100


# ---- 2. the compare cost header says what it adds up -------------------------------------------------------------

def test_compare_cost_header_names_what_it_adds_up(pair):
    header, _, _ = compare_rows(pair)
    assert "cost (electricity)" in header and "cost" not in header
    rental = estimate_many(mlp_graph(), ["a100", "h100"], steps=100, gpu_hour_price=2.0)  # electricity in it
    assert "cost (GPU-hours)" in compare_rows(rental)[0]
    both = estimate_many(mlp_graph(), ["a100", "h100"], steps=100, gpu_hour_price=2.0, price=0.13)
    label = "cost (electricity + GPU-hours)"
    assert label in compare_rows(both)[0]
    assert f"| {label} |" in markdown.render(both)
    assert f">{label}</th>" in html.render(both)
    assert label in text.render(both, width=None)


# ---- 3. no exponents at scale -------------------------------------------------------------------------------------

GPU = GpuSpec(key="test-gpu", name="Test GPU", vendor="NVIDIA", arch="Test",
              peak_tflops={"fp32": 10.0, "bf16": 100.0}, memory_gb=80, memory_bw_gbs=1000, sm_count=100,
              boost_mhz=1500, tdp_w=450, idle_w=50, nvlink_gbs=600, pcie_gen=4, idle_estimated=False)


class _Stub:
    """Every op with work: 1 s at 300 W (300 J)."""
    calibration = "prior"
    source = "stub"

    def predict(self, records, gpu, precision, utilization=None):
        return [1.0 if (r.flops or r.bytes) else 0.0 for r in records], [300.0] * len(records)

    def range_factors(self, quantity="energy"):
        return (0.5, 2.0) if quantity == "energy" else (0.8, 1.25)


def _r(phase, module, kind=OpKind.MATMUL, op="aten.mm.default"):
    return OpRecord(op=op, kind=kind, module=module, phase=phase, dtype="float32", flops=1000, bytes_read=100,
                    bytes_written=100)


def _blocks(n: int) -> CostGraph:
    recs = []
    for b in range(n):
        recs += [_r(Phase.FORWARD, f"h.{b}.fc")]
    recs += [_r(Phase.FORWARD, "head"), _r(Phase.BACKWARD, "head")]
    for b in reversed(range(n)):
        recs += [_r(Phase.BACKWARD, f"h.{b}.fc"), _r(Phase.BACKWARD, f"h.{b}.fc")]
    recs.append(_r(Phase.OPTIMIZER, "", OpKind.OPTIMIZER, "aten._fused_adamw_.default"))
    return CostGraph(model=ModelInfo(source="stub", format="torch", params=1000, param_bytes=4000),
                     records=tuple(recs), micro_batch=8, precision="fp32", extra={"activation_bytes": 1000})


@pytest.fixture(scope="module")
def big():
    """4,096 GPUs in 2 pipeline stages, some kJ a GPU a step: MJ a step, 1e5 kWh a run."""
    plan = Plan(batch_size=8 * 2048, steps=20_000, pue=1.5, carbon_intensity_g_per_kwh=400.0, precision="fp32",
                price_per_kwh=0.13, gpu_hour_price=None, host_op_s=21e-6, gpus=4096, gpus_per_node=8,
                pipeline_parallel=2)
    return api.price(_blocks(4), GPU, plan, _Stub())


def test_cost_and_layer_notes_at_scale_have_no_exponent(big):
    assert big.total.energy_kwh > 1e5 and big.per_step.gpu_energy_j > 1e6  # the scale of the review's run
    cost = next(a for a in big.assumptions if a.startswith("cost "))
    assert cost == (f"cost {u.usd(big.total.cost_usd)} = {u.figure(big.total.energy_kwh)} kWh (facility) x "
                    f"$0.13/kWh"), cost
    assert re.fullmatch(r"cost \$\d{1,3}(,\d{3})+ = \d{1,3}(,\d{3})+ kWh \(facility\) x \$0\.13/kWh", cost), cost
    layer = next(a for a in big.assumptions if a.startswith("layers under pipeline parallel"))
    assert re.search(r"its share of the step's GPU energy \([\d.,]+ kWh\); the rows add up to [\d.,]+ kWh", layer), \
        layer
    assert not re.search(r"\d[eE][+-]\d", cost + layer), layer
    said = json.loads(json_out.render([big]))["assumptions"]  # the JSON states them as the text does
    assert cost in said and layer in said
    flat = " ".join(text.render([big], width=None).split())
    assert " ".join(cost.split()) in flat and "its share of the step's GPU energy (" in flat


def test_figure_never_writes_an_exponent():
    assert u.figure(1.174e6) == "1,174,000" and u.figure(152_643.2) == "152,600"
    assert u.figure(0.001667) == "0.001667" and u.figure(1.5) == "1.5" and u.figure(6.77e-5) == "0.00006770"


# ---- 4. a zero CO2 row in one unit -------------------------------------------------------------------------------

def test_zero_co2_reads_one_unit():
    est = estimate(mlp_graph(), gpu="a100", steps=100, carbon_intensity=0)
    co2 = dict(summary_rows(est))["CO2"]
    assert co2.startswith("0 kg CO2e  (5–95 %: 0 kg CO2e – 0 kg CO2e)"), co2
    assert u.range_kwh(0, 0, 0) == "0 kWh – 0 kWh" and u.range_gpu_hours(0, 0, 0) == "0 GPU-h – 0 GPU-h"
    assert u.column([0.0, 0.0], u.CO2_KG) == ["0 kg CO2e", "0 kg CO2e"]


# ---- 5. a sub-cent cost shows its digits ---------------------------------------------------------------------------

def test_sub_cent_cost_shows_its_digits():
    assert u.usd(0.0033) == "$0.0033" and u.usd(0.00041) == "$0.00041" and u.usd(0.0099) == "$0.0099"
    est = estimate(mlp_graph(), gpu="a100", steps=1, price=0.13)
    assert 0 < est.total.cost_usd < 0.01
    cost = next(v for k, v in summary_rows(est) if k.startswith("Cost"))
    assert "<$" not in cost and re.fullmatch(r"\$0\.0+\d\d  \(5–95 %: \$0\.0+\d\d – \$0\.0+\d\d\)", cost), cost


# ---- 6. a numeric --dataset on the plan line -----------------------------------------------------------------------

def test_plan_line_shows_a_numeric_dataset():
    est = estimate(mlp_graph(), gpu="a100", epochs=3, dataset=50000)
    assert plan_line(est).startswith("3 epochs of 50.0 k samples · "), plan_line(est)
    assert "samples" not in plan_line(estimate(mlp_graph(), gpu="a100", steps=10))


# ---- 7. tokens/s/GPU says what it counts; the goodput card keeps its 'of' ----------------------------------------

def test_tokens_per_second_says_it_is_the_productive_rate():
    est = estimate(mlp_graph(), gpu="a100", steps=100, goodput=0.9)
    est = dataclasses.replace(est, utilization=Utilization(tokens_per_s_per_gpu=1234.0, mfu=0.4, hfu=0.39,
                                                           model_flops_per_token=1e9, peak_tflops=312.0,
                                                           convention="6N"))
    row = dict(summary_rows(est))["Throughput"]
    assert row.startswith("1,234 tokens/s/GPU in productive steps · MFU"), row
    doc = html.render([est])
    assert "1,234 tokens/s/GPU in productive steps" in doc
    assert re.search(r'<div class="k">Goodput</div><div class="v">90%</div><div class="s">of wall time in '
                     r'productive steps', doc), doc


def test_notes_write_milliseconds_without_an_exponent():
    """The pipeline-bubble / launch-gap notes printed '6e+03 ms' at scale (review of the report fixes): 6 s is
    6,000 ms, 12.34 ms keeps three significant digits, 4.2 us is 0.0042 ms."""
    from wattlint.report.units import ms

    assert ms(6.0) == "6,000"
    assert ms(0.01234) == "12.3"
    assert ms(4.2e-6) == "0.0042"


def test_assumption_figures_separate_thousands_from_1000_and_files_have_no_width(monkeypatch):
    """'1171 kWh' beside a headline '1,289 GPU-h' (review): thousands separators from 1,000; a report written with
    --output keeps every column whatever $COLUMNS says (the width is the terminal's, not the file's)."""
    from wattlint.commands.estimate import report_width
    from wattlint.report.units import figure

    assert figure(1171.3) == "1,171" and figure(999.94) == "999.9"
    monkeypatch.setenv("COLUMNS", "80")
    assert report_width(True) is None and report_width(False) == 80
