"""The real hook file under a real pre-commit, fast: every CI run.

`.pre-commit-hooks.yaml` is read and each hook is declared as a `repo: local` hook with the SAME id, entry, file
pattern, pass_filenames and require_serial, with `language: system` so pre-commit runs the wattlint of this
environment instead of building a virtualenv from the package index (the full `pre-commit try-repo` build is the
opt-in slow test in test_precommit.py). pre-commit itself selects the files, passes them and reports the exit code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")  # installed with pre-commit

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRE_COMMIT = shutil.which("pre-commit") or str(BIN / "pre-commit")
pytestmark = pytest.mark.skipif(not Path(PRE_COMMIT).exists() or shutil.which("git") is None,
                                reason="needs pre-commit and git")

CONFIG = """[tool.wattlint]
gpu = "a100-sxm4-80gb"
precision = "bf16"
ignore = ["WL402"]

[[tool.wattlint.models]]
name = "lm"
source = "models/lm.onnx"
batch-size = 8
seq-len = 256
tokens = 2e8
budget = {{ energy-kwh = {budget} }}
"""
KEYS = ("id", "name", "entry", "files", "pass_filenames", "require_serial")


def local_config(hook_id: str) -> str:
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    hook = {k: hooks[hook_id][k] for k in KEYS if k in hooks[hook_id]}
    hook["language"] = "system"
    return json.dumps({"repos": [{"repo": "local", "hooks": [hook]}]})  # JSON is YAML


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "repo"
    (r / "models").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "gpt2-tiny.onnx", r / "models" / "lm.onnx")
    (r / ".gitignore").write_text(".wattlint-cache/\n")
    (r / ".pre-commit-config.yaml").write_text(local_config("wattlint"))
    (r / "README.md").write_text("x\n")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pc-home"), "PATH": f"{BIN}{os.pathsep}"
           f"{os.environ.get('PATH', '')}", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "WATTLINT_CACHE_DIR": str(r / ".wattlint-cache")}
    subprocess.run(["git", "init", "-q"], cwd=r, check=True, env=env)
    return r, env


def run_hooks(r: Path, env, *files: str):
    subprocess.run(["git", "add", "-A"], cwd=r, check=True, env=env)
    args = ["run", "--files", *files] if files else ["run", "--all-files"]
    p = subprocess.run([PRE_COMMIT, *args], cwd=r, env=env, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


def test_hook_passes_fails_on_budget_and_skips_unrelated_files(repo):
    r, env = repo
    (r / "pyproject.toml").write_text(CONFIG.format(budget=10))
    code, out = run_hooks(r, env)
    assert code == 0 and "Passed" in out, out
    (r / "pyproject.toml").write_text(CONFIG.format(budget=0.001))
    code, out = run_hooks(r, env)
    assert code == 1, out
    assert "Failed" in out and "WL301 error: lm: estimated energy" in out
    # only README.md changed: the hook's file pattern does not match, pre-commit skips it
    code, out = run_hooks(r, env, "README.md")
    assert code == 0 and "(no files to check)Skipped" in out, out


def test_torch_hook_declaration_matches_python_sources():
    """wattlint-torch's pattern includes .py sources; the light hook's does not (it never needs torch)."""
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    import re

    assert re.search(hooks["wattlint-torch"]["files"], "models/net.py")
    assert not re.search(hooks["wattlint"]["files"], "models/net.py")
    assert all(re.search(hooks[h]["files"], p) for h in hooks for p in ("a/m.onnx", "pyproject.toml"))
