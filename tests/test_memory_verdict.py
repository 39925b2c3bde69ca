"""The GPU-memory verdict with its error: the CUDA context by stack era, the usable capacity, the three-way verdict.

* context: 1.3 GiB before torch 1.13 (every CUDA module loaded at start-up: Hugging Face measures 1,343 MiB on a
  V100), 0.6 GiB from 1.13 (lazy module loading, pytorch/pytorch PR #86509) and without a --torch-version;
* usable capacity: the nominal GiB less 1.5 % the driver reserves, then 15/16 on GDDR data-centre boards (ECC);
* verdict: P the central peak, C the usable capacity: "fits" when 1.15 P <= C, "does_not_fit" when 0.95 P > C, else
  "tight" (measured / predicted peaks over the public rows 0.95-1.15: docs/ENERGY_MODEL.md "Memory"); the boolean
  ``fits`` keeps P <= C.

Every expected value is worked out by hand in the comments.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

from wattlint import memory
from wattlint.api import estimate
from wattlint.hardware import load_gpus
from wattlint.report import html, json_out, markdown, tables, text
from wattlint.types import MemoryUse
from _estimate_fixtures import mlp_graph

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((ROOT / "src" / "wattlint" / "schemas" / "estimate.schema.json").read_text())
GIB = 1 << 30
MIB = 1 << 20


def _with_version(version):
    g = mlp_graph(width=256, layers=2, activation_bytes=10_000_000)
    extra = dict(g.extra)
    if version is not None:
        extra["torch_version"] = version
    return dataclasses.replace(g, extra=extra)


# ---- the CUDA context by stack era ---------------------------------------------------------------------------------


def test_context_by_torch_version():
    # 1.3 GiB = 1.3 x 1,073,741,824 = 1,395,864,371.2 -> 1,395,864,371 B
    # 0.6 GiB = 0.6 x 1,073,741,824 = 644,245,094.4 -> 644,245,094 B
    assert memory.context_bytes(_with_version("1.10"))[0] == 1_395_864_371
    assert memory.context_bytes(_with_version("1.12"))[0] == 1_395_864_371  # the last release loading eagerly
    assert memory.context_bytes(_with_version("1.13"))[0] == 644_245_094  # lazy loading by default from 1.13
    assert memory.context_bytes(_with_version("2.4"))[0] == 644_245_094
    assert memory.context_bytes(_with_version(None))[0] == 644_245_094  # no version: wattlint's default stack, 2.x
    assert "1,343 MiB" in memory.context_bytes(_with_version("1.12"))[1]
    assert "#86509" in memory.context_bytes(_with_version("2.4"))[1]


def test_context_decides_the_workspace_of_the_peak():
    gpu = load_gpus()["a100-sxm4-80gb"]
    from wattlint.types import Plan

    plan = Plan(batch_size=64, steps=1, precision="fp32", optimizer="adamw", pue=1.0, carbon_intensity_g_per_kwh=400.0)
    old = memory.peak_memory(_with_version("1.12"), gpu, plan)
    new = memory.peak_memory(_with_version("2.1"), gpu, plan)
    # fp32, no loss logits: the dynamic part is the 10,000,000 B of activations; margin 12 % = 1,200,000 B
    assert old["breakdown"]["workspace"] == 1_395_864_371 + 1_200_000
    assert new["breakdown"]["workspace"] == 644_245_094 + 1_200_000
    # the two peaks differ by the contexts alone: 1,395,864,371 - 644,245,094 = 751,619,277 B
    assert old["peak_bytes_per_gpu"] - new["peak_bytes_per_gpu"] == 751_619_277


def test_context_through_framework_apply():
    """--torch-version reaches the memory model as wattlint.framework.apply stores it (extra["torch_version"])."""
    from wattlint import framework

    g = mlp_graph(width=256, layers=2, activation_bytes=10_000_000)
    old = estimate(framework.apply(g, "1.12"), gpu="a100-sxm4-80gb", steps=1)
    new = estimate(framework.apply(g, "2.1"), gpu="a100-sxm4-80gb", steps=1)
    # same plan, same activations: 751,619,277 B apart (above)
    assert old.memory.breakdown["workspace"] - new.memory.breakdown["workspace"] == 751_619_277
    note = next(a for a in old.assumptions if a.startswith("memory per GPU includes a CUDA context"))
    # 1,395,864,371 B / 1,048,576 = 1,331.2 MiB
    assert "a CUDA context of 1,331 MiB (torch 1.12 loads every CUDA module at start-up" in note
    assert "0.95-1.15x the prediction" in note


# ---- usable capacity -----------------------------------------------------------------------------------------------


def test_usable_capacity_by_hand():
    g = load_gpus()
    # H100 80GB (HBM, no ECC carve-out): 80 x 1,073,741,824 = 85,899,345,920 B x 0.985 = 84,610,855,731.2
    # -> 84,610,855,731 B (80,691.2 MiB; nvidia-smi -q leaves 80,995-81,231 MiB after the driver's reserve)
    assert memory.gpu_memory_bytes(g["h100-sxm5-80gb"]) == 84_610_855_731
    # T4 16GB (GDDR6, ECC on): 16 x 1,073,741,824 = 17,179,869,184 x 0.985 = 16,922,171,146.24 x 15/16
    # = 15,864,535,449.6 -> 15,864,535,449 B (15,129.6 MiB)
    assert memory.gpu_memory_bytes(g["t4-16gb"]) == 15_864_535_449


# ---- the verdict at each side of both thresholds -------------------------------------------------------------------


@pytest.mark.parametrize("peak, cap, verdict", [
    (100, 115, "fits"),          # 1.15 x 100 = 115 <= 115: the band's top fits
    (100, 114, "tight"),         # 115 > 114, and 0.95 x 100 = 95 <= 114
    (100, 95, "tight"),          # 0.95 x 100 = 95, not > 95: the band's bottom still fits
    (100, 94, "does_not_fit"),   # 95 > 94
    (20 * GIB, 23 * GIB, "fits"),          # 23 GiB = 1.15 x 20 GiB
    (20 * GIB, 23 * GIB - 1, "tight"),
    (20 * GIB, 19 * GIB, "tight"),         # 19 GiB = 0.95 x 20 GiB
    (20 * GIB, 19 * GIB - 1, "does_not_fit"),
])
def test_verdict_thresholds(peak, cap, verdict):
    assert memory.memory_verdict(peak, cap) == verdict


def test_band_is_095_to_115_of_the_peak():
    # 0.95 x 1,000,000 = 950,000; 1.15 x 1,000,000 = 1,150,000 (int of the float product: 1,149,999.999... -> the
    # test allows the float's last unit)
    lo, hi = memory.peak_band(1_000_000)
    assert lo == 950_000 and hi in (1_149_999, 1_150_000)


# ---- JSON ----------------------------------------------------------------------------------------------------------


def _tight(est):
    """``est`` with a peak of 36.9 GiB on a usable 39.4 GiB: 36.9 / 39.4 = 0.9365 (94 %); 1.15 x 36.9 = 42.435 GiB
    > 39.4 (not fits), 0.95 x 36.9 = 35.055 GiB <= 39.4 (not does_not_fit): tight."""
    return dataclasses.replace(est, memory=MemoryUse(peak_bytes_per_gpu=int(36.9 * GIB),
                                                     gpu_memory_bytes=int(39.4 * GIB), fits=True,
                                                     breakdown=dict(est.memory.breakdown)))


def test_json_has_the_verdict_and_validates():
    e = estimate(mlp_graph(), gpu="h100", steps=10)
    doc = json_out.to_dict(e)
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    m = doc["memory"]
    assert m["verdict"] == memory.memory_verdict(m["peak_bytes_per_gpu"], m["gpu_memory_bytes"]) == "fits"
    assert m["peak_bytes_per_gpu_range"] == list(memory.peak_band(m["peak_bytes_per_gpu"]))
    tight = json_out.to_dict(_tight(e))
    jsonschema.validate(tight, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert tight["memory"]["verdict"] == "tight" and tight["memory"]["fits"] is True
    bad = json.loads(json.dumps(tight))
    bad["memory"]["verdict"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA, cls=jsonschema.Draft202012Validator)
    old = json.loads(json.dumps(doc))  # an older consumer's document, without the additive fields, still validates
    del old["memory"]["verdict"], old["memory"]["peak_bytes_per_gpu_range"]
    jsonschema.validate(old, SCHEMA, cls=jsonschema.Draft202012Validator)


# ---- reports -------------------------------------------------------------------------------------------------------


TIGHT_LINE = ("tight: 36.9 of 39.4 GiB usable (94 %) — within the memory model's error band (public peaks "
              "0.95–1.15x the prediction); may run out of memory: try a smaller --micro-batch-size or --recompute")


def test_tight_run_says_so_in_every_report():
    e = _tight(estimate(mlp_graph(), gpu="a100-sxm4-40gb", steps=10))
    row = dict(tables.summary_rows(e))["Memory per GPU"]
    assert row == f"36.9 GiB  ({TIGHT_LINE})"
    assert TIGHT_LINE in " ".join(text.render([e], top=5).split())
    assert TIGHT_LINE in markdown.render([e], top=5)
    assert "tight: 36.9 of 39.4 GiB usable" in html.render([e], top=5)


def test_fits_and_does_not_fit_rows():
    e = estimate(mlp_graph(), gpu="h100", steps=10)
    cap = e.memory.gpu_memory_bytes
    assert dict(tables.summary_rows(e))["Memory per GPU"].endswith("usable: fits)")
    # 0.95 x 2C = 1.9 C > C: does not fit
    over = dataclasses.replace(e, memory=MemoryUse(peak_bytes_per_gpu=2 * cap, gpu_memory_bytes=cap, fits=False))
    assert dict(tables.summary_rows(over))["Memory per GPU"].endswith("usable: DOES NOT FIT)")


def test_compare_fits_column_shows_tight():
    a = estimate(mlp_graph(), gpu="h100", steps=10)
    b = _tight(estimate(mlp_graph(), gpu="a100-sxm4-40gb", steps=10))
    header, rows, _ = tables.compare_rows([a, b])
    col = header.index("fits")
    assert [r[col] for r in rows] == ["yes", "tight"]
