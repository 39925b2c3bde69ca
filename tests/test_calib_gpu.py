"""GPU smoke tests (skipped without CUDA): a few real samples with NVML, and one validation config."""

import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_cuda_calibration_smoke(tmp_path):
    from wattlint.calibrate.runner import RunConfig, read_rows, run_calibration

    paths = run_calibration(RunConfig(device="cuda", suite="quick", out=str(tmp_path), limit=4))
    rows = read_rows(paths.csv)
    assert len(rows) == 4
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and all(float(r["time_s"]) > 0 and float(r["avg_power_w"]) > 10 for r in ok)
    prov = json.loads(paths.json.read_text())
    assert prov["meter"]["name"] == "nvml" and prov["meter"]["gpu_name"]
    assert prov["sessions"][0]["idle_power_w"] > 0


def test_cuda_validation_smoke(tmp_path):
    from wattlint.calibrate import validate as V
    from wattlint.calibrate.backends import CudaBackend
    from wattlint.calibrate.runner import make_meter

    b = CudaBackend()
    m = make_meter("cuda", b)
    cfg = {"name": "mlp", "source": "wattlint.calibrate.zoo:mlp_mnist", "inputs": ["x=float32[512,784]"],
           "precision": "bf16", "optimizer": "adamw", "window_s": 2.0, "warmup_s": 0.5}
    r = V.measure_config(cfg, b, m)
    assert r["time_per_step_s"] > 0 and r["avg_power_w"] > 10 and r["power_source"] in ("counter", "sampling")
