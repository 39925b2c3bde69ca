"""``wattlint check [PATHS...]``: lint the configured models against rules, budgets and the baseline.

Exit codes: 0 no error-severity finding; 1 at least one error (budget exceeded, regression beyond the threshold,
does not fit); 2 usage or configuration error (one line), or a model that could not be estimated (one line each,
after the report of the models that could: they are still checked, the output still written). Unchanged models are answered from the result cache
(wattlint.cache) without importing torch, onnx or the estimator.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..options import CHECK_FORMATS as FORMATS
from ._common import add_output_argument, check_output_path, format_for, nonempty, project_inputs, write_output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="check only the models whose source (or a project file it imports) is among these files or "
                        "under these directories; pyproject.toml or the baseline selects all models (default: all)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="output format (default: the one an --output name implies (.json, .sarif, .txt), else "
                        "'format' in [tool.wattlint], else text)")
    p.add_argument("--config", metavar="PATH", help="configuration file (default: nearest pyproject.toml with "
                                                    "[tool.wattlint])")
    p.add_argument("--update-baseline", action="store_true",
                   help="write the estimates of the checked models to the baseline file (then commit it)")
    p.add_argument("--force-exclude", action="store_true",
                   help="honour 'exclude' for paths passed explicitly (as pre-commit does)")
    p.add_argument("--no-cache", action="store_true", help="re-estimate every model (ignore the result cache)")
    p.add_argument("--select", metavar="CODES", help="comma-separated rule codes/prefixes (overrides the config)")
    p.add_argument("--ignore", metavar="CODES", help="comma-separated rule codes/prefixes (or ALL) to turn off, "
                   "whatever the config selects")
    add_output_argument(p, FORMATS)
    # the configuration's 'format' applies to an --output name that implies none (review: the shared help said "any
    # other name: text", but `format = "json"` wrote JSON to report.md): the help says what the command does
    next(a for a in p._actions if a.dest == "output").help = (
        "write the report to FILE instead of stdout ('-': stdout; atomically; missing parent folders are created); "
        "without --format, a .json / .sarif / .txt name picks the format, any other name gets 'format' in "
        "[tool.wattlint] (else text)")
    p.add_argument("--fail-on", choices=("error", "warning", "info"), default="error",
                   help="exit 1 when a finding is at least this severe (default error: budgets, regressions, "
                        "does not fit)")
    p.add_argument("--exit-zero", action="store_true", help="always exit 0 when the check ran (report only)")
    p.add_argument("--models-dir", metavar="DIR", type=nonempty("folder name"), help="fitted energy models to search first (see 'wattlint "
                   "estimate --help')")


def _codes(text: str | None) -> tuple[str, ...]:
    return tuple(c.strip().upper() for c in (text or "").split(",") if c.strip())


def run(args) -> int:
    import dataclasses

    from ..config import load_config
    from ..lint.check import check
    from ..types import ConfigError

    config = load_config(path=_config_arg(args.config)) if args.config is not None else load_config(Path.cwd())
    if args.select is not None or args.ignore is not None:
        from ..config import _check_code, _rule_registry
        from ..types import InputError

        known, _ = _rule_registry()
        for opt, text in (("--select", args.select), ("--ignore", args.ignore)):
            if text is not None and not _codes(text):
                raise InputError(f"{opt} {text!r} names no rule code (expected e.g. 'WL301', a prefix like 'WL3', "
                                 "or 'ALL'; 'wattlint rules' lists them)")
            for c in _codes(text):
                _check_code(c, known, "command line", opt, opt.lstrip("-"))
        changes = {}
        if args.select is not None:
            changes["select"] = _codes(args.select)
        if args.ignore is not None:
            changes["force_ignore"] = _codes(args.ignore)
        config = dataclasses.replace(config, **changes)
    if not config.select and not _selects_any(config):
        # refused as `--select ''` is: every rule off, budgets included, and the check passed. Only where nothing
        # else selects a rule: `extend-select`, a model's own `select` or `--select` enable rules past `select = []`
        # (review: those combinations ran before and were refused)
        from ..config import _where

        raise ConfigError(f"{_where(config.path)}: [tool.wattlint]: 'select' = [] names no rule code and nothing else "
                          "selects one (no 'extend-select', no model's own 'select', no --select), so no rule would "
                          "run (expected e.g. [\"WL301\"], a prefix like \"WL3\", or \"ALL\"; 'wattlint rules' lists "
                          "them; ignore = [\"ALL\"] turns every rule off)")
    from ..api import models_search_path

    if args.models_dir:
        config = dataclasses.replace(config, cli_models_dir=Path(args.models_dir).expanduser().resolve())
    # a folder that is not there (--models-dir, the config's, $WATTLINT_MODELS_DIR): one line, not one per model
    models_search_path(args.models_dir, config)
    if config.path is None and not config.models:
        raise ConfigError("no [tool.wattlint] configuration found (pyproject.toml in this directory or above); "
                          "see docs/CONFIG.md")
    if any(not p.strip() for p in args.paths):  # Path('') is '.': an empty argument checked every model
        from ..types import InputError

        raise InputError("an empty PATH argument names no file or directory (PATH arguments select the configured "
                         "models whose source is among them; pass none to check them all)")
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:  # a mistyped path would otherwise select no model and pass ("no configured model matched")
        from ..types import InputError

        raise InputError(f"{missing[0]}: no such file or directory (PATH arguments select the configured models "
                         "whose source is among them)")
    fmt = args.format or format_for(args.output, FORMATS) or config.format or "text"
    inputs = [*project_inputs(config), *((m.path, f"the model file of {m.name}") for m in config.models)]
    check_output_path(args.output, config.root, inputs)
    result = check(config, [Path(p) for p in args.paths], update_baseline=args.update_baseline,
                   force_exclude=args.force_exclude, use_cache=not args.no_cache)
    result.fail_on, result.exit_zero = args.fail_on, bool(args.exit_zero)
    write_output(args.output, render(result, fmt), config.root, inputs)
    if args.output:
        print(f"wattlint: wrote {args.output} ({fmt})", file=sys.stderr)
    for error in result.errors:  # the models that could not be estimated: one line each, after the others' report
        print(f"wattlint: error: {' '.join(error.split())}", file=sys.stderr)
    return result.exit_code


def _selects_any(config) -> bool:
    """Whether the selection -- ``select``, ``extend-select``, a model's own ``select`` and ``--select`` combined as
    :func:`wattlint.lint.engine.is_enabled` combines them -- enables any rule for any model (for the project itself
    when it has none). The ignore lists are left out: an ignore turns off what the selection enabled, on purpose
    (``--ignore ALL``: estimates only), where an empty selection enables nothing to begin with."""
    import dataclasses

    from ..lint.engine import is_enabled
    from ..lint.registry import all_rules

    bare = dataclasses.replace(config, ignore=(), force_ignore=())
    models = [dataclasses.replace(m, ignore=()) for m in config.models] or [None]
    return any(is_enabled(rule, bare, m) for rule in all_rules().values() for m in models)


def _config_arg(text: str) -> Path:
    """``--config``: an empty value (it fell back to the configuration found from here) and a path that is no
    regular file (/dev/null was "not found") are refused with what they are."""
    import os
    import stat

    from ..types import ConfigError

    if not text.strip():
        raise ConfigError(f"--config {text!r} names no file: name the pyproject.toml (or TOML file) to read, or leave "
                          "--config out to use the nearest pyproject.toml with [tool.wattlint]")
    path = Path(text)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return path  # load_config says it is not found (or cannot be read)
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        kind = "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
            "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise ConfigError(f"--config {text}: {kind}, not a TOML file: name the pyproject.toml (or TOML file) to read")
    return path


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
