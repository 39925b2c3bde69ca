"""Review of compare-run's settings and of the API's trace lock: a configured device layout never reshapes the
re-estimate of a run (said on stderr, as the run's GPU count already was kept); a --gpus below the devices a record
measured is refused; a one-process multi-GPU record is re-estimated for its GPUs; the settings and notes name a
configured value as the file writes it (``price``), never by a flag the user did not type (``--price``); a trace
started from the traced model's own code is refused instead of counted into the outer one; a trace waiting for
another thread's says so after a while (and still waits)."""

from __future__ import annotations

import glob
import json
import sys
import threading
import warnings
from pathlib import Path

import pytest

from wattlint.cli import main
from wattlint.tracking.record import SCHEMA, RecordWriter

ROOT = Path(__file__).resolve().parents[1]
CPU_RECORD = sorted(glob.glob(str(ROOT / "benchmarks/results/track_cpu_runs/*-mlp-mnist-b128.jsonl")))[-1]
CPU_ARGS = ["--model", "wattlint.calibrate.zoo:mlp_mnist", "--input", "x=float32[128,784]",
            "--cpu-calibration", str(ROOT / "calibration/runs/cpu-amd-epyc"), "--format", "json"]
GPT2_TINY = str(ROOT / "examples" / "gpt2-tiny.onnx")


def _run(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _gpu_record(path: Path, *, gpus: int, request: dict, t_step=0.1, watts=300.0, n=200) -> Path:
    """A record of one process that measured ``gpus`` A100s (one channel each), n steps of ``t_step`` s at ``watts``
    per GPU, tracked with the plan ``request`` (the layout of tests/test_track_job.py's records)."""
    w = RecordWriter(path)
    w.write({"schema": SCHEMA, "type": "header", "run_id": path.stem, "started_utc": "2026-01-01T00:00:00Z",
             "wattlint_version": "0.1.0",
             "model": {"name": "m", "hash": "sha256:" + "a" * 8, "hash_method": "test", "params": 1, "source": None},
             "device": {"kind": "cuda", "gpu_key": "a100-sxm4-80gb", "count": gpus},
             "channels": [{"name": f"gpu{i}", "kind": "gpu", "energy_source": "counter"} for i in range(gpus)],
             "plan": {"request": request, "resolved": {"steps": request.get("steps"), "gpus": gpus, "pue": 1.0}},
             "static": None, "host_w": None, "job": None,
             "settings": {"min_steps": 10, "min_stable_s": 1.0, "max_rel_ci": 0.05, "window_s": 1.0},
             "budget": {"energy_kwh": None, "co2_kg": None, "cost_usd": None, "on_budget": "warn"}, "notes": []})
    t = 0.0
    for i, first in enumerate(range(0, n, 20)):
        d = 20 * t_step
        w.write({"type": "window", "i": i, "first_step": first, "t0": t, "t1": t + d, "step_times_s": [t_step] * 20,
                 "data_wait_s": None, "boundaries": [],
                 "channels": [{"energy_j": watts * d, "source": "counter"} for _ in range(gpus)], "phase": "stable"})
        t += d
    w.close()
    return path


# ---- 1. a configured device layout and the record's devices -------------------------------------------------------

def test_a_configured_layout_does_not_reshape_a_records_reestimate_and_is_named(tmp_path, capsys, monkeypatch):
    """The record ran on 1 device with no parallel layout. [tool.wattlint] says tensor-parallel = 2,
    pipeline-parallel = 2, context-parallel = 2, expert-parallel = 3, sequence-parallel = true: none fits 1 device
    (2 x 2 x 2 = 8 GPUs per replica) and compare-run has no flag to set them, so the re-estimate is the run's own
    layout, tensor / pipeline / context / expert parallel 1 on 1 data-parallel GPU (the oracle: the same command in
    a folder without a configuration), and one stderr line names each key and the file. It said nothing before."""
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.chdir(plain)
    code, out, err = _run(capsys, ["compare-run", CPU_RECORD, *CPU_ARGS])
    assert code == 0, err
    oracle = json.loads(out)["reestimate"]["static"]
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "pyproject.toml").write_text("[tool.wattlint]\ntensor-parallel = 2\npipeline-parallel = 2\n"
                                        "context-parallel = 2\nexpert_parallel = 3\nsequence-parallel = true\n")
    monkeypatch.chdir(cfg)
    code, out, err = _run(capsys, ["compare-run", CPU_RECORD, *CPU_ARGS])
    assert code == 0, err
    st = json.loads(out)["reestimate"]["static"]
    plan = st["plan"]
    assert (plan["tensor_parallel"], plan["pipeline_parallel"], plan["context_parallel"], plan["expert_parallel"],
            plan["data_parallel"], plan["sequence_parallel"]) == (1, 1, 1, 1, 1, False)
    assert st["total"] == oracle["total"] and st["per_step"] == oracle["per_step"]
    notes = [line for line in err.splitlines() if "not applied by compare-run" in line]
    assert len(notes) == 1, err
    # each key as the file writes it (expert_parallel in snake case), and the file
    for said in ("tensor-parallel = 2", "pipeline-parallel = 2", "context-parallel = 2", "expert_parallel = 3",
                 "sequence-parallel = True", "from [tool.wattlint] of pyproject.toml"):
        assert said in notes[0], notes[0]


def test_gpus_below_the_devices_a_record_measured_is_said_not_refused(tmp_path, capsys):
    """One process measured 2 GPUs: wattlint.track measures every GPU it can see, so a 1-GPU job on a 2-GPU machine
    records 2 devices and --gpus 1 is the user's statement (review 2026-12-07: it was refused, exit 2, with the false
    claim that the job had at least 2). It is taken, and said beside the comparison."""
    rec = _gpu_record(tmp_path / "two.jsonl", gpus=2, request={"steps": 1000, "batch_size": 128})
    code, out, err = _run(capsys, ["compare-run", rec, "--model", "wattlint.calibrate.zoo:mlp_mnist",
                                   "--input", "x=float32[128,784]", "--gpus", "1", "--format", "json"])
    assert code == 0, err
    assert json.loads(out)["reestimate"]["static"]["plan"]["data_parallel"] == 1
    assert "note: --gpus 1: the run record measured 2 devices" in err and "idle ones included" in err


def test_a_one_process_multi_gpu_record_is_reestimated_for_its_gpus(tmp_path, capsys):
    """A record of one process over 2 GPUs, tracked without gpus= (wattlint.track made its own estimate for the 2
    GPUs it measured): the re-estimate was made for 1 GPU and compared with the energy of both. It is the 2-GPU
    plan: data-parallel 2, each replica 128 / 2 = 64 samples, the same numbers as --gpus 2 given by hand."""
    rec = _gpu_record(tmp_path / "dp.jsonl", gpus=2, request={"steps": 1000, "batch_size": 128})
    argv = ["compare-run", rec, "--model", "wattlint.calibrate.zoo:mlp_mnist", "--input", "x=float32[128,784]",
            "--format", "json"]
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    st = json.loads(out)["reestimate"]["static"]
    assert st["plan"]["data_parallel"] == 2 and st["plan"]["tensor_parallel"] == 1
    code, out, err = _run(capsys, argv + ["--gpus", "2"])
    assert code == 0, err
    by_hand = json.loads(out)["reestimate"]["static"]
    assert st["total"] == by_hand["total"] and st["per_step"] == by_hand["per_step"]


# ---- 2. settings named as the user gave them ----------------------------------------------------------------------

CC_HEADER = ("timestamp,project_name,run_id,duration,emissions,emissions_rate,cpu_power,gpu_power,ram_power,cpu_energy,"
             "gpu_energy,ram_energy,energy_consumed,country_name,country_iso_code,region,cloud_provider,cloud_region,"
             "os,python_version,codecarbon_version,cpu_count,cpu_model,gpu_count,gpu_model,longitude,latitude,"
             "ram_total_size,tracking_mode,on_cloud,pue")
CC_ROW = ("2026-01-01T00:00:00,p,r1,120.0,0.001,0,40,300,10,0.001,0.002,0.0005,0.0035,France,FRA,,,,Linux,3.11,"
          "2.4.2,16,EPYC,1,1 x NVIDIA A100-SXM4-80GB,0,0,64,machine,N,1.0")


@pytest.mark.parametrize("key", ["price", "price-per-kwh", "price_per_kwh"])
def test_a_configured_price_is_named_as_the_file_writes_it_not_as_a_flag(tmp_path, capsys, monkeypatch, key):
    """[tool.wattlint] price = 0.2 with --gpu-hour-price 2 on the command line: the settings line said
    'price-per-kwh = 0.2' (not the key the file has) and the estimate's note 'electricity charged on top at --price'
    (a flag nobody typed). The settings line names the key as written; the note names no flag (plan.py)."""
    (tmp_path / "pyproject.toml").write_text(f"[tool.wattlint]\n{key} = 0.2\n")
    (tmp_path / "emissions.csv").write_text(CC_HEADER + "\n" + CC_ROW + "\n")
    monkeypatch.chdir(tmp_path)
    argv = ["compare-run", "emissions.csv", "--model", GPT2_TINY, "--steps", "2", "--gpu-hour-price", "2",
            "--format", "json"]
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    assert f"(the command line overrides them): {key} = 0.2\n" in err, err
    notes = json.loads(out)["static"]["assumptions"]
    assert "GPU-hour price $2 (rental; electricity charged on top)" in notes, notes
    assert "electricity price $0.2/kWh (given), charged on top of the GPU-hour price" in notes
    assert not any("--price" in n for n in notes), notes
    code, out, err = _run(capsys, argv + ["--price", "0.3"])  # typed: it replaces the file's and is named as typed
    assert code == 0, err
    notes = json.loads(out)["static"]["assumptions"]
    assert "GPU-hour price $2 (rental; electricity charged on top)" in notes
    assert "electricity price $0.3/kWh (given), charged on top of the GPU-hour price" in notes
    assert "settings from" not in err


def test_a_records_price_replaces_the_configured_one_and_the_file_is_not_claimed(tmp_path, capsys, monkeypatch):
    """The record was tracked with price=0.5 (the Tracker's keyword; the option table's price_per_kwh): the
    re-estimate used 0.5 but stderr said 'settings from [tool.wattlint] ...: price-per-kwh = 0.2', a setting it
    did not use. Nothing is claimed from the file now, and the re-estimate's electricity price is the record's."""
    lines = Path(CPU_RECORD).read_text().splitlines()
    header = json.loads(lines[0])
    header["plan"]["request"]["price"] = 0.5
    rec = tmp_path / "rec.jsonl"
    rec.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    (tmp_path / "pyproject.toml").write_text("[tool.wattlint]\nprice = 0.2\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, ["compare-run", rec, *CPU_ARGS])
    assert code == 0, err
    st = json.loads(out)["reestimate"]["static"]
    assert st["plan"]["price_per_kwh"] == 0.5
    assert "electricity price $0.5/kWh (given)" in st["assumptions"]
    assert "settings from" not in err and "0.2" not in err
    # the record's steps are named as the record's, not as --steps (the user typed none)
    assert "steps 3,000 (steps in the run record); no epochs/dataset needed" in st["assumptions"]


def test_said_as_names_the_flag_and_its_value_where_given():
    from wattlint.options import said_as

    given = {"tensor_parallel": ("tensor_parallel", "in the run record", 2),
             "dataset": ("dataset", "in [tool.wattlint] of pyproject.toml", "cifar10")}
    assert (said_as("--tensor-parallel 2 x --pipeline-parallel 1 = 2 does not divide --gpus 3", given)
            == "tensor_parallel = 2 in the run record x --pipeline-parallel 1 = 2 does not divide --gpus 3")
    assert (said_as("dataset: 50,000 samples per epoch (--dataset cifar10)", given)
            == "dataset: 50,000 samples per epoch (dataset = cifar10 in [tool.wattlint] of pyproject.toml)")
    assert said_as("--tensor-parallel-x 2", given) == "--tensor-parallel-x 2"  # another flag: left as it is
    # review 2026-12-07: a value printed with thousands separators is still the value; advice naming a flag to pass
    # is not a source and stays as it is
    given = {"steps": ("steps", "in the run record", 3000), "seq_len": ("seq_len", "in the run record", 256)}
    assert said_as("--steps 3,000 is too many", given) == "steps = 3,000 in the run record is too many"
    assert said_as("steps 3,000 (--steps); none", given) == "steps 3,000 (steps in the run record); none"
    assert said_as("keep that length (--seq-len / --input)", given) == "keep that length (--seq-len / --input)"
    assert said_as("pass --seq-len to change it", given) == "pass --seq-len to change it"


# ---- 3. the trace lock ------------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")
nn = torch.nn


class _Inner(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(32, 32)

    def forward(self, x):
        return self.l(x)


class _Outer(nn.Module):
    """Linear(64, 64) on x [8, 64]; with ``nest`` its forward asks wattlint for another model's estimate."""

    def __init__(self, nest: str | None):
        super().__init__()
        self.l = nn.Linear(64, 64)
        self.nest = nest

    def forward(self, x):
        if self.nest:
            import wattlint

            try:
                wattlint.estimate(_Inner(), gpu="h100", steps=1, inputs=["x=float32[4,32]"], lint=False)
            except Exception as e:  # noqa: BLE001 - the test reads what the nested call raised
                _Outer.raised.append(e)
                if self.nest == "raise":
                    raise
        return self.l(x)

    raised: list = []


def _est(model):
    import wattlint

    return wattlint.estimate(model, gpu="h100", steps=1, inputs=["x=float32[8,64]"], lint=False)


def test_a_trace_from_the_traced_models_own_code_is_refused_not_counted_into_it():
    """A forward that calls wattlint.estimate on the thread tracing it: the re-entrant lock let the inner trace run
    inside the outer one, whose step then held the inner model's ops too (FLOPs 186,640 + 30,472, time doubled).
    The inner call is refused with one InputError line; the outer trace, its forward having caught it, is the
    model's own (the same numbers as the forward without the call); uncaught, the same error ends the outer
    estimate, and the process-wide swaps are put back."""
    from wattlint.types import InputError

    plain = _est(_Outer(None))
    # by hand: Linear(64, 64) on [8, 64] forward 2 x 8 x 64 x 64 = 65,536 FLOPs
    assert plain.per_step.flops > 65_536
    _Outer.raised.clear()
    caught = _est(_Outer("catch"))
    assert len(_Outer.raised) == 1 and isinstance(_Outer.raised[0], InputError)
    msg = str(_Outer.raised[0])
    assert "\n" not in msg and "a trace inside a trace is refused" in msg and "same thread" in msg
    assert (caught.per_step.flops, caught.per_step.time_s, caught.per_step.gpu_energy_j) == \
        (plain.per_step.flops, plain.per_step.time_s, plain.per_step.gpu_energy_j)
    stdout, isfinite = sys.stdout, torch.isfinite
    with pytest.raises(InputError, match="a trace inside a trace is refused"):
        _est(_Outer("raise"))
    assert sys.stdout is stdout and torch.isfinite is isfinite
    again = _est(_Outer(None))  # the lock was released: the next trace runs
    assert again.per_step.flops == plain.per_step.flops


def test_a_trace_waiting_for_another_threads_says_so_and_still_waits(monkeypatch):
    """Another thread holds the trace (a legitimate concurrent estimate, or a forward that joins this thread: the
    two cannot be told apart). This trace waits for it however long it takes, and after TRACE_WAIT_NOTE_S says
    what it waits for (a RuntimeWarning naming the lock and the holding thread), then finishes once it is free."""
    from wattlint import api

    monkeypatch.setattr(api, "TRACE_WAIT_NOTE_S", 0.05, raising=False)  # (none before: the test fails on its warning)
    held, release = threading.Event(), threading.Event()

    def holder():
        with api.TRACE_LOCK:
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder, name="other-trace")
    t.start()
    assert held.wait(30)
    threading.Timer(0.5, release.set).start()  # the other trace ends after this one has waited 10x the note time
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = _est(_Outer(None))
    t.join(30)
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(said) == 1, said
    assert "another trace in this process (thread 'other-trace'" in said[0] and "TRACE_LOCK" in said[0]
    assert est.per_step.flops == _est(_Outer(None)).per_step.flops


def test_a_request_names_the_options_given_elsewhere_than_as_flags():
    """api.Request(given=...): what a command passes for the settings it took from [tool.wattlint] (estimate's
    'steps 2 (--steps)' for a configured steps = 2); the other flags' notes are left as they are."""
    from wattlint.api import Request, run

    opts = {"steps": 2, "price_per_kwh": 0.2, "pue": 1.1}
    given = {"steps": ("steps", "in [tool.wattlint] of pyproject.toml", 2)}
    est = run(Request(source=GPT2_TINY, gpus=("a100",), options=opts, given=given, lint=False))[0]
    assert "steps 2 (steps in [tool.wattlint] of pyproject.toml); no epochs/dataset needed" in est.assumptions
    assert "electricity price $0.2/kWh (given)" in est.assumptions  # notes without a given option's flag: unchanged
    plain = run(Request(source=GPT2_TINY, gpus=("a100",), options=opts, lint=False))[0]
    assert "steps 2 (--steps); no epochs/dataset needed" in plain.assumptions
