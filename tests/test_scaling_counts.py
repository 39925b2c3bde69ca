"""The estimate path stays linear in the graph and lint re-estimates reuse priced work (issue 12, Performance).

No timing: every test counts operations (record attribute reads, Path.resolve calls, records handed to the
energy model, full pricings) at two graph sizes or across one request, so a quadratic loop or a re-pricing of the
whole graph per lint variant fails on any machine. benchmarks/scaling.py measures the times.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from wattlint import api
from wattlint.energy import predictor as pred_mod
from wattlint.energy import pricing
from wattlint.hardware import resolve_gpu
from wattlint.types import OpKind, OpRecord, Phase

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
onnx = pytest.importorskip("onnx")


def _chain_model(n: int, path: Path) -> Path:
    """benchmarks/scaling.py's generated graph: ``n`` nodes, one initializer per node, external weights."""
    spec = importlib.util.spec_from_file_location("_scaling_bench", ROOT / "benchmarks" / "scaling.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.chain_model(n, path)


def _group(n: int) -> list[OpRecord]:
    """One multi-tensor optimizer group of ``n`` per-parameter records (sizes cycle so the shares differ)."""
    sizes = [512, 4096, 65536]
    return [OpRecord(op="optim::adamw.mul", kind=OpKind.OPTIMIZER, module=f"m{i}", phase=Phase.OPTIMIZER,
                     dtype="float32", flops=s, bytes_read=4 * s, bytes_written=4 * s, dims=(("numel", s),))
            for i, s in enumerate(sizes[i % 3] for i in range(n))]


def _count_bytes_reads(monkeypatch) -> list[int]:
    calls = [0]
    orig = OpRecord.bytes.fget

    def counted(self):
        calls[0] += 1
        return orig(self)

    monkeypatch.setattr(OpRecord, "bytes", property(counted))
    return calls


def test_optimizer_group_priced_linearly(monkeypatch):
    """Sharing a group's time back by bytes sums the group's bytes ONCE: the byte reads grow like the group
    (n -> 4n: x4), not like its square (x16, what a per-member re-sum of the group gives)."""
    gpu, _ = resolve_gpu("a100")
    calls = _count_bytes_reads(monkeypatch)
    counts = {}
    for n in (200, 800):
        calls[0] = 0
        pricing.predict_records(pred_mod.PriorPredictor(), _group(n), gpu, "fp32", None)
        counts[n] = calls[0]
    # linear: reads = a * n (+ a constant); a per-member re-sum gives n * n reads (x16 for 4x the records)
    assert counts[800] / counts[200] == pytest.approx(4.0, rel=0.1), counts
    assert counts[800] <= 4 * 800, counts  # a few reads per record, not one per record pair


def test_estimate_path_touches_each_record_a_bounded_number_of_times(monkeypatch, tmp_path):
    """trace + estimate + lint (with its re-estimates) + --compare over 3 GPUs: the reads of record attributes
    grow like the graph (x4 nodes -> about x4 reads), so no step of the path loops over record pairs."""
    models = {n: _chain_model(n, tmp_path / str(n) / "chain.onnx") for n in (30, 60, 240)}
    reads = [0]
    orig = OpRecord.__getattribute__

    def counted(self, name):
        reads[0] += 1
        return orig(self, name)

    def one(n):
        req = api.Request(source=str(models[n]), gpus=("a100", "h100", "l4"),
                          options=api.validate_options({"batch_size": 32, "steps": 1000}))
        monkeypatch.setattr(OpRecord, "__getattribute__", counted)
        reads[0] = 0
        try:
            ests = api.run(req)
        finally:
            monkeypatch.setattr(OpRecord, "__getattribute__", orig)
        assert len(ests) == 3 and all(e.total.energy_kwh > 0 for e in ests)
        return reads[0], len(ests[0].graph.records)

    one(30)  # warm-up: first-use caches (GPU database, energy-model cards) count at neither size
    r60, n60 = one(60)
    r240, n240 = one(240)
    assert n240 / n60 == pytest.approx(4.0, rel=0.05)
    # linear with a constant: the ratio is at most the size ratio (+ 15 % for per-size constants)
    assert r240 / r60 <= (n240 / n60) * 1.15, (r60, r240)


def test_external_data_resolved_once_per_location(monkeypatch, tmp_path):
    """Every initializer's external data is checked to lie in the model's folder; initializers sharing one weights
    file cost one Path.resolve, so the resolves do not grow with the initializers."""
    from wattlint.frontends.source import analyze

    counts = {}
    calls = [0]
    orig = Path.resolve

    def counted(self, *a, **k):
        calls[0] += 1
        return orig(self, *a, **k)

    for n in (50, 400):
        model = _chain_model(n, tmp_path / str(n) / "chain.onnx")
        calls[0] = 0
        monkeypatch.setattr(Path, "resolve", counted)
        try:
            g = analyze(str(model), batch_size=32)
        finally:
            monkeypatch.setattr(Path, "resolve", orig)
        assert g.model.params > 0
        counts[n] = calls[0]
    assert counts[400] == counts[50], counts  # one weights file: the same resolves whatever the initializer count
    assert counts[400] < 50, counts  # not one per initializer


def _priced_log(monkeypatch):
    """(graph id, gpu, precision, utilization, base given, records handed to the energy model) per pricing."""
    log = []
    handed = [0]
    orig_price = pricing.price
    orig_predict = pred_mod.Predictor.predict

    def price(graph, gpu, precision, utilization, predictor, base=None, **kw):
        before = handed[0]
        out = orig_price(graph, gpu, precision, utilization, predictor, base=base, **kw)
        log.append((id(graph), gpu.key, precision, utilization, base is not None, handed[0] - before))
        return out

    def predict(self, records, *a, **k):
        handed[0] += len(records)
        return orig_predict(self, records, *a, **k)

    monkeypatch.setattr(pricing, "price", price)
    monkeypatch.setattr(pred_mod.Predictor, "predict", predict)
    return log


def test_compare_prices_the_traced_graph_once_per_gpu(monkeypatch, tmp_path):
    """A --compare runs the lint rules per GPU, and WL203 re-estimates the SAME graph on candidate GPUs for each:
    the traced graph is priced once per (GPU, precision, utilization), whatever the number of re-estimates."""
    model = _chain_model(120, tmp_path / "chain.onnx")
    log = _priced_log(monkeypatch)
    ests = api.run(api.Request(source=str(model), gpus=("a100", "h100", "l40s", "rtx4090"),
                               options=api.validate_options({"batch_size": 32, "steps": 1000})))
    root = id(ests[0].graph)
    full = [e[1:4] for e in log if e[0] == root]
    assert len(full) >= 4  # the four estimates themselves, at least
    assert len(full) == len(set(full)), sorted(full)  # never the same graph priced twice on one GPU
    assert not any(e[4] for e in log if e[0] == root)
    # the rules did re-estimate the traced graph on other GPUs (otherwise this test checks nothing)
    assert {k for k, *_ in full} - {e.gpu.key for e in ests}


def test_tensor_parallel_compare_prices_each_per_gpu_graph_once_per_gpu(monkeypatch):
    """Under tensor parallelism the estimate holds the per-GPU graph of its layout, and the lint rules re-estimate
    THAT graph (WL203 on candidate GPUs): it is priced once per GPU too, not once per re-estimate."""
    pytest.importorskip("torch")
    log = _priced_log(monkeypatch)
    ests = api.run(api.Request(source=f"{ROOT / 'examples' / 'torch_models.py'}:tiny_gpt", gpus=("a100", "h100", "l4"),
                               options=api.validate_options({"gpus": 4, "tensor_parallel": 2, "steps": 10})))
    per_gpu = id(ests[0].graph)
    assert ests[0].graph.extra.get("parallel_layout")  # the estimate's graph is the sharded one
    full = [e[1:4] for e in log if e[0] == per_gpu]
    assert len(full) >= 3
    assert len(full) == len(set(full)), sorted(full)  # never the same per-GPU graph priced twice on one GPU
    assert {k for k, *_ in full} - {e.gpu.key for e in ests}  # the rules did re-estimate it on other GPUs


def test_variant_prices_only_the_replaced_records(monkeypatch):
    """A lint variant (one record replaced) priced against the original's priced ops hands the energy model that
    one record, and gets exactly the times and powers of a full pricing of the variant."""
    from _estimate_fixtures import mlp_graph

    gpu, _ = resolve_gpu("a100")
    g = mlp_graph(width=1024, layers=6)
    model = pred_mod.PriorPredictor()
    base = pricing.price(g, gpu, "fp32", None, model)
    recs = list(g.records)
    recs[3] = dataclasses.replace(recs[3], flops=recs[3].flops * 2, bytes_read=recs[3].bytes_read * 2,
                                  bytes_written=recs[3].bytes_written * 2)
    variant = dataclasses.replace(g, records=tuple(recs))
    log = _priced_log(monkeypatch)
    fast = pricing.price(variant, gpu, "fp32", None, model, base=base)
    assert log[-1][-1] == 1
    full = pricing.price(variant, gpu, "fp32", None, pred_mod.PriorPredictor())
    assert fast.times_s == full.times_s and fast.powers_w == full.powers_w
    assert fast.times_s[3] != base.times_s[3]


def _cli_json(argv) -> str:
    from wattlint.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(argv)
    assert rc in (0, 1)
    return buf.getvalue()


def _no_reuse(self, graph, spec, plan, model):
    """The estimate without any reuse: a fresh pricing and aggregation of every (re-)estimate."""
    return api.price(graph, spec, plan, model)


@pytest.mark.parametrize("argv", [
    ["estimate", "examples/gpt2-tiny.onnx", "--steps", "100", "--compare", "a100,h100,l4,t4,a10,l40s"],
    ["estimate", "examples/resnet50.onnx", "--batch-size", "8", "--precision", "bf16", "--steps", "1000",
     "--compare", "a100,h100,l4,rtx4090"],
    ["estimate", "examples/gpt2-tiny.onnx", "--steps", "100", "--activation-checkpointing", "--gpus", "16",
     "--sharding", "zero2", "--grad-accum", "4", "--gpu", "h100"],
    ["estimate", "examples/resnet50.onnx", "--batch-size", "4", "--steps", "10", "--gpu", "h100",
     "--utilization", "0.3"],
    ["estimate", "examples/torch_models.py:tiny_gpt", "--gpus", "4", "--tensor-parallel", "2", "--pipeline-parallel",
     "2", "--steps", "10", "--compare", "h100,a100"],
])
def test_json_byte_identical_with_and_without_reuse(monkeypatch, argv):
    """Reusing priced work (and aggregation sums) changes no byte of the JSON report, findings included."""
    if not (ROOT / argv[1].split(":")[0]).exists():
        pytest.skip(f"{argv[1]} not built")
    monkeypatch.chdir(ROOT)
    fast = _cli_json([*argv, "--format", "json"])
    monkeypatch.setattr(api.PriceCache, "estimate", _no_reuse)
    slow = _cli_json([*argv, "--format", "json"])
    assert fast == slow
    assert json.loads(fast)  # a report, with findings from the re-estimating rules
