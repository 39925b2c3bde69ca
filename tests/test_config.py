import sys
from pathlib import Path

import pytest

from wattlint.config import Config, is_excluded, load_config, resolve_source
from wattlint.types import ConfigError

GOOD = """
[project]
name = "demo"

[tool.wattlint]
gpu = "a100-sxm4-80gb"
precision = "bf16"
region = "FR"
pue = 1.2
select = ["WL"]
ignore = ["WL304"]
exclude = ["experiments/**"]
baseline = "wattlint-baseline.json"
regression-threshold = 0.05

[[tool.wattlint.models]]
name = "classifier"
source = "models/resnet50.onnx"
dataset = "imagenet-1k"
batch-size = 256
epochs = 90
budget = { energy-kwh = 500, co2-kg = 200 }
ignore = ["WL106"]

[[tool.wattlint.models]]
source = "pkg.models:build"
batch_size = 8
precision = "fp32"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "pyproject.toml"
    p.write_text(text)
    return p


def test_design_example_parses(tmp_path):
    write(tmp_path, GOOD)
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    cfg = load_config(sub)
    assert cfg.path == (tmp_path / "pyproject.toml").resolve()
    assert cfg.root == tmp_path.resolve()
    assert cfg.defaults == {"gpu": "a100-sxm4-80gb", "precision": "bf16", "region": "FR", "pue": 1.2}
    assert cfg.select == ("WL",) and cfg.ignore == ("WL304",) and cfg.exclude == ("experiments/**",)
    assert cfg.baseline == tmp_path.resolve() / "wattlint-baseline.json"
    assert cfg.regression_threshold == 0.05
    m = cfg.models[0]
    assert m.name == "classifier"
    assert m.path == tmp_path.resolve() / "models" / "resnet50.onnx"
    assert m.source == str(m.path)
    assert m.plan == {"dataset": "imagenet-1k", "batch_size": 256, "epochs": 90}
    assert m.options["gpu"] == "a100-sxm4-80gb" and m.options["batch_size"] == 256
    assert m.budget == {"energy_kwh": 500, "co2_kg": 200}
    assert m.ignore == ("WL106",)
    m2 = cfg.models[1]
    assert m2.name == "models" and m2.path is None and m2.source == "pkg.models:build"
    assert m2.options["precision"] == "fp32"  # the model's own value wins over the default


def test_no_config_gives_defaults(tmp_path):
    cfg = load_config(tmp_path)
    assert cfg.path is None and cfg.models == () and cfg.defaults == {}
    assert cfg.baseline_path == tmp_path.resolve() / "wattlint-baseline.json"


def test_pyproject_without_table_is_skipped(tmp_path):
    write(tmp_path, GOOD)
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text("[project]\nname='x'\n")
    assert load_config(inner).path == (tmp_path / "pyproject.toml").resolve()


@pytest.mark.parametrize("text, needle", [
    ("[tool.wattlint]\ngpus-per-nodes = 8\n", "unknown key 'gpus-per-nodes' (did you mean 'gpus-per-node'?)"),
    ("[tool.wattlint]\nfoo = 1\n", "[tool.wattlint]: unknown key 'foo'"),
    ("[[tool.wattlint.models]]\nname='m'\nsource='m.onnx'\nbatchsize=3\n",
     "[[tool.wattlint.models]] #1 ('m'): unknown key 'batchsize' (did you mean 'batch-size'?)"),
    ("[[tool.wattlint.models]]\nsource='m.onnx'\nbudget={energy=3}\n", "unknown key 'energy'"),
    ("[tool.wattlint]\npue = 0.5\n", "'pue' = 0.5: expected a PUE in [1, 3]"),
    ("[tool.wattlint]\nprecision = 'fp64'\n", "'precision' = 'fp64': expected one of"),
    ("[tool.wattlint]\nbatch-size = -1\n", "'batch-size' = -1: expected a whole number between 1 and"),
    ("[tool.wattlint]\nselect = ['XX1']\n", "invalid rule selector 'XX1'"),
    ("[tool.wattlint]\nselect = 'WL'\n", "'select' = 'WL': expected a list of non-empty strings"),
    ("[tool.wattlint]\nignore = ['WL999']\n", "selects no rule: 'WL999'"),
    ("[tool.wattlint]\nregression-threshold = 'high'\n", "'regression-threshold' = 'high': expected a number"),
    ("[tool.wattlint]\nbatch-size = 3\nbatch_size = 4\n", "given twice"),
    ("[[tool.wattlint.models]]\nname='m'\n", "missing required key 'source'"),
    ("[[tool.wattlint.models]]\nsource='a.onnx'\n[[tool.wattlint.models]]\nsource='b/a.onnx'\n",
     "duplicate model name 'a'"),
    ("[tool.wattlint.rules.WL999]\nx = 1\n", "unknown rule 'WL999'"),
    ("[tool.wattlint.rules.WL104]\nmin-shares = 0.3\n", "unknown key 'min-shares'"),
    ("[tool.wattlint.rules.WL104]\nseverity = 'fatal'\n", "'severity' = 'fatal'"),
    ("[tool.wattlint\n", "invalid TOML"),
])
def test_bad_config_names_the_problem(tmp_path, text, needle):
    write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("baseline, needle", [("pyproject.toml", "is this configuration file"),
                                               ("m.onnx", "is the source of model 'm'")])
def test_a_baseline_naming_the_configuration_or_a_model_is_refused(tmp_path, baseline, needle):
    """Review: baseline = "pyproject.toml" went on to 'not valid JSON; fix it or delete it', pointing the user at
    deleting their configuration (or model)."""
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    write(tmp_path, f"[tool.wattlint]\nbaseline = '{baseline}'\n[[tool.wattlint.models]]\nname='m'\n"
                    "source='m.onnx'\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert needle in str(e.value) and "name another file" in str(e.value)


def test_missing_model_file(tmp_path):
    write(tmp_path, "[[tool.wattlint.models]]\nname='m'\nsource='nope/m.onnx'\n")
    cfg = load_config(tmp_path)
    with pytest.raises(ConfigError, match="model 'm': source file not found: nope/m.onnx"):
        cfg.check_sources()


def test_rule_options_parsed(tmp_path):
    write(tmp_path, "[tool.wattlint.rules.WL104]\nmin-share = 0.4\nseverity = 'error'\n")
    assert load_config(tmp_path).rule_options == {"WL104": {"min_share": 0.4, "severity": "error"}}


def test_explicit_config_file(tmp_path):
    p = tmp_path / "wattlint.toml"
    p.write_text("gpu = 'h100'\n")
    assert load_config(path=p).defaults == {"gpu": "h100"}
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(path=tmp_path / "missing.toml")


def test_resolve_source(tmp_path):
    root = tmp_path.resolve()
    assert resolve_source("m.onnx", root) == (str(root / "m.onnx"), root / "m.onnx", None)
    assert resolve_source("src/net.py:build", root) == (f"{root / 'src/net.py'}:build", root / "src/net.py", "build")
    assert resolve_source("pkg.mod:Net.build", root) == ("pkg.mod:Net.build", None, "Net.build")


def test_exclude(tmp_path):
    root = tmp_path.resolve()
    assert is_excluded(root / "experiments/x/m.onnx", ("experiments/**",), root)
    assert is_excluded(root / "a/scratch/m.onnx", ("scratch",), root)
    assert is_excluded(root / "a/m_old.onnx", ("*_old.onnx",), root)
    assert not is_excluded(root / "models/m.onnx", ("experiments/**",), root)
    assert Config(root=root, exclude=("models/*.onnx",)).is_excluded(root / "models/m.onnx")


def test_malformed_toml_is_named_as_the_other_config_errors_name_it(tmp_path, monkeypatch):
    """Review: a TOML syntax error named the absolute path ('/tmp/.../pyproject.toml: invalid TOML'), every other
    config error 'pyproject.toml:'."""
    write(tmp_path, "[tool.wattlint\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert str(e.value).startswith("pyproject.toml: invalid TOML: ")


def test_rule_selectors_are_case_insensitive(tmp_path):
    """Review: '# wattlint: noqa: wl101' and --ignore wl101 were accepted, ignore = ["wl101"] in the file refused."""
    write(tmp_path, "[tool.wattlint]\nignore = ['wl101', 'all']\nselect = ['wl']\n[[tool.wattlint.models]]\n"
                    "name='m'\nsource='m.onnx'\nselect = ['wl3']\n")
    cfg = load_config(tmp_path)
    assert tuple(cfg.ignore) == ("WL101", "ALL") and tuple(cfg.select) == ("WL",)
    assert tuple(cfg.models[0].select) == ("WL3",)


def test_a_models_own_choice_replaces_the_top_level_default_given_the_other_way(tmp_path):
    """CONFIG.md: a model's plan option overrides the top-level default. A model giving steps under a top-level
    epochs (or recompute under activation-checkpointing, grad-accum under micro-batch-size, region under
    carbon-intensity) kept both, and the estimate refused 'epochs and steps conflict' or priced the default's
    carbon intensity instead of the model's region."""
    write(tmp_path, """
[tool.wattlint]
epochs = 1
activation-checkpointing = true
micro-batch-size = 4
carbon-intensity = 50

[[tool.wattlint.models]]
source = "m.onnx"
steps = 100
recompute = "selective"
grad-accum = 1
region = "PL"
""")
    (tmp_path / "m.onnx").write_bytes(b"")
    m = load_config(tmp_path).models[0]
    assert m.options == {"steps": 100, "recompute": "selective", "grad_accum": 1, "region": "PL"}


def test_the_command_lines_region_replaces_a_configured_carbon_intensity(tmp_path, monkeypatch, run_cli):
    """--region PL over a configured carbon-intensity = 50: the CO2 is the facility energy x Poland's intensity
    (the same run with --carbon-intensity of that figure is the oracle); it was 50 g/kWh, 13x too low."""
    import json

    write(tmp_path, "[tool.wattlint]\ncarbon-intensity = 50\n")
    monkeypatch.chdir(tmp_path)
    model = str(Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx")
    args = (model, "--gpu", "a100", "--steps", "100", "--format", "json")
    code, out, err = run_cli(*args, "--region", "PL")
    assert code == 0, err
    from wattlint.carbon import grid_intensity

    doc = json.loads(out)
    poland = grid_intensity("PL")[0]  # the data table's figure, not read off the output
    assert poland > 600
    assert doc["total"]["co2_kg"] == pytest.approx(doc["total"]["energy_kwh"] * poland / 1000, rel=1e-5)  # both printed to 6 significant digits
    assert not any("carbon-intensity = 50" in a for a in doc["assumptions"])  # the settings line: what was taken


def test_the_command_line_turns_off_a_flag_the_config_turns_on(tmp_path, monkeypatch, run_cli):
    """'Command-line flags win over the file' held only one way for on/off options: a configured
    sequence-parallel = true could not be turned off. --no-sequence-parallel gives what no setting gives (the oracle:
    the same run in a folder without a config); analyze's --no-activation-checkpointing likewise."""
    import json

    model = str(Path(__file__).resolve().parents[1] / "examples" / "gpt2-tiny.onnx")
    args = (model, "--gpu", "h100", "--gpus", "2", "--tensor-parallel", "2", "--steps", "1000", "--format", "json")
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    monkeypatch.chdir(plain_dir)
    code, out, err = run_cli(*args)
    assert code == 0, err
    plain = json.loads(out)["total"]["energy_kwh"]
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    write(cfg_dir, "[tool.wattlint]\nsequence-parallel = true\nrecompute = \"full\"\n")
    monkeypatch.chdir(cfg_dir)
    on = json.loads(run_cli(*args)[1])["total"]["energy_kwh"]
    assert on != pytest.approx(plain, rel=1e-6)
    code, out, err = run_cli(*args, "--no-sequence-parallel", "--no-activation-checkpointing")
    assert code == 0, err
    assert json.loads(out)["total"]["energy_kwh"] == pytest.approx(plain, rel=1e-9)
    # analyze: a configured full recompute traces the recomputed forward (more backward FLOPs); turned off, the
    # backward is the one traced in the folder without a config
    sys.path.insert(0, str(Path(__file__).parent))
    from _parallel_fixtures import write_gpt_config

    gpt = str(write_gpt_config(tmp_path))
    an = ("analyze", gpt, "--seq-len", "64", "--batch-size", "2", "--format", "json")

    def backward(*extra):
        code, out, err = run_cli(*an, *extra)
        assert code == 0, err
        return json.loads(out)["totals"]["backward"]["flops"]
    recomputed = backward()
    turned_off = backward("--no-activation-checkpointing")
    monkeypatch.chdir(plain_dir)
    assert turned_off == backward() < recomputed


@pytest.mark.parametrize("key, hint", [
    ("energy-kwh = 5", "('energy-kwh' is a budget key: put it in budget = { energy-kwh = ... })"),
    ("gpu-hours = 5", "('gpu-hours' is a budget key"),
    ("output = 'r.json'", "(--output is a command-line option only)"),
    ("compare = ['a100']", "(--compare is a command-line option only)"),
    ("precison = 'bf16'", "(did you mean 'precision'?)"),
])
def test_unknown_keys_get_a_hint_of_the_right_kind(tmp_path, key, hint):
    """'did you mean' matched across units: energy-kwh -> price-per-kwh (then $5/kWh was accepted), gpu-hours ->
    gpu-hour-price, price-per-gpu-hour -> price-per-kwh, output -> goodput, compare -> recompute."""
    write(tmp_path, f"[tool.wattlint]\n{key}\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert hint in str(e.value)


def test_a_price_in_another_unit_gets_no_hint_of_the_kwh_price(tmp_path):
    write(tmp_path, "[tool.wattlint]\nprice-per-gpu-hour = 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert "unknown key 'price-per-gpu-hour'" in str(e.value) and "price-per-kwh" not in str(e.value)


@pytest.mark.parametrize("setting, needles", [
    ('region = "EU"', ("unknown region 'EU'", "(from region = 'EU' in [tool.wattlint] of pyproject.toml)")),
    ('dataset = "imagenet-2k"', ("unknown dataset 'imagenet-2k'", "e.g. dataset = 50000)",
                                 "(from dataset = 'imagenet-2k' in [tool.wattlint] of pyproject.toml)")),
])
def test_a_bad_configured_value_names_the_file_and_key(tmp_path, monkeypatch, run_cli, setting, needles):
    """A value the option's own module refuses ('unknown region') came without the file and key, and the dataset
    error pointed at a --dataset flag the user never typed."""
    write(tmp_path, f"[tool.wattlint]\n{setting}\n")
    monkeypatch.chdir(tmp_path)
    model = str(Path(__file__).resolve().parents[1] / "examples" / "resnet50.onnx")
    code, out, err = run_cli(model, "--gpu", "a100", "--epochs", "1")
    assert code == 2 and out == ""
    for n in needles:
        assert n in err, err
    assert "--dataset" not in err


@pytest.mark.parametrize("key, hint", [
    ("num-gpus = 8", "'gpus'"), ("gradient-accumulation = 4", "'grad-accum'"),
    ("gpu-hours-price = 2", "'gpu-hour-price'"),
])
def test_a_plain_misspelling_still_gets_its_hint(tmp_path, key, hint):
    """Review of the stricter hints: a cutoff of 0.8 dropped the right hint for common spellings; a key naming a
    unit is matched among keys of that unit only."""
    write(tmp_path, f"[tool.wattlint]\n{key}\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert f"(did you mean {hint}?)" in str(e.value)
