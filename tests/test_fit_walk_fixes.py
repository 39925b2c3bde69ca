"""Review walk of fit / models / gpus: a damaged model card is an input error everywhere (one check), damaged sample
params are dropped and counted (never a crash or a hang), the fit says why it has too few samples and that a run's
CSV lacks rows, an earlier model is kept when a fit replaces it, and every model the search could not use is
stated (`wattlint gpus`, transfer candidates)."""

import csv
import json
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

from _models_fixtures import H200_MODEL

from wattlint.calibrate.fitting import find_runs, fit_runs, load_fit_data
from wattlint.calibrate.runner import RunConfig, run_calibration
from wattlint.energy import predictor as pred_mod
from wattlint.energy.model import ModelError, load_model
from wattlint.hardware import resolve_gpu

TINY = str(Path(__file__).parent / "data" / "calib-tiny.toml")


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    return run_calibration(RunConfig(device="fake", suite=TINY, out=str(tmp_path_factory.mktemp("run"))))


@pytest.fixture
def isolated_models(tmp_path, monkeypatch):
    """No user models and no WATTLINT_MODELS_DIR: only the folders a test names, then the shipped ones."""
    monkeypatch.delenv("WATTLINT_MODELS_DIR", raising=False)
    monkeypatch.setattr(pred_mod, "user_models_dir", lambda: tmp_path / "no-user-models")
    monkeypatch.setenv("COLUMNS", "400")


def _rows(run) -> list[dict]:
    return list(csv.DictReader(run.csv.open(newline="")))


def _write_run(run, d: Path, rows: list[dict]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    with (d / run.csv.name).open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    shutil.copy(run.json, d / run.json.name)
    return d


@contextmanager
def _at_most(seconds: int):
    """A hang fails the test instead of stalling the suite."""
    def stop(*_):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---- 1: a damaged card.json is refused by the one card check, wherever a model is loaded ----------------------------

@pytest.mark.parametrize("damage, says", [
    (lambda p: p.write_text("[1, 2]"), "(a JSON list, not an object)"),
    (lambda p: p.write_bytes(b"\xff\xfe{\x80}"), "(UnicodeDecodeError: "),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "gpu": 5})), "(gpu = 5, not an object)"),
])
def test_validate_model_with_a_damaged_card_is_one_line_exit_2(tmp_path, run_cli, damage, says):
    """Review: `validate predict --model DIR` ended with AttributeError / UnicodeDecodeError (exit 3) for a card.json
    of [1,2], of non-UTF-8 bytes, or with "gpu": 5; the estimate's search refused the same cards (card_problem)."""
    d = tmp_path / "h200-sxm-141gb"
    shutil.copytree(H200_MODEL, d)
    damage(d / "card.json")
    code, out, err = run_cli("validate", "predict", "--gpu", "h200", "--model", d, "--only", "mixer-b16-b64-bf16",
                             "--out", tmp_path / "x.json")
    assert code == 2 and out == "", err
    assert err.count("\n") == 1 and err.startswith(f"wattlint: error: {d}: its card.json ") and says in err, err
    assert not (tmp_path / "x.json").exists()
    with pytest.raises(ModelError, match=r"its card\.json is unreadable or has no gpu entry"):
        load_model(d)
    # the estimator's search gives the same reason: one check
    assert says in pred_mod.card_problem(d)


# ---- 2: sample params no suite produces are dropped and counted ------------------------------------------------------

def test_damaged_sample_params_are_dropped_with_a_reason_never_a_crash_or_a_hang(fake_run, tmp_path):
    """Review: {"m": -5} ended fit with ZeroDivisionError (exit 3, in the prior, outside the guarded block);
    optimizer tensors 10**30 hung it; booleans and 1.5 as sizes and the phase 'sideways' were fitted silently."""
    rows = _rows(fake_run)
    gemm = [r for r in rows if r["family"] == "gemm" and r["phase"] == "forward"]
    gemm[0]["params"] = '{"k":64,"m":-5,"n":64}'
    gemm[1].update(family="attention", params='{"b":2,"d":32,"h":4,"s":-128}')
    gemm[2].update(family="optimizer", phase="optimizer", precision="fp32",
                   params=json.dumps({"name": "adamw", "numel": 1000, "tensors": 10 ** 30}))
    gemm[3]["params"] = '{"k":64,"m":true,"n":64}'
    gemm[4]["params"] = '{"k":64,"m":1.5,"n":64}'
    gemm[5].update(family="optimizer", phase="sideways", precision="fp32", params='{"name":"adamw","numel":1000}')
    gemm[6].update(family="optimizer", phase="optimizer", precision="fp32",  # 15 s a row; the suites use <= 160
                   params='{"name":"adamw","numel":100000,"tensors":3000}')
    d = _write_run(fake_run, tmp_path / "dmg", rows)
    with _at_most(120):
        data, _spec, meta = load_fit_data(find_runs([str(d)]))
    assert meta["skipped_rows"] == {
        "invalid sample (a negative size)": 2,
        "invalid sample (a size over 2^40)": 1,
        "invalid sample (more than 1024 optimizer tensors)": 1,
        "invalid sample (a size that is not a whole number)": 2,
        "invalid sample (a phase the family is not measured in)": 1,
    }
    assert len(set(data.sample)) == len(rows) - 7


# ---- 3: too few samples says why the rows were dropped --------------------------------------------------------------

def test_too_few_samples_names_the_dropped_rows_and_why(fake_run, tmp_path, run_cli):
    """Review: every time_s damaged gave 'only 0 measured samples: too few to fit' and nothing of why."""
    rows = _rows(fake_run)
    for r in rows:
        r["time_s"] = "n/a"
    d = _write_run(fake_run, tmp_path / "nan", rows)
    code, out, err = run_cli("fit", d, "--out", tmp_path / "m")
    assert code == 2 and out == "", err
    assert err == (f"wattlint: error: only 0 measured samples: too few to fit (need >= 10); {len(rows)} row(s) "
                   f"dropped: {len(rows)} time_s or avg_power_w not a number\n")
    assert not (tmp_path / "m").exists()


# ---- 4: a 'complete' run whose CSV lacks rows is named ---------------------------------------------------------------

def test_a_complete_run_with_half_its_rows_is_warned_about(fake_run, tmp_path, run_cli):
    """Review: a complete run's CSV cut to half its rows was fitted without a word (the note covered unfinished
    runs only); the run's JSON records how many samples it measured."""
    rows = _rows(fake_run)
    assert json.loads(fake_run.json.read_text())["status"] == "complete"
    d = _write_run(fake_run, tmp_path / "half", rows[:20])
    code, out, err = run_cli("fit", d, "--out", tmp_path / "m", "--folds", "2")
    assert code == 0, err
    assert (f"wattlint: warning: run {fake_run.csv.stem}: its CSV holds 20 measured row(s) where its JSON records "
            f"{len(rows)} ({len(rows) - 20} missing: the CSV was cut short or edited after the run)") in err, err
    # the whole run: no warning
    code, out, err = run_cli("fit", fake_run.csv, "--out", tmp_path / "m-whole", "--folds", "2")
    assert code == 0 and "warning" not in err, err


# ---- 5: an earlier model is kept when a fit replaces it -------------------------------------------------------------

def test_a_fit_keeps_the_model_it_replaces_beside_it(fake_run, tmp_path, run_cli):
    """Review: a fit into a folder holding a model (the default user-data folder too) replaced it with no backup,
    even when the new fit was much smaller. The earlier model's files are copied to <out>.previous-<UTC time>
    (named on stderr, never overwritten); other files of the folder stay where they are."""
    out = tmp_path / "models" / "fake-gpu"
    first = fit_runs([str(fake_run.csv)], str(out), rounds=5, folds=2)
    assert first.previous is None
    earlier = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "run_correction.json").write_text("{}\n")  # e.g. a run correction beside the model: not moved
    half = _write_run(fake_run, tmp_path / "half", _rows(fake_run)[:20])
    code, _, err = run_cli("fit", half, "--out", out, "--folds", "2")
    assert code == 0, err
    kept = [p for p in out.parent.iterdir() if p.name.startswith("fake-gpu.previous-")]
    assert len(kept) == 1 and f"wattlint: note: the earlier model in {out} was kept in {kept[0]}" in err, err
    # the run correction beside the model is copied with it (restoring the backup restores both) and left in place,
    # where it is no longer applied (matched to its model by content), and said so
    assert f"the run correction {out / 'run_correction.json'} was fitted on top of the earlier model" in err
    assert "estimates no longer apply it" in err
    assert {p.name: p.read_bytes() for p in kept[0].iterdir()} == {**earlier, "run_correction.json": b"{}\n"}
    load_model(kept[0])  # a whole model
    assert (out / "run_correction.json").read_text() == "{}\n"
    # a refit in the same second gets its own folder: a backup is never overwritten
    second = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "run_correction.json"}
    again = fit_runs([str(fake_run.csv)], str(out), rounds=5, folds=2)
    assert again.previous is not None and again.previous != kept[0]
    assert {p.name: p.read_bytes() for p in again.previous.iterdir()} == {**second, "run_correction.json": b"{}\n"}
    assert {p.name: p.read_bytes() for p in kept[0].iterdir()} == {**earlier, "run_correction.json": b"{}\n"}
    # the same fit again (the same boosters, byte for byte): nothing is replaced but dates, no copy is added (review:
    # every refit of identical data added a 1 MB copy)
    backups = sorted(p.name for p in out.parent.iterdir() if ".previous-" in p.name)
    boosters = [(out / n).read_bytes() for n in ("time.txt", "power.txt")]
    same = fit_runs([str(fake_run.csv)], str(out), rounds=5, folds=2)
    assert [(out / n).read_bytes() for n in ("time.txt", "power.txt")] == boosters  # the premise: a deterministic fit
    assert same.previous is None
    assert sorted(p.name for p in out.parent.iterdir() if ".previous-" in p.name) == backups


# ---- 6: `wattlint gpus` states a calibration in --models-dir it cannot use ----------------------------------------

def test_gpus_names_an_unusable_calibration_in_models_dir(tmp_path, run_cli, isolated_models):
    """Review: `gpus h200 --models-dir md1` with a damaged H200 model in md1 showed the shipped model and never
    mentioned md1, where the estimate says 'calibration in --models-dir ... not usable (sha256 differs)'."""
    md1 = tmp_path / "md1"
    shutil.copytree(H200_MODEL, md1 / "h200-sxm-141gb")
    t = md1 / "h200-sxm-141gb" / "time.txt"
    t.write_bytes(t.read_bytes()[: len(t.read_bytes()) // 2])
    note = f"h200-sxm-141gb calibration in --models-dir {md1} not usable (ModelError: "
    code, out, err = run_cli("gpus", "h200", "--models-dir", md1)
    assert code == 0, err
    assert "energy model: measured" in out and f"note: {note}" in out and "sha256 differs" in out, out
    code, out, err = run_cli("gpus", "h200", "--models-dir", md1, "--format", "json")
    assert code == 0 and any(n.startswith(note) for n in json.loads(out)["calibration_notes"]), out
    code, out, err = run_cli("gpus", "--models-dir", md1)
    assert code == 0 and f"\nnote: {note}" in out, out


# ---- 7: a transfer candidate that does not load is stated ------------------------------------------------------------

def test_a_transfer_candidate_that_fails_to_load_is_stated(tmp_path, isolated_models):
    """Review: another GPU's calibration that failed to load was skipped as a transfer candidate without a note
    (`except Exception: continue`), where the measured one is stated."""
    md = tmp_path / "md"
    shutil.copytree(H200_MODEL, md / "h200-sxm-141gb")
    t = md / "h200-sxm-141gb" / "time.txt"
    t.write_bytes(t.read_bytes()[: len(t.read_bytes()) // 2])
    h100, _ = resolve_gpu("h100")
    p = pred_mod.get_predictor(h100, md)  # that folder only: no public fit, so the transfer was the option
    assert p.calibration == "prior"
    assert (f"h200-sxm-141gb calibration in models dir {md} not usable for transfer (ModelError: ") in p.searched
    assert "sha256 differs" in p.searched
    # an intact one still transfers
    shutil.rmtree(md / "h200-sxm-141gb")
    shutil.copytree(H200_MODEL, md / "h200-sxm-141gb")
    assert pred_mod.get_predictor(h100, md).calibration == "transferred"
