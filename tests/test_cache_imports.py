"""wattlint.cache: the files a PyTorch source imports (the check cache's key and the pre-commit hook's selection).

Review: a factory's `importlib.import_module("pkg.dyn")` was not followed (editing pkg/dyn.py kept the old figure,
"(cached)"); the folder of a source outside the project was not followed (`../shared/net.py:build` importing its
sibling `blocks`); a model whose imports only running it can tell (a computed module name, exec of code read at run
time, a computed sys.path folder) was cached all the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wattlint.cache import ResultCache, model_files, project_imports
from wattlint.config import parse_config


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def _config(root: Path, source: str):
    return parse_config({"models": [{"name": "m", "source": source, "batch-size": 8}]}, root=root)


def _rel(files, root: Path) -> set[str]:
    return {Path(f).resolve().relative_to(root.resolve()).as_posix() for f in files}


def _key(root: Path, source: str) -> str:
    cfg = _config(root, source)
    return ResultCache(root / ".c").key(cfg.models[0], cfg)[0]


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


DYNAMIC_LITERAL = {
    "import_module": "import importlib\ndef build():\n    return importlib.import_module('pkg.dyn').HID\n",
    "alias": "from importlib import import_module as im\ndef build():\n    return im('pkg.dyn').HID\n",
    "dunder": "def build():\n    return __import__('pkg.dyn').dyn.HID\n",
    "fromlist": "def build():\n    return __import__('pkg', fromlist=['dyn']).dyn.HID\n",
    "constant": "import importlib\nNAME = 'pkg' + '.dyn'\ndef build():\n    return importlib.import_module(NAME).HID\n",
    "spec_file": ("import importlib.util, os\nHERE = os.path.dirname(os.path.abspath(__file__))\n"
                  "def build():\n    s = importlib.util.spec_from_file_location('d', os.path.join(HERE, 'pkg', 'dyn.py'))\n"
                  "    m = importlib.util.module_from_spec(s)\n    s.loader.exec_module(m)\n    return m.HID\n"),
    "run_path": ("import runpy\nfrom pathlib import Path\ndef build():\n"
                 "    return runpy.run_path(str(Path(__file__).resolve().parent / 'pkg' / 'dyn.py'))['HID']\n"),
    "run_module": "import runpy\ndef build():\n    return runpy.run_module('pkg.dyn')['HID']\n",
    "exec_literal": "def build():\n    exec('from pkg.dyn import HID')\n",
}


@pytest.mark.parametrize("case", sorted(DYNAMIC_LITERAL))
def test_a_module_imported_by_a_literal_name_or_path_is_part_of_the_key(project, case):
    _write(project, {"pkg/__init__.py": "", "pkg/dyn.py": "HID = 4096\n", "net.py": DYNAMIC_LITERAL[case]})
    cfg = _config(project, "net.py:build")
    assert "pkg/dyn.py" in _rel(model_files(cfg.models[0], project), project)
    k1 = _key(project, "net.py:build")
    (project / "pkg" / "dyn.py").write_text("HID = 8192\n")
    assert _key(project, "net.py:build") != k1


def test_a_relative_import_module_call_is_followed(project):
    _write(project, {"pkg/__init__.py": "", "pkg/dyn.py": "HID = 1\n",
                     "pkg/net.py": "import importlib\ndef build():\n"
                                   "    return importlib.import_module('.dyn', __package__).HID\n"})
    cfg = _config(project, "pkg.net:build")
    assert _rel(model_files(cfg.models[0], project), project) == {"pkg/__init__.py", "pkg/net.py", "pkg/dyn.py"}


DYNAMIC_UNKNOWN = {
    "computed_name": "import importlib, os\ndef build():\n    return importlib.import_module(os.environ['M']).HID\n",
    "computed_dunder": "import sys\ndef build():\n    return __import__(sys.argv[1]).HID\n",
    "exec_read": "def build():\n    exec(open('code.txt').read())\n",
    "sys_path": "import os, sys\nsys.path.insert(0, os.environ['LIB'])\nimport blocks\n",
    "spec_computed": ("import importlib.util, sys\ndef build():\n"
                     "    return importlib.util.spec_from_file_location('x', sys.argv[1])\n"),
    "hub": "import torch\ndef build():\n    return torch.hub.load('org/repo', 'net')\n",
}


@pytest.mark.parametrize("case", sorted(DYNAMIC_UNKNOWN))
def test_a_model_whose_imports_are_known_only_when_it_runs_is_never_cached(project, case):
    _write(project, {"pkg/__init__.py": "", "pkg/dyn.py": "HID = 1\n", "other.py": "",
                     "net.py": DYNAMIC_UNKNOWN[case]})
    cfg = _config(project, "net.py:build")
    cache = ResultCache(project / ".c")
    key, _ = cache.key(cfg.models[0], cfg)
    cache.put(key, {"summary": {"total": {}}, "findings": []})
    assert cache.get(key) is None
    assert not (project / ".c" / "v1" / f"{key}.json").exists()
    assert cache.uncacheable[key]  # says why
    # the pre-commit hook's selection: any Python file of the project may be what the model runs
    assert {"pkg/dyn.py", "other.py", "net.py"} <= _rel(model_files(cfg.models[0], project), project)


def test_a_dynamic_model_is_estimated_on_every_check(project, monkeypatch):
    """Through `check`: a model importing a computed name is re-estimated each run; one importing a literal name
    is cached until the imported file changes."""
    import wattlint.lint.check as chk

    _write(project, {"pkg/__init__.py": "", "pkg/dyn.py": "HID = 1\n",
                     "lit.py": "import importlib\ndef build():\n    return importlib.import_module('pkg.dyn')\n",
                     "dyn.py": "import importlib, os\ndef build():\n    return importlib.import_module(os.environ['M'])\n"})
    cfg = parse_config({"models": [{"name": "lit", "source": "lit.py:build", "batch-size": 8},
                                   {"name": "dyn", "source": "dyn.py:build", "batch-size": 8}]}, root=project)
    runs: list[str] = []

    def fake_estimate(m, config):  # a summary as a cache entry holds it (lint.check._usable_hit)
        runs.append(m.name)
        return {"gpu": "a100-sxm4-80gb", "total": {"energy_kwh": 1.0}, "per_step": {}, "plan": {}, "assumptions": [],
                "memory": {"fits": True, "peak_bytes_per_gpu": 1, "gpu_memory_bytes": 2}}, []

    monkeypatch.setattr(chk, "estimate_model", fake_estimate)
    monkeypatch.setattr(chk, "missing_extra", lambda m: None)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(project / ".wattlint-cache"))
    for _ in range(2):
        chk.check(cfg, [])
    assert runs == ["lit", "dyn", "dyn"]
    (project / "pkg" / "dyn.py").write_text("HID = 2\n")
    chk.check(cfg, [])
    assert runs == ["lit", "dyn", "dyn", "lit", "dyn"]


def test_a_source_outside_the_project_keys_on_its_own_folders_imports(tmp_path, monkeypatch):
    root = tmp_path / "proj"
    _write(tmp_path, {"proj/pyproject.toml": "", "shared/net.py": "from blocks import blk\ndef build(): pass\n",
                      "shared/blocks.py": "def blk(w): return [w] * 2\n"})
    monkeypatch.chdir(root)
    cfg = _config(root, "../shared/net.py:build")
    files = {Path(f) for f in model_files(cfg.models[0], root)}
    assert (tmp_path / "shared" / "blocks.py").resolve() in files
    k1 = _key(root, "../shared/net.py:build")
    (tmp_path / "shared" / "blocks.py").write_text("def blk(w): return [w] * 20\n")
    assert _key(root, "../shared/net.py:build") != k1
    # the pre-commit hook (`wattlint check --force-exclude <staged files>`) selects the model for blocks.py
    from wattlint.lint.check import select_models

    assert [m.name for m in select_models(cfg, [tmp_path / "shared" / "blocks.py"], True)] == ["m"]


def test_the_module_the_source_folder_shadows_is_the_one_tracked_too(project):
    """`models/net.py:build` runs with models/ first on sys.path: its `import blocks` is models/blocks.py, not the
    project root's blocks.py (both are kept: either may be the one run)."""
    _write(project, {"blocks.py": "D = 1\n", "models/blocks.py": "D = 2\n",
                     "models/net.py": "import blocks\ndef build(): pass\n"})
    assert _rel(project_imports(project / "models" / "net.py", project), project) == {
        "models/net.py", "models/blocks.py", "blocks.py"}


def test_a_folder_the_code_puts_on_sys_path_is_followed(project):
    _write(project, {"vendor/lib.py": "W = 1\n",
                     "net.py": "import sys\nfrom pathlib import Path\n"
                               "sys.path.insert(0, str(Path(__file__).resolve().parent / 'vendor'))\n"
                               "def build():\n    import lib\n    return lib.W\n"})
    cfg = _config(project, "net.py:build")
    assert _rel(model_files(cfg.models[0], project), project) == {"net.py", "vendor/lib.py"}  # all known: cached
    k1 = _key(project, "net.py:build")
    (project / "vendor" / "lib.py").write_text("W = 2\n")
    assert _key(project, "net.py:build") != k1


def test_relative_imports_bring_every_package_on_the_way(project):
    _write(project, {"pkg/__init__.py": "", "pkg/a/__init__.py": "X = 1\n", "pkg/a/b/__init__.py": "",
                     "pkg/a/b/c.py": "", "pkg/y/__init__.py": "", "pkg/y/z.py": "",
                     "pkg/sub/__init__.py": "", "pkg/sub/m.py": "from ..y import z\n",
                     "pkg/net.py": "try:\n    from .a.b import c\nexcept ImportError:\n    c = None\n"
                                   "def build():\n    from .sub import m\n"})
    files = _rel(project_imports(project / "pkg" / "net.py", project), project)
    assert {"pkg/a/__init__.py", "pkg/a/b/__init__.py", "pkg/a/b/c.py", "pkg/sub/__init__.py", "pkg/sub/m.py",
            "pkg/y/__init__.py", "pkg/y/z.py"} <= files


def test_a_module_source_runs_its_packages_init_files(project):
    _write(project, {"pkg/__init__.py": "WIDTH = 8\n", "pkg/sub/__init__.py": "", "pkg/sub/net.py": "def build(): pass\n"})
    cfg = _config(project, "pkg.sub.net:build")
    assert _rel(model_files(cfg.models[0], project), project) == {"pkg/__init__.py", "pkg/sub/__init__.py",
                                                                  "pkg/sub/net.py"}
    k1 = _key(project, "pkg.sub.net:build")
    (project / "pkg" / "__init__.py").write_text("WIDTH = 16\n")
    assert _key(project, "pkg.sub.net:build") != k1


def test_a_file_linked_into_a_package_imports_from_that_package(project, tmp_path_factory):
    """`from . import blocks` in pkg/net.py, a link to a file elsewhere, runs pkg/blocks.py (the package it was
    imported from), not a blocks.py beside the link's target."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    _write(elsewhere, {"net.py": "from . import blocks\ndef build(): pass\n", "blocks.py": "D = 1\n"})
    _write(project, {"pkg/__init__.py": "", "pkg/blocks.py": "D = 2\n"})
    (project / "pkg" / "net.py").symlink_to(elsewhere / "net.py")
    cfg = _config(project, "pkg.net:build")
    files = {Path(f) for f in model_files(cfg.models[0], project)}
    assert (project / "pkg" / "blocks.py").resolve() in files and (elsewhere / "net.py").resolve() in files


# ---- installed code outside site-packages (review B) ---------------------------------------------------------------
# A third-party package reached through the interpreter's start-up sys.path (PYTHONPATH, a .pth file, `pip install -e
# ../transformers`, a source-built torch) was walked as project code: 2,547 transformers files read on every check,
# and their own computed imports made a plain `AutoModelForCausalLM.from_config` model uncacheable (11.5 s a run).

EXTLIB = {"extlib/__init__.py": "import importlib, os\nfrom . import core\n"
                                "def load(n):\n    return importlib.import_module(os.environ.get('M', n))\n",
          "extlib/core.py": "import pydoc\ndef f(n):\n    return pydoc.locate(n)\n"}


@pytest.fixture
def vendor(tmp_path_factory, monkeypatch):
    """A folder outside the project on the interpreter's start-up sys.path holding a package with dynamic imports."""
    import wattlint.cache as cache_mod

    d = tmp_path_factory.mktemp("vendor")
    _write(d, EXTLIB)
    monkeypatch.setattr(cache_mod, "_START_PATH", (str(d), *cache_mod._START_PATH))
    return d


def test_a_package_on_the_start_up_sys_path_outside_the_project_is_an_installed_dependency(project, vendor):
    _write(project, {"blocks.py": "W = 1\n",
                     "net.py": "import extlib\nfrom extlib import core\nimport blocks\ndef build(): pass\n"})
    cfg = _config(project, "net.py:build")
    assert _rel(model_files(cfg.models[0], project), project) == {"net.py", "blocks.py"}  # no vendor file walked
    cache = ResultCache(project / ".c")
    key, files = cache.key(cfg.models[0], cfg)
    assert not cache.uncacheable and files == ["blocks.py", "net.py"]  # extlib's own dynamic imports don't count
    cache.put(key, {"summary": {"total": {}}, "findings": []})
    assert cache.get(key) is not None
    (vendor / "extlib" / "core.py").write_text("X = 2\n")  # not hashed file by file
    assert _key(project, "net.py:build") == key
    (project / "blocks.py").write_text("W = 2\n")
    assert _key(project, "net.py:build") != key


def test_a_module_source_found_only_on_the_start_up_sys_path_is_not_project_code(project, vendor):
    cfg = _config(project, "extlib.core:f")
    assert model_files(cfg.models[0], project) == []
    cache = ResultCache(project / ".c")
    cache.key(cfg.models[0], cfg)
    assert not cache.uncacheable


def test_a_folder_the_code_puts_on_sys_path_that_start_up_already_has_is_not_walked(project, vendor):
    _write(project, {"net.py": f"import sys\nsys.path.insert(0, {str(vendor)!r})\nimport extlib\ndef build(): pass\n"})
    cfg = _config(project, "net.py:build")
    assert _rel(model_files(cfg.models[0], project), project) == {"net.py"}


def test_a_start_up_sys_path_folder_inside_the_project_is_still_project_code(project, monkeypatch):
    import wattlint.cache as cache_mod

    _write(project, {"lib/blocks.py": "W = 1\n", "models/net.py": "import blocks\ndef build(): pass\n"})
    monkeypatch.setattr(cache_mod, "_START_PATH", (str(project / "lib"), *cache_mod._START_PATH))  # PYTHONPATH=lib
    cfg = _config(project, "models/net.py:build")
    assert _rel(model_files(cfg.models[0], project), project) == {"models/net.py", "lib/blocks.py"}


# ---- other ways of importing by name (review B) --------------------------------------------------------------------

TARGET_LITERAL = {
    "pydoc_locate": "import pydoc\ndef build():\n    return pydoc.locate('models.blocks.Net')()\n",
    "locate_alias": "from pydoc import locate\ndef build():\n    return locate('models.blocks')\n",
    "getattr_import_module": "import importlib\ndef build():\n"
                             "    return getattr(importlib, 'import_module')('models.blocks').Net()\n",
    "getattr_dunder": "import builtins\ndef build():\n    return getattr(builtins, '__import__')('models.blocks')\n",
    "hydra_get_class": "from hydra.utils import get_class\ndef build():\n    return get_class('models.blocks.Net')()\n",
    "hydra_get_method": "import hydra\ndef build():\n    return hydra.utils.get_method('models.blocks.make')()\n",
    "hydra_instantiate": "from hydra.utils import instantiate\nCFG = {'_target_': 'models.blocks.Net', 'w': 3}\n"
                         "def build():\n    return instantiate(CFG)\n",
    "hydra_nested": "import hydra\nfrom omegaconf import OmegaConf\ndef build():\n    return hydra.utils.instantiate("
                    "OmegaConf.create({'_target_': 'torch.nn.Sequential', '_args_': [{'_target_': "
                    "'models.blocks.Net'}]}))\n",
    "hydra_dict_call": "from hydra import utils\ndef build():\n"
                       "    return utils.instantiate(dict(_target_='models.blocks.Net'))\n",
}


@pytest.mark.parametrize("case", sorted(TARGET_LITERAL))
def test_a_literal_dotted_target_is_followed(project, case):
    _write(project, {"models/__init__.py": "", "models/blocks.py": "class Net: W = 1\ndef make(): pass\n",
                     "net.py": TARGET_LITERAL[case]})
    cfg = _config(project, "net.py:build")
    assert "models/blocks.py" in _rel(model_files(cfg.models[0], project), project)
    cache = ResultCache(project / ".c")
    k1, _ = cache.key(cfg.models[0], cfg)
    assert not cache.uncacheable
    (project / "models" / "blocks.py").write_text("class Net: W = 2\ndef make(): pass\n")
    assert _key(project, "net.py:build") != k1


TARGET_UNKNOWN = {
    "pydoc_computed": "import pydoc, os\ndef build():\n    return pydoc.locate(os.environ['NET'])()\n",
    "getattr_computed": "import importlib, os\ndef build():\n    return getattr(importlib, os.environ['F'])('x')\n",
    "hydra_yaml": "import hydra\nfrom omegaconf import OmegaConf\ndef build():\n"
                  "    return hydra.utils.instantiate(OmegaConf.load('conf.yaml').model)\n",
    "hydra_target_computed": "from hydra.utils import instantiate\nimport os\ndef build():\n"
                             "    return instantiate({'_target_': os.environ['T']})\n",
    "hydra_get_class_computed": "from hydra.utils import get_class\ndef build(name):\n    return get_class(name)\n",
}


@pytest.mark.parametrize("case", sorted(TARGET_UNKNOWN))
def test_a_computed_dotted_target_is_never_cached(project, case):
    _write(project, {"models/__init__.py": "", "models/blocks.py": "class Net: pass\n", "net.py": TARGET_UNKNOWN[case]})
    cfg = _config(project, "net.py:build")
    cache = ResultCache(project / ".c")
    key, _ = cache.key(cfg.models[0], cfg)
    assert cache.uncacheable[key]
    assert "models/blocks.py" in _rel(model_files(cfg.models[0], project), project)
