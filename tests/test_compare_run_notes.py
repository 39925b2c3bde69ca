"""compare-run says what it did: the grid intensity a log states itself is named as the log's (a configured region it
replaces is not claimed as a setting taken from the file); the re-estimate searches the energy models `wattlint
estimate` searches ([tool.wattlint] models-dir, --models-dir); a setting named as given keeps its value's unit beside
the value ('launch_overhead = 0.001 s in the run record')."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
from _cli_errors import one_error_line
from test_compare_api_review import CC_HEADER, CC_ROW  # the same CodeCarbon log

from wattlint.cli import main

ROOT = Path(__file__).resolve().parents[1]
CPU_RECORD = sorted(glob.glob(str(ROOT / "benchmarks/results/track_cpu_runs/*-mlp-mnist-b128.jsonl")))[-1]
CPU_ARGS = ["--model", "wattlint.calibrate.zoo:mlp_mnist", "--input", "x=float32[128,784]",
            "--cpu-calibration", str(ROOT / "calibration/runs/cpu-amd-epyc"), "--format", "json"]
RESNET = str(ROOT / "examples" / "resnet50.onnx")
TINY = ("import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Linear(1024, 1024), torch.nn.ReLU(), "
        "torch.nn.Linear(1024, 10)), (torch.randn(256, 1024),)\n")
CT_LOG = ("CarbonTracker: The following components were found: GPU with device(s) NVIDIA A100.\n"
          "CarbonTracker: \nActual consumption for 2 epoch(s):\n\tTime:\t0:10:00\n\tEnergy:\t1.250000 kWh\n"
          "\tCO2eq:\t375.000000 g\n")


def _run(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _folder(tmp_path: Path, name: str, config: str | None) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "emissions.csv").write_text(CC_HEADER + "\n" + CC_ROW + "\n")
    (d / "tiny.py").write_text(TINY)
    if config is not None:
        (d / "pyproject.toml").write_text(config)
    return d


# ---- 1. the grid intensity of a log is said as the log's; a region it replaces is not claimed ---------------------

def test_a_configured_region_replaced_by_the_logs_grid_intensity_is_not_claimed(tmp_path, capsys, monkeypatch):
    """[tool.wattlint] region = "DE" and a CodeCarbon log that states its own intensity (its CO2 / its energy): the CO2
    was priced at the log's 285.714 gCO2e/kWh, yet stderr said 'settings from [tool.wattlint] ...: region = 'DE''
    and the estimate's line said '(--carbon-intensity, overrides region DE)', a flag nobody typed. The region (which
    sets nothing else here: no cloud PUE, no price table) is named as not applied, replaced by the log's intensity;
    the numbers are those of the same comparison without a configuration (the oracle)."""
    argv = ["compare-run", "emissions.csv", "--model", "tiny.py:build", "--gpu", "a100-sxm4-80gb", "--steps", "100",
            "--format", "json"]
    monkeypatch.chdir(_folder(tmp_path, "plain", None))
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    oracle = json.loads(out)["static"]
    monkeypatch.chdir(_folder(tmp_path, "cfg", '[tool.wattlint]\nregion = "DE"\nprice = 0.3\n'))
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    st = json.loads(out)["static"]
    assert st["plan"]["carbon_intensity_g_per_kwh"] == pytest.approx(285.714)
    assert st["total"]["co2_kg"] == pytest.approx(oracle["total"]["co2_kg"], rel=1e-9)
    settings = [line for line in err.splitlines() if "settings from [tool.wattlint]" in line]
    assert len(settings) == 1 and "price = 0.3" in settings[0] and "region" not in settings[0], err
    assert st["plan"]["region"] is None  # not 'DEU', a region that priced nothing
    notes = [line for line in err.splitlines() if "not applied" in line]
    assert len(notes) == 1, err
    assert ("region = 'DE' (replaced by the log's grid intensity 285.714 gCO2e/kWh: its CO2 / its energy) from "
            "[tool.wattlint] of pyproject.toml") in notes[0]
    ci = [a for a in st["assumptions"] if a.startswith("carbon intensity")]
    from wattlint.carbon import RANGE_CLAUSE  # every intensity line says the ranges hold it fixed (review s52)

    assert ci == ["carbon intensity 285.714 gCO2e/kWh (carbon intensity from the log's CO2 / energy)" + RANGE_CLAUSE], ci
    assert "note: --carbon-intensity 285.714 gCO2e/kWh from the log (its CO2 / its energy)" in _text(capsys, argv)
    # a misspelt region is refused, used or not (review: dropped unchecked once the log's intensity replaced it;
    # `wattlint estimate` refuses it even when --carbon-intensity overrides it)
    monkeypatch.chdir(_folder(tmp_path, "typo", '[tool.wattlint]\nregion = "DEX"\n'))
    code, out, err = _run(capsys, argv)
    assert code == 2 and out == ""
    assert "region = 'DEX' in [tool.wattlint] of pyproject.toml: unknown region 'DEX'" in one_error_line(err), err
    # a configured carbon-intensity is replaced by the log's likewise, and said
    monkeypatch.chdir(_folder(tmp_path, "ci", "[tool.wattlint]\ncarbon-intensity = 50\n"))
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    assert json.loads(out)["static"]["plan"]["carbon_intensity_g_per_kwh"] == pytest.approx(285.714)
    assert "carbon-intensity = 50.0 (replaced by the log's grid intensity 285.714 gCO2e/kWh" in err, err
    # --region on the command line wins over the log's intensity: nothing is said about the log's
    code, out, err = _run(capsys, argv + ["--region", "FR"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["static"]["plan"]["region"] == "FRA" and doc["comparison"]["co2_kg"]["scope"] == (
        "each with its own grid intensity")
    assert "from the log" not in " ".join(doc["static"]["assumptions"])


def _text(capsys, argv):
    code, out, err = _run(capsys, [a for a in argv if a not in ("--format", "json")])
    assert code == 0, err
    return out


def test_a_configured_cloud_region_that_still_sets_the_pue_is_said_to_set_only_that(tmp_path, capsys, monkeypatch):
    """A Carbontracker log without a PUE line and [tool.wattlint] region = "gcp:europe-west1" (whose PUE 1.09 the
    cloud table lists): the region still sets the PUE, the log's intensity the CO2. Stderr said the region was taken
    from the file, as if its grid applied; it now says it sets only the PUE, and the CO2 is the log's."""
    (tmp_path / "10.2026-01-01T000000Z_carbontracker_output.log").write_text(CT_LOG)
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\nregion = "gcp:europe-west1"\n')
    monkeypatch.chdir(tmp_path)
    argv = ["compare-run", "10.2026-01-01T000000Z_carbontracker_output.log", "--model", RESNET, "--gpu", "a100",
            "--dataset", "10000", "--format", "json"]
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    plan = json.loads(out)["static"]["plan"]
    assert plan["pue"] == pytest.approx(1.09) and plan["carbon_intensity_g_per_kwh"] == pytest.approx(300.0)
    assert "settings from [tool.wattlint]" not in err, err
    assert ("region = 'gcp:europe-west1' from [tool.wattlint] of pyproject.toml sets only the PUE here (its cloud "
            "region's, in the mlco2/impact table): the CO2 is priced at the log's grid intensity 300 gCO2e/kWh") in err
    # with the PUE given, the region sets nothing: not applied, and said so
    code, out, err = _run(capsys, argv + ["--pue", "1.3"])
    assert code == 0, err
    assert json.loads(out)["static"]["plan"]["region"] is None
    assert "not applied, the log states its own: region = 'gcp:europe-west1' (replaced by the log's grid" in err


# ---- 2. the energy models searched are estimate's: [tool.wattlint] models-dir, --models-dir ----------------------

def _correction(models: Path) -> None:
    """A run-level correction (x1.5 time, x1.4 energy) of the shipped H200 model, in ``models``/h200-sxm-141gb/."""
    from wattlint.energy.predictor import MODELS_DIR, ModelsDir, get_predictor, model_content_id
    from wattlint.hardware import resolve_gpu

    h200 = resolve_gpu("h200-sxm-141gb")[0]
    base = get_predictor(h200, (ModelsDir(MODELS_DIR, "shipped"),))
    assert base.calibration == "measured"
    (models / h200.key).mkdir(parents=True)
    (models / h200.key / "run_correction.json").write_text(json.dumps({
        "schema": "wattlint.run-correction/1", "gpu": {"key": h200.key}, "time_factor": 1.5, "energy_factor": 1.4,
        "quantiles": {"time": [1.2, 1.9], "energy": [1.1, 1.8]}, "source": "run-level correction from 2 runs",
        "base_energy_model": f"{base.calibration}: {base.source}", "base_model_id": model_content_id(base), "runs": [{"file": "a.jsonl"}, {"file": "b.jsonl"}]}))


def test_compare_run_searches_the_configured_and_given_models_dir_as_estimate_does(tmp_path, capsys, monkeypatch):
    """[tool.wattlint] models-dir (docs/CONFIG.md) holds a run correction of the H200 model: `wattlint estimate`
    applied it, compare-run's re-estimate priced the default search path (the shipped model alone), so the comparison
    was not with the estimate the user gets. The oracle: `wattlint estimate` of the same plan in the same folder."""
    d = _folder(tmp_path, "cfg", '[tool.wattlint]\nmodels-dir = "models"\n')
    _correction(d / "models")
    monkeypatch.chdir(d)
    plan = ["--gpu", "h200-sxm-141gb", "--steps", "100", "--format", "json"]
    code, out, err = _run(capsys, ["estimate", "tiny.py:build", *plan])
    assert code == 0, err
    oracle = json.loads(out)
    assert oracle["provenance"]["energy_model"] == "measured: run-level correction from 2 runs"
    code, out, err = _run(capsys, ["compare-run", "emissions.csv", "--model", "tiny.py:build", *plan])
    assert code == 0, err
    st = json.loads(out)["static"]
    assert st["energy_model"] == oracle["provenance"]["energy_model"]
    assert st["per_step"] == oracle["per_step"]
    assert st["total"]["gpu_energy_kwh"] == pytest.approx(oracle["total"]["gpu_energy_kwh"], rel=1e-12)
    assert any(a.startswith("energy models searched in order: [tool.wattlint] models-dir ") for a in st["assumptions"])
    # --models-dir, as estimate's: searched first
    other = tmp_path / "given"
    _correction(other)
    plain = _folder(tmp_path, "plain", None)
    monkeypatch.chdir(plain)
    code, out, err = _run(capsys, ["estimate", "tiny.py:build", *plan, "--models-dir", other])
    assert code == 0, err
    oracle = json.loads(out)
    code, out, err = _run(capsys, ["compare-run", "emissions.csv", "--model", "tiny.py:build", *plan,
                                   "--models-dir", other])
    assert code == 0, err
    st = json.loads(out)["static"]
    assert st["energy_model"] == oracle["provenance"]["energy_model"] == "measured: run-level correction from 2 runs"
    assert st["per_step"] == oracle["per_step"]
    # a folder that is not there is refused as estimate refuses it
    code, out, err = _run(capsys, ["compare-run", "emissions.csv", "--model", "tiny.py:build", *plan,
                                   "--models-dir", tmp_path / "nowhere"])
    assert code == 2 and "--models-dir" in err and "not a folder" in err, err


def test_models_dir_is_refused_where_it_would_change_nothing(tmp_path, capsys):
    """--models-dir on a record without --model (the recorded estimate is shown as it was) and on a CPU run (priced
    by its --cpu-calibration folder's model) would be ignored: exit 2, as compare-run's other unused options."""
    code, out, err = _run(capsys, ["compare-run", CPU_RECORD, "--models-dir", tmp_path])
    assert code == 2 and "--models-dir: apply only to a re-estimate" in err, err
    code, out, err = _run(capsys, ["compare-run", CPU_RECORD, *CPU_ARGS, "--models-dir", tmp_path])
    assert code == 2 and "a CPU run is priced by the model of its --cpu-calibration folder" in err, err


# ---- 3. a value named as given keeps its unit beside it ------------------------------------------------------------

def test_a_recorded_value_named_as_given_keeps_its_unit(tmp_path, capsys, monkeypatch):
    """The record was tracked with launch_overhead=0.001 (seconds) and loader_sample_time=0.01: the re-estimate's
    lines read 'launch_overhead = 0.001 in the run record s has no effect' (said_as put the source between the value
    and its unit). The unit stays with the value."""
    lines = Path(CPU_RECORD).read_text().splitlines()
    header = json.loads(lines[0])
    header["plan"]["request"].update(launch_overhead=0.001, loader_sample_time=0.01)
    rec = tmp_path / "rec.jsonl"
    rec.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, ["compare-run", rec, *CPU_ARGS])
    assert code == 0, err
    said = json.loads(out)["reestimate"]["static"]["assumptions"]
    assert any(a.startswith("launch_overhead = 0.001 s in the run record has no effect") for a in said), said
    assert any(a.startswith("loader_sample_time = 0.01 s in the run record: not applied") for a in said), said
    assert not any(" in the run record s" in a for a in said), said


def test_said_as_keeps_the_unit_and_leaves_the_rest():
    from wattlint.options import said_as as _said_as

    given = {"launch_overhead": ("launch-overhead", "in [tool.wattlint] of pyproject.toml", 0.002),
             "tensor_parallel": ("tensor_parallel", "in the run record", 2),
             "steps": ("steps", "in the run record", 3000)}
    assert (_said_as("--launch-overhead 0.002 s has no effect", given)
            == "launch-overhead = 0.002 s in [tool.wattlint] of pyproject.toml has no effect")
    # no unit: as said_as writes it ('x' multiplies, 'is' is a word)
    assert (_said_as("--tensor-parallel 2 x --pipeline-parallel 1 = 2", given)
            == "tensor_parallel = 2 in the run record x --pipeline-parallel 1 = 2")
    assert _said_as("--steps 3,000 is too many", given) == "steps = 3,000 in the run record is too many"
    assert _said_as("pass --launch-overhead 0.002 s", {}) == "pass --launch-overhead 0.002 s"
