"""`wattlint check`: exit codes, budgets, baseline/regressions, path selection, cache, formats, bad config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONNX = ROOT / "examples" / "gpt2-tiny.onnx"

CONFIG = """
[tool.wattlint]
gpu = "a100-sxm4-80gb"
precision = "bf16"
ignore = ["WL402", "WL203"]
exclude = ["experiments/**"]
{extra}

[[tool.wattlint.models]]
name = "lm"
source = "models/lm.onnx"
batch-size = 8
seq-len = 256
tokens = {tokens}
budget = {{ energy-kwh = {budget} }}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    shutil.copy(ONNX, tmp_path / "models" / "lm.onnx")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / ".wattlint-cache"))

    def write(tokens="2e8", budget="1000", extra=""):
        (tmp_path / "pyproject.toml").write_text(CONFIG.format(tokens=tokens, budget=budget, extra=extra))
        return tmp_path

    write()
    return write


def test_clean_model_passes(project, run_cli):
    code, out, err = run_cli("check")
    assert code == 0, out + err
    assert "lm: " in out and "Wh" in out and "on a100-sxm4-80gb" in out
    assert err == ""


def test_text_states_the_factors_behind_co2_and_cost(project, run_cli):
    """Review: the text output printed CO2 and $ (and a CO2 budget failure) without the carbon intensity or price
    they rest on; only --format json listed them."""
    project(extra='region = "FR"\npue = 1.3\nprice-per-kwh = 0.2')
    code, out, err = run_cli("check")
    assert code == 0, out + err
    line = next(ln for ln in out.splitlines() if ln.startswith("assumed: "))
    assert "PUE 1.3" in line and "carbon intensity 56 gCO2e/kWh (France (FRA), year 2023)" in line
    assert "electricity price $0.2/kWh" in line and "(default)" not in line
    project()  # no region, no price: the world average and the default price, said so
    code, out, err = run_cli("check")
    line = next(ln for ln in out.splitlines() if ln.startswith("assumed: "))
    assert "world average" in line and "electricity price $0.13/kWh (default)" in line


def test_budget_exceeded_exits_1(project, run_cli):
    project(budget="0.001")
    code, out, err = run_cli("check")
    assert code == 1
    line = next(ln for ln in out.splitlines() if "WL301" in ln)
    assert line.startswith("pyproject.toml:9: WL301 error: lm: estimated energy ")
    assert "exceeds the budget of" in line


def test_regression_and_update_baseline(project, run_cli, tmp_path):
    code, out, _ = run_cli("check", "--update-baseline")
    assert code == 0 and "updated baseline" in out
    base = json.loads((tmp_path / "wattlint-baseline.json").read_text())
    assert base["schema"] == "wattlint.baseline/1" and base["models"]["lm"]["energy_kwh"] > 0
    assert run_cli("check")[0] == 0
    project(tokens="3e8")  # +50% tokens -> +50% energy
    code, out, _ = run_cli("check")
    assert code == 1
    assert "WL305 error: lm: estimated energy +50% vs baseline" in out
    assert "--update-baseline" in out
    old_kwh = base["models"]["lm"]["energy_kwh"]
    code, out, _ = run_cli("check", "--update-baseline")
    assert code == 0 and "WL305" not in out
    new_kwh = json.loads((tmp_path / "wattlint-baseline.json").read_text())["models"]["lm"]["energy_kwh"]
    # the accepted rise is in the update line, for the reviewer of the baseline commit (review: 'wrote 1 model(s)')
    from wattlint.report.units import pair, percent

    shown = " -> ".join(pair(old_kwh, new_kwh, "energy_kwh"))
    assert f"wrote 1 model(s) (lm); energy lm {shown} (+{percent(new_kwh / old_kwh - 1)})" in out, out
    assert "+50%" in out
    assert run_cli("check")[0] == 0
    # within the threshold: no finding
    project(tokens="3.1e8")
    assert run_cli("check")[0] == 0


def test_regression_threshold_from_config(project, run_cli):
    run_cli("check", "--update-baseline")
    project(tokens="2.2e8", extra="regression-threshold = 0.2")
    assert run_cli("check")[0] == 0
    project(tokens="2.2e8", extra="regression-threshold = 0.05")
    assert run_cli("check")[0] == 1


def test_cache_hit_and_invalidation(project, run_cli, tmp_path):
    code, out, _ = run_cli("check", "--format", "json")
    assert json.loads(out)["models"][0]["cached"] is False
    code, out, _ = run_cli("check", "--format", "json")
    first = json.loads(out)
    assert first["models"][0]["cached"] is True
    assert run_cli("check", "--no-cache", "--format", "json")[1].count('"cached": false') == 1
    project(tokens="4e8")  # options are part of the key
    assert json.loads(run_cli("check", "--format", "json")[1])["models"][0]["cached"] is False
    assert json.loads(run_cli("check", "--format", "json")[1])["models"][0]["cached"] is True
    # a new mtime with the same bytes: re-hashed, same key -> still cached
    os.utime(tmp_path / "models" / "lm.onnx", ns=(1, 1))
    assert json.loads(run_cli("check", "--format", "json")[1])["models"][0]["cached"] is True
    # the content is part of the key: the same graph saved with another doc string is a miss
    import onnx

    m = onnx.load(str(tmp_path / "models" / "lm.onnx"), load_external_data=False)
    m.doc_string = (m.doc_string or "") + " edited"
    onnx.save(m, str(tmp_path / "models" / "lm.onnx"))
    assert json.loads(run_cli("check", "--format", "json")[1])["models"][0]["cached"] is False
    assert (tmp_path / ".wattlint-cache" / ".gitignore").read_text().strip().endswith("*")


def test_update_baseline_says_what_it_wrote_kept_and_removed(project, run_cli, tmp_path):
    """'updated baseline (N model(s))' counted skipped models as written and said nothing of the entries it dropped
    (models no longer configured): an entry disappeared from the baseline without a word."""
    import jsonschema

    run_cli("check", "--update-baseline")
    base = tmp_path / "wattlint-baseline.json"
    doc = json.loads(base.read_text())
    doc["models"]["retired"] = dict(doc["models"]["lm"])  # a model since removed from pyproject.toml
    base.write_text(json.dumps(doc))
    code, out, err = run_cli("check", "--update-baseline")
    assert code == 0, err
    assert (f"updated baseline {base}: wrote 1 model(s) (lm); removed 1 model(s) (retired) (no longer configured)"
            in out), out
    assert "retired" not in json.loads(base.read_text())["models"]
    code, out, _ = run_cli("check", "--update-baseline", "--format", "json")
    d = json.loads(out)
    assert d["baseline_changes"] == {"written": ["lm"], "kept": [], "removed": [], "energy_kwh": {}}
    schema = json.loads((ROOT / "src" / "wattlint" / "schemas" / "check.schema.json").read_text())
    jsonschema.validate(d, schema)


def test_a_read_only_baseline_is_not_replaced(project, run_cli, tmp_path):
    """A write-protected baseline (chmod a-w: someone froze it) was replaced all the same by the atomic rename,
    as --output files were before; now refused, exit 2, file untouched."""
    run_cli("check", "--update-baseline")
    base = tmp_path / "wattlint-baseline.json"
    before = base.read_bytes()
    base.chmod(0o444)
    project(tokens="3e8")
    code, _, err = run_cli("check", "--update-baseline")
    assert code == 2 and "read-only" in err and err.count("\n") == 1
    assert base.read_bytes() == before and not base.stat().st_mode & 0o222


def test_concurrent_baseline_updates_keep_each_others_entries(project, run_cli, tmp_path, monkeypatch):
    """Two --update-baseline runs at once: each read the baseline, merged its models and wrote; the second write
    lost the entries the first one wrote meanwhile. The read-merge-write now holds a lock: here another writer
    holds it and updates model 'other' while this run waits; both updates survive."""
    import threading

    from wattlint.config import load_config
    from wattlint.lint import baseline as B
    from wattlint.lint.check import check

    shutil.copy(tmp_path / "models" / "lm.onnx", tmp_path / "models" / "other.onnx")
    text = (tmp_path / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(text + text[text.index("[[tool.wattlint.models]]"):]
                                             .replace('name = "lm"', 'name = "other"').replace("lm.onnx", "other.onnx"))
    assert run_cli("check", "--update-baseline")[0] == 0
    path = tmp_path / "wattlint-baseline.json"
    waiting = threading.Event()
    real = B.locked

    def announced(p):
        waiting.set()
        return real(p)

    monkeypatch.setattr(B, "locked", announced)
    config = load_config(tmp_path)
    with real(path):  # the other writer
        t = threading.Thread(target=check, args=(config, [tmp_path / "models" / "lm.onnx"]),
                             kwargs={"update_baseline": True, "use_cache": False})
        t.start()
        assert waiting.wait(120)
        t.join(0.5)
        assert t.is_alive()  # blocked on the lock, has not written
        doc = json.loads(path.read_text())
        doc["models"]["other"]["energy_kwh"] = 123.0  # the other writer's update
        path.write_text(B.render_baseline(doc["models"], "test"))
    t.join(120)
    models = json.loads(path.read_text())["models"]
    assert models["other"]["energy_kwh"] == 123.0  # kept: read after the other writer finished
    assert set(models) == {"lm", "other"}


def test_cache_dir_the_user_already_has_gets_no_catch_all_gitignore(project, run_cli, tmp_path, monkeypatch):
    """cache-dir = "." put a '# created by wattlint / *' .gitignore at the project root (the cache directory's own
    .gitignore), after which git ignored every new file of the repository. A directory that existed before gets it
    only in wattlint's v1/ inside."""
    monkeypatch.delenv("WATTLINT_CACHE_DIR")
    project(extra='cache-dir = "."')
    assert run_cli("check")[0] == 0
    assert not (tmp_path / ".gitignore").exists()
    assert (tmp_path / "v1" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert json.loads(run_cli("check", "--format", "json")[1])["models"][0]["cached"] is True  # still a cache


def test_cache_dir_that_is_a_file_is_refused(project, run_cli, tmp_path, monkeypatch):
    """A cache-dir naming a file silently turned the cache off (every write failed and was swallowed)."""
    monkeypatch.delenv("WATTLINT_CACHE_DIR")
    (tmp_path / "notes.txt").write_text("mine\n")
    project(extra='cache-dir = "notes.txt"')
    code, out, err = run_cli("check")
    assert code == 2 and "is a file, not a folder" in err and err.strip().count("\n") == 0
    assert (tmp_path / "notes.txt").read_text() == "mine\n"
    assert run_cli("check", "--no-cache")[0] == 0


def test_baseline_that_is_a_folder_is_named_as_one(project, run_cli, tmp_path):
    """A baseline path naming a folder was reported as 'not valid JSON ... fix it or delete it'."""
    project(extra='baseline = "basedir"')
    (tmp_path / "basedir").mkdir()
    code, out, err = run_cli("check")
    assert code == 2 and "is a folder, not a file" in err and err.strip().count("\n") == 0


def test_cached_run_imports_no_torch_or_onnx(project, tmp_path):
    env = {**os.environ, "WATTLINT_CACHE_DIR": str(tmp_path / ".wattlint-cache")}
    subprocess.run([sys.executable, "-m", "wattlint", "check"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    code = ("import sys; from wattlint.cli import main; rc = main(['check']); "
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'lightgbm', 'numpy', 'wattlint.estimate', "
            "'wattlint.frontends.torch', 'wattlint.hardware') "
            "if m in sys.modules]; print('HEAVY', heavy); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout
    assert "cached" in r.stdout


def test_paths_select_models(project, run_cli, tmp_path):
    (tmp_path / "README.md").write_text("x")
    code, out, _ = run_cli("check", "README.md")
    assert code == 0 and "no configured model matched" in out
    code, out, _ = run_cli("check", "models/lm.onnx")
    assert "lm: " in out
    code, out, _ = run_cli("check", "models")  # a directory
    assert "lm: " in out
    code, out, _ = run_cli("check", "pyproject.toml")  # the config changed: everything
    assert "lm: " in out


def test_force_exclude(project, run_cli, tmp_path):
    (tmp_path / "experiments").mkdir()
    shutil.copy(ONNX, tmp_path / "experiments" / "lm.onnx")
    text = (tmp_path / "pyproject.toml").read_text().replace("models/lm.onnx", "experiments/lm.onnx")
    (tmp_path / "pyproject.toml").write_text(text)
    out = run_cli("check")[1]
    assert "no configured model matched" in out  # excluded when discovered
    assert "note: not checked, matched by exclude: lm" in out  # and said so (it left no trace before)
    out = run_cli("check", "experiments/lm.onnx")[1]
    assert "lm: " in out and "matched by exclude" not in out  # explicit path: checked
    out = run_cli("check", "--force-exclude", "experiments/lm.onnx")[1]
    assert "no configured model matched" in out and "note: not checked, matched by exclude: lm" in out
    # a folder (even the excluded one), '.' or pyproject.toml select as no arguments do: exclusions
    # kept (review: `wattlint check .` checked the excluded experiments and could fail on them)
    for arg in (".", "experiments", "pyproject.toml"):
        out = run_cli("check", arg)[1]
        assert "lm: " not in out and "note: not checked, matched by exclude: lm" in out, (arg, out)


@pytest.mark.parametrize("extra, needle", [
    ("budgett = 3", "unknown key 'budgett' (did you mean 'budget'?)"),
    ("pue = 9", "'pue' = 9: expected a PUE in [1, 3]"),
    ("select = ['WL9']", "selects no rule: 'WL9'"),
])
def test_bad_config_exits_2_with_one_line(project, run_cli, extra, needle):
    project(extra=extra)
    code, out, err = run_cli("check")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err and err.startswith("wattlint: error: ")


def test_missing_model_file_exits_2(project, run_cli, tmp_path):
    (tmp_path / "models" / "lm.onnx").unlink()
    code, out, err = run_cli("check")
    assert code == 2 and err.count("\n") == 1
    assert "model 'lm': source file not found: models/lm.onnx" in err


def test_corrupt_baseline_exits_2_and_is_not_overwritten(project, run_cli, tmp_path):
    (tmp_path / "wattlint-baseline.json").write_text("{not json")
    code, _, err = run_cli("check", "--update-baseline")
    assert code == 2 and "baseline" in err and "not valid JSON" in err
    assert (tmp_path / "wattlint-baseline.json").read_text() == "{not json"


def test_no_config_exits_2(tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("check")
    assert code == 2 and "no [tool.wattlint] configuration found" in err


def test_github_format(project, run_cli):
    project(budget="0.001")
    code, out, _ = run_cli("check", "--format", "github")
    assert code == 1
    lines = out.splitlines()
    assert lines and all(ln.startswith(("::error ", "::warning ", "::notice ")) for ln in lines)
    err = next(ln for ln in lines if "WL301" in ln)
    assert err.startswith("::error file=pyproject.toml,line=9,title=WL301 energy-budget (lm)::lm: estimated energy")


def test_select_ignore_on_command_line(project, run_cli):
    project(budget="0.001")
    assert run_cli("check", "--ignore", "WL301")[0] == 0
    code, out, _ = run_cli("check", "--select", "WL3")
    assert code == 1 and "WL1" not in out
    code, _, err = run_cli("check", "--select", "XX")
    assert code == 2 and "invalid rule selector" in err


def test_rules_and_rule_commands(run_cli):
    code, out, _ = run_cli("rules")
    assert code == 0 and len(out.splitlines()) >= 12 and out.startswith("WL101  fp32-training")
    code, out, _ = run_cli("rule", "WL305")
    assert code == 0 and "Why it matters:" in out and "--update-baseline" in out
    assert run_cli("rule", "fp32-training")[1].startswith("WL101 (fp32-training)")
    code, _, err = run_cli("rule", "WL999")
    assert code == 2 and "unknown rule 'WL999' (the rules are WL1xx, WL2xx, WL3xx, WL4xx)" in err
    code, _, err = run_cli("rule", "WL209")  # a code-shaped miss names its group's codes
    assert code == 2 and "unknown rule 'WL209' (its group has WL201, " in err
    code, _, err = run_cli("rule", "fp32-trainin")
    assert code == 2 and "(did you mean fp32-training?)" in err
    rules = json.loads(run_cli("rules", "--format", "json")[1])
    assert {r["code"] for r in rules} >= {"WL101", "WL201", "WL301", "WL305", "WL401", "WL402"}


def test_rules_doc_is_generated(run_cli):
    code, out, _ = run_cli("rules", "--format", "markdown")
    assert (ROOT / "docs" / "RULES.md").read_text() == out, \
        "docs/RULES.md is stale: wattlint rules --format markdown > docs/RULES.md"


def test_example_project_checks(run_cli, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT / "examples" / "project")
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    # budgets only: the committed baseline legitimately drifts when the estimator improves (WL305 would flag it)
    code, out, err = run_cli("check", "--select", "WL3", "--ignore", "WL305", "--format", "json")
    assert code == 0, out + err
    doc = json.loads(out)
    assert {m["name"] for m in doc["models"]} == {"classifier", "lm", "mlp"}


def test_paths_relative_to_cwd_from_a_subdirectory(project, run_cli, tmp_path, monkeypatch):
    project(budget="0.001")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    code, out, _ = run_cli("check")
    assert code == 1
    assert any(ln.startswith("../pyproject.toml:9: WL301") for ln in out.splitlines()), out


def test_baseline_write_is_atomic(project, run_cli, tmp_path, monkeypatch):
    run_cli("check", "--update-baseline")
    before = (tmp_path / "wattlint-baseline.json").read_text()
    import wattlint.cache as cache

    real_fsync = cache.os.fsync

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(cache.os, "fsync", boom)
    project(tokens="3e8")
    code, _, err = run_cli("check", "--update-baseline")
    assert code == 2 and "cannot write baseline" in err and "disk full" in err and err.count("\n") == 1
    monkeypatch.setattr(cache.os, "fsync", real_fsync)
    assert (tmp_path / "wattlint-baseline.json").read_text() == before  # untouched
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind


def test_torch_source_matched_through_its_imports(tmp_path, monkeypatch, run_cli):
    pytest.importorskip("torch")
    shutil.copytree(ROOT / "examples" / "project" / "models", tmp_path / "models",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "other.py").write_text("X = 1\n")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.wattlint]\nignore = ['WL402']\n\n[[tool.wattlint.models]]\nname = 'mlp'\n"
        "source = 'models/tiny_mlp.py:build'\ninputs = ['x=float32[8192,784]']\nsteps = 100\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / "cache"))
    assert "no configured model matched" in run_cli("check", "other.py")[1]
    code, out, err = run_cli("check", "models/blocks.py")  # imported by tiny_mlp.py
    assert code == 0, err
    assert "mlp: " in out
    # default precision runs the GEMMs in fp32 on an A100: WL101 fires, located at the `def build` line (8) (at a
    # micro-batch of 8192 the GEMMs outlast launching the step's ~30 ops; at 64 the step is launch-bound and
    # bf16 would save nothing)
    assert any(ln.startswith("models/tiny_mlp.py:8: WL101 warning: mlp: ") for ln in out.splitlines()), out


def test_update_baseline_through_a_symbolic_link_updates_its_target(project, run_cli, tmp_path):
    """A baseline shared through a link (wattlint-baseline.json -> shared/baseline.json): the update replaced the
    link by a plain file and left the shared baseline stale. Now the target is updated and the link kept; a link to
    a missing file is refused (exit 2) rather than creating a file wherever it points."""
    run_cli("check", "--update-baseline")
    shared = tmp_path / "shared"
    shared.mkdir()
    (tmp_path / "wattlint-baseline.json").rename(shared / "baseline.json")
    (tmp_path / "wattlint-baseline.json").symlink_to(Path("shared") / "baseline.json")
    project(tokens="3e8")  # 1.5 x the tokens: the energy rises
    old = json.loads((shared / "baseline.json").read_text())["models"]["lm"]["energy_kwh"]
    code, out, err = run_cli("check", "--update-baseline")
    assert code == 0, out + err
    assert (tmp_path / "wattlint-baseline.json").is_symlink()
    new = json.loads((shared / "baseline.json").read_text())["models"]["lm"]["energy_kwh"]
    assert new > old * 1.3  # tokens x 1.5: the steps, and nearly all the energy, x 1.5
    (shared / "baseline.json").unlink()
    code, _, err = run_cli("check", "--update-baseline")
    assert code == 2 and "symbolic link to a missing file" in err and err.count("\n") == 1
    assert not (shared / "baseline.json").exists()
    # a plain check names the dangling link (it said 'no baseline file ... --update-baseline writes it', which the
    # update then refused)
    code, out, err = run_cli("check")
    assert code == 0, err
    assert ("note: baseline wattlint-baseline.json is a symbolic link to a missing file "
            f"({Path('shared') / 'baseline.json'}): energy regressions (WL305) not checked") in out, out
    assert "no baseline file" not in out


def test_json_and_baseline_match_their_schemas(project, run_cli, tmp_path):
    import jsonschema

    schemas = ROOT / "src" / "wattlint" / "schemas"
    project(budget="0.001")
    code, out, _ = run_cli("check", "--format", "json", "--update-baseline")
    doc = json.loads(out)
    jsonschema.validate(doc, json.loads((schemas / "check.schema.json").read_text()))
    assert doc["exit_code"] == code == 1 and doc["counts"]["error"] >= 1
    base = json.loads((tmp_path / "wattlint-baseline.json").read_text())
    jsonschema.validate(base, json.loads((schemas / "baseline.schema.json").read_text()))
    # deterministic: a second update with nothing changed writes byte-identical JSON
    before = (tmp_path / "wattlint-baseline.json").read_bytes()
    run_cli("check", "--update-baseline")
    assert (tmp_path / "wattlint-baseline.json").read_bytes() == before


def test_json_models_carry_their_assumptions(project, run_cli):
    """Every number in an output carries its provenance (DESIGN §3): check's JSON lists each model's assumptions
    (PUE, grid intensity, dataset, energy model), on a fresh run and from the cache alike."""
    project()
    for _ in range(2):  # second run answered from the result cache
        doc = json.loads(run_cli("check", "--format", "json")[1])
        a = doc["models"][0]["assumptions"]
        assert any(x.startswith("PUE") for x in a) and any("carbon intensity" in x for x in a)
        assert any(x.startswith("energy model:") for x in a)
    assert doc["models"][0]["cached"] is True


def test_default_gpu_is_stated(project, run_cli, tmp_path):
    """A model checked without any configured GPU is estimated on the default one, and says so."""
    project()
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text("\n".join(ln for ln in cfg.read_text().splitlines() if not ln.strip().startswith("gpu")) + "\n")
    doc = json.loads(run_cli("check", "--format", "json")[1])
    assert doc["models"][0]["gpu"] == "a100-sxm4-80gb"
    assert any(a.startswith("no gpu configured") for a in doc["models"][0]["assumptions"])


def test_control_characters_in_names_cannot_inject_ci_commands(tmp_path, monkeypatch, run_cli):
    """A model named with a newline + '::error' (or an ONNX node named so) is escaped in text and github output."""
    (tmp_path / "models").mkdir()
    shutil.copy(ONNX, tmp_path / "models" / "lm.onnx")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / ".wattlint-cache"))
    (tmp_path / "pyproject.toml").write_text(
        '[tool.wattlint]\ngpu = "a100"\nprecision = "bf16"\n\n[[tool.wattlint.models]]\n'
        'name = "lm\\n::error file=x::owned"\nsource = "models/lm.onnx"\nbatch-size = 8\nseq-len = 256\n'
        'tokens = 1e6\nbudget = { energy-kwh = 1e-9 }\n')
    for fmt in ("text", "github"):
        code, out, err = run_cli("check", "--format", fmt)
        assert code == 1, err
        assert not any(line.startswith("::error file=x") for line in out.splitlines()), out
        assert "\\x0a::error file=x" in out or "%0A::error file=x" in out


def test_fail_on_and_exit_zero(project, run_cli):
    # the clean project has warnings (WL104 on the toy LM) but no error: exit 0 by default
    code, out, _ = run_cli("check")
    assert code == 0 and " warning: " in out
    assert run_cli("check", "--fail-on", "warning")[0] == 1
    assert run_cli("check", "--fail-on", "info")[0] == 1
    project(budget="0.001")  # an error finding
    assert run_cli("check")[0] == 1
    assert run_cli("check", "--exit-zero")[0] == 0


def test_inline_noqa_on_a_model_entry(project, run_cli, tmp_path):
    project(budget="0.001")
    code, out, _ = run_cli("check")
    assert code == 1 and "WL301" in out and "WL104" in out
    text = (tmp_path / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(text.replace('name = "lm"', 'name = "lm"  # wattlint: noqa: WL301, WL1'))
    code, out, _ = run_cli("check")
    assert code == 0 and "WL301" not in out and "WL104" not in out  # WL1 is a prefix: every graph rule
    (tmp_path / "pyproject.toml").write_text(text.replace('name = "lm"', 'name = "lm"  # wattlint: noqa'))
    code, out, _ = run_cli("check")
    assert code == 0 and "All checks passed." in out  # bare noqa: every rule for this model


def test_noqa_in_an_inline_models_array_covers_its_own_entry_only(project, run_cli, tmp_path):
    """Review: in `models = [ {...}, {...}, {...} ]` a noqa on the last entry's line suppressed the rule for every
    entry before it too (the scan ran to the next table header): a budget error passed the gate (exit 0). Each
    inline table is one line: its own comment, its own findings' line (b shared a's source and pointed at a's)."""
    lines = ['[tool.wattlint]', 'gpu = "a100-sxm4-80gb"', 'select = ["WL301"]', 'models = [',
             '  { name = "a", source = "models/lm.onnx", batch-size = 8, seq-len = 256, tokens = 2e8, '
             'budget = { energy-kwh = 0.001 } },',
             '  { name = "b", source = "models/lm.onnx", batch-size = 8, seq-len = 256, tokens = 1e8, '
             'budget = { energy-kwh = 0.001 } },',
             '  { name = "c", source = "models/lm.onnx", batch-size = 8, seq-len = 256, tokens = 1e8, '
             'budget = { energy-kwh = 0.001 } },  # wattlint: noqa: WL301',
             ']']
    (tmp_path / "pyproject.toml").write_text("\n".join(lines) + "\n")
    code, out, err = run_cli("check")
    assert code == 1, out + err
    assert "pyproject.toml:5: WL301 error: a:" in out and "pyproject.toml:6: WL301 error: b:" in out
    assert " c: estimated" not in out


def test_noqa_in_a_standalone_config_file_entry_applies(project, run_cli, tmp_path):
    """Review: in a --config file of [[models]] tables, a noqa on the entry's line before `source =` was ignored
    silently (the entry was found only as [[tool.wattlint.models]]); findings pointed at the source line."""
    (tmp_path / "wl.toml").write_text('gpu = "a100-sxm4-80gb"\nselect = ["WL301"]\n\n[[models]]\n'
                                      'name = "lm"  # wattlint: noqa: WL301\nsource = "models/lm.onnx"\n'
                                      'batch-size = 8\nseq-len = 256\ntokens = 2e8\n'
                                      'budget = { energy-kwh = 0.001 }\n')
    code, out, err = run_cli("check", "--config", "wl.toml")
    assert code == 0 and "WL301" not in out, out + err
    text = (tmp_path / "wl.toml").read_text().replace("  # wattlint: noqa: WL301", "")
    (tmp_path / "wl.toml").write_text(text)
    code, out, err = run_cli("check", "--config", "wl.toml")
    assert code == 1 and "wl.toml:4: WL301 error: lm:" in out, out + err


def test_noqa_after_an_entrys_sub_table_applies_and_a_stray_one_is_named(project, run_cli, tmp_path):
    """Review: a noqa after the entry's own [tool.wattlint.models.budget] sub-table, or one in [tool.wattlint], did
    nothing, silently."""
    project(budget="0.001")
    base = (tmp_path / "pyproject.toml").read_text().replace("budget = { energy-kwh = 0.001 }\n", "")
    (tmp_path / "pyproject.toml").write_text(base + "\n[tool.wattlint.models.budget]\nenergy-kwh = 0.001  "
                                             "# wattlint: noqa: WL301\n")
    code, out, err = run_cli("check")
    assert code == 0 and "WL301" not in out, out + err  # the sub-table belongs to the entry
    lines = base.splitlines()
    at = lines.index("[tool.wattlint]") + 1
    lines.insert(at, "# wattlint: noqa: WL104")
    (tmp_path / "pyproject.toml").write_text("\n".join(lines) + "\n")
    code, out, err = run_cli("check")
    assert (f"note: pyproject.toml:{at + 1}: noqa comment outside every [[tool.wattlint.models]] entry suppresses "
            "nothing (put it inside the model's entry)") in out, out
    assert "WL104 warning" in out  # still reported: the stray comment suppressed nothing


@pytest.mark.parametrize("comment, says", [
    ("# wattlint: noqa: fp32-training", "names the rule 'fp32-training': write its code (WL101)"),
    ("# wattlint: noqa: WL 101", "'WL' ... placeholder"),
    ("# wattlint: noqa=WL101", "malformed noqa comment"),
    ("# wattlint: noqa WL101", "malformed noqa comment ('noqa WL101')"),  # the space it complains about is kept
    ("# wattlint: noqa: WL10l", "'WL10l' is not a rule code"),
    ("# wattlint: noqa: WL1O1", "'WL1O1' is not a rule code"),
    ("# wattlint: noqa: WL999", "'WL999' selects no rule"),
    ("# wattlint: noqa:", "names no code"),
])
def test_a_malformed_noqa_is_refused_not_read_as_bare(project, run_cli, tmp_path, comment, says):
    """Read loosely, each of these silenced every rule of the model, its failing budget included (exit 0), or a
    whole family (WL10l -> WL10): now exit 2 with the line, before any finding is dropped."""
    project(budget="0.001")
    text = (tmp_path / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(text.replace('name = "lm"', f'name = "lm"  {comment}'))
    code, out, err = run_cli("check")
    assert code == 2 and err.count("\n") == 1 and "pyproject.toml:" in err, (code, out, err)
    if "placeholder" in says:  # 'WL' is a valid prefix (every rule); '101' is not a code
        assert "'101' is not a rule code" in err, err
    else:
        assert says in err, err


def test_a_bare_noqa_may_carry_an_explanation(project, run_cli, tmp_path):
    project(budget="0.001")
    text = (tmp_path / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(
        text.replace('name = "lm"', 'name = "lm"  # wattlint: noqa # legacy model, budget under review'))
    code, out, err = run_cli("check")
    assert code == 0 and "All checks passed." in out, (out, err)


def test_torch_models_are_skipped_with_a_notice_without_torch(tmp_path, monkeypatch, run_cli):
    """The light (ONNX) hook never blocks a commit because the config also lists a PyTorch model."""
    import importlib.util

    (tmp_path / "models").mkdir()
    shutil.copy(ONNX, tmp_path / "models" / "lm.onnx")
    (tmp_path / "models" / "net.py").write_text("import torch\n\ndef build():\n    return torch.nn.Linear(4, 4)\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.wattlint]\ngpu = "a100"\nprecision = "bf16"\n\n[[tool.wattlint.models]]\nname = "lm"\n'
        'source = "models/lm.onnx"\nbatch-size = 8\nseq-len = 256\ntokens = 1e6\n\n[[tool.wattlint.models]]\n'
        'name = "net"\nsource = "models/net.py:build"\ninputs = ["x=float32[8,4]"]\nsteps = 10\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / ".wattlint-cache"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    code, out, err = run_cli("check")
    assert code == 0, err
    assert "net: skipped: needs torch (pip install 'wattlint[torch]'" in out and "lm: " in out
    code, out, _ = run_cli("check", "--format", "json")
    doc = json.loads(out)
    assert [m["skipped"] is not None for m in doc["models"]] == [False, True]


def test_sarif_and_github_findings_carry_the_energy_model(project, run_cli):
    """A finding's numbers (a budget overrun, a saving) come from one energy model: in SARIF and in GitHub
    annotations, where the text summary lines are not shown, each finding must say which (and on which GPU)."""
    import json as _json

    project(budget="0.001")
    code, out, _ = run_cli("check", "--format", "sarif")
    results = _json.loads(out)["runs"][0]["results"]
    assert results and all(r["properties"]["energy_model"] == "public-fit" for r in results)
    assert all(r["properties"]["gpu"] for r in results)
    code, out, _ = run_cli("check", "--format", "github")
    lines = [ln for ln in out.splitlines() if not ln.startswith("::notice title=wattlint::")]  # the check's notes
    assert lines and all("[energy model public-fit on " in ln for ln in lines)


def test_missing_transformers_names_what_this_environment_still_checks(monkeypatch):
    """torch installed, transformers not: a config.json model is skipped with the hf extra named, and the notice does
    not claim that only ONNX models are checked (PyTorch sources still are)."""
    import importlib.util
    from types import SimpleNamespace

    from wattlint.lint.check import missing_extra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    msg = missing_extra(SimpleNamespace(path=Path("models/lm/config.json")))
    assert msg.startswith("skipped: needs transformers (pip install 'wattlint[hf]'")
    assert msg.endswith("checks ONNX models and PyTorch sources, not config.json")
    assert missing_extra(SimpleNamespace(path=Path("models/net.py"))) is None
    assert missing_extra(SimpleNamespace(path=Path("models/net.onnx"))) is None


def test_check_errors_name_config_keys_not_command_line_flags(tmp_path, monkeypatch, run_cli):
    """Under `check` every option comes from [tool.wattlint]: an error names the keys (fuzz review: "--steps and
    --tokens conflict" for two keys of pyproject.toml)."""
    shutil.copy(ONNX, tmp_path / "m.onnx")
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\ngpu = "a100"\nsteps = 10\ntokens = 1e6\n'
                                             'seq-len = 256\n\n[[tool.wattlint.models]]\nname = "m"\n'
                                             'source = "m.onnx"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / ".wattlint-cache"))
    code, _, err = run_cli("check")
    assert code == 2
    assert err.strip() == ("wattlint: error: model 'm' (m.onnx): steps and tokens conflict: give the amount of work "
                           "one way (epochs, steps or tokens)")


def test_as_config_keys_rewrites_option_flags_only():
    from wattlint.options import as_config_keys

    assert as_config_keys("--batch-size 0: pass --seq-len, not --format or --steps-x") == \
        "batch-size 0: pass seq-len, not --format or --steps-x"


# ---- the regression gate says where it did not run; exit codes agree everywhere (review of 2026-12-06) -------------

def test_threshold_zero_passes_an_unchanged_model(project, run_cli, tmp_path):
    """The baseline keeps 6 significant digits; the estimate was compared unrounded, so threshold 0 failed forever
    ('+<0.001 %') and --update-baseline could not fix it."""
    project(extra="regression-threshold = 0")
    assert run_cli("check", "--update-baseline")[0] == 0
    code, out, err = run_cli("check")
    assert code == 0 and "WL305" not in out, out
    project(tokens="2.0002e8", extra="regression-threshold = 0")  # +0.01 %: above 0, kept at 6 digits
    code, out, err = run_cli("check")
    assert code == 1 and "WL305" in out, out


def test_a_missing_baseline_file_is_a_notice(project, run_cli):
    code, out, err = run_cli("check")
    assert code == 0
    assert "note: no baseline file wattlint-baseline.json: energy regressions (WL305) not checked" in out
    doc = json.loads(run_cli("check", "--format", "json")[1])
    assert any("no baseline file" in n for n in doc["notices"])
    run_cli("check", "--update-baseline")
    code, out, err = run_cli("check")
    assert "note:" not in out and json.loads(run_cli("check", "--format", "json")[1])["notices"] == []


def test_a_renamed_model_is_named_as_unchecked(project, run_cli, tmp_path):
    run_cli("check", "--update-baseline")
    text = (tmp_path / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(text.replace('name = "lm"', 'name = "lm-v2"'))
    code, out, err = run_cli("check")
    assert code == 0
    assert "note: lm-v2: no entry in wattlint-baseline.json: energy regression (WL305) not checked" in out
    assert "note: wattlint-baseline.json has entries no configured model has: lm (renamed or removed?" in out


@pytest.mark.parametrize("entry, says", [
    ({}, "no energy_kwh"),
    ({"energy_kwhh": 1.0}, "unknown key 'energy_kwhh' (did you mean 'energy_kwh'?)"),
])
def test_a_baseline_entry_the_gate_cannot_use_is_refused(project, run_cli, tmp_path, entry, says):
    (tmp_path / "wattlint-baseline.json").write_text(json.dumps(
        {"schema": "wattlint.baseline/1", "generator": "hand", "models": {"lm": entry}}))
    before = (tmp_path / "wattlint-baseline.json").read_bytes()
    code, out, err = run_cli("check")
    assert code == 2 and says in err and err.count("\n") == 1, err
    assert (tmp_path / "wattlint-baseline.json").read_bytes() == before


def test_fail_on_and_exit_zero_agree_with_the_json_and_the_text(project, run_cli):
    code, out, _ = run_cli("check", "--fail-on", "warning", "--format", "json")
    assert code == 1 and json.loads(out)["exit_code"] == 1  # was 0 in the JSON
    code, out, _ = run_cli("check", "--fail-on", "warning")
    assert code == 1 and "— failing: warnings or errors exit 1" in out
    project(budget="0.001")
    code, out, _ = run_cli("check", "--exit-zero")
    assert code == 0 and "— not failing: --exit-zero (else errors exit 1)" in out  # said "failing" before
    code, out, _ = run_cli("check", "--exit-zero", "--format", "json")
    assert code == 0 and json.loads(out)["exit_code"] == 0


def test_wl203_candidates_take_gpu_names_as_gpu_does(project, run_cli, tmp_path):
    """candidates were compared as raw database keys: 'l20' or 'L4' selected nothing, an unknown name passed."""
    from wattlint.lint.rule import gpu_list

    assert gpu_list(["l20", "L4", "h100-sxm5-80gb"]) == ("l20-48gb", "l4-24gb", "h100-sxm5-80gb")
    with pytest.raises(ValueError, match="unknown GPU 'nonexistent-gpu'"):
        gpu_list(["nonexistent-gpu"])
    project(extra='[tool.wattlint.rules.WL203]\ncandidates = ["l4", "nonexistent-gpu"]')
    code, out, err = run_cli("check")
    assert code == 2 and "WL203" in err and "unknown GPU 'nonexistent-gpu'" in err, err


def test_annotations_are_relative_to_the_repository_root(project, run_cli, tmp_path, monkeypatch):
    """GitHub resolves annotation and SARIF paths from the repository root: a project in a subfolder of the repo
    (a monorepo's ml/), checked from a folder below it, annotated 'pyproject.toml' or '../pyproject.toml'."""
    project(budget="0.001")  # an error finding on pyproject.toml line 9
    repo = tmp_path.parent / (tmp_path.name + "-repo")
    repo.mkdir()
    (repo / ".git").mkdir()
    ml = repo / "ml"
    shutil.copytree(tmp_path, ml, ignore=shutil.ignore_patterns(".wattlint-cache"))
    monkeypatch.chdir(ml / "models")
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    code, out, _ = run_cli("check", "--format", "github")
    assert code == 1 and "::error file=ml/pyproject.toml,line=9," in out, out
    doc = json.loads(run_cli("check", "--format", "sarif")[1])
    loc = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert loc == {"uri": "ml/pyproject.toml", "uriBaseId": "%SRCROOT%"}
    assert doc["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"] == repo.resolve().as_uri() + "/"
    code, out, _ = run_cli("check")  # the terminal's text keeps the path from the current directory
    assert out.startswith("../pyproject.toml:9: WL301"), out


def test_wl201_advice_skips_what_the_plan_already_does():
    """The advice named --activation-checkpointing, --sharding zero3 and bf16 to a plan that used all three (and
    ZeRO-3 on one GPU shards nothing)."""
    import wattlint

    cfg = str(ROOT / "examples" / "gpt2-small" / "config.json")
    done = wattlint.estimate(cfg, gpu="a100-sxm4-40gb", precision="bf16", batch_size=64, seq_len=1024, steps=10,
                             activation_checkpointing=True, sharding="zero3")
    (msg,) = [f.message for f in done.findings if f.code == "WL201"]
    assert "activation-checkpointing" not in msg and "--precision bf16" not in msg
    assert "more --gpus (--sharding zero3 shards nothing over one data-parallel GPU)" in msg
    plain = wattlint.estimate(cfg, gpu="a100-sxm4-40gb", batch_size=64, seq_len=1024, steps=10)
    (msg,) = [f.message for f in plain.findings if f.code == "WL201"]
    # each is still named; those that alone do not fit (re-run: 59.5 and 98.8 GiB of 40) as such
    assert "--activation-checkpointing alone would still need" in msg and "--sharding zero3 with more --gpus" in msg
    assert "bf16 autocast (--precision bf16) alone would still need" in msg


def test_rule_prefix_lists_what_it_selects(run_cli):
    code, out, err = run_cli("rule", "WL1")
    assert code == 2 and "'WL1' is a prefix of" in err and "WL101" in err and "WL401" not in err, err
    code, out, err = run_cli("rule", "fp32-trainin")
    assert code == 2 and "did you mean fp32-training?" in err


def test_wl103_names_the_root_module_when_attention_is_not_in_a_submodule():
    """A model whose forward computes softmax(QK^T)V itself: the finding said "attention in ''"."""
    import torch

    import wattlint

    class Root(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Linear(64, 192)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            return torch.softmax(q @ k.transpose(-1, -2) / 8.0, dim=-1) @ v

    # (bf16: in fp32 the fused kernel's re-estimate costs more here, and the rule stays silent)
    est = wattlint.estimate(Root(), inputs=["x=float32[4,1024,64]"], gpu="a100", steps=1, precision="bf16")
    msgs = [f.message for f in est.findings if f.code == "WL103"]
    assert msgs and msgs[0].startswith("attention in the root module materializes a 1024x1024"), msgs


def test_gate_notes_only_where_the_gate_applies(project, run_cli, tmp_path):
    """With WL305 ignored (or noqa'd) there is no regression gate to report on; a PATH selection that leaves an
    excluded model out anyway does not name it."""
    text = (tmp_path / "pyproject.toml").read_text()
    (tmp_path / "pyproject.toml").write_text(text.replace('name = "lm"', 'name = "lm"\nignore = ["WL305"]'))
    code, out, err = run_cli("check")
    assert code == 0 and "WL305" not in out and "note:" not in out, (out, err)
    (tmp_path / "pyproject.toml").write_text(text.replace('name = "lm"', 'name = "lm"  # wattlint: noqa: WL305'))
    code, out, err = run_cli("check")
    assert code == 0 and "note:" not in out, out
    (tmp_path / "pyproject.toml").write_text(text + '\n[[tool.wattlint.models]]\nname = "old"\n'
                                             'source = "experiments/lm.onnx"\nsteps = 1\n')
    (tmp_path / "experiments").mkdir()
    shutil.copy(ONNX, tmp_path / "experiments" / "lm.onnx")
    out = run_cli("check", "models/lm.onnx")[1]
    assert "matched by exclude" not in out, out  # the path selected only lm
    out = run_cli("check")[1]
    assert "note: not checked, matched by exclude: old" in out, out


def test_config_without_the_table_or_without_models(tmp_path, monkeypatch, run_cli):
    """Review: `check --config pyproject.toml` naming a file without [tool.wattlint] printed 'no configured model
    matched' and exited 0 (discovery of the same file exits 2); a table without models read like a path filter."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / ".wattlint-cache"))
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    code, out, err = run_cli("check", "--config", "pyproject.toml")
    assert code == 2 and out == ""
    assert err.strip() == "wattlint: error: --config pyproject.toml: no [tool.wattlint] table in it (see docs/CONFIG.md)"
    (tmp_path / "pyproject.toml").write_text('[tool.wattlint]\ngpu = "a100"\n')
    code, out, err = run_cli("check")
    assert code == 0, err
    assert out.strip() == "no models configured: add [[tool.wattlint.models]] entries to pyproject.toml (docs/CONFIG.md)"


def test_wl201_says_when_the_static_memory_alone_exceeds_the_gpu():
    """Review: Llama-2-70B on one H100 (weights, gradients and AdamW state ~1.13 TiB) was told to use
    --activation-checkpointing first, which cannot make it fit. 69 B parameters x (2 bf16 weight casts + 4 fp32
    weights + 4 gradients + 8 Adam moments) ~ 1,156 GiB > 80 GiB: the split is named, activation advice is not."""
    import wattlint

    est = wattlint.estimate(str(ROOT / "examples" / "configs" / "llama2-70b.json"), gpu="h100", steps=1, batch_size=1,
                            seq_len=512, precision="bf16")
    (msg,) = [f.message for f in est.findings if f.code == "WL201"]
    static = sum(v for k, v in est.memory.breakdown.items()
                 if k in ("weights", "weight_casts", "gradients", "optimizer_state", "master_weights")) / 2**30
    assert f"weights, gradients and optimizer state alone take {static:.1f} GiB, so they must be split" in msg
    assert static > 1100 and "activation-checkpointing" not in msg and "micro-batch" not in msg


BROKEN_MODEL = """
[[tool.wattlint.models]]
name = "old-gpu"
source = "models/lm.onnx"
gpu = "v100"
batch-size = 8
seq-len = 256
steps = 10
"""


def test_a_model_that_cannot_be_estimated_does_not_hide_the_others(project, run_cli, tmp_path):
    """Review: one model whose estimate stopped on bad input (here bf16 on a V100, which has no bf16 tensor cores)
    aborted the whole check: no result for the other models, no --output file, and --update-baseline wrote nothing.
    Now the others are checked and reported, the failed one is named with its error (one stderr line, exit 2), and
    its baseline entry is kept as it was."""
    project()
    assert run_cli("check", "--update-baseline")[0] == 0
    base = json.loads((tmp_path / "wattlint-baseline.json").read_text())
    with open(tmp_path / "pyproject.toml", "a") as f:
        f.write(BROKEN_MODEL)
    code, out, err = run_cli("check", "-o", "r.json")
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0] == "wattlint: wrote r.json (json)"
    assert len(lines) == 2 and lines[1].startswith("wattlint: error: model 'old-gpu' (models/lm.onnx): ")
    assert "bf16" in lines[1] and "V100" in lines[1]
    doc = json.loads((tmp_path / "r.json").read_text())
    by = {m["name"]: m for m in doc["models"]}
    assert by["lm"]["error"] is None and by["lm"]["total"]["energy_kwh"] > 0
    assert by["old-gpu"]["error"] == lines[1].removeprefix("wattlint: error: ") and doc["exit_code"] == 2
    from jsonschema import Draft202012Validator

    schema = json.loads((ROOT / "src/wattlint/schemas/check.schema.json").read_text())
    Draft202012Validator(schema).validate(doc)
    code, out, err = run_cli("check", "--exit-zero")  # the model was not checked: --exit-zero does not hide that
    assert code == 2 and "old-gpu: not checked: model 'old-gpu'" in out and "All checks passed" not in out
    assert out.rstrip().endswith("1 model(s) could not be estimated (input errors above): exit 2")
    code, out, err = run_cli("check", "--format", "github")
    ann = [ln for ln in out.splitlines() if "old-gpu" in ln]
    assert len(ann) == 1 and ann[0].startswith("::error file=pyproject.toml,line=17,title=not checked (old-gpu)::")
    code, out, err = run_cli("check", "--format", "sarif")
    inv = json.loads(out)["runs"][0]["invocations"][0]
    assert inv["executionSuccessful"] is False
    note = inv["toolExecutionNotifications"][0]
    assert note["locations"][0]["physicalLocation"]["region"]["startLine"] == 17
    code, out, err = run_cli("check", "--update-baseline")
    assert code == 2
    assert json.loads((tmp_path / "wattlint-baseline.json").read_text())["models"] == base["models"]


def test_a_hash_inside_a_toml_string_is_not_a_noqa_comment(project, run_cli, tmp_path):
    """Review: the noqa scanner read raw lines, so a string value holding '# wattlint: noqa: WL3' (valid TOML) was
    refused as a malformed noqa (exit 2), and a noqa line inside a multi-line string would have suppressed rules.
    Only comments count; the real comment after the string still does."""
    project(budget="0.0001")  # WL301 fires
    text = (tmp_path / "pyproject.toml").read_text()
    quoted = text.replace('name = "lm"', 'name = "lm # wattlint: noqa: WL3"')
    (tmp_path / "pyproject.toml").write_text(quoted)
    code, out, err = run_cli("check")
    assert code == 1 and "WL301" in out, out + err  # not suppressed, not refused
    multi = '[project]\ndescription = """\n# wattlint: noqa\n"""\n' + text  # no stray-noqa notice either
    (tmp_path / "pyproject.toml").write_text(multi)
    code, out, err = run_cli("check")
    assert code == 1 and "WL301" in out and "suppresses nothing" not in out, out + err
    real = text.replace('name = "lm"', 'name = "lm"  # wattlint: noqa: WL301')
    (tmp_path / "pyproject.toml").write_text(real)
    code, out, err = run_cli("check")
    assert code == 0 and "WL301" not in out, out + err
