"""A run-level correction (``wattlint fit RUN_RECORDS``) is applied only where it is right (review of the measured-
model path, 2026-12-07):

1. on top of the very op-level model it was fitted on, told by content, not by its label (two fits of one GPU on one
   day share "<key> run <date>": the x2 a correction learned was applied again on a refit whose data showed it);
2. a raised power is capped at the board power (932 W on a 700 W H100);
3. its range is never narrower than the op-level measured model's minimum (+-1 % from three runs, 0 when they agree);
4. the runs tracked after a first correction keep the uncorrected prediction beside the corrected one, and fit uses it
   (every such run was refused, exit 2, with no next step); older ones are skipped and listed;
5. a calibration run's sessions[].autograd_overhead_s / device.kind / a CSV overhead_s of the wrong type are refused
   (one line, exit 2; they were read as 0, which kept host-bound backward calls in the fit);
6. a correction whose own held-out error is worse than no correction is warned of;
7. a CPU run correction is applied by --cpu-calibration / cpu_calibration= of its CPU's calibration folder (it was
   used by no estimate, without a word).

Synthetic run records are written as tests/test_track_fit.py's write_record writes them; every expected value is
worked out by hand in the comments.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from test_track_fit import write_record
from wattlint.cli import main
from wattlint.hardware import resolve_gpu
from wattlint.tracking.fit import RunCorrectedPredictor, RunCorrection, fit_records
from wattlint.types import OpKind, OpRecord, Phase

ROOT = Path(__file__).resolve().parents[1]
H200 = "h200-sxm-141gb"
MM = OpRecord(op="aten.mm.default", kind=OpKind.MATMUL, module="fc", phase=Phase.FORWARD, dtype="bfloat16",
              shapes=((4096, 4096), (4096, 4096)), flops=2 * 4096**3, bytes_read=2 * 2 * 4096**2,
              bytes_written=2 * 4096**2, dims=(("b", 1), ("k", 4096), ("m", 4096), ("n", 4096)))


def _static_as(path: Path, **static) -> Path:
    """Rewrite a record's header static prediction with ``static``'s entries (None deletes one)."""
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    st = lines[0]["static"]
    for k, v in static.items():
        if v is None:
            st.pop(k, None)
        else:
            st[k] = v
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


# ---- 1. the base model is told by content -------------------------------------------------------------------------

@pytest.fixture
def h200_models(tmp_path):
    """A copy of the shipped H200 measured model in a models folder of its own: (folder, ModelsDir, base predictor)."""
    from wattlint.energy.predictor import MODELS_DIR, ModelsDir, get_predictor

    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR / H200, models / H200)
    here = ModelsDir(models, "WATTLINT_MODELS_DIR")
    base = get_predictor(resolve_gpu(H200)[0], (here,))
    assert base.calibration == "measured" and not isinstance(base, RunCorrectedPredictor)
    return models, here, base


def _refit_same_label(folder: Path) -> None:
    """Another fit of the same GPU on the same day: the card's label is unchanged ('h200-sxm-141gb run 2026-12-04'),
    one leaf of the time model differs, by +1 in its first decimal (0.32... -> 0.42..., same length: the tree sizes
    stay right), and its card lists the new file's sha256, as a fit writes it."""
    text = (folder / "time.txt").read_text()
    m = re.search(r"leaf_value=0\.(\d)", text)
    text = text[:m.start(1)] + str((int(m.group(1)) + 1) % 10) + text[m.end(1):]
    (folder / "time.txt").write_text(text)
    card = json.loads((folder / "card.json").read_text())
    card["files"]["time.txt"] = hashlib.sha256(text.encode()).hexdigest()
    (folder / "card.json").write_text(json.dumps(card))


def _measured_records(d: Path, base, *, with_id: bool = True) -> Path:
    """Two runs of two models, each measured at 2x its static prediction by the H200 model ``base``: time factor
    exp(mean(ln 2, ln 2)) = 2."""
    from wattlint.energy.predictor import model_content_id

    for name, h in (("a", "a"), ("b", "b")):
        p = write_record(d / f"{name}.jsonl", model_hash=h, t_meas=0.2, t_pred=0.1, gpu_key=H200)
        _static_as(p, calibration="measured", calibration_source=base.source,
                   energy_model=f"measured: {base.source}",
                   energy_model_id=model_content_id(base) if with_id else None)
    return d


def test_a_correction_is_not_applied_on_top_of_a_refit_that_keeps_the_label(h200_models, tmp_path):
    from wattlint.energy.predictor import get_predictor, model_content_id

    models, here, base = h200_models
    h200 = resolve_gpu(H200)[0]
    corr, path = fit_records([str(_measured_records(tmp_path / "runs", base))], out=str(models / H200))
    assert corr.time_factor == pytest.approx(2.0)  # exp(mean(ln(0.2 / 0.1), ln(0.2 / 0.1)))
    assert corr.base_model_id == model_content_id(base)
    applied = get_predictor(h200, (here,))
    assert isinstance(applied, RunCorrectedPredictor)
    t_base = base.predict([MM], h200, "bf16")[0][0]
    assert applied.predict([MM], h200, "bf16")[0][0] == pytest.approx(2 * t_base)  # x2 on the model it was fitted on

    _refit_same_label(models / H200)
    refit = get_predictor(h200, (here,))
    assert refit.source == base.source  # the premise: the same label
    assert model_content_id(refit) != model_content_id(base)
    # the refit's own time, not x2 again (the bug: 2 x the refit's time, a model whose data may already show the x2)
    assert not isinstance(refit, RunCorrectedPredictor)
    t_refit = refit.predict([MM], h200, "bf16")[0][0]
    assert refit.predict([MM], h200, "bf16")[0][0] == pytest.approx(t_refit)
    assert f"run correction {path} fitted on another model" in refit.searched
    assert "not applied: re-run `wattlint fit <records>`" in refit.searched


def test_records_of_a_fitted_model_that_do_not_say_which_fit_tie_the_correction_to_the_model_found_now(
        h200_models, tmp_path, capsys):
    """Records tracked before the model's content was recorded: which fit of '<key> run <date>' predicted them cannot
    be told from them. The correction is tied to the model of that label found where it goes (said), so that a later
    refit is never under it; where none is found, it names no model and no estimate applies it on a fitted one."""
    from wattlint.energy.predictor import get_predictor, model_content_id

    models, here, base = h200_models
    h200 = resolve_gpu(H200)[0]
    d = _measured_records(tmp_path / "old", base, with_id=False)
    assert main(["fit", str(d), "--out", str(models / H200)]) == 0
    out = capsys.readouterr().out
    assert "2 record(s) do not say which fit of" in out and "the correction is tied to the one found now" in out
    doc = json.loads((models / H200 / "run_correction.json").read_text())
    assert doc["base_model_id"] == model_content_id(base) and doc["unidentified_records"] == ["a.jsonl", "b.jsonl"]
    assert isinstance(get_predictor(h200, (here,)), RunCorrectedPredictor)
    _refit_same_label(models / H200)
    assert not isinstance(get_predictor(h200, (here,)), RunCorrectedPredictor)  # the refit: not under it
    # no model of that label where it goes (a CPU-less, model-less folder): it names none, and says so
    (d / "a.jsonl").write_text((d / "a.jsonl").read_text().replace("run 2026-12-04", "run 2020-01-01"))
    (d / "b.jsonl").write_text((d / "b.jsonl").read_text().replace("run 2026-12-04", "run 2020-01-01"))
    assert main(["fit", str(d), "--out", str(tmp_path / "o")]) == 0
    assert "no estimate applies it on top of a fitted model" in capsys.readouterr().out
    assert json.loads((tmp_path / "o" / "run_correction.json").read_text())["base_model_id"] is None


def test_a_correction_without_a_base_content_is_not_applied_on_a_fitted_model(h200_models):
    from wattlint.energy.predictor import get_predictor

    models, here, base = h200_models
    doc = {"schema": "wattlint.run-correction/1", "gpu": {"key": H200}, "time_factor": 2.0, "energy_factor": 2.0,
           "quantiles": {"time": [1.5, 2.5]}, "source": "run-level correction", "base_energy_model":
           f"measured: {base.source}", "runs": [{"file": "a.jsonl"}, {"file": "b.jsonl"}]}
    (models / H200 / "run_correction.json").write_text(json.dumps(doc))
    p = get_predictor(resolve_gpu(H200)[0], (here,))
    assert not isinstance(p, RunCorrectedPredictor)
    assert "do not say which fit of it predicted them" in p.searched
    # written by an earlier wattlint (no base_model_id key at all): it applied there and stops here; the provenance
    # says why and what to do (review: only "fitted on another model" in the searched line)
    path = models / H200 / "run_correction.json"
    assert (f"run correction {path} not applied: written before wattlint recorded the model it was fitted on"
            in p.searched)
    assert "re-run `wattlint fit <records>`" in p.searched
    assert "fitted on another model" not in p.searched


def test_records_without_the_models_content_beside_records_with_it_are_said(h200_models, tmp_path, capsys):
    """Records tracked before the model's content was recorded, fitted with records that name it: they are taken as
    predicted by the fit the others name (base_model_id_from "records"); fit says so, naming them and that content
    (review: said nothing in exactly this case)."""
    from wattlint.energy.predictor import model_content_id

    models, here, base = h200_models
    runs = _measured_records(tmp_path / "runs", base)  # a.jsonl, b.jsonl: with the content id
    p = write_record(runs / "c.jsonl", model_hash="c", t_meas=0.2, t_pred=0.1, gpu_key=H200)
    _static_as(p, calibration="measured", calibration_source=base.source, energy_model=f"measured: {base.source}",
               energy_model_id=None)
    assert main(["fit", str(runs), "--out", str(models / H200)]) == 0
    out = capsys.readouterr().out
    doc = json.loads((models / H200 / "run_correction.json").read_text())
    assert doc["base_model_id_from"] == "records" and doc["unidentified_records"] == ["c.jsonl"]
    short = model_content_id(base).replace("sha256:", "")[:12]
    note = [x for x in out.splitlines() if "do not say which fit of" in x]
    assert len(note) == 1 and "1 record(s)" in note[0] and "c.jsonl" in note[0] and short in note[0]
    assert "taken as predicted by the fit the other records name" in note[0]


def test_an_identical_refit_shares_the_content_and_the_docstrings_say_what_the_code_does(h200_models, tmp_path):
    """model_content_id: an identical refit (same files, same op kinds) is the same content, so its docstring must
    not say two fits never share it; fit's module docstring must not say unidentified records are skipped."""
    import wattlint.tracking.fit as fit_mod
    from wattlint.energy.predictor import ModelsDir, get_predictor, model_content_id

    models, here, base = h200_models
    again = tmp_path / "again"
    shutil.copytree(models / H200, again / H200)
    same = get_predictor(resolve_gpu(H200)[0], (ModelsDir(again, "WATTLINT_MODELS_DIR"),))
    assert model_content_id(same) == model_content_id(base)
    doc = " ".join(model_content_id.__doc__.split())
    assert "never the same content" not in doc and "unless the refit wrote the very same model files" in doc
    mod = " ".join(fit_mod.__doc__.split())
    assert "that do not say which fit of it (``energy_model_id``)" not in mod
    assert "are fitted, not skipped" in mod and "``base_model_id_from`` \"records\"" in mod


def test_a_refit_keeps_the_correction_with_the_model_it_was_fitted_on(tmp_path):
    from wattlint.energy.model import keep_previous_model

    out = tmp_path / "m"
    out.mkdir()
    for n, text in (("card.json", "{}"), ("time.txt", "t"), ("power.txt", "p"), ("run_correction.json", "{\"c\": 1}")):
        (out / n).write_text(text)
    kept = keep_previous_model(out)
    assert sorted(p.name for p in kept.iterdir()) == ["card.json", "power.txt", "run_correction.json", "time.txt"]
    assert (out / "run_correction.json").read_text() == "{\"c\": 1}"  # the user's file is never moved nor lost


# ---- 2. the board power caps a corrected power --------------------------------------------------------------------

class _Fixed:
    """A base predictor of fixed per-op times and powers."""

    calibration = "prior"
    source = "fixed"

    def __init__(self, times, powers):
        self.times, self.powers = times, powers

    def predict(self, records, gpu, precision, utilization=None):
        return list(self.times), list(self.powers)

    def range_factors(self, quantity="energy"):
        return (0.65, 1.8)


def test_a_corrected_power_is_capped_at_the_board_power():
    h100 = resolve_gpu("h100-sxm5-80gb")[0]
    assert h100.tdp_w == 700
    corr = RunCorrection(gpu_key=h100.key, time_factor=1.0, energy_factor=2.0, quantiles={}, source="t",
                         base_energy_model="prior: fixed", runs=2, models=2)
    times, powers = RunCorrectedPredictor(_Fixed([0.01, 0.01], [500.0, 200.0]), corr).predict([MM, MM], h100, "bf16")
    # op 1: 500 W x 2.0 / 1.0 = 1000 W > 700 W -> 700 W, energy 700 W x 0.01 s = 7 J (not 10 J)
    # op 2: 200 W x 2.0 = 400 W, under the cap: kept, energy 4 J
    assert times == pytest.approx([0.01, 0.01])
    assert powers == pytest.approx([700.0, 400.0])
    assert [t * p for t, p in zip(times, powers)] == pytest.approx([7.0, 4.0])
    # a correction that lowers power is never capped: 500 x 0.5 = 250 W
    low = RunCorrection(gpu_key=h100.key, time_factor=1.0, energy_factor=0.5, quantiles={}, source="t",
                        base_energy_model="prior: fixed", runs=2, models=2)
    assert RunCorrectedPredictor(_Fixed([0.01], [500.0]), low).predict([MM], h100, "bf16")[1] == pytest.approx([250.0])


# ---- 3. a minimum range -------------------------------------------------------------------------------------------

def test_the_range_is_never_narrower_than_the_measured_models_minimum(tmp_path):
    from wattlint.energy.predictor import MIN_MEASURED_RANGE

    assert MIN_MEASURED_RANGE == (0.85, 1.15)
    corr = RunCorrection(gpu_key="h100-sxm5-80gb", time_factor=1.1, energy_factor=None,
                         quantiles={"time": (1.09, 1.11)}, source="t", base_energy_model="prior: fixed", runs=3,
                         models=3)
    lo, hi = RunCorrectedPredictor(_Fixed([1.0], [1.0]), corr).range_factors("time")
    # centre sqrt(1.09 x 1.11) = 1.09995; -> (0.85 x 1.09995, 1.15 x 1.09995) = (0.93496, 1.26494)
    assert (lo, hi) == pytest.approx((0.85 * math.sqrt(1.09 * 1.11), 1.15 * math.sqrt(1.09 * 1.11)))
    assert (lo, hi) == pytest.approx((0.93496, 1.26494), abs=1e-5)
    # three runs that agree exactly: held-out residuals all 0 -> quantiles (1, 1) -> range (0.85, 1.15), not zero width
    d = tmp_path / "same"
    for h in "abc":
        write_record(d / f"{h}.jsonl", model_hash=h, t_meas=0.15, t_pred=0.1)
    c, _ = fit_records([str(d)], out=str(tmp_path / "o"))
    assert c.quantiles["time"] == pytest.approx((1.0, 1.0))
    assert RunCorrectedPredictor(_Fixed([1.0], [1.0]), c).range_factors("time") == pytest.approx((0.85, 1.15))
    assert RunCorrectedPredictor(_Fixed([1.0], [1.0]), c).range_factors("energy") == pytest.approx((0.85, 1.15))


# ---- 4. runs tracked after a first correction ---------------------------------------------------------------------

CORRECTED = "measured: run-level correction from 2 tracked run(s) of 2 model(s) on h100-sxm5-80gb: time x2.000"


def test_fit_uses_the_uncorrected_prediction_kept_beside_a_corrected_one(tmp_path, capsys):
    d = tmp_path / "runs"
    for h in "ab":  # new records: corrected prediction 0.2 s (x2), the uncorrected 0.1 s kept in static.base
        p = write_record(d / f"{h}.jsonl", model_hash=h, t_meas=0.2, t_pred=0.2)
        _static_as(p, energy_model=CORRECTED, calibration="measured",
                   base={"calibration": "prior", "calibration_source": "spec-sheet prior",
                         "energy_model": "prior: spec-sheet prior", "energy_model_id": None,
                         "per_step": {"time_s": 0.1, "gpu_energy_j": 40.0, "host_energy_j": 0.0}})
    old = _static_as(write_record(d / "old.jsonl", model_hash="c", t_meas=0.2, t_pred=0.2), energy_model=CORRECTED)
    corr, path = fit_records([str(d)], out=str(tmp_path / "o"))
    # against the uncorrected 0.1 s: exp(mean(ln 2, ln 2)) = 2 (against the corrected 0.2 s it would be 1)
    assert corr.time_factor == pytest.approx(2.0)
    # energy: 500 W x 0.2 s = 100 J measured vs 40 J uncorrected -> 2.5
    assert corr.energy_factor == pytest.approx(2.5)
    assert corr.base_energy_model == "prior: spec-sheet prior"
    skipped = {Path(s["file"]).name: s["reason"] for s in corr.card["skipped"]}
    assert "includes a run-level correction" in skipped["old.jsonl"] and "track the run again" in skipped["old.jsonl"]
    assert main(["fit", str(d), "--out", str(tmp_path / "cli")]) == 0
    assert "skipped old.jsonl: its static prediction includes a run-level correction" in capsys.readouterr().out
    # only old records: exit 2, one line that says what to do
    only = tmp_path / "only"
    only.mkdir()
    shutil.copy(old, only / "old.jsonl")
    shutil.copy(old, only / "old2.jsonl")
    _static_as(only / "old2.jsonl", energy_model=CORRECTED + " ")  # not a duplicate of old.jsonl
    assert main(["fit", str(only), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "track the run again to fit it" in err[0]


def _header_static(path: Path, edit) -> Path:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    edit(lines[0])
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.mark.parametrize("where,value", [
    ("static.base.per_step", [1]), ("static.base.per_step", "x"), ("static.base", [1]),
    ("static.per_step", [0.1]), ("static.per_step", "x"), ("static", [1]), ("static", "x"),
])
def test_a_list_or_string_where_an_object_is_expected_is_skipped_and_listed(tmp_path, capsys, where, value):
    """A damaged record (review: static.base.per_step a list or a string was an AttributeError, exit 3 'internal
    error'): skipped and listed like a time_s that is not a number; the others are fitted. static and
    static.per_step are in the run-record schema: refused with one line naming file:line, as any damaged record."""
    d = tmp_path / "runs"
    for h in "ab":
        write_record(d / f"{h}.jsonl", model_hash=h, t_meas=0.2, t_pred=0.1)
    bad = write_record(d / "bad.jsonl", model_hash="c", t_meas=0.2, t_pred=0.1)

    def edit(h):
        st = h["static"]
        if where == "static":
            h["static"] = value
        elif where == "static.per_step":
            st["per_step"] = value
        else:
            st["energy_model"] = CORRECTED
            st["base"] = value if where == "static.base" else {
                "calibration": "prior", "calibration_source": "spec-sheet prior",
                "energy_model": "prior: spec-sheet prior", "per_step": value}
    _header_static(bad, edit)
    if where in ("static", "static.per_step"):  # the record schema refuses these: exit 2, one line, file:line
        assert main(["fit", str(d), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "bad.jsonl:1: malformed run record" in err[0] and "move it out of" in err[0]
        return
    assert main(["fit", str(d), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert f"skipped bad.jsonl: {where} = {json.dumps(value)}: not an object" in out and "a damaged record" in out
    doc = json.loads((tmp_path / "o" / "run_correction.json").read_text())
    assert sorted(Path(r["file"]).name for r in doc["runs"]) == ["a.jsonl", "b.jsonl"]
    assert doc["time_factor"] == pytest.approx(2.0)  # exp(mean(ln 2, ln 2)), the damaged record left out
    # named alone: exit 2 with the reason, never an internal error (exit 3)
    assert main(["fit", str(bad), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an object" in err[0]


def test_the_tracker_keeps_the_uncorrected_prediction_and_the_models_content():
    torch = pytest.importorskip("torch")
    from wattlint.energy.predictor import PriorPredictor
    from wattlint.tracking.static import static_estimate
    from wattlint.types import TensorSpec

    h100 = resolve_gpu("h100-sxm5-80gb")[0]
    model = torch.nn.Sequential(torch.nn.Linear(4096, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 4096))
    inputs = {"x": TensorSpec("x", "float32", (8192, 4096))}  # GPU-bound GEMMs: the ops' time is the step's
    plain = static_estimate(model=model, inputs=inputs, spec=h100, predictor=PriorPredictor(), options={"steps": 10})
    assert "error" not in plain and plain["energy_model_id"] is None and "base" not in plain  # the prior: no content
    corr = RunCorrection(gpu_key=h100.key, time_factor=2.0, energy_factor=None, quantiles={}, source="run-level "
                         "correction from 2 tracked run(s)", base_energy_model="prior: spec-sheet prior", runs=2,
                         models=2)
    st = static_estimate(model=model, inputs=inputs, spec=h100, predictor=RunCorrectedPredictor(PriorPredictor(), corr),
                         options={"steps": 10})
    assert "run-level correction" in st["energy_model"]
    # the uncorrected prediction beside it is the prior's own
    assert st["base"]["energy_model"] == plain["energy_model"] == "prior: spec-sheet prior"
    assert st["base"]["per_step"]["time_s"] == pytest.approx(plain["per_step"]["time_s"])
    assert st["base"]["per_step"]["gpu_energy_j"] == pytest.approx(plain["per_step"]["gpu_energy_j"])
    assert st["per_step"]["time_s"] > 1.5 * plain["per_step"]["time_s"]  # the ops' time x2 (+ fixed parts)


def test_the_tracker_records_the_content_of_a_fitted_model():
    torch = pytest.importorskip("torch")
    from wattlint.energy.predictor import MODELS_DIR, ModelsDir, get_predictor, model_content_id
    from wattlint.tracking.static import static_estimate
    from wattlint.types import TensorSpec

    h200 = resolve_gpu(H200)[0]
    measured = get_predictor(h200, (ModelsDir(MODELS_DIR, "shipped"),))
    model = torch.nn.Sequential(torch.nn.Linear(256, 256))
    st = static_estimate(model=model, inputs={"x": TensorSpec("x", "float32", (64, 256))}, spec=h200,
                         predictor=measured, options={"steps": 10})
    assert st["energy_model_id"] == model_content_id(measured) and st["energy_model_id"].startswith("sha256:")


# ---- 5. the calibration-run provenance the fit reads --------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    from wattlint.calibrate.runner import RunConfig, run_calibration

    d = tmp_path_factory.mktemp("run")
    return run_calibration(RunConfig(device="fake", suite=str(ROOT / "tests" / "data" / "calib-tiny.toml"),
                                     out=str(d)))


def _copy_run(fake_run, d: Path, prov_edit=None, row_edit=None) -> Path:
    import csv

    from wattlint.calibrate.runner import read_rows

    d.mkdir()
    rows = read_rows(fake_run.csv)
    if row_edit:
        row_edit(rows)
    with (d / fake_run.csv.name).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    prov = json.loads(fake_run.json.read_text())
    if prov_edit:
        prov_edit(prov)
    (d / fake_run.json.name).write_text(json.dumps(prov))
    return d


@pytest.mark.parametrize("field,value", [("autograd_overhead_s", "abc"), ("autograd_overhead_s", -1.0),
                                         ("autograd_overhead_s", True), ("kind", 5)])
def test_a_bad_session_overhead_or_device_kind_is_refused(fake_run, tmp_path, capsys, field, value):
    def edit(prov):
        prov["device"]["kind"] = "cuda"
        if field == "kind":
            prov["device"]["kind"] = value
        else:
            prov["sessions"][0][field] = value

    d = _copy_run(fake_run, tmp_path / "run", edit)
    assert main(["fit", str(d), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    where = "device.kind" if field == "kind" else f"sessions {field}"
    assert len(err) == 1 and str(d / fake_run.json.name) in err[0] and where in err[0], err
    assert not (tmp_path / "m").exists()


def test_a_csv_overhead_that_is_not_a_number_is_refused(fake_run, tmp_path, capsys):
    def prov_edit(prov):
        prov["device"]["kind"] = "cuda"
        prov["sessions"][0]["autograd_overhead_s"] = 80e-6

    def row_edit(rows):
        back = next(r for r in rows if r["phase"] == "backward" and r["status"] == "ok")
        back["overhead_s"] = "nan"  # read as 0, a 100 us call would have stayed in (nan + 100 us is no time)

    d = _copy_run(fake_run, tmp_path / "run", prov_edit, row_edit)
    assert main(["fit", str(d), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(d / fake_run.csv.name) in err[0] and "overhead_s = 'nan'" in err[0], err


# ---- 6. a correction worse than none is warned of -----------------------------------------------------------------

def test_a_correction_worse_than_none_on_held_out_models_is_warned_of(tmp_path, capsys):
    d = tmp_path / "runs"
    write_record(d / "a.jsonl", model_hash="a", t_meas=0.2, t_pred=0.1)  # measured 2x the prediction
    write_record(d / "b.jsonl", model_hash="b", t_meas=0.1, t_pred=0.2)  # measured 0.5x
    assert main(["fit", str(d), "--out", str(tmp_path / "o")]) == 0
    out, err = capsys.readouterr()
    # time factor exp((ln 2 + ln 0.5) / 2) = 1. Leave-one-model-out: a predicted with b's factor 0.5: 0.05 vs 0.2,
    # |error| 0.75 (uncorrected 0.5); b with a's factor 2: 0.4 vs 0.1, 3.0 (uncorrected 1.0). MAPE (0.75 + 3) / 2 =
    # 187.5 % vs (0.5 + 1.0) / 2 = 75.0 %. Energy (500 W x t measured, 400 W x t predicted): ratios 2.5 and 0.625;
    # a: 40 x 0.625 / 100 - 1 = -0.75 (uncorrected -0.6), b: 80 x 2.5 / 50 - 1 = 3.0 (0.6): 187.5 % vs 60.0 %
    assert "time x1.000" in out
    lines = [x for x in err.splitlines() if "warning" in x]
    assert len(lines) == 1 and lines[0].startswith("wattlint: warning: the run correction's held-out error is worse "
                                                   "than no correction: "), err
    assert "leave-one-model-out time MAPE 187.5 % vs 75.0 % uncorrected" in lines[0]
    assert "leave-one-model-out energy MAPE 187.5 % vs 60.0 % uncorrected" in lines[0]
    # a correction that helps: no warning (the fixture of test_track_fit, time MAPE lower after)
    g = tmp_path / "good"
    write_record(g / "a.jsonl", model_hash="a", t_meas=0.2, t_pred=0.1)
    write_record(g / "b.jsonl", model_hash="b", t_meas=0.21, t_pred=0.1)
    assert main(["fit", str(g), "--out", str(tmp_path / "o2")]) == 0
    assert "warning" not in capsys.readouterr().err


# ---- 7. a CPU run correction -------------------------------------------------------------------------------------

@pytest.fixture
def cpu_folder(tmp_path):
    d = tmp_path / "cpu-run"
    d.mkdir()
    for f in (ROOT / "calibration" / "runs" / "cpu-amd-epyc").glob("*-quick.*"):
        shutil.copy(f, d / f.name)  # a copy: the repository's calibration data is only read
    if (d / "model").exists():
        shutil.rmtree(d / "model")
    return d


def test_a_cpu_run_correction_is_applied_from_its_cpu_calibration_folder(cpu_folder, tmp_path, capsys):
    from wattlint.energy.predictor import PriorPredictor
    from wattlint.tracking.static import cpu_device

    spec, base, _ = cpu_device(str(cpu_folder))
    assert isinstance(base, PriorPredictor)
    d = tmp_path / "records"
    write_record(d / "a.jsonl", model_hash="a", t_meas=0.12, t_pred=0.1, gpu_key=spec.key, source="modelled")
    write_record(d / "b.jsonl", model_hash="b", t_meas=0.25, t_pred=0.2, gpu_key=spec.key, source="modelled")
    # beside the records (the default): said to be used by no estimate
    assert main(["fit", str(d)]) == 0
    out = capsys.readouterr().out
    assert "used by no estimate where it is" in out and "fit with --out DIR" in out
    # into the CPU calibration folder: applied by cpu_calibration= of that folder, and said so
    assert main(["fit", str(d), "--out", str(cpu_folder)]) == 0
    assert "used by no estimate" not in capsys.readouterr().out
    spec, pred, note = cpu_device(str(cpu_folder))
    assert isinstance(pred, RunCorrectedPredictor) and "run correction" in note and "applied" in note
    # time factor exp((ln 1.2 + ln 1.25) / 2) = sqrt(1.5) = 1.22474; energy modelled: power unchanged
    t0, p0 = PriorPredictor().predict([MM], spec, "fp32")
    t1, p1 = pred.predict([MM], spec, "fp32")
    assert t1[0] == pytest.approx(t0[0] * math.sqrt(1.5)) and p1 == pytest.approx(p0)
