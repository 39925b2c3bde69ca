"""Structure the redesign promised: one-way imports, one option table, the calibrated path's range fallback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from wattlint import options
from wattlint.energy import predictor as pred_mod
from wattlint.hardware import resolve_gpu


def _modules_after(stmt: str) -> set[str]:
    code = f"import sys; {stmt}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("stmt", ["import wattlint.aggregate", "import wattlint.api",
                                  "import wattlint.energy.system", "import wattlint.energy.pricing"])
def test_estimator_does_not_import_lint_or_heavy_libraries(stmt):
    mods = _modules_after(stmt)
    assert not {m for m in mods if m == "wattlint.lint" or m.startswith("wattlint.lint.")}, stmt
    assert not mods & {"torch", "onnx", "onnxruntime", "lightgbm", "pynvml"}, stmt


def test_lint_does_not_import_the_estimator():
    mods = _modules_after("import wattlint.lint.engine, wattlint.lint.rules")
    assert not mods & {"wattlint.aggregate", "wattlint.api", "wattlint.energy.pricing", "wattlint.energy.system"}


def test_public_estimate_is_the_api_function():
    import wattlint
    import wattlint.aggregate  # noqa: F401  (importing submodules must not shadow the function)
    from wattlint import api

    assert callable(wattlint.estimate) and wattlint.estimate.__doc__.startswith("Estimate the cost")
    assert api.estimate.__module__ == "wattlint.api"


def test_one_option_table_for_cli_config_and_api():
    """Every estimate flag is in the table once; the config accepts each option by its name (and aliases)."""
    from wattlint.commands import estimate as cmd
    from wattlint.config import PLAN_KEYS

    flags = [o.flag for o in options.OPTIONS.values()]
    assert len(flags) == len(set(flags))
    wired = set(cmd.CLI_OPTIONS) | {"gpu", "compare"}
    assert wired == {n for n, o in options.OPTIONS.items() if not o.config_only}
    assert set(PLAN_KEYS) == {n for n, o in options.OPTIONS.items() if not o.flag_only} | set(options.ALIASES)
    assert options.canonical("price") == "price_per_kwh" == options.canonical("price-per-kwh")


@pytest.mark.parametrize("value, ok", [("1e3", 1000), ("4_096", 4096), ("1e400", None), ("nan", None),
                                       ("0", None), ("2.5", None), ("1000000000", 10**9), ("1000000001", None)])
def test_integer_options_parse_and_bound(value, ok):
    check = options.OPTIONS["batch_size"].check
    if ok is None:
        with pytest.raises(ValueError):
            check(value, text=True)
    else:
        assert check(value, text=True) == ok


class _NoResiduals:
    """A calibrated model whose card has no residual quantiles (what a first, partial calibration can produce)."""

    source = "h100-sxm5-80gb run 2026-12-03"
    card = {"gpu": {"key": "h100-sxm5-80gb"}}

    def predict_rows(self, rows):
        return [(0.0, 0.5) for _ in rows]

    def residual_quantiles(self, target="time", *, transferred=False):
        return self.card["residuals"][target]  # KeyError, as wattlint.energy.model.EnergyModel raises


def test_calibrated_model_without_residuals_gets_the_prior_band():
    measured = pred_mod.CalibratedPredictor(_NoResiduals(), "h100-sxm5-80gb", transferred=False)
    transferred = pred_mod.CalibratedPredictor(_NoResiduals(), "h100-sxm5-80gb", transferred=True)
    assert measured.range_factors("energy") == (0.65, 1.8)  # the prior's bands (docs/ENERGY_MODEL.md)
    assert measured.range_factors("time") == (0.65, 1.7)
    lo, hi = transferred.range_factors()
    assert (lo, hi) == pytest.approx((0.65 / 1.5, 1.8 * 1.5))


def test_estimate_through_a_calibrated_model_without_residuals(tmp_path, monkeypatch):
    """The whole calibrated path (get_predictor -> price -> ranges) with such a card: no crash, prior band."""
    from _estimate_fixtures import mlp_graph

    from wattlint import api

    d = tmp_path / "models" / "h100-sxm5-80gb"
    d.mkdir(parents=True)
    (d / "card.json").write_text(json.dumps(_NoResiduals.card))
    monkeypatch.setattr(pred_mod, "_load", lambda key, models_dir: _NoResiduals())
    h100, _ = resolve_gpu("h100")
    model = pred_mod.get_predictor(h100, tmp_path / "models")
    e = api.estimate(mlp_graph(), gpu="h100", steps=10, predictor=model)
    assert e.calibration == "measured"
    t, pue = e.total, e.plan.pue  # the prior's band: GPU energy x0.65-x1.8, the host's power x time x0.65-x1.7
    assert t.energy_kwh_range == pytest.approx((pue * (t.gpu_energy_kwh + t.host_energy_kwh) * 0.65,
                                                pue * (t.gpu_energy_kwh * 1.8 + t.host_energy_kwh * 1.7)))
    assert e.total.time_h_range == pytest.approx((e.total.time_h * 0.65, e.total.time_h * 1.7))


# ---- the models search path ----------------------------------------------------------------------------------------

def _fake_card(d, key, source):
    (d / key).mkdir(parents=True)
    (d / key / "card.json").write_text(json.dumps({"gpu": {"key": key, "arch": "Hopper"},
                                                   "calibration_source": source}))


def test_models_search_path_order_and_first_hit_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("WATTLINT_MODELS_DIR", str(tmp_path / "env"))
    monkeypatch.setattr(pred_mod, "user_models_dir", lambda: tmp_path / "user")
    dirs = pred_mod.search_path(tmp_path / "cli", tmp_path / "cfg")
    assert [d.origin for d in dirs] == ["--models-dir", "[tool.wattlint] models-dir", "WATTLINT_MODELS_DIR",
                                        "user data dir", "shipped"]
    assert [d.path for d in dirs[:4]] == [tmp_path / n for n in ("cli", "cfg", "env", "user")]

    class Loaded:
        def __init__(self, path):
            self.card = json.loads((path / "card.json").read_text())
            self.source = self.card["calibration_source"]

    monkeypatch.setattr(pred_mod, "_load", lambda key, d: Loaded(d / key))
    h100, _ = resolve_gpu("h100")
    _fake_card(tmp_path / "user", h100.key, "user run")
    _fake_card(tmp_path / "env", h100.key, "env run")
    p = pred_mod.get_predictor(h100, dirs)
    assert p.calibration == "measured" and p.source.startswith("env run (WATTLINT_MODELS_DIR")  # env before user
    assert "--models-dir" in p.searched and "shipped" in p.searched
    _fake_card(tmp_path / "cli", h100.key, "cli run")
    assert pred_mod.get_predictor(h100, dirs).source.startswith("cli run (--models-dir")


def test_a_model_in_the_user_folder_makes_the_gpu_measured(tmp_path, monkeypatch):
    """`wattlint fit` writes to the user's models folder by default; every estimate and `wattlint gpus` search it."""
    monkeypatch.setattr(pred_mod, "user_models_dir", lambda: tmp_path / "user-models")
    monkeypatch.delenv("WATTLINT_MODELS_DIR", raising=False)
    h100, _ = resolve_gpu("h100")

    # a real fitted model (the shipped H200 one stands in for what `wattlint fit` writes)
    from _models_fixtures import stand_in_model

    stand_in_model(tmp_path / "user-models" / h100.key)
    assert pred_mod.get_predictor(h100, pred_mod.search_path()).calibration == "measured"
    assert pred_mod.get_predictor(resolve_gpu("a100-sxm4-80gb")[0], pred_mod.search_path()).calibration == "public-fit"


def test_an_unusable_calibration_is_stated_not_silently_dropped(tmp_path, monkeypatch, run_cli):
    """A calibration for the GPU on the search path that fails to load (here: a booster edited after fitting, so
    its sha256 no longer matches the card) falls back to the next energy model, and the report must say which
    calibration was not used and why; it used to list the search path only, as if there were none."""
    from _models_fixtures import stand_in_model

    models = tmp_path / "models"
    stand_in_model(models / "a100-sxm4-80gb")
    with open(models / "a100-sxm4-80gb" / "time.txt", "a") as f:
        f.write("\n")
    line = _a100_models_line(tmp_path, monkeypatch, run_cli, models)
    assert f"a100-sxm4-80gb calibration in WATTLINT_MODELS_DIR {models} not usable" in line
    assert "sha256 differs" in line


def _a100_models_line(tmp_path, monkeypatch, run_cli, models) -> str:
    """Estimate on the A100 with ``models`` as $WATTLINT_MODELS_DIR: the report must fall back to public-fit; its
    "energy models searched" assumption line."""
    monkeypatch.setenv("WATTLINT_MODELS_DIR", str(models))
    monkeypatch.setattr(pred_mod, "user_models_dir", lambda: tmp_path / "user")
    code, out, _ = run_cli("examples/resnet50.onnx", "--gpu", "a100", "--steps", "10", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["hardware"]["calibration"] == "public-fit"
    return next(a for a in doc["assumptions"] if a.startswith("energy models searched in order"))


@pytest.mark.parametrize("break_it, why", [
    (lambda d: None, "its card says it was fitted on h200-sxm-141gb, not a100-sxm4-80gb"),
    (lambda d: (d / "card.json").write_text("{not json"), "its card.json is unreadable or has no gpu entry"),
    # the H200 card with its gpu.key removed (name and source still the H200's): the folder's name must not make
    # it the A100's measured model
    (lambda d: (d / "card.json").write_text(json.dumps(
        {**json.loads((d / "card.json").read_text()),
         "gpu": {k: v for k, v in json.loads((d / "card.json").read_text())["gpu"].items() if k != "key"}})),
     "its card names no GPU (gpu.key)"),
])
def test_a_calibration_of_another_gpu_or_an_unreadable_card_is_not_measured(tmp_path, monkeypatch, run_cli,
                                                                               break_it, why):
    """A model copied into another GPU's folder (the H200 calibration under a100-sxm4-80gb/), or a garbage card,
    must not make that GPU "measured"; the report says which folder was not used and why (fuzz review)."""
    import shutil

    from _models_fixtures import H200_MODEL

    models = tmp_path / "models"
    shutil.copytree(H200_MODEL, models / "a100-sxm4-80gb")
    break_it(models / "a100-sxm4-80gb")
    line = _a100_models_line(tmp_path, monkeypatch, run_cli, models)
    assert f"a100-sxm4-80gb calibration in WATTLINT_MODELS_DIR {models} not used: {why}" in line
    assert "a100-sxm4-80gb" not in pred_mod.calibrated_keys(models)
