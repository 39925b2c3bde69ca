"""compare-run at its edges: the estimate options on another tool's log without --model are refused, never dropped;
the amount of training of a log that does not state it comes from [tool.wattlint] when the command line does not
give it, and a --steps beside a log's epochs is named; the energy line says which PUE each side carries (a log that
states none is 'PUE unknown', not 'no PUE'); no line nests brackets; the loader note of a plan without epochs names
the plan it has. Expected values by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _cli_errors import one_error_line
from test_compare_api_review import CC_HEADER, CC_ROW  # the same CodeCarbon log
from test_compare_run_notes import CPU_RECORD, CT_LOG, TINY  # the same Carbontracker log (2 epochs) and model

from wattlint.cli import main

CT_NAME = "10.2026-01-01T000000Z_carbontracker_output.log"
ZEUS_LOG = "start_time,window_name,elapsed_time,gpu0_energy\n0,train,60.0,36000.0\n"


def _run(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _row(**values) -> str:
    """CC_ROW with some columns replaced (by CC_HEADER's names)."""
    cols, vals = CC_HEADER.split(","), CC_ROW.split(",")
    for k, v in values.items():
        vals[cols.index(k)] = v
    return ",".join(vals)


def _folder(tmp_path: Path, name: str = "run", *, config: str | None = None, header: str = CC_HEADER,
            row: str = CC_ROW) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "emissions.csv").write_text(header + "\n" + row + "\n")
    (d / CT_NAME).write_text(CT_LOG)
    (d / "zeus.csv").write_text(ZEUS_LOG)
    (d / "tiny.py").write_text(TINY)
    if config is not None:
        (d / "pyproject.toml").write_text(config)
    return d


def _energy_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.strip().startswith("energy_kwh ")]
    assert len(lines) == 1, out
    return lines[0]


# ---- 1. estimate options on a log without --model --------------------------------------------------------------

@pytest.mark.parametrize("log, kind", [("emissions.csv", "codecarbon"), (CT_NAME, "carbontracker"),
                                       ("zeus.csv", "zeus")])
def test_estimate_options_on_a_log_without_model_are_refused_naming_each(tmp_path, capsys, monkeypatch, log, kind):
    """`compare-run emissions.csv --batch-size 8 --epochs 3 --steps 10 --gpu a100` printed the measurement alone and
    exited 0: without --model there is no estimate, and the plan and the GPU were dropped without a word. As on a run
    record, they are an input error (exit 2) naming each option, and the way to use them."""
    monkeypatch.chdir(_folder(tmp_path))
    code, out, err = _run(capsys, ["compare-run", log, "--batch-size", "8", "--epochs", "3", "--steps", "10",
                                   "--gpu", "a100"])
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert line == (f"wattlint: error: --gpu, --steps, --epochs, --batch-size: apply only to an estimate; pass --model "
                    f"MODEL to compare the {kind} log with one (without it the log's measurement is shown alone)")
    for extra, named in ((["--pue", "1.3"], "--pue"), (["--models-dir", tmp_path], "--models-dir"),
                         (["--cpu-calibration", tmp_path], "--cpu-calibration"), (["--input", "x=float32[2,4]"],
                                                                                 "--input")):
        code, out, err = _run(capsys, ["compare-run", log, *extra])
        assert code == 2 and out == ""
        assert one_error_line(err).startswith(f"wattlint: error: {named}: apply only to an estimate; pass --model"), err
    # without them: the measurement alone, exit 0
    code, out, err = _run(capsys, ["compare-run", log])
    assert code == 0 and err == "" and out.startswith(f"{kind} measurement {log}: ")


# ---- 2. the amount of training: [tool.wattlint] for a log that does not state it; --steps beside its epochs -------

def test_configured_steps_are_the_plan_of_a_log_that_does_not_state_its_training(tmp_path, capsys, monkeypatch):
    """[tool.wattlint] steps = 100 and a CodeCarbon log (which states no epochs): the configured steps were never
    read, and the run was refused with 'pass the run's --steps' although the file gives them. They are the plan now,
    said in the output (and among the settings taken from the file on stderr); --steps on the command line wins."""
    argv = ["compare-run", "emissions.csv", "--model", "tiny.py:build", "--gpu", "a100-sxm4-80gb"]
    monkeypatch.chdir(_folder(tmp_path, "cfg", config="[tool.wattlint]\nsteps = 100\n"))
    code, out, err = _run(capsys, [*argv, "--format", "json"])
    assert code == 0, err
    assert json.loads(out)["static"]["plan"]["steps"] == 100
    assert "settings from [tool.wattlint] of pyproject.toml (the command line overrides them): steps = 100" in err
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    assert ("  note: steps = 100 from [tool.wattlint] of pyproject.toml: the codecarbon log does not say how much "
            "training it measured; pass --steps / --epochs / --tokens to change") in out.splitlines(), out
    code, out, err = _run(capsys, [*argv, "--steps", "7", "--format", "json"])
    assert code == 0, err
    assert json.loads(out)["static"]["plan"]["steps"] == 7 and "steps = 100" not in err
    # no configured amount: still refused, as before
    monkeypatch.chdir(_folder(tmp_path, "plain"))
    code, out, err = _run(capsys, argv)
    assert code == 2 and out == ""
    assert "the codecarbon log does not say how much training it measured: pass the run's --steps" in err


def test_steps_beside_a_logs_epochs_are_named_where_they_differ(tmp_path, capsys, monkeypatch):
    """The Carbontracker log measured 2 epochs; --steps 50 replaced them without a word. The tiny model's batch is
    256: 50 steps over a 1,000-sample dataset are 50 x 256 / 1,000 = 12.8 epochs, which is said beside the log's 2;
    8 steps over 1,024 samples are 8 x 256 / 1,024 = 2 epochs, the log's: nothing to say; without --dataset the
    epochs are unknown, and said so."""
    monkeypatch.chdir(_folder(tmp_path))
    argv = ["compare-run", CT_NAME, "--model", "tiny.py:build", "--gpu", "a100-sxm4-80gb"]
    code, out, err = _run(capsys, [*argv, "--steps", "50", "--dataset", "1000"])
    assert code == 0, err
    assert "  note: the estimate is for --steps 50 = 12.8 epochs of its dataset, the log measured 2 epoch(s)" in (
        out.splitlines()), out
    code, out, err = _run(capsys, [*argv, "--steps", "8", "--dataset", "1024", "--format", "json"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["static"]["plan"]["epochs"] == pytest.approx(2.0) and "notes" not in doc, doc.get("notes")
    code, out, err = _run(capsys, [*argv, "--steps", "50"])
    assert code == 0, err
    assert ("  note: the estimate is for --steps 50, the log measured 2 epoch(s): pass --dataset to tell how many "
            "steps those were") in out.splitlines(), out


# ---- 3. the PUE each side of the energy line carries --------------------------------------------------------------

def test_a_codecarbon_log_without_a_pue_is_said_pue_unknown_not_no_pue(tmp_path, capsys, monkeypatch):
    """A CodeCarbon row without a pue column, no --pue: the line said 'estimate GPU + host (no PUE) vs CodeCarbon CPU +
    GPU + RAM' although whether the log's energy carries a PUE is unknown. The math: the estimate's facility energy
    (at the default PUE 1.2) / 1.2 = its GPU + host, beside the log's energy_consumed as it stands (PUE 1.0
    assumed). The line says that."""
    cols = CC_HEADER.split(",")
    vals = CC_ROW.split(",")
    i = cols.index("pue")
    monkeypatch.chdir(_folder(tmp_path, header=",".join(cols[:i] + cols[i + 1:]),
                              row=",".join(vals[:i] + vals[i + 1:])))
    argv = ["compare-run", "emissions.csv", "--model", "tiny.py:build", "--gpu", "a100-sxm4-80gb", "--steps", "100"]
    code, out, err = _run(capsys, [*argv, "--format", "json"])
    assert code == 0, err
    doc = json.loads(out)
    e = doc["comparison"]["energy_kwh"]
    assert doc["static"]["plan"]["pue"] == 1.2
    assert e["static"] == pytest.approx(doc["static"]["total"]["energy_kwh"] / 1.2, rel=1e-9)
    assert e["scope"] == ("estimate GPU + host before PUE vs CodeCarbon energy_consumed as logged, PUE unknown: the "
                          "log states none, taken as 1.0")
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    assert "no PUE" not in out and _energy_line(out).endswith(f"({e['scope']})")


@pytest.mark.parametrize("values, scope, note", [
    # the row's total = (0.001 + 0.002 + 0.0005) x 1.5: the total carries the PUE
    ({"energy_consumed": "0.00525", "pue": "1.5"},
     "estimate GPU + host times PUE 1.5 vs CodeCarbon CPU + GPU + RAM times the log's PUE 1.5",
     "its energy_consumed includes it"),
    # the row's total = the sum: without its PUE
    ({"pue": "1.5"}, "estimate GPU + host before PUE vs CodeCarbon CPU + GPU + RAM without the log's PUE 1.5",
     "its energy_consumed excludes it: the CPU + GPU + RAM sum"),
    # no RAM figure: the row cannot tell whether its total carries the PUE
    ({"ram_energy": "", "pue": "1.5"},
     "estimate GPU + host before PUE vs CodeCarbon energy_consumed as logged, whether it includes the log's PUE 1.5 "
     "unknown: taken as without it, PUE 1.0",
     "whether its energy_consumed includes it cannot be told from the row: compared as without it"),
    ({}, "estimate GPU + host before PUE vs CodeCarbon CPU + GPU + RAM at the log's PUE 1",
     "at PUE 1 its energy_consumed is the same with or without it"),
])
def test_the_codecarbon_energy_line_says_the_pue_of_each_side(tmp_path, capsys, monkeypatch, values, scope, note):
    """Each case of the row: the log's PUE in its total, beside it, unknowable (a part missing), or 1; the '--pue X
    from the log' note said 'the log's CO2 used it' for the last two, which the row does not show."""
    monkeypatch.chdir(_folder(tmp_path, row=_row(**values)))
    code, out, err = _run(capsys, ["compare-run", "emissions.csv", "--model", "tiny.py:build", "--gpu",
                                   "a100-sxm4-80gb", "--steps", "100"])
    assert code == 0, err
    assert _energy_line(out).endswith(f"({scope})"), out
    pue = values.get("pue", "1.0")
    assert f"  note: --pue {float(pue):g} from the log ({note}); pass --pue to change" in out.splitlines(), out


def test_the_carbontracker_energy_line_says_the_pue_of_each_side(tmp_path, capsys, monkeypatch):
    """Carbontracker's energy carries the PUE it applies; a log without its 'PUE coefficient' line does not say
    which. The estimate's facility energy is at the default 1.2 then (nothing given), or at --pue."""
    d = _folder(tmp_path)
    monkeypatch.chdir(d)
    argv = ["compare-run", CT_NAME, "--model", "tiny.py:build", "--gpu", "a100-sxm4-80gb", "--steps", "10"]
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    assert _energy_line(out).endswith("(estimate facility energy at the default PUE 1.2 vs Carbontracker's reported "
                                      "energy at a PUE the log does not state)"), out
    code, out, err = _run(capsys, [*argv, "--pue", "1.3"])
    assert code == 0, err
    assert _energy_line(out).endswith("(estimate facility energy at PUE 1.3 vs Carbontracker's reported energy at a "
                                      "PUE the log does not state)"), out
    (d / CT_NAME).write_text(CT_LOG.replace("CarbonTracker: \nActual",
                                            "CarbonTracker: PUE coefficient of 1.58 used.\nCarbonTracker: \nActual"))
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    assert _energy_line(out).endswith("(estimate facility energy at PUE 1.58 vs Carbontracker's reported energy at "
                                      "the log's PUE 1.58)"), out
    assert ("  note: --pue 1.58 from the log (Carbontracker's reported energy and CO2 apply it); pass --pue to "
            "change") in out.splitlines(), out


# ---- 4. no nested brackets ------------------------------------------------------------------------------------------

def _depth(line: str) -> int:
    """The deepest bracket nesting of a line; a plural '(s)' ('2 epoch(s)', as CodeCarbon's notes write it) is not a
    bracket."""
    d = most = 0
    for ch in line.replace("(s)", "s"):
        d += {"(": 1, ")": -1}.get(ch, 0)
        most = max(most, d)
    return most


def test_no_compare_run_line_nests_brackets(tmp_path, capsys, monkeypatch):
    """'3.50 Wh (CPU + GPU + RAM (CodeCarbon))', 'estimate (public-fit: ... (NeuSight ...) ...) on a100',
    '(estimate (GPU + host) x PUE 1.5 vs CodeCarbon (CPU + GPU + RAM) x PUE)', '(its energy_consumed excludes it (the
    CPU + GPU + RAM sum))', '(estimate facility energy (with its PUE) vs ...)', 're-estimate now on a100 (public-fit:
    ... (...)): ...': one level of brackets at most, the figures and the model named after them."""
    d = _folder(tmp_path)
    monkeypatch.chdir(d)
    tail = ["--model", "tiny.py:build", "--gpu", "a100-sxm4-80gb", "--steps", "10"]
    texts = []
    for name, row in (("in.csv", _row(energy_consumed="0.00525", pue="1.5")), ("ex.csv", _row(pue="1.5"))):
        (d / name).write_text(CC_HEADER + "\n" + row + "\n")
        code, out, err = _run(capsys, ["compare-run", name, *tail])
        assert code == 0, err
        texts.append(out)
    code, out, err = _run(capsys, ["compare-run", CT_NAME, *tail])
    assert code == 0, err
    texts.append(out)
    code, out, err = _run(capsys, ["compare-run", "emissions.csv"])
    assert code == 0, err
    texts.append(out)
    deep = [line for text in texts for line in text.splitlines() if _depth(line) > 1]
    assert not deep, deep
    assert texts[0].startswith("codecarbon measurement in.csv: 2.00 min, 5.25 Wh, 1.00 g CO2e; energy: CPU + GPU + RAM times its PUE 1.5 "
                               "(CodeCarbon)\n"), texts[0]
    assert re.search(r"^  estimate on a100-sxm4-80gb, energy model \S", texts[0], re.M), texts[0]
    # a run record's re-estimate line
    code, out, err = _run(capsys, ["compare-run", CPU_RECORD, "--model", "wattlint.calibrate.zoo:mlp_mnist", "--input",
                                   "x=float32[128,784]", "--gpu", "a100"])
    assert code == 0, err
    line = [li for li in out.splitlines() if li.startswith("  re-estimate now on ")]
    assert len(line) == 1 and _depth(line[0]) <= 1, line
    assert re.match(r"  re-estimate now on a100-sxm4-80gb: time/step error [+-]\d+ %; energy model \S", line[0]), line


# ---- 5. the loader note of a plan without epochs names the plan it has ----------------------------------------------

def _plan(**kw):
    from wattlint.types import Plan

    return Plan(batch_size=8, steps=10, pue=1.0, carbon_intensity_g_per_kwh=400.0, loader_sample_time_s=1e-3, **kw)


def test_the_loader_note_of_a_plan_without_epochs_names_its_kind():
    """'a tokens plan never restarts its loader' was said of a steps plan too (--steps without --dataset)."""
    from wattlint.energy import system

    h, note = system.loader_wait_h(_plan())
    assert h == 0.0
    assert note == ("--loader-sample-time 0.001 s: not applied (the plan has no epochs: its work is given in steps, "
                    "with no dataset size; add --dataset, or give --epochs)")
    h, note = system.loader_wait_h(_plan(tokens=1e6, seq_len=128))
    assert h == 0.0
    assert note == ("--loader-sample-time 0.001 s: not applied (the plan has no epochs: its work is given in tokens; "
                    "give --epochs, or --steps with --dataset)")
