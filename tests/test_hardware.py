"""GPU database: completeness, sources per value, flags, aliases, NVML names, did-you-mean."""

import json
import sys

import pytest

from wattlint.hardware import (gpu_from_nvml_name, load_gpus, normalize, resolve_gpu,
                               value_fields)
from wattlint.types import ConfigError

REQUIRED_GPUS = [
    "v100-pcie-16gb", "v100-sxm2-16gb", "v100-sxm2-32gb", "a100-pcie-40gb", "a100-pcie-80gb", "a100-sxm4-40gb",
    "a100-sxm4-80gb", "h100-pcie-80gb", "h100-sxm5-80gb", "h100-nvl-94gb", "h200-sxm-141gb", "l4-24gb", "t4-16gb",
    "a10-24gb", "a10g-24gb", "a40-48gb", "l40s-48gb", "l40-48gb", "rtx-a4000-16gb", "rtx-a6000-48gb",
    "rtx3070-8gb", "rtx3080-10gb", "rtx3090-24gb", "rtx4080-16gb", "rtx4090-24gb", "rtx2080ti-11gb",
    "p100-pcie-16gb", "gtx750ti-2gb", "mi250x-gcd-64gb", "mi300x-192gb",
    # issue 15: the GPUs of today
    "b200-sxm-180gb", "gb200-186gb", "b100-sxm-192gb", "rtx5090-32gb", "rtx5080-16gb", "h20-96gb", "l20-48gb",
    "mi325x-256gb", "gaudi3-128gb",
]


def test_database_has_required_gpus():
    gpus = load_gpus()
    assert len(gpus) >= 40
    missing = [k for k in REQUIRED_GPUS if k not in gpus]
    assert not missing


def test_every_value_has_a_source():
    for key, g in load_gpus().items():
        for field in value_fields(g):
            src = g.sources.get(field, "")
            assert len(src) > 10, f"{key}.{field} has no source"
            assert "@" not in src.split("(")[0], f"{key}.{field}: unexpanded reference {src!r}"


def test_unconfirmed_flags_name_real_fields_and_sources_say_so():
    for key, g in load_gpus().items():
        fields = set(value_fields(g))
        for f in g.unconfirmed:
            assert f in fields, f"{key}: unconfirmed names unknown field {f}"


@pytest.mark.parametrize("key,field", [
    ("v100-pcie-16gb", "tdp_w"), ("v100-pcie-16gb", "peak_tflops.fp32"), ("h100-pcie-80gb", "peak_tflops.fp32"),
    ("h100-pcie-80gb", "peak_tflops.tf32"), ("a10-24gb", "peak_tflops.tf32"), ("a10g-24gb", "peak_tflops.fp16"),
    ("rtx3090-24gb", "peak_tflops.bf16"), ("rtx-a6000-48gb", "peak_tflops.tf32"), ("mi250x-gcd-64gb", "peak_tflops.int8"),
    ("h100-nvl-94gb", "peak_tflops.fp32"), ("rtx3080-10gb", "peak_tflops.fp16"), ("rtx4080-16gb", "tdp_w"),
])
def test_csv_unconfirmed_values_stay_flagged(key, field):
    assert field in load_gpus()[key].unconfirmed


def test_known_caveats_of_public_tables():
    g = load_gpus()
    assert g["v100-sxm2-16gb"].tdp_w == 300 and g["v100-pcie-16gb"].tdp_w == 250  # not swapped
    assert g["l40s-48gb"].tdp_w == 350 and g["l40-48gb"].tdp_w == 300
    # GeForce Ampere/Ada: FP16 tensor with FP32 accumulate = half the FP16-accumulate rate
    assert g["rtx3090-24gb"].peak_tflops["fp16"] == pytest.approx(71, abs=0.5)
    assert g["rtx4090-24gb"].peak_tflops["fp16"] == pytest.approx(165.2)
    # dense, not sparse
    assert g["h100-sxm5-80gb"].peak_tflops["bf16"] == pytest.approx(989.4)
    assert g["a100-sxm4-80gb"].peak_tflops["bf16"] == 312


def test_new_gpus_dense_values():
    g = load_gpus()
    # HGX B200: 4.5 PF FP16/BF16 and 9 PF FP8 per GPU are with 2:4 sparsity -> half dense
    b200 = g["b200-sxm-180gb"].peak_tflops
    assert (b200["bf16"], b200["fp8"], b200["tf32"]) == (4500 / 2, 9000 / 2, 2200 / 2)
    gb200 = g["gb200-186gb"].peak_tflops  # NVL72 per GPU: 5 PF / 10 PF sparse
    assert (gb200["bf16"], gb200["fp8"]) == (5000 / 2, 10000 / 2)
    assert g["b100-sxm-192gb"].peak_tflops["bf16"] == 28000 / 8 / 2  # HGX B100 28 PF sparse over 8 GPUs
    # GeForce Blackwell: FP32-accumulate = half the FP16-accumulate rate (RTX 5090: 419 -> 209.5; FP8 838 -> 419)
    r5090 = g["rtx5090-32gb"].peak_tflops
    assert (r5090["fp16"], r5090["bf16"], r5090["fp8"]) == (419 / 2, 419 / 2, 838 / 2)
    # RTX 5080 derived from the 5090 by SMs x clock (84 x 2617 / 170 x 2407), flagged
    k = (84 * 2617) / (170 * 2407)
    assert g["rtx5080-16gb"].peak_tflops["fp16"] == pytest.approx(209.5 * k, abs=0.05)
    assert "peak_tflops.fp16" in g["rtx5080-16gb"].unconfirmed
    # MI325X: the MI300X compute with more/faster memory
    assert dict(g["mi325x-256gb"].peak_tflops) == dict(g["mi300x-192gb"].peak_tflops)
    assert (g["mi325x-256gb"].memory_gb, g["mi325x-256gb"].memory_bw_gbs, g["mi325x-256gb"].tdp_w) == (256, 6000, 1000)
    # China-market parts have no NVIDIA datasheet: every peak flagged
    for key in ("h20-96gb", "l20-48gb"):
        assert {f"peak_tflops.{d}" for d in ("tf32", "fp16", "bf16", "fp8")} <= set(g[key].unconfirmed), key
    # Gaudi 3: the 'SM' count is the 64 TPCs (a stated, flagged mapping); no fp16/tf32 rate is published
    gaudi = g["gaudi3-128gb"]
    assert gaudi.sm_count == 64 and "sm_count" in gaudi.unconfirmed and "TPC" in gaudi.sources["sm_count"]
    assert set(gaudi.peak_tflops) == {"fp32", "bf16", "fp8"} and gaudi.vendor == "Intel"


def test_values_are_plausible():
    for key, g in load_gpus().items():
        assert 0 < g.idle_w < g.tdp_w, key
        assert g.memory_gb > 0 and g.memory_bw_gbs > 0 and g.sm_count > 0 and g.boost_mhz > 0, key
        assert g.pcie_gen in (3, 4, 5), key
        peaks = g.peak_tflops
        assert peaks.get("fp32", 0) > 0, key
        for dt in ("fp16", "bf16"):
            if dt in peaks and g.tensor_cores:
                assert peaks[dt] >= peaks["fp32"], key
        assert set(peaks) <= {"fp32", "tf32", "fp16", "bf16", "fp8", "int8"}
        if not g.tensor_cores:
            assert "tf32" not in peaks and "bf16" not in peaks, key


def test_idle_estimates_are_flagged():
    for key, g in load_gpus().items():
        if g.idle_estimated:
            src = g.sources["idle_w"].lower()
            assert "estimate" in src or "morrison" in src, key


def test_names_do_not_collide():
    seen: dict[str, str] = {}
    for key, g in load_gpus().items():
        for n in (key, *g.aliases, *g.nvml_names):
            k = normalize(n)
            assert seen.setdefault(k, key) == key, f"{n!r} maps to {seen[k]} and {key}"


@pytest.mark.parametrize("alias,key", [
    ("rtx3090", "rtx3090-24gb"), ("3090", "rtx3090-24gb"), ("RTX 3090", "rtx3090-24gb"),
    ("a100", "a100-sxm4-80gb"), ("a100-80gb", "a100-sxm4-80gb"), ("A100-40GB", "a100-sxm4-40gb"),
    ("h100", "h100-sxm5-80gb"), ("h200", "h200-sxm-141gb"), ("t4", "t4-16gb"), ("l40s", "l40s-48gb"),
    ("l4", "l4-24gb"), ("a10", "a10-24gb"), ("a10g", "a10g-24gb"), ("4090", "rtx4090-24gb"),
    ("mi300x", "mi300x-192gb"), ("b200", "b200-sxm-180gb"), ("B200", "b200-sxm-180gb"), ("gb200", "gb200-186gb"),
    ("b100", "b100-sxm-192gb"), ("rtx5090", "rtx5090-32gb"), ("RTX 5090", "rtx5090-32gb"),
    ("rtx5080", "rtx5080-16gb"), ("h20", "h20-96gb"), ("l20", "l20-48gb"), ("mi325x", "mi325x-256gb"),
    ("gaudi3", "gaudi3-128gb"), ("Gaudi 3", "gaudi3-128gb"),
])
def test_alias_resolution_is_stated(alias, key):
    spec, note = resolve_gpu(alias)
    assert spec.key == key
    assert note == f"gpu {alias!r} resolved to {key} ({spec.name})"


def test_key_resolves_without_assumption():
    spec, note = resolve_gpu("h100-sxm5-80gb")
    assert spec.key == "h100-sxm5-80gb" and note is None


@pytest.mark.parametrize("nvml,key", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm5-80gb"), ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
    ("NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb"), ("NVIDIA A100 80GB PCIe", "a100-pcie-80gb"),
    ("NVIDIA GeForce RTX 3090", "rtx3090-24gb"), ("Tesla T4", "t4-16gb"), ("Tesla V100-SXM2-32GB", "v100-sxm2-32gb"),
    ("Tesla V100-PCIE-16GB", "v100-pcie-16gb"), ("NVIDIA L40S", "l40s-48gb"), ("NVIDIA H100 PCIe", "h100-pcie-80gb"),
    ("NVIDIA GeForce RTX 4090", "rtx4090-24gb"), ("Tesla P100-PCIE-16GB", "p100-pcie-16gb"),
    ("NVIDIA B200", "b200-sxm-180gb"), ("NVIDIA GB200", "gb200-186gb"), ("NVIDIA GeForce RTX 5090", "rtx5090-32gb"),
    ("NVIDIA GeForce RTX 5080", "rtx5080-16gb"), ("NVIDIA H20", "h20-96gb"), ("NVIDIA L20", "l20-48gb"),
    ("AMD Instinct MI325X", "mi325x-256gb"),
])
def test_nvml_names(nvml, key):
    assert gpu_from_nvml_name(nvml).key == key


def test_nvml_unknown_and_no_ti_confusion():
    assert gpu_from_nvml_name("NVIDIA GeForce RTX 3080 Ti") is None
    assert gpu_from_nvml_name("") is None
    assert gpu_from_nvml_name("NVIDIA A100-SXM4-40GB MIG 1g.5gb").key == "a100-sxm4-40gb"
    assert gpu_from_nvml_name("Some Future GPU") is None


def test_unknown_gpu_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown GPU 'rtx3099'; did you mean 'rtx3090'"):
        resolve_gpu("rtx3099")
    with pytest.raises(ConfigError, match="unknown GPU"):
        resolve_gpu("zzzz")


def test_unknown_gpu_exits_2_with_one_line(run_cli):
    code, out, err = run_cli("gpus", "rtx3099")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("wattlint: error: unknown GPU 'rtx3099'; did you mean 'rtx3090'")


def test_gpu_detail(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run_cli("gpus", "3090")
    assert code == 0
    assert "resolved to rtx3090-24gb" in out and "unconfirmed" in out and "estimated" in out
    code, out, err = run_cli("gpus", "NVIDIA H100 80GB HBM3", "--format", "json")
    info = json.loads(out)
    assert info["key"] == "h100-sxm5-80gb"
    assert info["precisions"] == ["default", "fp32", "tf32", "fp16", "bf16", "fp8"]  # the list's shape (review)
    assert "H100 Tensor Core GPU Architecture whitepaper" in info["precisions_source"]
    assert info["values"]["tdp_w"]["value"] == 700 and "H100" in info["values"]["tdp_w"]["source"]
    # memory: HBM from the chip code (GH100) at the HBM streaming fraction; the RTX 3090's GDDR6X is stated in the
    # database with its source and streams at 0.87 (docs/ENERGY_MODEL.md constants table)
    assert info["memory"]["type"] == "HBM" and info["memory"]["streaming_fraction"] == 0.85
    assert "chip code" in info["memory"]["type_source"] and "HBM value" in info["memory"]["streaming_source"]
    code, out, err = run_cli("gpus", "3090", "--format", "json")
    m = json.loads(out)["memory"]
    assert (m["type"], m["streaming_fraction"]) == ("GDDR6X", 0.87) and "GDDR6X" in m["type_source"]
    assert "RTX 3090 0.89" in m["streaming_source"]
    code, out, err = run_cli("gpus", "p100")
    text = " ".join(out.split())
    assert "memory: HBM (" in text and "streaming kernels reach 0.73" in text and "per-chip value for GP100" in text


def test_gpus_json_list(run_cli):
    code, out, err = run_cli("gpus", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert len(data) == len(load_gpus())
    row = next(r for r in data if r["key"] == "rtx3090-24gb")
    assert row["calibration"] in ("prior", "public-fit", "transferred", "measured")
    assert row["idle_estimated"] is True and "peak_tflops.bf16" in row["unconfirmed"]


def test_gpus_text_lists_every_key(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run_cli("gpus")
    assert code == 0 and not err
    for key in REQUIRED_GPUS:
        assert key in out


def test_gpus_json_sources(run_cli):
    code, out, _ = run_cli("gpus", "--format", "json", "--sources")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) >= 40 and all(r["sources"] and r["sources"].get("precisions") for r in rows)
    v100 = next(r for r in rows if r["key"] == "v100-sxm2-32gb")
    assert v100["precisions"] == ["default", "fp32", "fp16"]


def test_b200_resolves_and_estimates_in_the_cli(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run_cli("gpus", "b200")
    assert code == 0 and "b200-sxm-180gb" in out and "precisions: default, fp32, tf32, fp16, bf16, fp8" in out


def test_hardware_imports_no_heavy_modules():
    import subprocess

    code = ("import sys, wattlint.hardware, wattlint.plan, wattlint.carbon; wattlint.hardware.load_gpus(); "
            "bad=[m for m in ('torch','onnx','lightgbm','pynvml','rich') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_gddr_boards_follow_the_in_job_idle_rule():
    # @idle-rule-gddr: a CUDA process keeps a GDDR board in P0 with its memory at full clock: in-job idle = 0.25 x TDP
    # to the nearest watt. A40: 0.25 x 300 = 75 W; Quadro RTX 6000: 0.25 x 260 = 65 W; T4: 0.25 x 70 = 17.5 -> 18 W;
    # RTX 4090: 0.25 x 450 = 112.5 -> 113 W. HBM parts keep ~0.15 x TDP (V100 PCIe 250 W: 35 W).
    from wattlint.energy.prior import memory_kind
    from wattlint.hardware import IDLE_FRACTION_GDDR, gddr_idle_w

    gpus = load_gpus()
    assert IDLE_FRACTION_GDDR == 0.25
    assert [gpus[k].idle_w for k in ("a40-48gb", "quadro-rtx6000-24gb", "t4-16gb", "rtx4090-24gb")] == [75, 65, 18, 113]
    assert gpus["v100-pcie-16gb"].idle_w == 35
    ruled = {k for k, g in gpus.items() if "idle 0.25 x TDP" in g.sources.get("idle_w", "")}
    assert {"a40-48gb", "quadro-rtx6000-24gb", "t4-16gb", "l4-24gb", "a10-24gb", "rtx3090-24gb"} <= ruled
    for k in ruled:
        assert gpus[k].idle_w == gddr_idle_w(gpus[k].tdp_w), k
        assert memory_kind(gpus[k]) != "hbm", k
    assert gddr_idle_w(70.0) == 18 and gddr_idle_w(260.0) == 65


def test_gpus_reports_the_energy_model_an_estimate_uses(run_cli, monkeypatch, tmp_path):
    """`wattlint gpus` must not call a GPU 'prior' when its estimates run on the public fit: the column is the
    provenance the estimate prints. README: public-fit is the default for NVIDIA GPUs without a calibration, the
    prior for every non-NVIDIA device, the shipped H200 SXM calibration is measured."""
    monkeypatch.delenv("WATTLINT_MODELS_DIR", raising=False)
    from wattlint.energy import predictor as pred_mod

    monkeypatch.setattr(pred_mod, "user_models_dir", lambda: tmp_path / "empty-user-models")
    code, out, _ = run_cli("gpus", "--format", "json")
    assert code == 0
    by_key = {r["key"]: r["calibration"] for r in json.loads(out)}
    assert by_key["rtx3090-24gb"] == "public-fit" and by_key["h100-sxm5-80gb"] == "public-fit"
    assert by_key["mi300x-192gb"] == "prior" and by_key["gaudi3-128gb"] == "prior"
    assert by_key["h200-sxm-141gb"] == "measured"
    code, out, _ = run_cli("estimate", "examples/resnet50.onnx", "--gpu", "rtx3090", "--format", "json")
    assert code == 0 and json.loads(out)["hardware"]["calibration"] == by_key["rtx3090-24gb"]
    code, out, _ = run_cli("gpus", "h100", "--format", "json")
    assert code == 0 and json.loads(out)["calibration"] == "public-fit"
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli("gpus", "h100")
    assert code == 0 and "energy model: public-fit" in out


def test_gpus_searches_the_models_folders_an_estimate_here_would(run_cli, monkeypatch, tmp_path):
    """In a project whose [tool.wattlint] models-dir holds an H100 calibration, `wattlint MODEL` priced with it
    ('measured') while `wattlint gpus` listed the H100 as public-fit (it searched only the default folders); `gpus`
    also takes --models-dir, as the estimate does."""
    from _models_fixtures import stand_in_model

    monkeypatch.delenv("WATTLINT_MODELS_DIR", raising=False)
    from wattlint.energy import predictor as pred_mod

    monkeypatch.setattr(pred_mod, "user_models_dir", lambda: tmp_path / "empty-user-models")
    proj = tmp_path / "proj"
    stand_in_model(proj / "mdl" / "h100-sxm5-80gb")
    (proj / "pyproject.toml").write_text('[tool.wattlint]\nmodels-dir = "mdl"\n')
    monkeypatch.chdir(proj)
    code, out, err = run_cli("gpus", "--format", "json")
    assert code == 0, err
    by_key = {r["key"]: r["calibration"] for r in json.loads(out)}
    assert by_key["h100-sxm5-80gb"] == "measured" and by_key["a100-sxm4-80gb"] == "public-fit"
    code, out, err = run_cli("gpus", "h100", "--format", "json")
    assert code == 0 and json.loads(out)["calibration_source"].endswith(f"([tool.wattlint] models-dir {proj / 'mdl'})")
    other = tmp_path / "other"
    stand_in_model(other / "a100-sxm4-80gb")
    code, out, err = run_cli("gpus", "a100", "--models-dir", str(other), "--format", "json")
    assert code == 0 and json.loads(out)["calibration"] == "measured"
    code, out, err = run_cli("gpus", "--models-dir", str(tmp_path / "nowhere"))
    assert code == 2 and "--models-dir" in err and "not a folder" in err
    # an unrelated bad setting (or a stale models-dir) in the project must not stop the listing: stated, defaults
    (proj / "pyproject.toml").write_text('[tool.wattlint]\nprecision = "fp99"\n')
    code, out, err = run_cli("gpus", "h100", "--format", "json")
    assert code == 0 and json.loads(out)["calibration"] == "public-fit"
    assert err.startswith("wattlint: note: [tool.wattlint] not read (") and "energy models from the default" in err


def test_memory_type_rows_and_their_checks():
    from wattlint.hardware import MEMORY_TYPES, _spec

    gpus = load_gpus()
    # the GDDR6X / GDDR7 boards (GA102 / AD10x / GB20x whitepapers); the GDDR6 boards of the same chips carry none
    assert {k for k, g in gpus.items() if g.memory_type} == {
        "rtx3080-10gb", "rtx3090-24gb", "rtx4080-16gb", "rtx4090-24gb", "rtx5090-32gb", "rtx5080-16gb"}
    assert gpus["rtx3090-24gb"].memory_type == "GDDR6X" and gpus["rtx5090-32gb"].memory_type == "GDDR7"
    assert "GDDR6X" in gpus["rtx3090-24gb"].sources["memory_type"]
    assert MEMORY_TYPES == ("GDDR6X", "GDDR7")
    row = {"name": "x", "vendor": "NVIDIA", "arch": "Ampere (GA102)", "tdp_w": 300, "idle_w": 75, "memory_gb": 24,
           "memory_bw_gbs": 900, "sm_count": 80, "boost_mhz": 1700, "peak_tflops": {"fp32": 30},
           "precisions": ["fp32"], "sources": {"precisions": "s"}}
    assert _spec("x", row, {}).memory_type == ""
    with pytest.raises(ValueError, match="no source for its memory_type"):
        _spec("x", {**row, "memory_type": "GDDR6X"}, {})
    with pytest.raises(ValueError, match="not one of"):
        _spec("x", {**row, "memory_type": "HBM9", "sources": {"precisions": "s", "memory_type": "s"}}, {})
    assert _spec("x", {**row, "memory_type": "GDDR7", "sources": {"precisions": "s", "memory_type": "s"}},
                 {}).memory_type == "GDDR7"


def test_stored_spec_keeps_the_memory_type():
    from wattlint.calibrate.backends import spec_from_dict, spec_to_dict
    from wattlint.types import InputError

    g = load_gpus()["rtx3090-24gb"]
    d = spec_to_dict(g)
    assert d["memory_type"] == "GDDR6X" and spec_from_dict(d).memory_type == "GDDR6X"
    assert "memory_type" not in spec_to_dict(load_gpus()["a10-24gb"])
    with pytest.raises(InputError, match="memory_type"):
        spec_from_dict({**d, "memory_type": 3})
    # a type the prior does not know is refused (it would otherwise fail deep in the pricing); case is normalised
    with pytest.raises(InputError, match="memory_type = 'HBM3'"):
        spec_from_dict({**d, "memory_type": "HBM3"})
    assert spec_from_dict({**d, "memory_type": "gddr7"}).memory_type == "GDDR7"


def test_mi250x_is_the_device_pytorch_sees_one_gcd():
    """An MI250X package is two GCDs, each its own PyTorch device with 64 GB (AMD's datasheet: 128 GB HBM2e,
    3.2768 TB/s, 383 BF16 TFLOPS, 220 CUs, 500 W per package). The database held the package as one GPU, so a run
    needing 98.8 GiB 'fit' a device that has 64; 'mi250' (another product: 208 CUs) resolved to it."""
    spec, _ = resolve_gpu("mi250x")
    assert spec.key == "mi250x-gcd-64gb"
    assert spec.memory_gb == 128 / 2 and spec.peak_tflops["bf16"] == 383 / 2 and spec.sm_count == 220 // 2
    assert spec.memory_bw_gbs == pytest.approx(3276.8 / 2, abs=1) and spec.tdp_w == 500 / 2
    with pytest.raises(ConfigError):
        resolve_gpu("mi250")
