"""Precision a GPU really has: hardware.precision_support / supported_precisions / precision_fallback, the
strict error of build_plan and the stated fallback of --compare candidates.

Expected sets are the architecture facts, written out by hand (not read from gpus.toml):
  Maxwell, Pascal GP102 (P40)   fp32 only (no tensor cores; FP16 absent or at 1/64 of FP32)
  Pascal GP100 (P100)           + fp16 (2x-rate FP16 on CUDA cores), no bf16/tf32/fp8
  Volta, Turing                 + fp16 tensor cores; no bf16, tf32 or fp8
  Ampere                        + tf32, bf16; no fp8
  Ada, Hopper, Blackwell        + fp8
  CDNA 2 (MI250X)               fp16, bf16 matrix cores; no tf32, no fp8
  CDNA 3 (MI300X, MI325X)       tf32, fp16, bf16, fp8
  Gaudi 3                       bf16 and fp8 matrix rates published only
"""

import json

import pytest

from _estimate_fixtures import mlp_graph
from wattlint.hardware import (load_gpus, precision_fallback, precision_support, resolve_gpu,
                               supported_precisions)
from wattlint.plan import build_plan
from wattlint.types import ConfigError, CostGraph, GpuSpec, ModelInfo, TensorSpec

BASE = {"default", "fp32"}
FP16 = BASE | {"fp16"}
AMPERE = FP16 | {"tf32", "bf16"}
FP8 = AMPERE | {"fp8"}
FAMILIES = {  # family (arch up to " (") -> supported plan precisions
    "Maxwell": BASE, "Volta": FP16, "Turing": FP16, "Ampere": AMPERE, "Ada Lovelace": FP8, "Hopper": FP8,
    "Blackwell": FP8, "CDNA 2": BASE | {"fp16", "bf16"}, "CDNA 3": FP8, "Gaudi 3": BASE | {"bf16", "fp8"},
}
PASCAL = {"p100-pcie-16gb": FP16, "tesla-p40-24gb": BASE}  # GP100 has fast fp16, GP102 does not


def graph() -> CostGraph:
    return CostGraph(ModelInfo("m.onnx", "onnx", 1000, 4000), (),
                     inputs=(TensorSpec("x", "float32", (32, 3, 224, 224)),),
                     outputs=(TensorSpec("y", "float32", (32, 1000)),), micro_batch=32)


def expected(g: GpuSpec) -> set[str]:
    family = g.arch.split(" (", 1)[0]
    if family == "Pascal":
        return PASCAL[g.key]
    return FAMILIES[family]


def test_every_gpu_of_the_database_matches_its_architecture():
    gpus = load_gpus()
    assert len(gpus) >= 40
    for key, g in gpus.items():
        assert set(supported_precisions(g)) == expected(g), key
        assert g.sources["precisions"], key  # sourced by architecture


@pytest.mark.parametrize("name,family", [
    ("p100", "Pascal"), ("p40", "Pascal"), ("gtx750ti", "Maxwell"), ("v100", "Volta"), ("v100-pcie", "Volta"),
    ("t4", "Turing"), ("2080ti", "Turing"), ("a100", "Ampere"), ("a10g", "Ampere"), ("rtx3090", "Ampere"),
    ("l4", "Ada Lovelace"), ("l40s", "Ada Lovelace"), ("rtx4090", "Ada Lovelace"), ("l20", "Ada Lovelace"),
    ("h100", "Hopper"), ("h200", "Hopper"), ("h20", "Hopper"), ("b200", "Blackwell"), ("gb200", "Blackwell"),
    ("b100", "Blackwell"), ("rtx5090", "Blackwell"), ("rtx5080", "Blackwell"), ("mi250x", "CDNA 2"),
    ("mi300x", "CDNA 3"), ("mi325x", "CDNA 3"), ("gaudi3", "Gaudi 3"),
])
def test_precision_support_per_family(name, family):
    g = resolve_gpu(name)[0]
    assert g.arch.startswith(family)
    want = expected(g)
    for p in ("default", "fp32", "tf32", "fp16", "bf16", "fp8"):
        ok, why = precision_support(g, p)
        assert ok == (p in want), (name, p)
        if ok:
            assert why == ""
        else:  # one line: the precision, the GPU, the reason, what it does support
            assert why.startswith(f"--precision {p}: {g.name} ({g.key}) ") and "\n" not in why
            assert why.endswith("fp32") and " use " in why


def test_messages_name_the_reason_and_the_alternatives():
    v100 = resolve_gpu("v100")[0]
    assert precision_support(v100, "bf16") == (
        False, "--precision bf16: Tesla V100 SXM2 32GB (v100-sxm2-32gb) has no bf16 tensor cores (Volta); "
               "use fp16 or fp32")
    assert precision_support(resolve_gpu("a100")[0], "fp8")[1].endswith(
        "has no fp8 tensor cores (Ampere); use bf16, fp16, tf32 or fp32")
    assert "no fp8 matrix cores (CDNA 2)" in precision_support(resolve_gpu("mi250x")[0], "fp8")[1]
    assert "no tensor cores and no fast fp16 path (Pascal); use fp32" in \
        precision_support(resolve_gpu("p40")[0], "fp16")[1]
    assert "no published fp16 matrix rate" in precision_support(resolve_gpu("gaudi3")[0], "fp16")[1]
    assert precision_support(v100, "int4")[0] is False


@pytest.mark.parametrize("name,asked,costed", [
    ("v100", "bf16", "fp16"), ("v100", "fp8", "fp16"), ("v100", "tf32", "fp32"), ("t4", "bf16", "fp16"),
    ("a100", "fp8", "bf16"), ("mi250x", "fp8", "bf16"), ("mi250x", "tf32", "fp32"), ("p100", "bf16", "fp16"),
    ("p40", "fp16", "fp32"), ("p40", "fp8", "fp32"), ("gaudi3", "fp16", "bf16"), ("gaudi3", "tf32", "fp32"),
    ("h100", "fp8", "fp8"), ("b200", "fp8", "fp8"),
])
def test_fallback_is_the_closest_native_precision(name, asked, costed):
    g = resolve_gpu(name)[0]
    sub, line = precision_fallback(g, asked)
    assert sub == costed
    assert (line == "") == (asked == costed)
    if line:
        assert line.startswith(f"--precision {asked} is not available on {g.key}: it has no ")
        assert f"costed as {costed}" in line


def test_hand_built_spec_without_the_field_derives_from_peaks():
    g = GpuSpec(key="x", name="X", vendor="NVIDIA", arch="Ampere (GA100)",
                peak_tflops={"fp32": 19.5, "tf32": 156, "fp16": 312, "bf16": 312}, memory_gb=80, memory_bw_gbs=2000,
                sm_count=108, boost_mhz=1410, tdp_w=400, idle_w=60)
    assert supported_precisions(g) == ("default", "fp32", "tf32", "fp16", "bf16")
    assert precision_support(g, "fp8")[0] is False
    no_tc = GpuSpec(key="y", name="Y", vendor="NVIDIA", arch="Pascal (GP100)", peak_tflops={"fp32": 9.5, "fp16": 19},
                    memory_gb=16, memory_bw_gbs=700, sm_count=56, boost_mhz=1300, tdp_w=250, idle_w=35,
                    tensor_cores=False)
    assert supported_precisions(no_tc) == ("default", "fp32", "fp16")


def test_every_listed_fast_precision_has_a_peak_or_says_so():
    # a listed precision without its own peak would be costed at another rate; only A10G's tf32 is in that case
    # (Ampere runs TF32, no TF32 figure is sourced for the AWS part) and the plan states it
    missing = {(k, p) for k, g in load_gpus().items() for p in g.precisions
               if p in ("tf32", "bf16", "fp8") and not g.peak_tflops.get(p)}
    assert missing == {("a10g-24gb", "tf32")}
    # and no GPU has a peak rate for a precision it is said not to run
    for k, g in load_gpus().items():
        for p in ("tf32", "bf16", "fp8"):
            if g.peak_tflops.get(p):
                assert p in g.precisions, (k, p)


def test_build_plan_strict_and_fallback():
    v100 = resolve_gpu("v100")[0]
    with pytest.raises(ConfigError) as e:
        build_plan(graph(), gpu=v100, epochs=1, precision="bf16")
    assert str(e.value) == precision_support(v100, "bf16")[1]
    plan = build_plan(graph(), gpu=resolve_gpu("a100")[0], epochs=1, precision="fp8", strict_precision=False)
    assert plan.precision == "bf16"
    assert any(a.startswith("--precision fp8 is not available on a100-sxm4-80gb") for a in plan.assumptions)
    assert build_plan(graph(), gpu=resolve_gpu("h100")[0], epochs=1, precision="fp8").precision == "fp8"


def test_fallback_is_costed_at_the_rate_the_gpu_really_has():
    # a --compare candidate asked for bf16 on a V100 costs exactly what fp16 costs there (the rate it really has)
    from wattlint.api import estimate, estimate_many
    from wattlint.report.json_out import to_dict

    g = mlp_graph(batch=64, width=2048, layers=2, dtype="bfloat16", precision="bf16")
    _, cand = estimate_many(g, ["a100", "v100"], steps=100, precision="bf16")
    direct = estimate(mlp_graph(batch=64, width=2048, layers=2, dtype="float16", precision="fp16"), gpu="v100",
                      steps=100, precision="fp16")
    a, b = to_dict(cand), to_dict(direct)
    assert a["per_step"]["time_s"] == pytest.approx(b["per_step"]["time_s"], rel=1e-9)
    assert a["total"]["energy_kwh"] == pytest.approx(b["total"]["energy_kwh"], rel=1e-9)
    assert any("costed as fp16" in x for x in a["assumptions"])
    with pytest.raises(ConfigError):  # the first GPU is the one asked for: strict
        estimate_many(g, ["v100", "a100"], steps=100, precision="bf16")


def test_cli_exit_2_one_line_and_compare_fallback(run_cli):
    onnx = "examples/resnet50.onnx"
    code, out, err = run_cli(onnx, "--gpu", "v100", "--precision", "bf16", "--steps", "10")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "wattlint: error: --precision bf16: Tesla V100 SXM2 32GB (v100-sxm2-32gb) has no bf16 tensor cores "
        "(Volta); use fp16 or fp32"]
    code, out, err = run_cli(onnx, "--gpu", "a100", "--precision", "bf16", "--compare", "v100", "--steps", "10",
                             "--format", "json")
    assert code == 0
    ests = json.loads(out)["estimates"]
    v = [e for e in ests if e["hardware"]["gpu"] == "v100-sxm2-32gb"][0]
    assert v["plan"]["precision"] == "fp16"
    assert any("--precision bf16 is not available on v100-sxm2-32gb" in a for a in v["assumptions"])
    # the table names the fallback on the row (the plan line above it says bf16), the asked-for GPU row nothing
    for fmt, cell in (("text", "v100-sxm2-32gb x1 (as fp16)"), ("markdown", "| v100-sxm2-32gb x1 (as fp16) |")):
        code, out, err = run_cli(onnx, "--gpu", "a100", "--precision", "bf16", "--compare", "v100", "--steps", "10",
                                 "--format", fmt)
        assert code == 0, err
        assert cell in out and "a100-sxm4-80gb x1 (as" not in out


# ---- a graph traced / exported in half precision: its own precision, never the plan's -----------------------------

def _half_onnx(tmp_path, dtype: int, name: str):
    """x[64, 1024] @ W[1024, 1024] -> Relu -> @ W2[1024, 10], every tensor in ``dtype`` (an fp16 / bf16 export)."""
    import numpy as np
    import onnx
    from onnx import helper

    def w(n, shape):
        return helper.make_tensor(n, dtype, shape, vals=np.zeros(int(np.prod(shape)), dtype=np.uint16).tobytes(),
                                  raw=True)

    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "W2"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", dtype, [64, 1024])],
                          [helper.make_tensor_value_info("y", dtype, [64, 10])], [w("W", [1024, 1024]), w("W2", [1024, 10])])
    p = tmp_path / name
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    return p


def test_an_fp16_export_is_costed_as_fp16_and_says_so_under_default_and_fp32(tmp_path, run_cli):
    """An fp16 ONNX export under the default precision printed "precision 'default' = ... fp32 weights and
    activations, matmuls in FP32" while pricing its fp16 ops; under --precision fp32 the flag changed nothing and
    nothing said so. The plan takes the graph's fp16 and states why; the ops, hence the energy, are the same."""
    from onnx import TensorProto

    model = _half_onnx(tmp_path, TensorProto.FLOAT16, "fp16.onnx")
    out = {}
    for flag in ((), ("--precision", "fp32"), ("--precision", "fp16")):
        code, text, err = run_cli(model, "--gpu", "a100", "--steps", 100, *flag, "--format", "json")
        assert code == 0, err
        out[flag] = json.loads(text)
    default, fp32, fp16 = out[()], out[("--precision", "fp32")], out[("--precision", "fp16")]
    assert {d["plan"]["precision"] for d in out.values()} == {"fp16"}
    assert not any(a.startswith("precision 'default'") for a in default["assumptions"])
    assert "precision fp16: as the graph was traced / exported" in "\n".join(default["assumptions"])
    assert any(a.startswith("--precision fp32 not applied: the graph was traced / exported in fp16")
               for a in fp32["assumptions"])
    assert not any("not applied" in a for a in fp16["assumptions"])
    assert default["total"]["energy_kwh"] == fp32["total"]["energy_kwh"] == fp16["total"]["energy_kwh"]


def test_a_bf16_export_on_a_gpu_without_bf16_names_the_graph_not_a_flag(tmp_path, run_cli):
    """bf16 weights on a V100 (no bf16 tensor cores): refused as the graph's precision (the user passed no
    --precision), and as a --compare candidate costed at the fallback with the graph named."""
    from onnx import TensorProto

    model = _half_onnx(tmp_path, TensorProto.BFLOAT16, "bf16.onnx")
    code, _, err = run_cli(model, "--gpu", "v100", "--steps", 10)
    assert code == 2
    assert err.startswith("wattlint: error: the graph is bf16 (traced / exported in it): ")
    assert "no bf16 tensor cores" in err and "--precision" not in err
    code, text, err = run_cli(model, "--gpu", "a100", "--compare", "v100", "--steps", 10, "--format", "json")
    assert code == 0, err
    v100 = next(e for e in json.loads(text)["estimates"] if e["hardware"]["gpu"].startswith("v100"))
    assert v100["plan"]["precision"] == "fp16"
    assert any(a.startswith("the graph's bf16 is not available on v100") for a in v100["assumptions"])


def test_a_graph_traced_at_bf16_keeps_bf16_under_an_api_precision_and_its_mfu_peak():
    """wattlint.estimate(graph traced at bf16, precision='fp32') priced the bf16 ops and printed an MFU of 145 %
    against the fp32 peak. The plan keeps bf16 (stated), so the estimate equals the one without a precision."""
    import wattlint

    g = wattlint.analyze("examples/gpt2-tiny.onnx", precision="bf16")
    asked = wattlint.estimate(g, gpu="a100", steps=100, precision="fp32")
    plain = wattlint.estimate(g, gpu="a100", steps=100)
    assert asked.plan.precision == plain.plan.precision == "bf16"
    assert asked.total.energy_kwh == plain.total.energy_kwh
    assert asked.utilization.mfu == plain.utilization.mfu < 1.0
    assert any(a.startswith("--precision fp32 not applied") for a in asked.assumptions)


def test_a_graph_traced_for_fp8_is_costed_in_bf16_on_a_gpu_without_fp8():
    """Review: analyze(precision='fp8') then estimate on an A100 was refused ('the graph is fp8 ...') where it
    estimated before: an fp8 trace is bf16 ops with the FP8 GEMMs chosen at estimate time, which an A100 runs in
    bf16 (the same estimate as a bf16 trace there), stated; an H100 keeps fp8."""
    import wattlint

    g8 = wattlint.analyze("examples/gpt2-tiny.onnx", precision="fp8")
    g16 = wattlint.analyze("examples/gpt2-tiny.onnx", precision="bf16")
    a100 = wattlint.estimate(g8, gpu="a100", steps=10)
    assert a100.plan.precision == "bf16"
    assert any(a.startswith("the graph was traced for fp8") and "costed in bf16" in a for a in a100.assumptions)
    assert a100.total.energy_kwh == pytest.approx(wattlint.estimate(g16, gpu="a100", steps=10).total.energy_kwh)
    assert wattlint.estimate(g8, gpu="h100", steps=10).plan.precision == "fp8"


@pytest.mark.parametrize("gpu", ["a100", "v100"])
def test_an_fp16_export_under_precision_bf16_stays_fp16_and_runs_where_fp16_does(tmp_path, run_cli, gpu):
    """Review: an fp16 export with --precision bf16 was labelled bf16 ('matmul/conv in bfloat16') though its ops
    kept fp16, and refused on a V100 (no bf16) where the fp16 graph runs. The export's own fp16 wins, the flag is
    stated as not applied."""
    from onnx import TensorProto

    model = _half_onnx(tmp_path, TensorProto.FLOAT16, "fp16.onnx")
    code, out, err = run_cli(model, "--gpu", gpu, "--steps", 10, "--precision", "bf16", "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert d["plan"]["precision"] == "fp16"
    assert any(a.startswith("--precision bf16 not applied: the graph was traced / exported in fp16")
               for a in d["assumptions"])
    assert not any(a.startswith("precision bf16:") for a in d["assumptions"])
