"""Host power of a PCIe node of the user's size, unknown short options, non-ASCII dataset digits."""

from __future__ import annotations

import pytest

from _cli_errors import EXAMPLES, one_error_line

import wattlint
from wattlint.energy import system
from wattlint.hardware import resolve_gpu
from wattlint.types import ConfigError, Plan

ONNX = EXAMPLES / "gpt2-tiny.onnx"


def get_gpu(name: str):
    return resolve_gpu(name)[0]


def _plan(**kw) -> Plan:
    return Plan(batch_size=8, steps=1, pue=1.0, carbon_intensity_g_per_kwh=0.0, **kw)


def test_a_given_pcie_node_of_four_shares_its_450_w_among_four():
    # L40S: PCIe server class, TDP 350 W; PSU loss = 1/0.94 - 1 = 0.0638
    # given 4 per node: 450/4 = 112.5; 112.5 + 0.0638 x (350 + 112.5) = 112.5 + 29.52 = 142.02 W per GPU
    gpu = get_gpu("l40s")
    assert gpu.tdp_w == 350
    # --gpus-per-node 4 given (build_plan keeps it in Plan.host_node_gpus)
    w, line = system.host_power_w(gpu, _plan(gpus=4, gpus_per_node=4, host_node_gpus=4))
    assert w / 4 == pytest.approx(142.02, abs=0.01)
    assert "shared by 4 GPUs" in line and "--gpus-per-node 4, as given" in line


def test_a_default_pcie_node_stays_an_8_slot_server():
    # not given (plan notes 'gpus-per-node 4 (default ...'): 450/8 = 56.25; 56.25 + 0.0638 x 406.25 = 82.18 W
    gpu = get_gpu("l40s")
    note = ("gpus-per-node 4 (default min(gpus, 8))",)
    w, line = system.host_power_w(gpu, _plan(gpus=4, gpus_per_node=4, assumptions=note))
    assert w / 4 == pytest.approx(82.18, abs=0.01)
    assert "shared by 8 GPUs" in line and "--gpus-per-node not given" in line
    # one GPU (nothing says a node size was given): the same 8-slot slice
    assert system.host_power_w(gpu, _plan(gpus=1, assumptions=("steps 1",)))[0] == pytest.approx(82.18, abs=0.01)
    # a Plan built by hand (no assumption lines, gpus_per_node often the dataclass's 1): the 8-slot rule too
    assert system.host_power_w(gpu, _plan(gpus=4))[0] / 4 == pytest.approx(82.18, abs=0.01)


def test_estimate_host_power_follows_the_given_node():
    def host_line(**kw):
        e = wattlint.estimate(str(ONNX), gpu="l40s", gpus=4, steps=1, batch_size=8, **kw)
        return next(a for a in e.assumptions if a.startswith("host power"))

    assert host_line(gpus_per_node=4).startswith("host power 142 W per GPU")  # 142.02, as above
    assert host_line().startswith("host power 82 W per GPU")  # 82.18, as above
    # --gpus-per-node 8 > --gpus 4: the job's 4 GPUs sit in the given 8-GPU node -> 82.18 W
    assert host_line(gpus_per_node=8).startswith("host power 82 W per GPU")


def test_tracked_runs_keep_the_8_slot_rule():
    # the tracker passes the GPUs it sees; no node size given: 82.18 W as above
    w, _ = system.host_power_w_per_job_gpu(get_gpu("l40s"), 4)
    assert w == pytest.approx(82.18, abs=0.01)


@pytest.mark.parametrize("argv, expected", [
    (["-x"], "wattlint: error: unknown option '-x'; 'wattlint estimate --help' lists the options"),
    ([str(ONNX), "-x"], "wattlint: error: unknown option '-x'; 'wattlint estimate --help' lists the options"),
    ([str(ONNX), "-gpu", "a100"], "wattlint: error: unknown option '-gpu'; did you mean '--gpu'?"),
    (["check", "-x"], "wattlint: error: check: unknown option '-x'; 'wattlint check --help' lists the options"),
])
def test_an_unknown_short_option_is_named(run_cli, argv, expected):
    code, out, err = run_cli(*argv)
    assert code == 2 and out == ""
    assert one_error_line(err) == expected
    assert "MODEL" not in err


def test_known_short_options_and_negative_values_still_parse(run_cli):
    code, out, _ = run_cli(str(ONNX), "-h")
    assert code == 0 and "usage:" in out
    code, _, err = run_cli(str(ONNX), "--tokens", "-1e9", "--seq-len", "10")
    assert code == 2 and "argument --tokens: '-1e9'" in err


@pytest.mark.parametrize("text", ["\u0665", "\uff150", "1\u0660\u0660"])  # Arabic-Indic 5, fullwidth 5 + 0, 1٠٠
def test_dataset_counts_are_ascii_digits(run_cli, text):
    code, out, err = run_cli(str(ONNX), "--gpu", "a100", "--epochs", "1", "--dataset", text, "--batch-size", "5")
    assert code == 2 and "sample count in ASCII digits" in one_error_line(err)
    with pytest.raises(ConfigError, match="ASCII digits"):
        wattlint.estimate(str(ONNX), gpu="a100", epochs=1, dataset=text, batch_size=5)


@pytest.mark.parametrize("text, samples", [("50_000", 50_000), ("1e6", 1_000_000), ("1,000", 1_000)])
def test_dataset_ascii_count_forms_still_parse(text, samples):
    e = wattlint.estimate(str(ONNX), gpu="a100", epochs=1, dataset=text, batch_size=8)
    assert e.plan.dataset_size == samples
