"""wattlint.cache: model content (project imports), memoized hashing, atomic writes, corrupt entries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _models_fixtures import stand_in_model

from wattlint.cache import HashMemo, ResultCache, find_module_file, project_imports
from wattlint.io import atomic_write_text
from wattlint.config import parse_config

ROOT_DIR = Path(__file__).resolve().parents[1]
H200_MODEL = ROOT_DIR / "src" / "wattlint" / "models" / "h200-sxm-141gb"


def _tree(root: Path):
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "sub" / "__init__.py").write_text("")
    (root / "pkg" / "net.py").write_text("import torch\nimport os\nfrom pkg.layers import Block\n"
                                         "from .sub import util\ndef build():\n    return Block()\n")
    (root / "pkg" / "layers.py").write_text("from . import consts\nclass Block: pass\n")
    (root / "pkg" / "consts.py").write_text("X = 1\n")
    (root / "pkg" / "sub" / "util.py").write_text("Y = 2\n")
    (root / "pkg" / "unused.py").write_text("Z = 3\n")


def test_project_imports_follow_absolute_and_relative_imports(tmp_path):
    _tree(tmp_path)
    files = {p.relative_to(tmp_path).as_posix() for p in project_imports(tmp_path / "pkg" / "net.py", tmp_path)}
    assert files == {"pkg/net.py", "pkg/layers.py", "pkg/consts.py", "pkg/__init__.py", "pkg/sub/__init__.py",
                     "pkg/sub/util.py"}
    assert find_module_file("pkg.net", [tmp_path]) == tmp_path / "pkg" / "net.py"
    assert find_module_file("torch", [tmp_path]) is None  # installed packages are covered by versions


def _config(tmp_path, source="pkg/net.py:build", **top):
    return parse_config({**top, "models": [{"name": "m", "source": source, "batch-size": 8}]}, root=tmp_path)


def test_key_changes_with_imported_file_options_and_rules(tmp_path):
    _tree(tmp_path)
    cache = ResultCache(tmp_path / "c")
    cfg = _config(tmp_path)
    k1, files = cache.key(cfg.models[0], cfg)
    assert "pkg/layers.py" in files
    assert cache.key(cfg.models[0], cfg)[0] == k1  # stable
    (tmp_path / "pkg" / "unused.py").write_text("Z = 4\n")
    assert cache.key(cfg.models[0], cfg)[0] == k1  # not imported: no effect
    (tmp_path / "pkg" / "consts.py").write_text("X = 2\n")
    k2 = cache.key(cfg.models[0], cfg)[0]
    assert k2 != k1  # a transitively imported file changed
    cfg2 = parse_config({"models": [{"name": "m", "source": "pkg/net.py:build", "batch-size": 16}]}, root=tmp_path)
    assert cache.key(cfg2.models[0], cfg2)[0] != k2
    cfg3 = _config(tmp_path, ignore=["WL104"])
    assert cache.key(cfg3.models[0], cfg3)[0] != k2
    # budgets and the baseline are not part of the key (totals-only rules re-run on every check)
    cfg4 = parse_config({"baseline": "other.json", "regression-threshold": 0.2,
                         "models": [{"name": "m", "source": "pkg/net.py:build", "batch-size": 8,
                                     "budget": {"energy-kwh": 1}}]}, root=tmp_path)
    assert cache.key(cfg4.models[0], cfg4)[0] == k2


def test_module_spec_source_is_hashed(tmp_path):
    _tree(tmp_path)
    cache = ResultCache(tmp_path / "c")
    cfg = _config(tmp_path, source="pkg.net:build")
    key, files = cache.key(cfg.models[0], cfg)
    assert "pkg/net.py" in files and "pkg/consts.py" in files


def test_hash_memo_reuses_digest_until_file_changes(tmp_path, monkeypatch):
    f = tmp_path / "m.onnx"
    f.write_bytes(b"abc")
    memo = HashMemo(tmp_path / "hashes.json")
    d = memo.digest(f)
    memo.save()
    memo2 = HashMemo(tmp_path / "hashes.json")
    monkeypatch.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-hashed")))
    assert memo2.digest(f) == d
    monkeypatch.undo()
    f.write_bytes(b"abcd")
    assert memo2.digest(f) != d


def test_corrupt_or_foreign_entries_are_misses(tmp_path):
    cache = ResultCache(tmp_path / "c")
    cache.put("k", {"summary": {"total": {}}, "findings": []})
    assert cache.get("k")["summary"] == {"total": {}}
    (tmp_path / "c" / "v1" / "k.json").write_text("{trunc")
    assert cache.get("k") is None
    (tmp_path / "c" / "v1" / "k.json").write_text(json.dumps({"schema": "other", "key": "k"}))
    assert cache.get("k") is None
    assert (tmp_path / "c" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert ResultCache(tmp_path / "d", enabled=False).get("k") is None


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "f.json"
    atomic_write_text(p, "old")
    import wattlint.cache as c

    monkeypatch.setattr(c.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        atomic_write_text(p, "new")
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]


def test_installed_module_source_keys_on_its_version(tmp_path, monkeypatch):
    import wattlint.cache as c

    cache = ResultCache(tmp_path / "c")
    cfg = _config(tmp_path, source="somepkg.models:build")
    monkeypatch.setitem(c._VERSION_MEMO, "somepkg", "1.0")
    k1 = cache.key(cfg.models[0], cfg)[0]
    monkeypatch.setitem(c._VERSION_MEMO, "somepkg", "2.0")
    assert cache.key(cfg.models[0], cfg)[0] != k1


def _project_with_models_dir(tmp_path, monkeypatch, pyproject: str):
    """A project with resnet50.onnx as m.onnx and ``pyproject``, an empty $WATTLINT_MODELS_DIR and user models
    folder, the working directory in the project: (project folder, models folder)."""
    from wattlint.energy import predictor as pred_mod

    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(ROOT_DIR / "examples" / "resnet50.onnx", proj / "m.onnx")
    (proj / "pyproject.toml").write_text(pyproject)
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("WATTLINT_MODELS_DIR", str(models))
    monkeypatch.setattr(pred_mod, "user_models_dir", lambda: tmp_path / "user-models")
    monkeypatch.chdir(proj)
    return proj, models


def test_a_new_fitted_model_on_the_search_path_invalidates_cached_results(tmp_path, monkeypatch, run_cli):
    """`wattlint fit` writes to the user's models folder (or $WATTLINT_MODELS_DIR / models-dir): the next check must
    price with it, not return the cached public-fit result (stale numbers labelled with a stale provenance)."""
    proj, models = _project_with_models_dir(tmp_path, monkeypatch, '[tool.wattlint]\ngpu = "a100-sxm4-80gb"\n\n'
                                            '[[tool.wattlint.models]]\nname = "m"\nsource = "m.onnx"\nsteps = 100\n')

    def summary():
        code, out, _ = run_cli("check", "--format", "json")
        assert code == 0
        return json.loads(out)["models"][0]

    first = summary()
    assert first["cached"] is False and first["calibration"] == "public-fit"
    assert summary()["cached"] is True  # unchanged: a hit
    # a calibration for this GPU appears on the search path (the shipped H200 model stands in for a fitted one)
    stand_in_model(models / "a100-sxm4-80gb")
    after = summary()
    assert after["cached"] is False and after["calibration"] == "measured"
    assert summary()["cached"] is True


def test_a_regression_that_follows_an_energy_model_change_says_so(tmp_path, monkeypatch, run_cli):
    """The baseline was priced by the public fit; a calibration for the GPU appears on the search path and the
    estimate moves. WL305 must say the energy model changed (baseline public-fit, now measured), as it already does
    for a GPU change, so nobody hunts for a model change that is not there."""
    proj, models = _project_with_models_dir(tmp_path, monkeypatch, '[tool.wattlint]\ngpu = "a100-sxm4-80gb"\n'
                                            'baseline = "b.json"\n\n[[tool.wattlint.models]]\nname = "m"\n'
                                            'source = "m.onnx"\nsteps = 1000\n')
    assert run_cli("check", "--update-baseline")[0] == 0
    base = json.loads((proj / "b.json").read_text())
    assert base["models"]["m"]["calibration"] == "public-fit"
    # the baseline's numbers as an older, cheaper estimate would have left them (70 %): how far the stand-in
    # calibration moves this run is incidental, the regression is what the test needs
    for k in ("energy_kwh", "gpu_energy_kwh", "co2_kg", "cost_usd", "time_h", "gpu_hours"):
        base["models"]["m"][k] *= 0.7
    (proj / "b.json").write_text(json.dumps(base))
    stand_in_model(models / "a100-sxm4-80gb")
    code, out, _ = run_cli("check", "--format", "json")
    doc = json.loads(out)
    m = doc["models"][0]
    assert m["calibration"] == "measured"
    wl305 = [f for f in m["findings"] if f["code"] == "WL305"]
    assert len(wl305) == 1 and "energy model changed: baseline public-fit, now measured" in wl305[0]["message"]


def test_check_models_dir_is_searched_before_the_configs_not_instead(tmp_path, monkeypatch, run_cli):
    """Review: `check --models-dir B` replaced the config's models-dir A (and labelled B as the config key), where
    `wattlint MODEL --models-dir B` searches B, then A; a missing B was reported once per model."""
    proj, models = _project_with_models_dir(tmp_path, monkeypatch, '[tool.wattlint]\ngpu = "a100-sxm4-80gb"\n'
                                            'models-dir = "mA"\n\n[[tool.wattlint.models]]\nname = "m"\n'
                                            'source = "m.onnx"\nsteps = 100\n')
    (proj / "mA").mkdir()
    (proj / "mB").mkdir()
    stand_in_model(proj / "mA" / "a100-sxm4-80gb")  # the config's folder holds the calibration
    code, out, err = run_cli("check", "--format", "json", "--models-dir", "mB")
    assert code == 0, err
    m = json.loads(out)["models"][0]
    assert m["calibration"] == "measured"  # found in mA, still searched after mB
    code, out, err = run_cli("check", "--models-dir", "nowhere")
    assert code == 2 and err.strip().splitlines() == [
        "wattlint: error: --models-dir nowhere: not a folder (fitted energy models are looked up in <folder>/<gpu-key>/)"]


def test_an_absolute_import_brings_its_packages_init(tmp_path):
    """Review: `from models.blocks import X` runs models/__init__.py, which the key left out (editing it kept the
    model cached)."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("WIDTH = 8\n")
    (tmp_path / "models" / "blocks.py").write_text("class Block: pass\n")
    (tmp_path / "net.py").write_text("from models.blocks import Block\n")
    files = {p.relative_to(tmp_path).as_posix() for p in project_imports(tmp_path / "net.py", tmp_path)}
    assert files == {"net.py", "models/__init__.py", "models/blocks.py"}


def test_a_models_folder_linked_in_from_elsewhere_is_fingerprinted_through_the_link(tmp_path):
    """models/<gpu> as a symbolic link to the real model folder (the README's own layout links models/): editing
    the linked card left the fingerprint, hence cached check results, unchanged. A link back up the tree is walked
    once, not forever."""
    import os

    from wattlint.cache import models_fingerprint

    real = tmp_path / "elsewhere" / "h100-sxm5-80gb"
    real.mkdir(parents=True)
    (real / "card.json").write_text('{"schema": "x"}')
    models = tmp_path / "models"
    models.mkdir()
    os.symlink(real, models / "h100-sxm5-80gb")
    os.symlink(models, models / "loop")  # a link to an ancestor
    before = models_fingerprint([models])
    (real / "card.json").write_text('{"schema": "y", "edited": true}')
    assert models_fingerprint([models]) != before


@pytest.mark.parametrize("command", [("examples/resnet50.onnx", "--gpu", "a100", "--steps", "1"), ("check",)])
def test_a_models_dir_environment_variable_that_is_no_folder_is_refused_like_the_option(tmp_path, monkeypatch,
                                                                                        run_cli, command):
    """WATTLINT_MODELS_DIR at a file or a missing path was searched silently (the calibration the user meant to use
    never found); --models-dir and the config key already exit 2 on it."""
    a_file = tmp_path / "models.txt"
    a_file.write_text("not a folder")
    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copy(ROOT_DIR / "examples" / "resnet50.onnx", proj / "m.onnx")
    (proj / "pyproject.toml").write_text('[tool.wattlint]\ngpu = "a100"\n\n[[tool.wattlint.models]]\nname = "m"\n'
                                         'source = "m.onnx"\nsteps = 100\n')
    for where in (a_file, tmp_path / "missing"):
        monkeypatch.setenv("WATTLINT_MODELS_DIR", str(where))
        monkeypatch.chdir(ROOT_DIR if command[0] != "check" else proj)
        code, out, err = run_cli(*command)
        assert code == 2 and err.strip().splitlines() == [
            f"wattlint: error: WATTLINT_MODELS_DIR {where}: not a folder (fitted energy models are looked up in "
            f"<folder>/<gpu-key>/)"], err


def test_file_source_keys_on_the_versions_of_the_installed_packages_it_imports(tmp_path, monkeypatch):
    """A project file importing an installed package (timm, transformers) keyed only on torch's version: upgrading the
    package served the old result (walk s48/s49). Its distribution's version is now part of the key."""
    import wattlint.cache as c

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "net.py").write_text("import somedep.layers\nimport json\n\n\ndef build():\n    return None\n")
    monkeypatch.setattr(c, "_DISTS_OF", {"somedep": ["somedep-dist"], "torch": ["torch"]})
    cache = ResultCache(tmp_path / "c")
    cfg = _config(tmp_path)
    monkeypatch.setitem(c._VERSION_MEMO, "somedep-dist", "1.0")
    k1 = cache.key(cfg.models[0], cfg)[0]
    assert cache.key(cfg.models[0], cfg)[0] == k1
    monkeypatch.setitem(c._VERSION_MEMO, "somedep-dist", "2.0")
    assert cache.key(cfg.models[0], cfg)[0] != k1
    deps = c.dependencies(tmp_path / "pkg" / "net.py", tmp_path, source_dir=tmp_path / "pkg")
    assert deps.external == ["json", "somedep"]  # the standard library's json has no distribution: not keyed
    assert c.imported_distributions(deps.external) == {"somedep": ["somedep-dist"]}
