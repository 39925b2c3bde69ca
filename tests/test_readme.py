"""Every command in README.md runs as written (issue 12: "README tried from a fresh clone").

The fenced ``bash`` blocks (and the bare ``wattlint ...`` lines of untyped blocks) are parsed out of README.md and run
one line at a time in a bash shell, in a copy of the repository's README, pyproject.toml and examples/ (a ``cd`` carries
over to the following lines of the same block, as in a terminal), with the test install (torch, hf, test extras).
``wattlint`` on PATH runs this checkout. Skipped, each with its reason below: install lines, the test command itself,
commands that need a CUDA GPU, and commands whose arguments are placeholders for the user's own files (``<gpu-key>``,
``...``). The ``python`` blocks run too, except those that need the user's own model, data loader or trainer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# (regular expression searched in the command, why it is not run). Everything else must run and exit 0.
SKIP = [
    (r"pip install", "an install line (the suite runs with the test install already)"),
    (r"python -m pytest", "the test command itself"),
    (r"calibrate --device cuda --suite default$", "measures on a CUDA GPU"),
    (r"validate measure", "measures on a CUDA GPU"),
    (r"<[a-z-]+>", "placeholder for the user's own files (<gpu-key>, <run>)"),
    (r"\.\.\.", "placeholder arguments"),
    (r"emissions\.csv", "needs the user's own CodeCarbon log and model"),
    (r"wattlint-runs/", "needs the user's own tracked runs"),
]
PY_SKIP = [
    (r"loader", "needs the user's own model, optimizer and data loader"),
    (r"[Tt]rainer", "needs the user's own Lightning / Hugging Face trainer"),
]


def _blocks(text: str) -> list[tuple[str, list[str]]]:
    out = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S):
        lang, body = m.group(1), m.group(2)
        if lang in ("bash", "sh", "shell"):
            body = re.sub(r"\\\n\s*", "", body)  # a command continued over lines with a backslash is one command
            lines = [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        elif lang == "":
            lines = [ln.strip() for ln in body.splitlines() if ln.strip().startswith("wattlint ")]
        elif lang == "python":
            out.append(("python", [body]))
            continue
        else:
            continue
        if lines:
            out.append(("bash", lines))
    return out


def _commands():
    cases = []
    for i, (lang, lines) in enumerate(_blocks(README.read_text(encoding="utf-8"))):
        table = PY_SKIP if lang == "python" else SKIP
        block = []
        for line in lines:
            code = line.split("  #")[0].rstrip() if lang == "bash" else line
            why = next((r for pat, r in table if re.search(pat, code)), None)
            block.append((code, why))
        cases.append(pytest.param(lang, block, id=f"block{i}-{lang}"))
    return cases


def test_readme_has_commands():
    blocks = _blocks(README.read_text(encoding="utf-8"))
    run = [c for lang, lines in blocks if lang == "bash" for c in lines
           if not any(re.search(pat, c.split("  #")[0].rstrip()) for pat, _ in SKIP)]
    # the estimate, analyze, check, rules and calibrate --plan lines at least
    assert len(run) >= 10, run


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    shutil.copy(README, d / "README.md")
    shutil.copy(ROOT / "pyproject.toml", d / "pyproject.toml")
    shutil.copytree(ROOT / "examples", d / "examples",
                    ignore=shutil.ignore_patterns(".wattlint-cache", "__pycache__"))
    shutil.copytree(ROOT / "src" / "wattlint" / "data", d / "src" / "wattlint" / "data")  # datasets.toml is named
    bindir = d / "_bin"
    bindir.mkdir()
    shim = bindir / "wattlint"
    shim.write_text(f"#!/bin/sh\nexec {sys.executable} -m wattlint \"$@\"\n")
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] + [p for p in [env.get("PYTHONPATH")] if p])
    env["WATTLINT_CACHE_DIR"] = str(d / "_cache")
    env["COLUMNS"] = "100"
    env.pop("WATTLINT_DEBUG", None)
    return d, env


@pytest.mark.parametrize("lang,block", _commands())
def test_readme_command_runs(lang, block, sandbox):
    d, env = sandbox
    if all(why for _, why in block):
        pytest.skip("; ".join(sorted({why for _, why in block})))
    cwd = d
    for code, why in block:
        if why:
            continue
        if lang == "python":
            r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                               text=True, timeout=300)
        else:
            state = d / "_cwd"
            script = f"{code}\nrc=$?\npwd > '{state}'\nexit $rc\n"
            r = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
            if state.exists():
                cwd = Path(state.read_text().strip())
        assert r.returncode == 0, f"{code!r} exited {r.returncode}: {r.stderr[-2000:]}"
        assert "Traceback" not in r.stderr, r.stderr


def test_readme_accuracy_figures_match_the_committed_results():
    """The accuracy sentence of the README quotes the committed benchmark results, not a figure from an older run
    (benchmarks/results/public_accuracy.json and parallel_accuracy.json are what the benchmarks last wrote)."""
    text = " ".join(README.read_text().split())
    results = ROOT / "benchmarks" / "results"
    pa = json.loads((results / "public_accuracy.json").read_text())["e2e"]
    par = json.loads((results / "parallel_accuracy.json").read_text())
    ood = pa["all"]["public_fit"]["mape_pct"]
    dense, theirs = pa["without_moe"]["public_fit"]["mape_pct"], pa["without_moe"]["neusight"]["mape_pct"]
    assert f"{ood:.1f} % MAPE on NeuSight's out-of-distribution transformer rows" in text
    assert f"{dense:.2f} % against their {theirs:.2f} %" in text
    assert f"{par['neusight']['wattlint']['mape_pct']:.1f} % on their 4-GPU data" in text
    llama = par["llama"]
    assert f"Llama-2-70B comes out at {llama['default_goodput']['ratio_to_published']:.2f}x" in text
    assert f"({llama['default_goodput_pytorch']['ratio_to_published']:.2f}x with the default pytorch stack)" in text
    foundry = par["foundry"]["bf16_all"]["wattlint"]["share_within_5_points_pct"]
    assert f"{foundry:.0f} % of MosaicML's llm-foundry BF16 MFU rows are within 5 points" in text
    zeus_prior = json.loads((results / "prior_vs_public.json").read_text())["summary"]["zeus_named"]["all"]
    zeus_fit = json.loads((results / "public_accuracy.json").read_text())["zeus"]["all"]
    assert (f"are {zeus_prior['time']['mape_pct']:.0f} % off in time and {zeus_prior['energy']['mape_pct']:.0f} % in "
            f"energy with the prior alone ({zeus_fit['public_fit_time']['mape_pct']:.0f} % / "
            f"{zeus_fit['public_fit_energy']['mape_pct']:.0f} % with public-fit") in text
