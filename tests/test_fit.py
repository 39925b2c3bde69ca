"""fit on fake-meter runs: LightGBM TEXT + card.json, CV with held-out families/shapes, load checks."""

import json
import math
import shutil
from pathlib import Path

import pytest

from wattlint.calibrate.fitting import FitError, fit_runs, load_fit_data, find_runs
from wattlint.calibrate.runner import RunConfig, run_calibration
from wattlint.energy.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION, op_features
from wattlint.energy.model import ModelError, load_model

TINY = str(Path(__file__).parent / "data" / "calib-tiny.toml")


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    return run_calibration(RunConfig(device="fake", suite=TINY, out=str(d)))


@pytest.fixture(scope="module")
def fitted(fake_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    return fit_runs([str(fake_run.csv)], str(out), rounds=60, folds=3)


def test_card_and_text_models(fitted, fake_run):
    d = fitted.path
    assert sorted(p.name for p in d.iterdir()) == ["card.json", "power.txt", "time.txt"]
    for f in ("time.txt", "power.txt"):
        head = (d / f).read_text()[:200]
        assert head.startswith("tree") and "version=" in head  # LightGBM text, never a pickle
    card = json.loads((d / "card.json").read_text())
    assert card["schema"] == "wattlint.energy-model/1"
    assert card["features"] == {"schema_version": FEATURE_SCHEMA_VERSION, "names": list(FEATURE_NAMES)}
    assert card["gpu"]["key"] == "fake-gpu" and card["gpu"]["is_fake"] is True
    run = card["data"]["runs"][0]
    assert run["csv"] == fake_run.csv.name and len(run["csv_sha256"]) == 64 and run["rows"] == 40
    assert card["data"]["record_builders"].get("frontend-trace", 0) > 0
    assert {"matmul", "conv", "norm"} <= set(card["data"]["record_kinds"])
    assert {"leave_family_out", "leave_shape_out"} <= set(card["cv"])
    fam = card["cv"]["leave_family_out"]
    assert fam["folds"] == 5 and fam["samples"] == 40
    for k in ("time", "power", "energy"):
        assert card["residuals"][k]["p5"] <= card["residuals"][k]["p95"]
    assert {"lightgbm", "numpy", "wattlint", "python"} <= set(card["versions"])
    assert "fake-gpu run" in card["calibration_source"]


def test_fit_learns_the_simulated_correction(fitted, fake_run):
    data, spec, _ = load_fit_data(find_runs([str(fake_run.csv)]))
    pred = fitted.predict_rows(data.rows)
    err_model = sum(w * abs(t - p[0]) for w, t, p in zip(data.weight, data.time_target, pred))
    err_prior = sum(w * abs(t) for w, t in zip(data.weight, data.time_target))
    assert err_model < 0.5 * err_prior  # in-sample: the correction explains most of ln(measured/prior)
    assert all(0.0 <= p[1] <= 1.2 for p in pred)
    lo, hi = fitted.residual_quantiles("time")
    med = fitted.card["residuals"]["time"]["p50"]
    assert math.isfinite(lo) and math.isfinite(hi) and lo <= med <= hi and lo < hi
    lo2, hi2 = fitted.residual_quantiles("time", transferred=True)
    assert hi2 - lo2 > hi - lo


def test_load_refuses_schema_mismatch(fitted, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(fitted.path, d)
    card = json.loads((d / "card.json").read_text())
    card["features"]["schema_version"] = "0-old"
    (d / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="feature schema"):
        load_model(d)
    card["features"]["schema_version"] = FEATURE_SCHEMA_VERSION
    card["features"]["names"] = card["features"]["names"][:-1]
    (d / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="feature names"):
        load_model(d)


def test_load_refuses_edited_models_and_non_models(fitted, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(fitted.path, d)
    (d / "time.txt").write_text((d / "time.txt").read_text() + "\n")
    with pytest.raises(ModelError, match="sha256"):
        load_model(d)
    with pytest.raises(ModelError, match="no card.json"):
        load_model(tmp_path)
    (tmp_path / "card.json").write_text(json.dumps({"schema": "other/9"}))
    with pytest.raises(ModelError, match="schema"):
        load_model(tmp_path)


def test_a_truncated_model_text_without_hashes_is_refused_before_lightgbm_parses_it(fitted, tmp_path):
    """A card without its ``files`` hashes and a time.txt cut in half: LightGBM's parser aborted the process
    (SIGABRT) on it; load_model refuses it as a ModelError (the search path then skips the folder, stated)."""
    d = tmp_path / "m"
    shutil.copytree(fitted.path, d)
    card = json.loads((d / "card.json").read_text())
    card.pop("files")
    (d / "card.json").write_text(json.dumps(card))
    text = (d / "time.txt").read_bytes()
    (d / "time.txt").write_bytes(text[: len(text) // 2])
    with pytest.raises(ModelError, match="time.txt: not a whole LightGBM text model"):
        load_model(d)


def test_loaded_model_serves_the_predictor(fitted):
    from wattlint.calibrate.backends import FAKE_SPEC
    from wattlint.calibrate.benchmarks import records
    from wattlint.energy.predictor import CalibratedPredictor

    recs = records("gemm", {"m": 777, "n": 333, "k": 513}, "bf16", "forward")
    row = op_features(recs[0], FAKE_SPEC, "bf16")
    lt, pf = fitted.predict_one(row)
    assert math.isfinite(lt) and 0 <= pf <= 1.2
    p = CalibratedPredictor(fitted, "fake-gpu", transferred=False)
    t, w = p.predict(recs, FAKE_SPEC, "bf16")
    assert t[0] > 0 and FAKE_SPEC.idle_w <= w[0] <= FAKE_SPEC.tdp_w


def test_corrections_apply_only_to_measured_kinds(fitted):
    """An op kind the calibration never measured keeps the prior; a measured kind is corrected."""
    import dataclasses

    from wattlint.calibrate.backends import FAKE_SPEC
    from wattlint.calibrate.benchmarks import records
    from wattlint.energy.predictor import CalibratedPredictor, PriorPredictor
    from wattlint.types import OpKind

    p = CalibratedPredictor(fitted, "fake-gpu", transferred=False)
    seen = p.measured_kinds()
    assert seen and "matmul" in seen
    gemm = records("gemm", {"m": 777, "n": 333, "k": 513}, "bf16", "forward")[0]
    unseen_kind = next(k for k in OpKind if k.value not in seen and k not in (OpKind.VIEW, OpKind.COMMUNICATION))
    alien = dataclasses.replace(gemm, kind=unseen_kind)
    prior_t, prior_w = PriorPredictor().predict([gemm, alien], FAKE_SPEC, "bf16")
    t, w = p.predict([gemm, alien], FAKE_SPEC, "bf16")
    assert t[1] == prior_t[1] and w[1] == prior_w[1]
    assert (t[0], w[0]) != (prior_t[0], prior_w[0])


def test_fit_refuses_validation_data_and_shipping_non_gpu_models(fake_run, tmp_path):
    from wattlint.energy.predictor import MODELS_DIR

    with pytest.raises(FitError, match="never go"):
        fit_runs([str(fake_run.csv)], str(MODELS_DIR / "fake-gpu"), rounds=5)
    assert not (MODELS_DIR / "fake-gpu").exists()
    d = tmp_path / "v"
    d.mkdir()
    shutil.copy(fake_run.csv, d / "r.csv")
    prov = json.loads(fake_run.json.read_text())
    prov["validation_data"] = True
    (d / "r.json").write_text(json.dumps(prov))
    with pytest.raises(FitError, match="validation"):
        fit_runs([str(d / "r.csv")], str(tmp_path / "o"), rounds=5)


def test_a_fit_never_replaces_another_gpus_model_nor_a_measured_one_by_a_fake(fake_run, tmp_path):
    """A fake-device fit with --out at the user's H200 model in a --models-dir / WATTLINT_MODELS_DIR folder replaced
    its three files (the guard covered only the shipped and the user-data folders). Refused wherever the folder
    is, by what the card there holds; the folder's bytes are unchanged."""
    from wattlint.energy.predictor import MODELS_DIR

    mine = tmp_path / "usermodels" / "h200-sxm-141gb"
    shutil.copytree(MODELS_DIR / "h200-sxm-141gb", mine)
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    with pytest.raises(FitError, match="holds the energy model of h200-sxm-141gb; fitting fake-gpu there"):
        fit_runs([str(fake_run.csv)], str(mine), rounds=5)
    # the same GPU key, but a measured model: a fake fit still never replaces it
    card = json.loads((mine / "card.json").read_text())
    card["gpu"]["key"] = "fake-gpu"
    (mine / "card.json").write_text(json.dumps(card))
    before["card.json"] = (mine / "card.json").read_bytes()
    with pytest.raises(FitError, match="holds a measured GPU energy model"):
        fit_runs([str(fake_run.csv)], str(mine), rounds=5)
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == before


def test_fit_cli(run_cli, fake_run, tmp_path):
    code, out, err = run_cli("fit", str(fake_run.csv.parent), "--out", str(tmp_path / "m"), "--folds", "3")
    assert code == 0, err
    assert "leave_family_out" in out and "leave_shape_out" in out and "time MAPE" in out
    code, out, err = run_cli("fit", str(tmp_path / "nothing.csv"))
    assert code == 2 and "nothing" in err


def test_estimator_picks_up_a_model_folder(fitted, tmp_path):
    """A fitted folder under models/<key>/ makes that GPU 'measured'; other GPUs get it 'transferred'."""
    from wattlint.calibrate.backends import FAKE_SPEC
    from wattlint.energy.predictor import get_predictor

    shutil.copytree(fitted.path, tmp_path / "fake-gpu")
    p = get_predictor(FAKE_SPEC, models_dir=tmp_path)
    assert p.calibration == "measured" and "fake-gpu run" in p.source
    from wattlint.hardware import resolve_gpu

    import dataclasses

    # another GPU of the model's vendor (the fake simulator's) gets it transferred ...
    other = dataclasses.replace(FAKE_SPEC, key="fake-gpu-2", sm_count=FAKE_SPEC.sm_count * 2)
    q = get_predictor(other, models_dir=tmp_path)
    assert q.calibration == "transferred"
    # ... a GPU of another vendor does not: no cross-vendor transfer has been validated
    a100, _ = resolve_gpu("a100-sxm4-80gb")
    assert get_predictor(a100, models_dir=tmp_path).calibration == "prior"
    lo, hi = q.range_factors()
    lo2, hi2 = p.range_factors()
    assert hi / lo >= hi2 / lo2  # wider range when transferred


def test_find_runs_skips_non_object_json_in_a_folder(tmp_path):
    """A runs folder may hold other JSON files (lists, non-UTF-8): they are not runs, not a crash."""
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "latin1.json").write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(FitError, match="no calibration runs"):
        find_runs([str(tmp_path)])


def test_gpu_backward_calls_host_bound_dropped_kernel_bound_kept_whole(fake_run, tmp_path):
    """On a GPU, a backward call shorter than 1.5 x the autograd engine overhead is host-bound (its kernel time is
    not observable) and dropped; a longer one is kernel-bound and enters the fit at its measured call time, also
    when an older runner subtracted the overhead (time_s + overhead_s is the call time)."""
    import csv

    from wattlint.calibrate.fitting import HOST_BOUND_FACTOR
    from wattlint.calibrate.runner import read_rows

    assert HOST_BOUND_FACTOR == 1.5
    rows = read_rows(fake_run.csv)
    back = [r for r in rows if r["phase"] == "backward" and r["status"] == "ok"]
    assert len(back) >= 3
    engine = 80e-6  # the session's autograd overhead: host-bound below 1.5 x 80 = 120 us
    back[0].update(time_s=repr(100e-6), overhead_s="0")  # 100 < 120 us: host-bound, dropped
    back[1].update(time_s=repr(200e-6), overhead_s="0")  # 200 us, kernel-bound: kept at 200 us
    back[2].update(time_s=repr(119e-6), overhead_s=repr(81e-6))  # old runner: 119 + 81 = 200 us, kept at 200 us
    for r in back[3:]:  # every other backward call kernel-bound (1 ms)
        r.update(time_s=repr(1e-3), overhead_s="0")
    d = tmp_path / "gpu-run"
    d.mkdir()
    with (d / fake_run.csv.name).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    prov = json.loads(fake_run.json.read_text())
    prov["device"]["kind"] = "cuda"
    prov["sessions"][0]["autograd_overhead_s"] = engine
    (d / fake_run.json.name).write_text(json.dumps(prov))
    data, _, meta = load_fit_data(find_runs([str(d)]))
    assert meta["skipped_rows"] == {"host-bound backward call (kernel time not observable)": 1}
    times = dict(zip(data.sample, data.sample_time))
    assert times[f"{back[1]['sample_id']}@{fake_run.csv.name}"] == pytest.approx(200e-6)
    assert times[f"{back[2]['sample_id']}@{fake_run.csv.name}"] == pytest.approx(200e-6)
    assert f"{back[0]['sample_id']}@{fake_run.csv.name}" not in times


def test_a_refit_that_fails_while_writing_leaves_the_previous_model_intact(fitted, fake_run, tmp_path,
                                                                             monkeypatch):
    """Refitting into a folder that holds a model: if writing fails part way (disk full, a kill), the previous
    model's three files must be untouched and still load; they used to be overwritten one by one, leaving a new
    time model under the old card (sha256 mismatch: the calibration silently unusable)."""
    from wattlint import io as wio

    out = tmp_path / "m"
    shutil.copytree(fitted.path, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = wio._write_temp

    def disk_full_at_the_card(path, text):  # the time and power models are written, then the disk fills
        if Path(path).name == "card.json":
            raise OSError(28, "No space left on device")
        return real(path, text)

    monkeypatch.setattr(wio, "_write_temp", disk_full_at_the_card)
    with pytest.raises(OSError):
        fit_runs([str(fake_run.csv)], str(out), rounds=20, folds=3)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing replaced, no temporary left
    load_model(out)  # still a usable model


@pytest.mark.parametrize("name, text", [("card.json", '{"mine": 1}\n'), ("time.txt", "my notes\n"),
                                        ("card.json", "not json")])
def test_fit_never_overwrites_files_that_are_not_a_model(fake_run, tmp_path, run_cli, name, text):
    """--out a folder with the user's own card.json / time.txt (e.g. --out .): the fit replaced them."""
    (tmp_path / name).write_text(text)
    code, _, err = run_cli("fit", str(fake_run.csv), "--out", str(tmp_path), "--folds", "3")
    assert code == 2 and "not a wattlint energy model" in err and err.count("\n") == 1, err
    assert (tmp_path / name).read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing else written


@pytest.mark.parametrize("bad_params", ["[]", "1e400", "\"gemm\""])
def test_a_row_whose_params_are_not_an_object_is_skipped_not_a_crash(fake_run, tmp_path, bad_params):
    """A calibration CSV row whose params column is valid JSON but not an object (a damaged or hand-edited row)
    crashed fit with an internal error (AttributeError, exit 3); it is skipped and counted as unparseable."""
    import csv as _csv

    rows = list(_csv.DictReader(fake_run.csv.open(newline="")))
    rows[0]["params"] = bad_params
    run = tmp_path / fake_run.csv.name
    with run.open("w", newline="") as f:
        w = _csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    shutil.copy(fake_run.json, tmp_path / fake_run.json.name)
    data, _spec, prov = load_fit_data(find_runs([str(run)]))
    assert prov["skipped_rows"].get("unparseable") == 1
    ok = sum(1 for r in rows if r["status"] == "ok")
    assert len(set(data.sample)) <= ok - 1


def test_fit_says_how_to_use_its_folder_and_names_an_unfinished_run(run_cli, tmp_path):
    """Review: `fit --out h200m` wrote a model no estimate finds (models are looked up in <folder>/<gpu-key>/),
    `--models-dir h200m` then used the shipped models without a word, and a fit on an interrupted run did not
    say the run was unfinished."""
    part = run_calibration(RunConfig(device="fake", suite=TINY, out=str(tmp_path / "run"), limit=12))
    code, out, err = run_cli("fit", str(part.csv), "--out", str(tmp_path / "m"), "--folds", "2")
    assert code == 0, err
    assert f"note: run {part.csv.stem} is partial (12 of 40 samples measured)" in out
    # a fake-device fit is never used by an estimate (refused as 'fitted on fake-gpu'): no advice to move it (review:
    # the note sent users to DIR/fake-gpu/, where estimates refuse it); a GPU run's fit gets it
    assert "estimates look models up" not in out
    import json as _json

    gpu_run = tmp_path / "gpu-run"
    gpu_run.mkdir()
    shutil.copy(part.csv, gpu_run / part.csv.name)
    doc = _json.loads(part.json.read_text())
    doc["device"]["kind"] = "cuda"
    (gpu_run / part.json.name).write_text(_json.dumps(doc))
    code, out, err = run_cli("fit", str(gpu_run), "--out", str(tmp_path / "m2"), "--folds", "2")
    assert code == 0, err
    assert "note: estimates look models up in <folder>/fake-gpu/; to use this one, move it to DIR/fake-gpu/" in out
    code, _, err = run_cli(str(Path(__file__).parents[1] / "examples" / "gpt2-tiny.onnx"), "--steps", "1",
                           "--models-dir", str(tmp_path / "m"))
    assert code == 2 and "a fitted model's own folder (it holds card.json)" in err, err
    # fitted straight into DIR/<key>/: nothing to move
    code, out, err = run_cli("fit", str(part.csv), "--out", str(tmp_path / "d" / "fake-gpu"), "--folds", "2")
    assert code == 0 and "estimates look models up" not in out, err


def test_fit_names_a_folder_of_run_records_given_beside_calibration_runs(run_cli, fake_run, tmp_path):
    """`fit records/ calibration-runs/` said "records/: no calibration runs" though it holds run records."""
    rec = sorted((Path(__file__).parents[1] / "benchmarks" / "results" / "track_cpu_runs").glob("*.jsonl"))[0]
    (tmp_path / "tr").mkdir()
    shutil.copy(rec, tmp_path / "tr" / rec.name)
    code, _, err = run_cli("fit", str(tmp_path / "tr"), str(fake_run.csv.parent), "--out", str(tmp_path / "m"))
    assert code == 2 and "holds tracked run records (wattlint.track), not calibration runs" in err, err


def test_fit_out_naming_an_existing_file_says_so(fake_run, tmp_path, run_cli):
    f = tmp_path / "notes.txt"
    f.write_text("mine\n")
    code, _, err = run_cli("fit", str(fake_run.csv), "--out", str(f), "--folds", "3")
    assert code == 2 and f"--out {f}: an existing file, not a folder" in err and f.read_text() == "mine\n", err


def test_a_torn_last_csv_line_is_counted_as_dropped(fake_run, tmp_path):
    """Review: a crash mid-write leaves a last line without its newline; read_rows drops it, and the fit said
    nothing ('skipped_rows {}') where CALIBRATION.md promises torn rows are counted."""
    data = fake_run.csv.read_bytes()
    run = tmp_path / fake_run.csv.name
    run.write_bytes(data + data.splitlines(keepends=True)[1][:25])  # half of a row, no newline
    shutil.copy(fake_run.json, tmp_path / fake_run.json.name)
    _data, _spec, prov = load_fit_data(find_runs([str(run)]))
    assert prov["skipped_rows"].get("torn last line (crash mid-write)") == 1
    _data, _spec, prov = load_fit_data(find_runs([str(fake_run.csv)]))
    assert "torn last line (crash mid-write)" not in prov["skipped_rows"]


def test_fit_names_the_file_that_is_not_a_calibration_run(fake_run, tmp_path, run_cli):
    """Review: 'fit RECORD.jsonl emissions.csv' said 'RECORD.jsonl: need RECORD.csv and RECORD.json' (blaming the
    good run record); a folder whose run .json is damaged said 'no calibration runs in this folder'."""
    import wattlint

    rec_dir = tmp_path / "recs"
    with wattlint.track(out=rec_dir, display="quiet", static=False, steps=2) as t:
        t.step()
        t.step()
    cc = tmp_path / "emissions.csv"
    cc.write_text("timestamp,duration\n2026-01-01,1\n")
    code, _, err = run_cli("fit", t.path, cc)
    assert code == 2 and f"{t.path}: a tracked run record (wattlint.track) among other files" in err, err
    code, _, err = run_cli("fit", cc)
    assert code == 2 and "emissions.csv: not a calibration run" in err and "compare-run" in err, err
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(fake_run.csv, bad / fake_run.csv.name)
    (bad / fake_run.json.name).write_text('{"schema": "x",,}')
    code, _, err = run_cli("fit", bad)
    assert code == 2 and f"no readable calibration run: {fake_run.json.name} (JSONDecodeError" in err, err


def test_a_damaged_csv_header_is_named(fake_run, tmp_path, run_cli):
    """Review: a renamed header column ('time_s' -> 'time_sec') or a deleted header line made every row 'torn' and
    the fit said 'only 0 measured samples: too few to fit', without the drop counts or the cause."""
    for name, edit in (("renamed", lambda t: t.replace("time_s,", "time_sec,", 1)),
                       ("headless", lambda t: t.split("\n", 1)[1])):
        d = tmp_path / name
        d.mkdir()
        (d / fake_run.csv.name).write_text(edit(fake_run.csv.read_text()))
        shutil.copy(fake_run.json, d / fake_run.json.name)
        code, _, err = run_cli("fit", d, "--out", tmp_path / f"m-{name}")
        assert code == 2 and "the header lacks column(s) " in err and "time_s" in err, err
        assert err.count("\n") == 1


def test_a_killed_run_is_not_called_running(fake_run, tmp_path, run_cli):
    """Review: a calibration killed with SIGKILL keeps "status": "running" in its JSON, and fit said the run 'is
    running'; it says it may have been killed."""
    import json as _json

    d = tmp_path / "killed"
    d.mkdir()
    shutil.copy(fake_run.csv, d / fake_run.csv.name)
    doc = _json.loads(fake_run.json.read_text())
    doc["status"] = "running"
    (d / fake_run.json.name).write_text(_json.dumps(doc))
    code, out, err = run_cli("fit", d, "--out", tmp_path / "m", "--folds", "2")
    assert code == 0, err
    assert "is running, or was killed (no end recorded)" in out


def test_cv_mape_divides_by_the_measurement():
    """The CV residuals are ln(measured / predicted). A sample predicted at 2x its measured time is 100 % off, one
    predicted at half of it 50 % off (|predicted - measured| / measured); the metric divided by the prediction
    instead (50 % and 100 %) and reported the fitted H200 model at 39.8 % where it is ~50 %."""
    from wattlint.energy.model import _metrics

    over, under = math.log(1 / 2), math.log(2)  # predicted 2x measured; predicted half of measured
    m = _metrics({"time": [over, under], "prior_time": [under, under], "power_frac": [0.1, -0.3],
                  "measured_s": [1.0, 3.0]})
    assert m["time_mape"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["prior_time_mape"] == pytest.approx(0.5)
    assert m["time_median_ape"] == pytest.approx(0.75)  # the median of 1.0 and 0.5
    assert m["time_wape"] == pytest.approx((1.0 * 1 + 1.5) / 4)  # |2 - 1| + |1.5 - 3| over 1 + 3
    assert m["power_fraction_mae"] == pytest.approx(0.2)
