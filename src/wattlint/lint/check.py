"""The ``wattlint check`` pipeline: select the configured models, estimate each (or answer it from the result
cache), run the rules, locate findings, and update the baseline on request.

Unchanged models are answered from the result cache (wattlint.cache) without importing torch, onnx or the estimator.
The estimate itself goes through the one request path (wattlint.api).
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from ..types import Finding


# ---- the check -------------------------------------------------------------------------------------------------

def _matches(model, files: list[Path], targets: list[Path]) -> bool:
    for t in targets:
        for f in files:
            if f == t or (t.is_dir() and t in f.parents):
                return True
    return False


def select_models(config, paths: list[Path], force_exclude: bool) -> list:
    """The configured models a check covers: all, or those whose source (or a project file it imports) is among
    ``paths``; the configuration file, the baseline or the configuration's folder (or one above it) among ``paths``
    selects all (:func:`_selects_all`). ``exclude`` applies as documented: a model whose source (or a file it
    imports) is named as a FILE is checked even when excluded, unless ``--force-exclude``; a folder, the
    configuration file or the baseline selects as no arguments do, exclusions kept
    (review: `wattlint check .` checked the excluded experiments)."""
    from ..cache import model_files

    models = _path_selected(config, paths)
    named = [] if force_exclude else _named_files(config, paths)
    return [m for m in models if not _excluded(config, m)
            or (named and _matches(m, model_files(m, config.root), named))]


def _excluded(config, m) -> bool:
    """Whether ``exclude`` matches the model's source file: its path, or the file of a 'pkg.module:attr' source."""
    from ..cache import find_module_file

    f = m.path if m.path is not None else find_module_file(m.source.split(":")[0], [config.root])
    return f is not None and config.is_excluded(f)


def _resolved(p: Path) -> Path:
    return (Path.cwd() / p).resolve() if not p.is_absolute() else p.resolve()


def _selects_all(config, ap: Path) -> bool:
    """A resolved PATH argument that selects every model: the configuration file (not any file named pyproject.toml:
    another project's, staged beside, checked them all), the baseline, or the configuration's folder (or a folder
    above it): `wattlint check .` in the project checks its models as `ruff check .` checks the project, also those
    whose sources lie outside it (`source = "../resnet50.onnx"`; review s49: they were left out silently and the
    check said "All checks passed.")."""
    if ap == config.baseline_path.resolve() or (config.path is not None and ap == Path(config.path).resolve()):
        return True
    root = Path(config.root).resolve()
    return ap.is_dir() and (ap == root or ap in root.parents)


def _named_files(config, paths: list[Path]) -> list[Path]:
    """The PATH arguments that name one file other than the config file or the baseline."""
    return [ap for ap in map(_resolved, paths) if not ap.is_dir() and not _selects_all(config, ap)]


def _path_selected(config, paths: list[Path]) -> list:
    """The configured models the PATH arguments select (all without paths), before ``exclude`` applies (to models:
    an excluded file among the paths still selects the models that import it, :func:`select_models`)."""
    from ..cache import model_files

    models = list(config.models)
    if paths:
        targets = []
        run_all = False
        for p in paths:
            ap = _resolved(p)
            if _selects_all(config, ap):
                run_all = True
            targets.append(ap)
        if not run_all:
            models = [m for m in models if _matches(m, model_files(m, config.root), targets)]
    return models


def missing_extra(m) -> str | None:
    """Why a model cannot be traced in this environment (a PyTorch or Hugging Face source without torch /
    transformers installed: the light ONNX install, e.g. the light pre-commit hook), else None."""
    import importlib.util

    needs = []
    if m.path is None or m.path.suffix in (".py", ".json"):
        needs.append(("torch", "torch"))
    if m.path is not None and m.path.suffix == ".json":
        needs.append(("transformers", "hf"))
    for module, extra in needs:
        if importlib.util.find_spec(module) is None:
            scope = "ONNX models only" if module == "torch" else "ONNX models and PyTorch sources, not config.json"
            return (f"skipped: needs {module} (pip install 'wattlint[{extra}]', or the wattlint-torch pre-commit "
                    f"hook); this environment checks {scope}")
    return None


def check(config, paths: list[Path], *, update_baseline: bool = False, force_exclude: bool = False,
          use_cache: bool = True):
    """Check the selected models. Within one check each distinct model's imports are walked once (path selection,
    cache key, exclude notice: :func:`wattlint.cache.shared_dependencies`) and each distinct (model source, traced
    options) is traced once, whichever entries name it (:func:`wattlint.api.shared_traces`); entries that differ
    only in what the plan applies after tracing (GPU, work, budgets) price one graph."""
    from ..cache import shared_dependencies

    with shared_dependencies():
        return _check(config, paths, update_baseline=update_baseline, force_exclude=force_exclude,
                      use_cache=use_cache)


def _check(config, paths: list[Path], *, update_baseline: bool, force_exclude: bool, use_cache: bool):
    import contextlib
    from collections import Counter

    from ..cache import ResultCache
    from ..io import remove_stale_temps
    from ..types import WattlintError
    from .baseline import STALE_TEMP_S
    from .noqa import check_entries
    from .results import CheckResult, ModelResult

    config.check_sources()
    check_entries(config)  # a noqa comment not tied to one model with certainty: exit 2 before any estimate
    remove_stale_temps(config.baseline_path, older_than_s=STALE_TEMP_S)  # a killed --update-baseline's temporary
    baseline = _load_baseline(config)
    cache = ResultCache.for_config(config, enabled=use_cache)
    models = select_models(config, paths, force_exclude)
    result = CheckResult(root=config.root, baseline_path=config.baseline_path, config_path=config.path,
                         configured=bool(config.models))
    # one trace per distinct (source, traced options) across the entries (wattlint.api.shared_traces), entered at
    # the first estimate (a check answered from the cache never imports the request path); a source's graphs are
    # dropped after the last entry naming it, so only the graphs entries still need are held
    pending = Counter(m.source for m in models)
    with contextlib.ExitStack() as stack:
        traces = None
        for m in models:
            pending[m.source] -= 1
            try:
                # without the cache (--no-cache, cache = false) nothing is read for a key: no model file is hashed
                key = cache.key(m, config)[0] if cache.enabled else None
                hit = _usable_hit(cache.get(key)) if key is not None else None
                if hit is None and missing_extra(m):
                    result.models.append(ModelResult(name=m.name, source=m.raw_source, summary={},
                                                     skipped=missing_extra(m)))
                    continue
                if hit is not None:
                    summary, graph_findings, cached = hit
                else:
                    if traces is None:
                        from ..api import shared_traces

                        traces = stack.enter_context(shared_traces())
                    try:
                        summary, graph_findings = estimate_model(m, config)
                    except WattlintError as e:  # this model's bad input: the others are still checked and reported
                        result.models.append(ModelResult(name=m.name, source=m.raw_source, summary={}, error=str(e),
                                                         error_at=_entry_place(m, config)))
                        continue
                    if key is not None:
                        cache.put(key, {"summary": summary, "findings": [_finding_dict(f) for f in graph_findings],
                                        "model": m.name})
                    cached = False
                findings = _lint_totals(m, config, summary, graph_findings, baseline.get(m.name))
                result.models.append(ModelResult(name=m.name, source=m.raw_source, summary=summary,
                                                 items=[_locate(f, m, config) for f in findings], cached=cached))
            finally:
                if traces is not None and not pending[m.source]:
                    traces.forget(m.source)
    cache.save()
    if update_baseline:
        _update_baseline(config, models, result)
    else:
        result.notices.extend(_gate_notices(config, result, baseline))
    chosen = {id(m) for m in models}
    # only the models this run would have checked but for `exclude` (not those a PATH selection left out anyway)
    excluded = [m.name for m in _path_selected(config, paths) if id(m) not in chosen and _excluded(config, m)]
    if excluded:  # an excluded model leaves no other trace in the output
        result.notices.append(f"not checked, matched by exclude: {', '.join(excluded)}")
    result.notices.extend(stray_noqa(config))
    return result


def _usable_hit(hit) -> tuple[dict, list, bool] | None:
    """(summary, graph findings, True) of a cache entry, or None (a miss, re-estimated) when the entry is not what
    :func:`check` writes: a damaged or hand-edited file (an empty summary passed every budget and gate as '?', and
    --update-baseline wrote its nulls into the baseline) must never stand in for an estimate."""
    from .baseline import KEYS

    if hit is None:
        return None
    summary, raw = hit.get("summary"), hit.get("findings", [])
    if not isinstance(summary, dict) or not isinstance(raw, list):
        return None
    total = summary.get("total")
    if not isinstance(total, dict) or not isinstance(summary.get("gpu"), str):
        return None
    for k in KEYS:  # the totals budgets, the gate and the baseline read
        v = total.get(k)
        if v is None and k != "energy_kwh":
            continue
        if not _number(v) or v < 0:
            return None
    if not total["energy_kwh"] or not all(isinstance(summary.get(k), dict) for k in ("per_step", "memory", "plan")):
        return None
    if not (isinstance(summary.get("assumptions"), list) and all(isinstance(a, str) for a in summary["assumptions"])):
        return None
    mem = summary["memory"]
    if not (isinstance(mem.get("fits"), bool) and all(_number(mem.get(k)) for k in ("peak_bytes_per_gpu",
                                                                                     "gpu_memory_bytes"))):
        return None
    from ..types import VERDICTS

    if mem.get("verdict", "fits") not in VERDICTS:  # absent in summaries cached before the three-way verdict
        return None
    if not all(_cached_finding(d) for d in raw):
        return None
    return summary, [_finding(d) for d in raw], True


def _number(v) -> bool:
    import math

    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _cached_finding(d) -> bool:
    """A finding as :func:`_finding_dict` writes it: code and message strings, a known severity, layer and model a
    string or null, savings a finite number or null."""
    return (isinstance(d, dict) and isinstance(d.get("code"), str) and isinstance(d.get("message"), str)
            and d.get("severity") in ("error", "warning", "info")
            and all(d.get(k) is None or isinstance(d[k], str) for k in ("layer", "model"))
            and all(d.get(k) is None or _number(d[k]) for k in ("saving_kwh", "saving_pct")))


def _gate_notices(config, result, baseline) -> list[str]:
    """Where the regression gate (WL305) did not run, say so: a missing baseline file (a mistyped `baseline`
    path looked like a pass), a checked model without an entry (a renamed model escaped the gate), and entries no
    configured model has (the old name of a renamed one)."""
    from ..config import _where

    from .baseline import shared_how
    from .engine import is_enabled
    from .registry import get_rule

    wl305 = get_rule("WL305")
    by_name = {m.name: m for m in config.models}
    checked = [r.name for r in result.models if not r.skipped and r.summary and r.name in by_name
               and is_enabled(wl305, config, by_name[r.name])
               and not _suppressed("WL305", noqa_codes(config, by_name[r.name]))]
    if not checked:  # no model the gate applies to (WL305 not selected, ignored or noqa'd): nothing to say
        return []
    where = _where(config.baseline_path)
    if not config.baseline_path.exists():
        if config.baseline_path.is_symlink():  # 'no baseline file' and '--update-baseline writes it' were both wrong
            import os

            return [f"baseline {where} is a symbolic link to a missing file ({os.readlink(config.baseline_path)}): "
                    "energy regressions (WL305) not checked; create that file or remove the link"]
        return [f"no baseline file {where}: energy regressions (WL305) not checked; '{update_command(config)}' "
                "writes it"]
    out = [f"{name}: no entry in {where}: energy regression (WL305) not checked; '{update_command(config)}' adds it"
           for name in checked if name not in baseline]
    configured = {m.name for m in config.models}
    stale = sorted(k for k in baseline if k not in configured)
    if stale and not shared_how(config.baseline_path, config.root):  # a shared file holds other projects' models
        out.append(f"{where} has entries no configured model has: {', '.join(stale)} (renamed or removed? "
                   f"'{update_command(config)}' drops them)")
    return out


def _lint_totals(m, config, summary, graph_findings, baseline_entry) -> list:
    """Graph findings (fresh or cached) + the totals rules (budgets, regressions), minus the entry's noqa codes."""
    from .engine import run_rules, sort_findings

    totals = [_with_config(f, config) if f.code == "WL305" else f
              for f in run_rules(None, config, m, summary=summary, baseline=baseline_entry, graph_rules=False)]
    noqa = noqa_codes(config, m)
    return [f for f in sort_findings(list(graph_findings) + totals) if not _suppressed(f.code, noqa)]


_UPDATE = "'wattlint check --update-baseline'"
_COMMAND_MEMO: dict[tuple[str, str], str] = {}


def update_command(config) -> str:
    """The command that updates this configuration's baseline from the current directory: with ``--config`` when
    'wattlint check' run here would not find this configuration (review: a subfolder project checked with
    ``--config ml/pyproject.toml`` from the repository root was told to run 'wattlint check --update-baseline',
    which fails there)."""
    import shlex

    from ..config import _where, find_pyproject

    plain = _UPDATE.strip("'")
    if config.path is None:
        return plain
    memo = (str(config.path), str(Path.cwd()))
    if memo not in _COMMAND_MEMO:
        try:
            found = find_pyproject(Path.cwd())
            same = found is not None and found.resolve() == Path(config.path).resolve()
        except OSError:
            same = False
        _COMMAND_MEMO[memo] = plain if same else \
            f"wattlint check --config {shlex.quote(_where(config.path))} --update-baseline"
    return _COMMAND_MEMO[memo]


def _with_config(finding, config):
    """A WL305 finding whose advice names the update command with this check's ``--config`` (:func:`update_command`)."""
    cmd = update_command(config)
    if _UPDATE not in finding.message or cmd == _UPDATE.strip("'"):
        return finding
    return dataclasses.replace(finding, message=finding.message.replace(_UPDATE, f"'{cmd}'"))


def _load_baseline(config):
    """:func:`wattlint.lint.baseline.load_baseline`, its advice naming the update command with ``--config``."""
    from ..types import ConfigError
    from .baseline import load_baseline

    try:
        return load_baseline(config.baseline_path)
    except ConfigError as e:
        cmd = update_command(config)
        if _UPDATE in str(e) and cmd != _UPDATE.strip("'"):
            raise ConfigError(str(e).replace(_UPDATE, f"'{cmd}'")) from None
        raise


def _update_baseline(config, models, result) -> None:
    from .. import __version__
    from ..config import _where
    from . import baseline as _baseline
    from .baseline import entry_from_summary, shared_how, write_baseline

    checked = [r for r in result.models if not r.skipped and not r.error]  # a failed model keeps its old entry
    updates = {r.name: entry_from_summary(r.summary, next(m.raw_source for m in models if m.name == r.name))
               for r in checked}
    configured = {m.name for m in config.models}
    # a baseline shared with other projects (a link, a file outside the project) holds their models' entries: they
    # are kept, never removed as "no longer configured" (review: each project's update wiped the others')
    shared = shared_how(config.baseline_path, config.root)
    with _baseline.locked(config.baseline_path):  # read, merge and write as one step against other writers
        old = _load_baseline(config)
        keep = {k: v for k, v in old.items() if k not in updates and (k in configured or shared)}
        new = write_baseline(config.baseline_path, updates, keep=keep, version=__version__)
    result.baseline_updated = True
    foreign = sorted(k for k in keep if k not in configured)
    result.baseline_changes = {"written": sorted(updates), "kept": sorted(k for k in keep if k in configured),
                               "removed": sorted(k for k in old if k not in updates and k not in keep),
                               # what the reviewer of the baseline commit is accepting (text and JSON reports)
                               "moved": {k: (old[k]["energy_kwh"], updates[k]["energy_kwh"]) for k in sorted(updates)
                                         if k in old and old[k].get("energy_kwh") != updates[k].get("energy_kwh")}}
    where = _where(config.baseline_path)
    if foreign:
        result.notices.append(f"baseline {where} is shared ({shared}): kept the entries of {len(foreign)} model(s) "
                              f"not configured here ({', '.join(foreign)}), as another project's; remove a retired "
                              "model's entry from the file by hand")
    if shared:  # the baseline is keyed by model name: two projects' models of one name share (overwrite) an entry
        clash = sorted(k for k in updates if k in old and old[k].get("source") not in (None, updates[k]["source"]))
        result.notices.extend(f"baseline {where} is shared ({shared}): entry {k!r} was written for source "
                              f"{old[k]['source']!r}, now for {updates[k]['source']!r}; if another project has a model "
                              f"named {k!r}, give one of them another name (entries are keyed by model name)"
                              for k in clash)
    by_name = {m.name: m for m in models}
    for r in checked:  # regressions are now measured against the new baseline
        m = by_name[r.name]
        kept = [i for i in r.items if i.finding.code != "WL305"]
        findings = _lint_totals(m, config, r.summary, [], new.get(m.name))
        r.items = kept + [_locate(f, m, config) for f in findings if f.code == "WL305"]


# ---- inline suppression: `# wattlint: noqa[: CODES]` on a model's entry in pyproject.toml ---------------------------
# (wattlint.lint.noqa: the entries are located by reading the file's TOML structure, never guessed)


def noqa_codes(config, model) -> frozenset[str]:
    """Codes suppressed by ``# wattlint: noqa`` comments inside the model's entry (:func:`wattlint.lint.noqa.noqa_codes`)."""
    from .noqa import noqa_codes as _codes

    return _codes(config, model)


def stray_noqa(config) -> list[str]:
    """Notices for ``# wattlint: noqa`` comments outside every model entry (:func:`wattlint.lint.noqa.stray_noqa`)."""
    from .noqa import stray_noqa as _stray

    return _stray(config)


def toml_comments(lines: list[str]) -> list[str]:
    """Each line's TOML comment (from its '#' on), '' where it has none: a '#' inside a string is text, not a
    comment ('name = "lm # wattlint: noqa: WL3"' was read as a malformed noqa, exit 2; a noqa line inside a
    multi-line string would have suppressed rules). Basic and literal strings, one- and multi-line."""
    out = []
    multi = None  # the closing delimiter of a multi-line string open from an earlier line
    for ln in lines:
        i, n, comment = 0, len(ln), ""
        while i < n:
            if multi:
                end = ln.find(multi, i)
                while multi == '"""' and end > 0 and ln[end - 1] == "\\" and not _escaped_backslash(ln, end - 1):
                    end = ln.find(multi, end + 1)
                if end < 0:
                    i = n
                    break
                i, multi = end + 3, None
                continue
            c = ln[i]
            if c == "#":
                comment = ln[i:]
                break
            if ln.startswith('"""', i) or ln.startswith("'''", i):
                multi, i = ln[i:i + 3], i + 3
                continue
            if c in "\"'":
                j = i + 1
                while j < n and ln[j] != c:
                    j += 2 if (c == '"' and ln[j] == "\\") else 1
                i = j + 1
                continue
            i += 1
        out.append(comment)
    return out


def _escaped_backslash(ln: str, k: int) -> bool:
    """Whether the backslash at ``k`` is itself escaped (an even run of backslashes before it ends in it)."""
    run = 0
    while k - run - 1 >= 0 and ln[k - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def _suppressed(code: str, noqa: frozenset[str]) -> bool:
    return "ALL" in noqa or any(code.startswith(c) for c in noqa)


def estimate_model(m, config):
    """Trace + estimate one configured model through the request path and run its graph rules (the totals rules run
    in :func:`check`, on fresh and cached results alike). Imports the estimator (and torch/onnx) lazily."""
    from ..api import Request, models_search_path, run
    from ..options import DEFAULT_GPU, as_config_keys
    from ..types import WattlintError
    from .engine import summarize

    if str(config.root) not in sys.path:
        sys.path.insert(0, str(config.root))  # so 'pkg.module:attr' sources import from the project
    opts = dict(m.options)
    gpu = opts.pop("gpu", None)
    notes: tuple[str, ...] = ()
    if not gpu:
        gpu = DEFAULT_GPU
        notes = (f"no gpu configured (model or [tool.wattlint]): {DEFAULT_GPU} (default)",)
    try:
        est = run(Request(source=m.source, gpus=(gpu,), options=opts, config=config, model=m, notes=notes,
                          totals_rules=False, models_dirs=models_search_path(config.cli_models_dir, config)))[0]
    except WattlintError as e:
        # every option here came from the configuration: name its keys, not the command line's flags
        raise type(e)(f"model {m.name!r} ({m.raw_source}): {as_config_keys(str(e))}") from None
    # a finding's advice names the configuration's keys ('activation-checkpointing'), as the notes below do
    findings = [dataclasses.replace(f, model=f.model or m.name, message=as_config_keys(f.message))
                for f in est.findings]
    # the notes' advice names the configuration's keys ('loader-sample-time'), not the command line's flags
    est = dataclasses.replace(est, assumptions=tuple(as_config_keys(a) for a in est.assumptions))
    return summarize(est), findings


def _finding_dict(f) -> dict:
    return {"code": f.code, "severity": f.severity, "message": f.message, "layer": f.layer,
            "saving_kwh": f.saving_kwh, "saving_pct": f.saving_pct, "model": f.model}


def _finding(d):
    return Finding(code=d["code"], severity=d["severity"], message=d["message"], layer=d.get("layer"),
                   saving_kwh=d.get("saving_kwh"), saving_pct=d.get("saving_pct"), model=d.get("model"))


def _config_line(config, model) -> int:
    """Line of the model's entry in the config file (:func:`wattlint.lint.noqa.entry_line`; 1 without a file)."""
    from .noqa import entry_line

    return entry_line(config, model) if config.path is not None else 1


def _def_line(path: Path, attr: str | None) -> int:
    if not attr:
        return 1
    name = attr.split(".")[0]
    try:
        for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if re.match(rf"^\s*(def|class)\s+{re.escape(name)}\b", ln) or re.match(rf"^{re.escape(name)}\s*=", ln):
                return i + 1
    except (OSError, UnicodeDecodeError):
        pass
    return 1


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _entry_place(model, config):
    """The model's entry in the configuration file (or its source where there is no file)."""
    from .results import Place

    if config.path is not None:
        return Place(_rel(config.path, config.root), _config_line(config, model))
    return Place(_rel(model.path, config.root) if model.path else model.raw_source, 1)


def _locate(f, model, config):
    """Where a finding points: graph findings at the PyTorch source (def line of the attribute); budget/regression
    findings, and findings of binary/JSON sources (ONNX, config.json), at the model's entry in pyproject.toml."""
    from .results import Located

    graph_finding = f.code[:3] in ("WL1", "WL2") or f.code == "WL401" or f.code == "WL403"
    if graph_finding and model.path is not None and model.path.suffix == ".py":
        return Located(f, _rel(model.path, config.root), _def_line(model.path, model.attr))
    where = _entry_place(model, config)
    return Located(f, where.path, where.line)
