"""compare-run: the CO2 of a CodeCarbon row is compared in the energy line's scope (before PUE where its total is), the
headline says which PUE a CodeCarbon total carries, the run-record summary nests no brackets, and a log's epochs
without a dataset size ask for --dataset. Expected values by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_compare_api_review import CC_HEADER, CC_ROW  # the same CodeCarbon log
from test_compare_run_notes import CPU_RECORD, CT_LOG, TINY  # the same Carbontracker log (2 epochs) and model

from wattlint.cli import main

CT_NAME = "10.2026-01-01T000000Z_carbontracker_output.log"
TAIL = ["--model", "tiny.py:build", "--gpu", "a100-sxm4-80gb", "--steps", "100"]


def _run(capsys, argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _row(drop: str | None = None, **values) -> tuple[str, str]:
    """(header, row): CC_ROW with some columns replaced (by CC_HEADER's names) and one column left out."""
    cols, vals = CC_HEADER.split(","), CC_ROW.split(",")
    for k, v in values.items():
        vals[cols.index(k)] = v
    if drop:
        i = cols.index(drop)
        cols, vals = cols[:i] + cols[i + 1:], vals[:i] + vals[i + 1:]
    return ",".join(cols), ",".join(vals)


def _folder(tmp_path: Path, name: str, config: str | None = None) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "tiny.py").write_text(TINY)
    (d / CT_NAME).write_text(CT_LOG)
    if config is not None:
        (d / "pyproject.toml").write_text(config)
    return d


def _depth(line: str) -> int:
    """The deepest bracket nesting of a line ('(s)' of '2 epoch(s)' is not a bracket)."""
    d = most = 0
    for ch in line.replace("(s)", "s"):
        d += {"(": 1, ")": -1}.get(ch, 0)
        most = max(most, d)
    return most


# ---- 1. the CO2 line in the energy line's scope ----------------------------------------------------------------

# CC_ROW: CPU 0.001 + GPU 0.002 + RAM 0.0005 = 0.0035 kWh, emissions 0.001 kg.
# (name, columns, dropped column, the estimate's PUE, whether the energy line is before PUE, the log's intensity in
# kg/kWh = emissions / energy_consumed as compare-run rounds it in g/kWh)
CASES = [
    # no pue column: the estimate at the default PUE 1.2; 0.001 / 0.0035 = 0.285714 kg/kWh
    ("no-pue", {}, "pue", 1.2, True, 0.285714),
    # pue 1.5, total 0.0035 = the sum: without its PUE
    ("without", {"pue": "1.5"}, None, 1.5, True, 0.285714),
    # pue 1.5, no RAM figure: the row cannot tell, compared as without it
    ("cannot-tell", {"pue": "1.5", "ram_energy": ""}, None, 1.5, True, 0.285714),
    # pue 1.5, total 0.0035 x 1.5 = 0.00525: the facility energy on both sides (unchanged); 0.001 / 0.00525 = 0.190476
    ("with", {"pue": "1.5", "energy_consumed": "0.00525"}, None, 1.5, False, 0.190476),
    # PUE 1: before and after PUE are the same (unchanged)
    ("pue-1", {}, None, 1.0, True, 0.285714),
]


def test_codecarbon_co2_is_compared_in_the_scope_of_the_energy_line(tmp_path, capsys, monkeypatch):
    """A CodeCarbon row whose total does not carry a PUE: the energy line compared the estimate before PUE with
    energy_consumed, the CO2 line the estimate's facility CO2 with the log's CO2 (energy_consumed x its grid), so the
    CO2 error was off the energy's by the estimate's PUE (no PUE column: 0.00147 g / (0.00429 Wh x 285.714 g/kWh) =
    1.2). Both sides of each line are now in one scope: at the log's intensity the CO2 error is the energy error.
    By hand: estimate CO2 / estimate energy on the lines = the intensity, 0.285714 kg/kWh (0.342857 = x 1.2 before);
    (1 + CO2 error) / (1 + energy error) = 0.285714 / 0.285714286 = 0.99999990 (0.001 kg / 0.0035 kWh =
    0.285714286 kg/kWh, the log's; 0.285714 as compare-run rounds it)."""
    for name, values, drop, pue, before, ci in CASES:
        d = _folder(tmp_path, name)
        header, row = _row(drop, **values)
        (d / "emissions.csv").write_text(header + "\n" + row + "\n")
        monkeypatch.chdir(d)
        code, out, err = _run(capsys, ["compare-run", "emissions.csv", *TAIL, "--format", "json"])
        assert code == 0, err
        doc = json.loads(out)
        tot, c = doc["static"]["total"], doc["comparison"]
        assert doc["static"]["plan"]["pue"] == pue, name
        e, co2 = c["energy_kwh"], c["co2_kg"]
        assert e["static"] == pytest.approx(tot["energy_kwh"] / (pue if before else 1.0), rel=1e-9), name
        assert co2["static"] == pytest.approx(tot["co2_kg"] / (pue if before else 1.0), rel=1e-9), name
        # (the JSON's figures are rounded to 7 significant digits: rel 1e-5)
        assert co2["static"] / e["static"] == pytest.approx(ci, rel=1e-5), name
        assert (co2["static"] / co2["measured"]) / (e["static"] / e["measured"]) == pytest.approx(1.0, rel=1e-5), name
        scope = co2["scope"]
        assert scope == (f"estimate CO2 before PUE {pue:g}, as on the energy line; the log's grid intensity on both"
                         if before and pue != 1.0 else "the log's grid intensity on both"), (name, scope)
        code, out, err = _run(capsys, ["compare-run", "emissions.csv", *TAIL])
        assert code == 0, err
        line = [li for li in out.splitlines() if li.strip().startswith("co2_kg ")]
        assert len(line) == 1 and line[0].endswith(f"({scope})") and _depth(line[0]) == 1, (name, out)


def test_codecarbon_co2_before_pue_at_a_given_intensity(tmp_path, capsys, monkeypatch):
    """--carbon-intensity 100 on the row without a pue column: the estimate's CO2 is its energy before PUE x 100
    g/kWh, 0.1 kg per kWh of the energy line (it was 0.12: x the default PUE 1.2), each side with its own grid."""
    d = _folder(tmp_path, "ci")
    header, row = _row("pue")
    (d / "emissions.csv").write_text(header + "\n" + row + "\n")
    monkeypatch.chdir(d)
    code, out, err = _run(capsys, ["compare-run", "emissions.csv", *TAIL, "--carbon-intensity", "100",
                                   "--format", "json"])
    assert code == 0, err
    c = json.loads(out)["comparison"]
    assert c["co2_kg"]["static"] / c["energy_kwh"]["static"] == pytest.approx(0.1, rel=1e-9)
    assert c["co2_kg"]["scope"] == ("estimate CO2 before PUE 1.2, as on the energy line; each with its own grid "
                                    "intensity")


# ---- 2. the headline says which PUE a CodeCarbon total carries --------------------------------------------------

def test_the_codecarbon_headline_says_the_pue_its_total_carries(tmp_path, capsys, monkeypatch):
    """'energy: CPU + GPU + RAM (CodeCarbon)' was said of a total of (0.001 + 0.002 + 0.0005) x 1.5 = 0.00525 kWh,
    which carries the row's PUE 1.5; the row's note said 'energy_consumed = CPU + GPU + RAM' of it too. Each figure is
    said as what it is: times its PUE, without it (0.0035 = the sum), or that the row cannot tell (no RAM figure);
    at PUE 1 or without a pue column, the sum as before."""
    cases = [({"pue": "1.5", "energy_consumed": "0.00525"}, None, "5.25 Wh", " times its PUE 1.5"),
             ({"pue": "1.5"}, None, "3.50 Wh", " without its PUE 1.5"),
             ({"pue": "1.5", "ram_energy": ""}, None, "3.50 Wh", ", with or without its PUE 1.5: the row cannot tell"),
             ({}, None, "3.50 Wh", ""),
             ({}, "pue", "3.50 Wh", "")]
    for i, (values, drop, wh, said) in enumerate(cases):
        d = _folder(tmp_path, f"h{i}")
        header, row = _row(drop, **values)
        (d / "emissions.csv").write_text(header + "\n" + row + "\n")
        monkeypatch.chdir(d)
        code, out, err = _run(capsys, ["compare-run", "emissions.csv"])
        assert code == 0 and err == "", err
        lines = out.splitlines()
        assert lines[0] == (f"codecarbon measurement emissions.csv: 2.00 min, {wh}, 1.00 g CO2e; energy: CPU + GPU + "
                            f"RAM{said} (CodeCarbon)"), lines[0]
        assert (f"energy_consumed = CPU + GPU + RAM as CodeCarbon measured/estimated them{said} (its tracking_mode "
                "machine, pue ") in lines[1], lines[1]
        assert max(_depth(li) for li in lines) == 1, out
        code, out, err = _run(capsys, ["compare-run", "emissions.csv", "--format", "json"])
        assert code == 0, err
        assert json.loads(out)["measured"]["energy_scope"] == f"CPU + GPU + RAM{said} (CodeCarbon)"


# ---- 3. the run-record summary nests no brackets --------------------------------------------------------------

def test_the_run_record_summary_nests_no_brackets_and_says_each_note_once(capsys):
    """The committed CPU record printed 'static estimate (measured: cpu-amd-epyc run 2026-11-23 (CPU method check:
    time measured, energy modelled)):'. The energy model is named after a comma, as on compare-run's estimate line;
    an estimate's error (which has brackets of its own) after a colon. Each of the record's notes is said once."""
    from wattlint.tracking.display import summary_lines

    code, out, err = _run(capsys, ["compare-run", CPU_RECORD])
    assert code == 0, err
    lines = out.splitlines()
    assert ("  static estimate, energy model measured: cpu-amd-epyc run 2026-11-23 (CPU method check: time measured, "
            "energy modelled):") in lines, out
    assert [li for li in lines if _depth(li) > 1] == []
    for note in ("  note: clock 'process': ", "  note: CPU device cpu-amd-epyc from ", "  note: CPU energy is MODELLED"):
        assert sum(li.startswith(note) for li in lines) == 1, (note, out)
    code, out, err = _run(capsys, ["compare-run", CPU_RECORD, "--format", "json"])
    assert code == 0, err
    doc = json.loads(out)
    error = ("cannot infer the dataset from inputs x=float32[8,4] and outputs y=float32[8,2]; pass --dataset NAME|N "
             "(e.g. imagenet-1k, cifar10, 50000), --steps N or --tokens N")
    lines = summary_lines({**doc, "static": {"error": error}})
    assert f"  static estimate: unavailable: {error}" in lines, lines
    assert [li for li in lines if _depth(li) > 1] == []


# ---- 4. a log's epochs without a dataset size ---------------------------------------------------------------

@pytest.mark.parametrize("config", ["[tool.wattlint]\nsteps = 100\n", None])
def test_a_logs_epochs_without_a_dataset_ask_for_the_dataset(tmp_path, capsys, monkeypatch, config):
    """The Carbontracker log states 2 epochs; [tool.wattlint] steps = 100 is replaced by them (said on stderr), and
    the tiny model's input (float32[256,1024]) names no dataset. The estimate's own error then asked for '--dataset,
    --steps N or --tokens N' right after the steps had been said replaced: the comparison needs the dataset size of
    the log's 2 epochs, and the one error line says so (exit 2). --dataset 1000 compares: 1000 / 256 = 3.90625 steps
    per epoch, x 2 epochs = 7.8125 -> 8 steps."""
    monkeypatch.chdir(_folder(tmp_path, "ct", config))
    argv = ["compare-run", CT_NAME, "--model", "tiny.py:build", "--gpu", "a100-sxm4-80gb"]
    code, out, err = _run(capsys, argv)
    assert code == 2 and out == ""
    errors = [li for li in err.splitlines() if li.startswith("wattlint: error:")]
    assert errors == ["wattlint: error: --model tiny.py:build: the carbontracker log's 2 epoch(s) need the dataset "
                      "size, which cannot be inferred from inputs input=float32[256,1024] and outputs "
                      "output=float32[256,10]: pass --dataset NAME|N (e.g. imagenet-1k, cifar10, 50000)"], err
    assert "Traceback" not in err and "internal error" not in err
    others = [li for li in err.splitlines() if not li.startswith("wattlint: error:")]
    assert others == ([] if config is None else [
        "wattlint: note: not applied, the log states its own: steps = 100 (replaced by the log's 2 epoch(s)) from "
        "[tool.wattlint] of pyproject.toml"]), err
    code, out, err = _run(capsys, [*argv, "--dataset", "1000", "--format", "json"])
    assert code == 0, err
    plan = json.loads(out)["static"]["plan"]
    assert plan["epochs"] == 2 and plan["steps"] == 8, plan
