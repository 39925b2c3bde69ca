"""``wattlint compare-run r0.jsonl r1.jsonl``: the ranks' records of one torchrun job read together as the job
(wattlint.tracking.job), by hand; refusals of records that are not one job; the header's ``job`` field."""

import json

import pytest

from wattlint.tracking.record import SCHEMA, RecordWriter

GPU = "a100-sxm4-80gb"


def write_rank(path, *, rank, world=2, t_step, watts, n=200, plan_steps=1000, master="10.0.0.1:29500",
               model_hash="a", gpu_key=GPU, job_gpus=2):
    """One rank's record: n steps of t_step s on its one GPU at ``watts``, beside the static estimate of the
    ``job_gpus``-GPU job (0.1 s per step, 400 W x 0.1 s = 40 J per GPU and step), plan of ``plan_steps`` steps."""
    e_step = 40.0 * job_gpus
    w = RecordWriter(path)
    job = None if rank is None else {"rank": rank, "world_size": world, "local_rank": rank,
                                     "local_world_size": world, "master": master, "run_id": None}
    w.write({"schema": SCHEMA, "type": "header", "run_id": path.stem, "started_utc": "2026-01-01T00:00:00Z",
             "wattlint_version": "0.1.0",
             "model": {"name": "m", "hash": f"sha256:{model_hash * 8}", "hash_method": "test", "params": 1,
                       "source": None},
             "device": {"kind": "cuda", "gpu_key": gpu_key, "count": 1},
             "channels": [{"name": "gpu0", "kind": "gpu", "energy_source": "counter"}],
             "plan": {"request": {"steps": plan_steps, "gpus": 2},
                      "resolved": {"steps": plan_steps, "gpus": 2, "pue": 1.0}},
             "static": {"gpu": gpu_key, "calibration": "prior", "calibration_source": "spec-sheet prior",
                        "energy_model": "prior", "hardware": {"gpus": job_gpus},
                        "per_step": {"time_s": 0.1, "gpu_energy_j": e_step, "host_energy_j": 0.0},
                        "total": {"time_h": plan_steps * 0.1 / 3600, "energy_kwh": plan_steps * e_step / 3.6e6,
                                  "gpu_energy_kwh": plan_steps * e_step / 3.6e6},
                        "plan": {"data_parallel": job_gpus, "pue": 1.0}},
             "host_w": None, "job": job,
             "settings": {"min_steps": 10, "min_stable_s": 1.0, "max_rel_ci": 0.05, "window_s": 1.0},
             "budget": {"energy_kwh": None, "co2_kg": None, "cost_usd": None, "on_budget": "warn"}, "notes": []})
    t = 0.0
    for i, first in enumerate(range(0, n, 20)):
        d = 20 * t_step
        w.write({"type": "window", "i": i, "first_step": first, "t0": t, "t1": t + d, "step_times_s": [t_step] * 20,
                 "data_wait_s": None, "boundaries": [], "channels": [{"energy_j": watts * d, "source": "counter"}],
                 "phase": "stable"})
        t += d
    w.close()
    return path


def test_two_ranks_are_one_job_by_hand(run_cli, tmp_path):
    """rank 0: 0.10 s per step at 300 W; rank 1: 0.11 s at 320 W (the slower one sets the job's pace).
    Job per step: 0.11 s; GPU energy 300 x 0.10 + 320 x 0.11 = 30 + 35.2 = 65.2 J against the estimate's 80 J for
    its 2 GPUs (both records' GPUs: share 2/2): error 80 / 65.2 - 1 = +22.7 %. Whole plan of 1,000 steps: time
    max(1000 x 0.10, 1000 x 0.11) = 110 s; energy 300 x 100 + 320 x 110 = 65,200 J = 0.018111 kWh (no host model
    in these records, PUE 1), against the estimate's 1000 x 80 J = 0.022222 kWh."""
    r0 = write_rank(tmp_path / "job-rank0.jsonl", rank=0, t_step=0.10, watts=300.0)
    r1 = write_rank(tmp_path / "job-rank1.jsonl", rank=1, t_step=0.11, watts=320.0)
    code, out, err = run_cli("compare-run", r0, r1, "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert d["kind"] == "run-records" and d["ranks"] == ["rank0", "rank1"]
    a = d["analysis"]
    assert a["per_step"]["time_s"] == pytest.approx(0.11)
    assert a["per_step"]["device_energy_j"] == pytest.approx(65.2)
    assert [c["name"] for c in a["channels"]] == ["rank0/gpu0", "rank1/gpu0"]
    c = d["comparison"]
    assert c["step_device_energy_j"]["static"] == pytest.approx(80.0)
    assert c["step_device_energy_j"]["error"] == pytest.approx(80.0 / 65.2 - 1)
    assert "scope" not in c["step_device_energy_j"]
    p = a["projection"]
    assert p["time_s"] == pytest.approx(110.0)
    assert p["energy_kwh"] == pytest.approx(65_200 / 3.6e6)
    assert p["gpu_hours"] == pytest.approx((100.0 + 110.0) / 3600)
    assert c["total_energy_kwh"]["error"] == pytest.approx((1000 * 80.0 / 3.6e6) / (65_200 / 3.6e6) - 1)
    code, out, err = run_cli("compare-run", r0, r1)
    assert code == 0 and "job of 2 ranks (rank0, rank1)" in out and "the sum over the ranks" in out


def test_a_partial_job_says_so_and_compares_its_share(run_cli, tmp_path):
    """The records of ranks 0 and 1 of a 4-rank job estimated at 4 x 40 J = 160 J per step: each GPU measured 0.1 s
    at 400 W = 40 J, 80 J together, compared with the estimate's share of their 2 GPUs, 160 x 2/4 = 80 J (error 0);
    the note names the missing ranks."""
    kw = dict(world=4, t_step=0.1, watts=400.0, job_gpus=4)
    r0 = write_rank(tmp_path / "r0.jsonl", rank=0, **kw)
    r1 = write_rank(tmp_path / "r1.jsonl", rank=1, **kw)
    code, out, err = run_cli("compare-run", r0, r1, "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert any("records of 2 of the job's 4 ranks (missing: 2, 3)" in n for n in d["notes"])
    c = d["comparison"]["step_device_energy_j"]
    assert (c["static"], c["measured"]) == (pytest.approx(80.0), pytest.approx(80.0))
    assert c["scope"] == "the estimate x 2/4: this record's GPUs of the job's"


@pytest.mark.parametrize("second, needle", [
    (dict(rank=1, world=4), "the world size differs"),
    (dict(rank=1, master="10.0.0.2:29500"), "the master address differs"),
    (dict(rank=0), "rank 0 appears in more than one record"),
    (dict(rank=1, model_hash="b"), "the model hash differs"),
    (dict(rank=1, gpu_key="h100-sxm5-80gb"), "the GPU differs"),
    (dict(rank=1, plan_steps=2000), "the plan differs"),
])
def test_records_of_different_jobs_are_refused(run_cli, tmp_path, second, needle):
    r0 = write_rank(tmp_path / "a.jsonl", rank=0, t_step=0.1, watts=300.0)
    r1 = write_rank(tmp_path / "b.jsonl", t_step=0.1, watts=300.0, **second)
    code, out, err = run_cli("compare-run", r0, r1)
    assert code == 2 and needle in err and err.strip().count("\n") == 0, err


@pytest.mark.parametrize("rank", [0, None])
def test_a_copy_of_a_record_is_not_a_second_rank(run_cli, tmp_path, rank):
    """Review: `compare-run rec.jsonl copy-of-rec.jsonl` read the copy as a second rank (2 x the energy); records
    without a rank were merged the same way."""
    import shutil

    r0 = write_rank(tmp_path / "a.jsonl", rank=rank, t_step=0.1, watts=300.0)
    (tmp_path / "elsewhere").mkdir()
    copy = tmp_path / "elsewhere" / "a-copy.jsonl"
    shutil.copy(r0, copy)
    code, out, err = run_cli("compare-run", r0, copy)
    assert code == 2 and err.strip().count("\n") == 0, err
    assert "a-copy.jsonl: the same run as " in err and "(same content)" in err


def test_a_log_of_another_tool_among_several_runs_is_refused(run_cli, tmp_path):
    r0 = write_rank(tmp_path / "a.jsonl", rank=0, t_step=0.1, watts=300.0)
    other = tmp_path / "emissions.csv"
    other.write_text("timestamp,duration,energy_consumed\n2026-01-01T00:00:00,10,0.001\n")
    code, out, err = run_cli("compare-run", r0, other)
    assert code == 2 and "not a wattlint run record" in err


def test_the_header_names_the_rank_under_torchrun(monkeypatch):
    from wattlint.tracking.tracker import _job

    from wattlint.tracking.tracker import LAUNCH_ID_VARS

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
              "TORCHELASTIC_RUN_ID", *LAUNCH_ID_VARS):  # a test run under SLURM has its job's
        monkeypatch.delenv(k, raising=False)
    assert _job() is None
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("MASTER_ADDR", "node0")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert _job() == {"rank": 3, "world_size": 8, "local_rank": 3, "local_world_size": None,
                      "master": "node0:29500", "run_id": None, "launch_id": None}
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert _job() is None


def test_single_process_runs_are_not_summed_as_one_jobs_ranks(run_cli, tmp_path):
    """Four separate single-process runs named together were read as 'a job of 4 ranks' and their energies summed
    (-98 % against one device's estimate). This wattlint writes "job": null for a single process: such records are
    runs of their own, refused together with one line."""
    a = write_rank(tmp_path / "a.jsonl", rank=None, t_step=0.1, watts=300.0)
    b = write_rank(tmp_path / "b.jsonl", rank=None, t_step=0.1, watts=300.0)
    code, out, err = run_cli("compare-run", a, b)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "a single-process run (its header names no rank of a multi-process job)" in err


def test_the_jobs_measured_totals_are_the_sum_over_its_ranks(run_cli, tmp_path):
    """What ran (analysis.measured, at the site): rank 0 ran 200 steps x 0.10 s at 300 W = 6,000 J, rank 1 200 x
    0.11 s at 320 W = 7,040 J: the job 13,040 J = 0.0036222 kWh at PUE 1 (review 2026-12-07: the job's measured
    block kept only time and device joules, so a job without a plan printed no facility energy, CO2 or cost)."""
    r0 = write_rank(tmp_path / "job-rank0.jsonl", rank=0, t_step=0.10, watts=300.0)
    r1 = write_rank(tmp_path / "job-rank1.jsonl", rank=1, t_step=0.11, watts=320.0)
    code, out, err = run_cli("compare-run", r0, r1, "--format", "json")
    assert code == 0, err
    m = json.loads(out)["analysis"]["measured"]
    assert m["energy_kwh"] == pytest.approx(13_040 / 3.6e6) and m["pue"] == 1.0
