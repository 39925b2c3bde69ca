"""`wattlint check` traces each distinct (model source, traced options) once and walks each model's imports once per
run, whichever entries name it; the figures stay those of checking each entry alone, errors stay per entry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wattlint.config import load_config
from wattlint.lint.check import check

ROOT = Path(__file__).resolve().parents[1]
ONNX = ROOT / "examples" / "gpt2-tiny.onnx"

MLP = """import torch.nn as nn

from blocks import hidden


def build():
    return nn.Sequential(hidden(32, 64), nn.Linear(64, 10))


def broken():
    raise ValueError("no model today")
"""
BLOCKS = "import torch.nn as nn\n\n\ndef hidden(i, o):\n    return nn.Sequential(nn.Linear(i, o), nn.ReLU())\n"


def _entry(name: str, source: str, **opts) -> str:
    lines = ["[[tool.wattlint.models]]", f'name = "{name}"', f'source = "{source}"']
    for k, v in opts.items():
        lines.append(f"{k.replace('_', '-')} = {v}")
    return "\n".join(lines) + "\n"


def _project(root: Path, entries: list[str]) -> Path:
    """A project with the ONNX example, a two-file PyTorch source and ``entries``; returns its pyproject.toml."""
    (root / "models").mkdir(exist_ok=True)
    if not (root / "models" / "lm.onnx").exists():
        shutil.copy(ONNX, root / "models" / "lm.onnx")
    (root / "mlp.py").write_text(MLP)
    (root / "blocks.py").write_text(BLOCKS)
    # bf16: no WL101 retrace of an fp32 entry under bf16 (a trace of its own, shared like the others); WL202 off: its
    # saving is the command at the larger batch it names, a trace of its own
    top = '[tool.wattlint]\ngpu = "a100-sxm4-80gb"\nprecision = "bf16"\nignore = ["WL402", "WL203", "WL202"]\n\n'
    (root / "pyproject.toml").write_text(top + "\n".join(entries))
    return root / "pyproject.toml"


def _lm(name: str, **opts) -> str:
    return _entry(name, "models/lm.onnx", **{"batch_size": 8, "seq_len": 256, "tokens": "2e8", **opts})


def _mlp(name: str, **opts) -> str:
    return _entry(name, "mlp.py:build", **{"inputs": '["x=float32[16,32]"]', "steps": 1000, **opts})


@pytest.fixture
def traces(monkeypatch, tmp_path):
    """The frontend's trace entry point wrapped to record the keyword arguments of every trace that runs."""
    import wattlint.frontends.source as src

    calls: list[tuple[str, dict]] = []
    real = src.analyze

    def counting(source, **kw):  # the source as the project names it (check resolves it to an absolute path)
        calls.append((Path(str(source)).relative_to(tmp_path).as_posix(), kw))
        return real(source, **kw)

    monkeypatch.setattr(src, "analyze", counting)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / ".wattlint-cache"))
    return calls


def _check(path: Path, paths=(), use_cache=False):
    return check(load_config(path=path), [Path(p) for p in paths], use_cache=use_cache)


def _figures(result) -> dict:
    """Per model: its summary and its findings (code, severity, message, file) as the report shows them (not the
    line: an entry's line in pyproject.toml depends on the entries before it)."""
    return {r.name: (r.summary, r.error, r.skipped,
                     [(i.finding.code, i.finding.severity, i.finding.message, i.path) for i in r.items])
            for r in result.models}


def test_entries_differing_only_in_plan_options_share_one_trace(traces, tmp_path):
    cfg = _project(tmp_path, [_lm("a"), _lm("h", gpu='"h100-sxm5-80gb"'), _lm("l", gpu='"l40s"', tokens="5e8")])
    result = _check(cfg)
    assert [r.name for r in result.models if r.summary and not r.error] == ["a", "h", "l"]
    assert [s for s, _ in traces] == ["models/lm.onnx"], traces  # was one trace per entry


def test_each_precision_is_its_own_trace(traces, tmp_path):
    cfg = _project(tmp_path, [_lm("a32", precision='"fp32"'), _lm("h32", precision='"fp32"', gpu='"h100-sxm5-80gb"'),
                              _lm("a16"), _lm("h16", gpu='"h100-sxm5-80gb"')])
    result = _check(cfg)
    assert all(r.summary and not r.error for r in result.models)
    assert sorted(kw["precision"] for _, kw in traces) == ["bf16", "fp32"], traces  # was 4 (one per entry)
    by_name = {r.name: r.summary for r in result.models}
    assert by_name["a32"]["plan"]["precision"] == "fp32" and by_name["a16"]["plan"]["precision"] == "bf16"
    assert by_name["a32"]["total"] != by_name["a16"]["total"]


def test_traced_options_split_the_trace_and_gpus_only_with_a_batch_size(traces, tmp_path):
    """``gpus`` divides a given batch-size into the traced micro-batch: another trace; without a batch-size the
    frontend does not read it: one trace. seq-len and the optimizer are traced options too."""
    cfg = _project(tmp_path, [_mlp("one"), _mlp("four", gpus=4), _mlp("h", gpu='"h100-sxm5-80gb"'),
                              _mlp("sgd", optimizer='"sgd"'),
                              _mlp("x8", inputs='["x=float32[8,32]"]'), _lm("b1"), _lm("b2", gpus=2)])
    result = _check(cfg)
    assert all(r.summary and not r.error for r in result.models), [(r.name, r.error, r.skipped, bool(r.summary)) for r in result.models][-2:]
    mlp = [(kw.get("optimizer", "adamw"), kw["inputs"][0]) for s, kw in traces if s == "mlp.py:build"]
    assert sorted(mlp) == [("adamw", "x=float32[16,32]"), ("adamw", "x=float32[8,32]"),
                           ("sgd", "x=float32[16,32]")], traces
    lm = [kw.get("gpus", 1) for s, kw in traces if s == "models/lm.onnx"]
    assert sorted(lm) == [1, 2], traces


def test_shared_trace_gives_the_figures_of_each_entry_checked_alone(traces, tmp_path):
    entries = [_lm("a"), _lm("h", gpu='"h100-sxm5-80gb"', tokens="5e8"), _mlp("m1"),
               _mlp("m4", gpus=4, gpu='"l40s"'), _mlp("m32", precision='"fp32"')]
    together = _figures(_check(_project(tmp_path, entries)))
    # lm, mlp bf16 (1 and 4 GPUs share it: no batch-size), mlp fp32 (its WL101 bf16 retrace is the bf16 trace)
    assert sorted((s, kw.get("precision")) for s, kw in traces) == [("mlp.py:build", "bf16"), ("mlp.py:build", "fp32"),
                                                                   ("models/lm.onnx", "bf16")], traces
    alone = {}
    for e in entries:
        one = tmp_path / f"alone{len(alone)}"
        one.mkdir()
        alone.update(_figures(_check(_project(one, [e]))))
    assert together == alone
    assert together["a"][0]["gpu"] == "a100-sxm4-80gb" and together["h"][0]["gpu"] == "h100-sxm5-80gb"
    assert together["a"][0]["total"] != together["h"][0]["total"]


def test_a_failed_trace_is_reported_for_every_entry_naming_it(traces, tmp_path, run_cli):
    cfg = _project(tmp_path, [_entry("x1", "mlp.py:broken", inputs='["x=float32[16,32]"]', steps=10),
                              _mlp("ok"),
                              _entry("x2", "mlp.py:broken", inputs='["x=float32[16,32]"]', steps=10,
                                     gpu='"h100-sxm5-80gb"')])
    result = _check(cfg)
    errors = {r.name: r.error for r in result.models if r.error}
    assert set(errors) == {"x1", "x2"}
    assert "model 'x1' (mlp.py:broken)" in errors["x1"] and "model 'x2' (mlp.py:broken)" in errors["x2"]
    assert errors["x1"].split("): ", 1)[1] == errors["x2"].split("): ", 1)[1]
    assert "no model today" in errors["x2"]
    assert [s for s, _ in traces].count("mlp.py:broken") == 1, traces
    assert result.errors and len(result.errors) == 2
    traces.clear()
    code, out, err = run_cli("check", "--no-cache")
    assert code == 2 and err.count("wattlint: error: model 'x") == 2, err
    assert "ok: " in out


@pytest.mark.parametrize("paths", [(), ("mlp.py",), ("blocks.py",)], ids=["all", "hook-source", "hook-import"])
def test_the_import_walk_runs_once_per_model(monkeypatch, tmp_path, paths):
    """The dependency walk behind the path selection (the pre-commit hook's staged files), the cache key and the
    exclude notice runs once per distinct model in a check, not once per entry and step."""
    import wattlint.cache as cache_mod
    import wattlint.lint.check as chk

    walks: list[str] = []
    real = cache_mod.dependencies

    def counting(path, root, source_dir=None, module=None):
        walks.append(str(path or module))
        return real(path, root, source_dir=source_dir, module=module)

    monkeypatch.setattr(cache_mod, "dependencies", counting)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATTLINT_CACHE_DIR", str(tmp_path / ".wattlint-cache"))
    # no trace needed to count walks: a stand-in estimate (the cache still keys, stores and reads every entry)
    real_estimate = chk.estimate_model
    memo: dict = {}

    def once(m, config):
        if m.source not in memo:
            memo[m.source] = real_estimate(m, config)
        return memo[m.source]

    monkeypatch.setattr(chk, "estimate_model", once)
    cfg = _project(tmp_path, [_mlp("m1"), _mlp("m2", gpu='"h100-sxm5-80gb"'), _mlp("m3", steps=5),
                              _lm("lm")])
    for use_cache in (True, True, False):  # cold cache, warm cache, --no-cache
        walks.clear()
        result = _check(cfg, paths, use_cache=use_cache)
        assert [r.name for r in result.models] == ["m1", "m2", "m3"] + (["lm"] if not paths else [])
        assert all(r.summary for r in result.models)
        expected = 1 if paths or use_cache else 0  # --no-cache without paths hashes nothing: no walk
        assert walks.count(str(Path("mlp.py"))) + walks.count(str(tmp_path / "mlp.py")) == expected, walks
    assert not [w for w in walks if "lm.onnx" in w]  # an ONNX file imports nothing: never walked


def test_the_walk_memo_ends_with_the_check(tmp_path, monkeypatch):
    """A later check sees an edited import (the memo lives for one check only): the cache key changes."""
    from wattlint.cache import ResultCache, model_files, shared_dependencies

    monkeypatch.chdir(tmp_path)
    cfg_path = _project(tmp_path, [_mlp("m")])
    config = load_config(path=cfg_path)
    m = config.models[0]
    with shared_dependencies():
        before = {p.name for p in model_files(m, tmp_path)}
        (tmp_path / "extra.py").write_text("X = 1\n")
        (tmp_path / "blocks.py").write_text("import extra\n" + BLOCKS)
        assert {p.name for p in model_files(m, tmp_path)} == before  # one check reads the files once
    assert {p.name for p in model_files(m, tmp_path)} == before | {"extra.py"}
    k = ResultCache(tmp_path / ".c").key(m, config)[1]
    assert "extra.py" in k


def test_traces_are_shared_within_one_check_only(traces, tmp_path):
    """Outside a check every trace runs (a model edited between two checks in one process is traced again)."""
    from wattlint import api

    cfg = _project(tmp_path, [_lm("a"), _lm("h", gpu='"h100-sxm5-80gb"')])
    _check(cfg)
    _check(cfg)
    assert len(traces) == 2  # one per check
    assert api._TRACES.get() is None
    api.trace(str(tmp_path / "models" / "lm.onnx"), {"batch_size": 8, "seq_len": 256})
    api.trace(str(tmp_path / "models" / "lm.onnx"), {"batch_size": 8, "seq_len": 256})
    assert len(traces) == 4
