"""A real pre-commit run: `pre-commit try-repo <this checkout> wattlint` in a temporary git repository.

pre-commit builds the hook's virtualenv by pip-installing wattlint from this repository's HEAD (committed code!)
with its core dependencies (from PyPI or the configured indexes). try-repo builds a fresh store per call (~40-60 s
each here), so the test is marked slow and opt-in: `pytest -m slow tests/test_precommit.py` or
WATTLINT_PRECOMMIT_TEST=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRE_COMMIT = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(PRE_COMMIT).exists() or shutil.which("git") is None,
                       reason="needs pre-commit and git"),
    pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs this checkout's git history"),
]

CONFIG = """[tool.wattlint]
gpu = "a100-sxm4-80gb"
precision = "bf16"
ignore = ["WL402"]

[[tool.wattlint.models]]
name = "lm"
source = "models/lm.onnx"
batch-size = 8
seq-len = 256
tokens = {tokens}
budget = {{ energy-kwh = {budget} }}
"""


@pytest.fixture(autouse=True)
def _opt_in(request):
    """Runs with `pytest -m slow` or WATTLINT_PRECOMMIT_TEST=1 (it installs from the package index)."""
    if "slow" not in (request.config.getoption("markexpr") or "") and not os.environ.get("WATTLINT_PRECOMMIT_TEST"):
        pytest.skip("real pre-commit run: opt in with `pytest -m slow` or WATTLINT_PRECOMMIT_TEST=1")


def git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = os.environ.get("PRE_COMMIT_HOME") or str(tmp_path_factory.mktemp("pre-commit-home"))
    return {**os.environ, "PRE_COMMIT_HOME": home, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def hook(repo, env, hook_id="wattlint"):
    ref = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    r = subprocess.run([PRE_COMMIT, "try-repo", str(ROOT), hook_id, "--ref", ref, "--all-files"], cwd=repo,
                       env=env, capture_output=True, text=True, timeout=900)
    return r.returncode, r.stdout + r.stderr


def test_pre_commit_hook_end_to_end(tmp_path, env):
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "gpt2-tiny.onnx", repo / "models" / "lm.onnx")
    (repo / ".gitignore").write_text(".wattlint-cache/\n")

    def configure(tokens="2e8", budget="10"):
        (repo / "pyproject.toml").write_text(CONFIG.format(tokens=tokens, budget=budget))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"tokens {tokens} budget {budget}")

    git(repo, "init", "-q")
    configure()

    # 1. a clean model passes
    code, out = hook(repo, env)
    assert code == 0, out
    assert "Passed" in out

    # 2. budget exceeded: exit 1 with a readable message
    configure(budget="0.01")
    code, out = hook(repo, env)
    assert code == 1, out
    assert "Failed" in out and "exit code: 1" in out
    # the 0.01 kWh budget is written in the unit of the ~43 Wh estimate (one unit for both)
    assert "WL301 error: lm: estimated energy" in out and "exceeds the budget of 10.0 Wh" in out

    # 3. a regression beyond the threshold fails, --update-baseline accepts it
    configure(budget="10")
    subprocess.run([sys.executable, "-m", "wattlint", "check", "--update-baseline"], cwd=repo, env=env, check=True,
                   capture_output=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "baseline")
    configure(tokens="3e8")
    code, out = hook(repo, env)
    assert code == 1, out
    assert "WL305 error: lm: estimated energy +50% vs baseline" in out
    subprocess.run([sys.executable, "-m", "wattlint", "check", "--update-baseline"], cwd=repo, env=env, check=True,
                   capture_output=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "accept")
    code, out = hook(repo, env)
    assert code == 0, out


def test_pre_commit_torch_hook(tmp_path, env):
    """wattlint-torch installs torch (additional_dependencies) and traces a PyTorch source."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "examples" / "project" / "models", repo / "models",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (repo / ".gitignore").write_text(".wattlint-cache/\n")
    (repo / "pyproject.toml").write_text(
        "[tool.wattlint]\nignore = ['WL402']\n\n[[tool.wattlint.models]]\nname = 'mlp'\n"
        "source = 'models/tiny_mlp.py:build'\ninputs = ['x=float32[512,784]']\nepochs = 20\n"
        "dataset-size = 60000\nbudget = { energy-kwh = 0.00001 }\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    code, out = hook(repo, env, "wattlint-torch")
    assert code == 1, out
    assert "WL301 error: mlp: estimated energy" in out
