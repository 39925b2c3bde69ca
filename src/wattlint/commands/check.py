"""``wattlint check [PATHS...]``: lint the configured models against rules, budgets and the baseline.

Exit codes: 0 no error-severity finding; 1 at least one error (budget exceeded, regression beyond the threshold,
does not fit); 2 usage or configuration error (one line). Unchanged models are answered from the result cache
(wattlint.cache) without importing torch, onnx or the estimator.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

FORMATS = ("text", "json", "sarif", "github")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="check only the models whose source (or a project file it imports) is among these files or "
                        "under these directories; pyproject.toml or the baseline selects all models (default: all)")
    p.add_argument("--format", choices=FORMATS, default=None, help="output format (default text)")
    p.add_argument("--config", metavar="PATH", help="configuration file (default: nearest pyproject.toml with "
                                                    "[tool.wattlint])")
    p.add_argument("--update-baseline", action="store_true",
                   help="write the estimates of the checked models to the baseline file (then commit it)")
    p.add_argument("--force-exclude", action="store_true",
                   help="honour 'exclude' for paths passed explicitly (as pre-commit does)")
    p.add_argument("--no-cache", action="store_true", help="re-estimate every model (ignore the result cache)")
    p.add_argument("--select", metavar="CODES", help="comma-separated rule codes/prefixes (overrides the config)")
    p.add_argument("--ignore", metavar="CODES", help="comma-separated rule codes/prefixes to add to 'ignore'")
    p.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE instead of stdout")


def _codes(text: str | None) -> tuple[str, ...]:
    return tuple(c.strip().upper() for c in (text or "").split(",") if c.strip())


def run(args) -> int:
    import dataclasses

    from ..config import load_config
    from ..types import ConfigError

    config = load_config(path=Path(args.config)) if args.config else load_config(Path.cwd())
    if args.select or args.ignore:
        from ..config import _check_code, _rule_registry

        known, _ = _rule_registry()
        for opt, codes in (("--select", _codes(args.select)), ("--ignore", _codes(args.ignore))):
            for c in codes:
                _check_code(c, known, "command line", opt, opt.lstrip("-"))
        changes = {}
        if args.select:
            changes["select"] = _codes(args.select)
        if args.ignore:
            changes["ignore"] = tuple(config.ignore) + _codes(args.ignore)
        config = dataclasses.replace(config, **changes)
    if config.path is None and not config.models:
        raise ConfigError("no [tool.wattlint] configuration found (pyproject.toml in this directory or above); "
                          "see docs/CONFIG.md")
    fmt = args.format or config.format or "text"
    result = check(config, [Path(p) for p in args.paths], update_baseline=args.update_baseline,
                   force_exclude=args.force_exclude, use_cache=not args.no_cache)
    text = render(result, fmt)
    if args.output:
        from ..cache import atomic_write_text

        atomic_write_text(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return result.exit_code


def render(result, fmt: str) -> str:
    if fmt == "json":
        from ..report.lint_text import render_json

        return render_json(result)
    if fmt == "sarif":
        from .. import __version__
        from ..report.sarif import render_sarif

        return render_sarif(result, __version__)
    if fmt == "github":
        from ..report.github import render_github

        return render_github(result)
    from ..report.lint_text import render_text

    return render_text(result)


# ---- the check -------------------------------------------------------------------------------------------------

def _matches(model, files: list[Path], targets: list[Path]) -> bool:
    for t in targets:
        for f in files:
            if f == t or (t.is_dir() and t in f.parents):
                return True
    return False


def check(config, paths: list[Path], *, update_baseline: bool = False, force_exclude: bool = False,
          use_cache: bool = True):
    from .. import __version__
    from ..cache import ResultCache, model_files
    from ..lint.baseline import entry_from_summary, load_baseline, write_baseline
    from ..lint.engine import run_rules, sort_findings
    from ..lint.results import CheckResult, ModelResult

    config.check_sources()
    baseline_path = config.baseline_path
    baseline = load_baseline(baseline_path)
    cache = ResultCache.for_config(config, enabled=use_cache)

    # which models
    models = list(config.models)
    if paths:
        targets = []
        run_all = False
        for p in paths:
            ap = (Path.cwd() / p).resolve() if not p.is_absolute() else p.resolve()
            if force_exclude and config.is_excluded(ap):
                continue
            if ap.name == "pyproject.toml" or ap == baseline_path or (config.path is not None and ap == config.path):
                run_all = True
            targets.append(ap)
        if not run_all:
            models = [m for m in models if _matches(m, model_files(m, config.root), targets)]
    models = [m for m in models if m.path is None or not config.is_excluded(m.path) or (paths and not force_exclude)]

    result = CheckResult(root=config.root, baseline_path=baseline_path, config_path=config.path)
    for m in models:
        key, _files = cache.key(m, config)
        hit = cache.get(key)
        if hit is not None:
            summary = hit["summary"]
            graph_findings = [_finding(d) for d in hit.get("findings", [])]
            cached = True
        else:
            summary, graph_findings = _estimate_and_lint(m, config)
            cache.put(key, {"summary": summary, "findings": [_finding_dict(f) for f in graph_findings],
                            "model": m.name})
            cached = False
        totals = run_rules(None, None, config, m, summary=summary, baseline=baseline.get(m.name), graph_rules=False)
        findings = sort_findings(list(graph_findings) + totals)
        result.models.append(ModelResult(name=m.name, source=m.raw_source, summary=summary,
                                         items=[_locate(f, m, config) for f in findings], cached=cached))
    cache.save()

    if update_baseline:
        updates = {r.name: entry_from_summary(r.summary, next(m.raw_source for m in models if m.name == r.name))
                   for r in result.models}
        keep = {k: v for k, v in baseline.items() if k not in updates and k in {m.name for m in config.models}}
        new = write_baseline(baseline_path, updates, keep=keep, version=__version__)
        result.baseline_updated = True
        for r, m in zip(result.models, models):  # regressions are now measured against the new baseline
            kept = [i for i in r.items if i.finding.code != "WL305"]
            again = run_rules(None, None, config, m, summary=r.summary, baseline=new.get(m.name), graph_rules=False)
            extra = [f for f in again if f.code == "WL305"]
            r.items = kept + [_locate(f, m, config) for f in extra]
    return result


def _estimate_and_lint(m, config):
    """Trace + estimate one model and run the graph rules. Imports the estimator (and torch/onnx) lazily."""
    from ..lint.engine import run_rules, summarize
    from ..types import WattlintError

    if str(config.root) not in sys.path:
        sys.path.insert(0, str(config.root))  # so 'pkg.module:attr' sources import from the project
    import importlib

    E = importlib.import_module("wattlint.estimate")

    opts = {k: (list(v) if isinstance(v, tuple) else v) for k, v in m.options.items()}
    gpu = opts.pop("gpu", None)
    default_note = None
    if not gpu:
        from .estimate import DEFAULT_GPU

        gpu = DEFAULT_GPU
        default_note = f"no gpu configured (model or [tool.wattlint]): {DEFAULT_GPU} (default)"
    try:
        spec, note = E.resolve(gpu)
        note = note or default_note
        graph = E.analyze_source(m.source, **opts)
        plan = E.make_plan(graph, spec, **{k: v for k, v in opts.items() if k != "inputs"})
        if note:
            import dataclasses

            plan = dataclasses.replace(plan, assumptions=(note,) + tuple(plan.assumptions))
        est = E.estimate_graph(graph, spec, plan, run_lint=False)
    except WattlintError as e:
        raise type(e)(f"model {m.name!r} ({m.raw_source}): {e}") from None
    findings = run_rules(graph, est, config, m, totals_rules=False)
    codes = {(f.code, f.layer) for f in findings}
    from ..lint.engine import is_enabled
    from ..lint.registry import all_rules

    rules = all_rules()
    for f in est.findings:  # built-in findings of the estimator (e.g. WL201), if the rule is enabled
        if (f.code, f.layer) not in codes and (f.code not in rules or is_enabled(rules[f.code], config, m)):
            findings.append(f if f.model else _with_model(f, m.name))
    return summarize(est), findings


def _with_model(f, name):
    import dataclasses

    return dataclasses.replace(f, model=name)


def _finding_dict(f) -> dict:
    return {"code": f.code, "severity": f.severity, "message": f.message, "layer": f.layer,
            "saving_kwh": f.saving_kwh, "saving_pct": f.saving_pct, "model": f.model}


def _finding(d):
    from ..types import Finding

    return Finding(code=d["code"], severity=d["severity"], message=d["message"], layer=d.get("layer"),
                   saving_kwh=d.get("saving_kwh"), saving_pct=d.get("saving_pct"), model=d.get("model"))


_LINE_MEMO: dict[tuple[str, int], int] = {}


def _config_line(config, model) -> int:
    """Line of the model's [[tool.wattlint.models]] entry in the config file (1 if not found)."""
    if config.path is None:
        return 1
    memo = (str(config.path), model.index)
    if memo in _LINE_MEMO:
        return _LINE_MEMO[memo]
    line = 1
    try:
        text = config.path.read_text(encoding="utf-8").splitlines()
        hits = [i + 1 for i, ln in enumerate(text) if re.match(r"^\s*\[\[\s*tool\.wattlint\.models\s*\]\]", ln)]
        if model.index < len(hits):
            line = hits[model.index]
        else:  # inline array: find the source string
            for i, ln in enumerate(text):
                if model.raw_source in ln:
                    line = i + 1
                    break
    except OSError:
        pass
    _LINE_MEMO[memo] = line
    return line


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


def _locate(f, model, config):
    """Where a finding points: graph findings at the PyTorch source (def line of the attribute); budget/regression
    findings, and findings of binary/JSON sources (ONNX, config.json), at the model's entry in pyproject.toml."""
    from ..lint.results import Located

    graph_finding = f.code[:3] in ("WL1", "WL2") or f.code == "WL401" or f.code == "WL403"
    if graph_finding and model.path is not None and model.path.suffix == ".py":
        return Located(f, _rel(model.path, config.root), _def_line(model.path, model.attr))
    if config.path is not None:
        return Located(f, _rel(config.path, config.root), _config_line(config, model))
    return Located(f, _rel(model.path, config.root) if model.path else model.raw_source, 1)
