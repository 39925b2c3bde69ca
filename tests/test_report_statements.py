"""What a report states matches what it priced (a fresh-user review of 2026-12-06): settings taken from
[tool.wattlint] are named, the cost row says what it adds up, the megatron stack's report does not also state the
autocast / torch optimizer it replaced, GPU provenance cites a file that ships, WL403 says the norms were
synthesized."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import wattlint

ROOT = Path(__file__).resolve().parents[1]
ONNX = ROOT / "examples" / "resnet50.onnx"


def test_settings_from_the_config_file_are_named(run_cli, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\ngpu = "a100-sxm4-80gb"\nprecision = "bf16"\n'
                                             'pue = 1.3\n')
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(ONNX, "--epochs", "1", "--format", "json")
    assert code == 0, err
    notes = [a for a in json.loads(out)["assumptions"] if a.startswith("settings from [tool.wattlint]")]
    assert notes == ["settings from [tool.wattlint] of pyproject.toml (the command line overrides them): "
                     "gpu = 'a100-sxm4-80gb', precision = 'bf16', pue = 1.3"]
    # a setting given on the command line is the command line's, not the file's
    code, out, err = run_cli(ONNX, "--epochs", "1", "--gpu", "h100", "--pue", "1.1", "--format", "json")
    notes = [a for a in json.loads(out)["assumptions"] if a.startswith("settings from [tool.wattlint]")]
    assert notes == ["settings from [tool.wattlint] of pyproject.toml (the command line overrides them): "
                     "precision = 'bf16'"]


def test_no_config_no_settings_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(ONNX, "--epochs", "1", "--gpu", "a100", "--format", "json")
    assert code == 0 and not any("[tool.wattlint]" in a for a in json.loads(out)["assumptions"])


def test_the_cost_row_says_what_it_adds_up():
    from wattlint.report.tables import summary_rows

    def label(**prices):
        est = wattlint.estimate(str(ONNX), gpu="a100", epochs=1, **prices)
        return next(k for k, _ in summary_rows(est) if k.startswith("Cost"))

    assert label(price_per_kwh=0.2) == "Cost (electricity)"
    assert label(price_per_kwh=0.2, gpu_hour_price=2.0) == "Cost (electricity + GPU-hours)"


def test_the_megatron_stack_does_not_also_state_what_it_replaced(gpt_config):
    est = wattlint.estimate(gpt_config, gpu="a100", steps=1, precision="bf16", training_stack="megatron")
    lines = est.assumptions
    assert any(a.startswith("training stack megatron (--training-stack): bf16 module parameters") for a in lines)
    assert not any(a.startswith(("precision: bf16 autocast", "optimizer: ", "weights: float32 master")) for a in lines)
    plain = wattlint.estimate(gpt_config, gpu="a100", steps=1, precision="bf16")
    assert any(a.startswith("precision: bf16 autocast") for a in plain.assumptions)  # the pytorch stack keeps it


def test_gpu_provenance_cites_a_file_that_ships(run_cli):
    code, out, err = run_cli("gpus", "h100", "--format", "json")
    assert code == 0, err
    assert "wattlint/data/gpu_specs.csv" in out and "shared/data" not in out
    shipped = Path(wattlint.__file__).parent / "data" / "gpu_specs.csv"
    rows = {r["gpu_key"]: r for r in csv.DictReader(shipped.open())}
    assert rows["h100-sxm5-80gb"]["tdp_w"] == "700" and rows["h100-sxm5-80gb"]["source_vendor_figures"]


def test_wl403_says_the_norms_were_synthesized():
    from wattlint.lint.rules.quality import FoldedBatchnorm

    assert "synthesized" in FoldedBatchnorm.summary and "missing" not in FoldedBatchnorm.summary


def test_gb200_nvl72_is_one_nvlink_domain_of_72_gpus():
    """A 144-GPU GB200 NVL72 job is 2 racks of 72 GPUs on NVLink (NVIDIA's GB200 NVL72 datasheet), each GPU with a
    400 Gbit/s NIC: 72 x 400 = 28,800 Gbit/s per domain; it was costed as 18 DGX-style nodes of 8."""
    est = wattlint.estimate(str(ONNX), gpu="gb200", gpus=144, epochs=1)
    assert est.plan.gpus_per_node == 72 and est.plan.internode_gbps == 72 * 400
    assert any("one NVLink domain of 72 GPUs" in a for a in est.assumptions)
    h100 = wattlint.estimate(str(ONNX), gpu="h100", gpus=16, epochs=1)  # servers stay 8 GPUs, 8 x 400 Gbit/s
    assert h100.plan.gpus_per_node == 8 and h100.plan.internode_gbps == 8 * 400


def test_a_torch_version_newer_than_modelled_is_stated():
    from wattlint import framework

    pin = next(ln.split("==")[1].strip() for ln in (ROOT / "constraints.txt").read_text().splitlines()
               if ln.startswith("torch=="))
    assert framework.fmt(framework.NEWEST_MODELLED) == ".".join(pin.split(".")[:2])  # in step with the test pin
    newer = wattlint.estimate(str(ONNX), gpu="a100", epochs=1, torch_version="3.0")
    assert newer.assumptions.count("--torch-version 3.0 is newer than the releases whose defaults wattlint models "
                                   "(up to 2.13): priced with 2.13's defaults") == 1
    same = wattlint.estimate(str(ONNX), gpu="a100", epochs=1, torch_version="2.13")
    assert not any("is newer than the releases" in a for a in same.assumptions)


def test_an_api_keyword_typo_gets_a_suggestion():
    import pytest

    from wattlint.types import ConfigError

    with pytest.raises(ConfigError, match=r"unknown option 'epoch' \(did you mean 'epochs'\?\)"):
        wattlint.estimate(str(ONNX), gpu="a100", epoch=1)


def test_pipeline_parallel_on_a_model_without_layer_stack_says_what_it_needs(run_cli, gpt_config):
    code, out, err = run_cli(ONNX, "--gpu", "a100", "--epochs", "1", "--pipeline-parallel", "2", "--gpus", "2")
    assert code == 2 and "no stack of numbered blocks with matmuls or attention" in err
    # the small GPT of the parallel tests has 4 blocks: 8 stages are too many, and the message names them
    code, out, err = run_cli(gpt_config, "--gpu", "a100", "--steps", "1", "--pipeline-parallel", "8", "--gpus", "8",
                             "--batch-size", "8")
    assert code == 2 and "repeated blocks (transformer.h.*) to split into stages (need at least 8)" in err, err


def test_the_html_badge_of_every_provenance_is_styled():
    from wattlint.report.html import CSS

    for provenance in ("measured", "public-fit", "transferred", "prior"):
        assert f".{provenance}{{" in CSS


def test_megatron_keeps_the_fp16_loss_scaling_line(gpt_config):
    """The stack replaces autocast and the torch optimizer, not fp16 loss scaling (still not traced): its line stays."""
    est = wattlint.estimate(gpt_config, gpu="a100", steps=1, precision="fp16", training_stack="megatron")
    assert any(a.startswith("precision: fp16 loss scaling") for a in est.assumptions)
    assert not any(a.startswith("precision: fp16 autocast emulated") for a in est.assumptions)


def test_sarif_location_of_a_file_outside_the_repository_is_a_file_uri():
    from wattlint.report.sarif import _artifact

    assert _artifact("ml/pyproject.toml") == {"uri": "ml/pyproject.toml", "uriBaseId": "%SRCROOT%"}
    assert _artifact("/srv/shared/net.py") == {"uri": "file:///srv/shared/net.py"}


def test_only_a_text_position_table_of_the_configured_size_blocks_a_longer_seq_len():
    """A vision tower's 257-row patch-position table is not the text positions of a 2,048-position model (idefics);
    OPT's table has 2 rows more than its limit."""
    import torch.nn as nn

    from wattlint.frontends.hf import _learned_positions

    class M(nn.Module):
        def __init__(self, rows):
            super().__init__()
            self.vision = nn.Module()
            self.vision.position_embedding = nn.Embedding(257, 8)
            self.embed_positions = nn.Embedding(rows, 8)

    assert _learned_positions(M(2050), 2048) == "embed_positions"  # OPT-style offset of 2
    assert _learned_positions(M(100), 2048) is None  # neither table has the model's 2,048 positions


def test_an_nhwc_qlinearconv_is_not_refused_for_its_channel_layout(run_cli, tmp_path):
    """onnxruntime's optimizer writes com.microsoft QLinearConv with channels_last = 1: x is [N, H, W, C], so x[1]
    is H; the channel check read it as C and refused a legal model (review of 2026-12-06)."""
    import numpy as np
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    inits = [nh.from_array(np.array(0.1, np.float32), "xs"), nh.from_array(np.array(0, np.uint8), "xz"),
             nh.from_array(np.zeros((16, 8, 3, 3), np.int8), "w"), nh.from_array(np.array([0.1] * 16, np.float32),
                                                                                  "ws"),
             nh.from_array(np.zeros(16, np.int8), "wz"), nh.from_array(np.array(0.1, np.float32), "ys"),
             nh.from_array(np.array(0, np.uint8), "yz")]
    node = h.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], domain="com.microsoft",
                       channels_last=1, pads=[1, 1, 1, 1])
    g = h.make_graph([node, h.make_node("Cast", ["y"], ["out"], to=T.FLOAT)], "q",
                     [h.make_tensor_value_info("x", T.UINT8, [1, 16, 16, 8])],
                     [h.make_tensor_value_info("out", T.FLOAT, [1, 16, 16, 16])], inits)
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
    onnx.save(model, str(tmp_path / "q.onnx"))
    code, out, err = run_cli("analyze", tmp_path / "q.onnx")
    assert code == 0 and "malformed" not in err, err


def test_checkpointing_says_what_it_wrapped_and_wl107_stays_quiet_when_nothing_is_recomputed():
    """A flat nn.Sequential of Linear / ReLU under --activation-checkpointing: its top-level children are wrapped,
    torch recomputes nothing for them (a Linear's saved input is the checkpoint's input), and WL107 said
    'recomputes 0 % of the step's FLOPs ... turn it off' with no saving."""
    import torch.nn as nn

    flat = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    est = wattlint.estimate(flat, inputs=["x=float32[64,512]"], gpu="a100", steps=100, activation_checkpointing=True)
    assert not [f for f in est.findings if f.code == "WL107"]
    assert any(a.startswith("activation checkpointing: the model's 5 top-level children (no ModuleList of blocks "
                            "found) wrapped in torch.utils.checkpoint") for a in est.assumptions)


def test_api_and_tracker_refuse_bad_values_up_front():
    """wattlint.analyze took optimizer='lion' and stated it; the Tracker took precision='fp99' / steps=-1 / an
    unknown gpu and only noted them at the end of the run; estimate(gpu=[...]) failed deep inside."""
    import pytest
    import torch

    from wattlint.types import ConfigError

    for kw, says in ((dict(optimizer="lion"), "optimizer= 'lion': expected one of"),
                     (dict(gpus=0), "gpus= 0"), (dict(gpu="a100"), r"analyze\(\) takes no option 'gpu'")):
        with pytest.raises(ConfigError, match=says):
            wattlint.analyze(str(ONNX), **kw)
    for kw, says in ((dict(precision="fp99"), "precision= 'fp99'"), (dict(steps=-1), "steps= -1"),
                     (dict(gpu="nope"), "unknown GPU 'nope'")):
        with pytest.raises(ConfigError, match=says):
            wattlint.track(torch.nn.Linear(4, 4), example=torch.randn(2, 4), display="quiet", **kw)
    with pytest.raises(ConfigError, match="estimate_many"):
        wattlint.estimate(str(ONNX), gpu=["a100", "h100"], epochs=1)


def test_a_run_past_its_plan_says_so_and_compares_per_step_only(tmp_path):
    """A tracked loop of 60 steps on a plan of 40: the summary read 'projected plan (40 steps)' beside the 60-step
    time and compared totals over different step counts."""
    import torch

    from wattlint.tracking.compare import comparison
    from wattlint.tracking.display import summary_lines
    from wattlint.tracking.project import Settings, analyze
    from wattlint.tracking.record import read_record

    m = torch.nn.Linear(16, 16)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x = torch.randn(8, 16)
    with wattlint.track(m, example=x, steps=40, out=tmp_path, display="quiet", static=False) as t:
        for _ in range(60):
            opt.zero_grad()
            m(x).sum().backward()
            opt.step()
            t.step()
    rec = read_record(t.path)
    a = analyze(rec.run_data(), Settings.from_dict(rec.header.get("settings")))
    assert a["steps"] == 60 and a["projection"]["overrun_steps"] == 20
    static = {"per_step": {"time_s": 1e-4}, "total": {"time_h": 40 * 1e-4 / 3600}}
    c = comparison(a, static, complete=True)
    assert "total_time_s" not in c and c["note"].startswith("the run took 60 steps, 20 more than the plan's 40")
    lines = summary_lines({"path": str(t.path), "status": "completed", "analysis": a, "comparison": c,
                           "static": static, "notes": []})
    assert any("the run went 20 steps past its plan of 40; what ran (60 steps)" in ln for ln in lines), lines
