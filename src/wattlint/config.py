"""``[tool.wattlint]`` configuration: one schema for estimate defaults and for ``wattlint check``.

The schema is documented in docs/CONFIG.md (extending shared/DESIGN.md §8). Keys are written in kebab-case in TOML
(``batch-size``); snake_case (``batch_size``) is accepted too. Python attributes and ``Config.defaults`` keys are
snake_case and match the CLI option ``dest`` names, so a command can do
``value = args.batch_size if args.batch_size is not None else config.defaults.get("batch_size")``.

Every unknown key is a :class:`ConfigError` naming the key and its table; every bad value is a :class:`ConfigError`
naming the key, the value and what was expected. Nothing here imports torch/onnx; rule codes and rule options are
validated against the lint registry (pure Python, light).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

try:  # Python 3.11+
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as _toml  # type: ignore[no-redef]

from . import options as O
from .types import ConfigError

__all__ = ["Config", "ModelConfig", "load_config", "PLAN_KEYS", "BUDGET_KEYS", "find_pyproject", "parse_config"]

FORMATS = O.CHECK_FORMATS
_str = O.nonempty_str


def _path_str(v: Any, *, text: bool = False) -> str:
    """A non-empty path string without control characters (a NUL cannot name a file)."""
    v = O.nonempty_str(v)
    if any(ord(c) < 0x20 or ord(c) == 0x7f for c in v):
        raise ValueError("expected a file path (it holds a control character)")
    return v


_bool = O.boolean
_str_list = O.str_list
_fraction = O.number(0.0, 1.0, lo_open=False)
_nonneg_number = O.number(0.0, 1e18, lo_open=False)
_positive_number = O.number(0.0, 1e18)

# ---- the schema ------------------------------------------------------------------------------------------------

#: Estimate / plan options (the one table, wattlint.options). Allowed at the top level (defaults for every command)
#: and in each [[models]] entry. snake_case name -> checker; aliases (e.g. 'price' for 'price-per-kwh') included.
PLAN_KEYS: dict[str, Callable[[Any], Any]] = {
    **{n: o.check for n, o in O.OPTIONS.items() if not o.flag_only},
    **{alias: O.OPTIONS[name].check for alias, name in O.ALIASES.items()},
}

#: Budget keys (per model, or a top-level default budget). Exceeding one is an error (WL301-WL304).
BUDGET_KEYS: dict[str, Callable[[Any], Any]] = {
    "energy_kwh": _positive_number,
    "co2_kg": _positive_number,
    "cost_usd": _positive_number,
    "time_h": _positive_number,
    "gpu_hours": _positive_number,
}

#: Top-level keys of [tool.wattlint] that are not plan options.
CHECK_KEYS: dict[str, Callable[[Any], Any] | None] = {
    "select": _str_list,
    "ignore": _str_list,
    "extend_select": _str_list,
    "preview": _bool,
    "exclude": lambda v: _exclude_globs(v),
    "baseline": _path_str,
    "regression_threshold": _fraction,
    "cache": _bool,
    "cache_dir": _path_str,
    "models_dir": _path_str,  # fitted energy models searched first (before $WATTLINT_MODELS_DIR, user dir, shipped)
    "format": O.choice(*FORMATS),
    "budget": None,  # table, handled separately
    "rules": None,  # table of per-rule option tables
    "models": None,  # array of tables
}

#: Keys of one [[tool.wattlint.models]] entry besides the plan options.
MODEL_KEYS: dict[str, Callable[[Any], Any] | None] = {
    "name": _str,
    "source": _path_str,
    "budget": None,
    "select": _str_list,
    "ignore": _str_list,
    "regression_threshold": _fraction,
}

DEFAULT_BASELINE = "wattlint-baseline.json"
DEFAULT_REGRESSION_THRESHOLD = 0.05


# ---- result types ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelConfig:
    """One ``[[tool.wattlint.models]]`` entry.

    ``source`` is the spec string with its file part resolved against the config's directory (absolute);
    ``path`` is that file (None for ``package.module:attr`` specs); ``plan`` holds only the options written in this
    entry, ``options`` the effective ones (top-level defaults overlaid by this entry's).
    """

    name: str
    source: str
    path: Path | None
    attr: str | None
    raw_source: str
    plan: Mapping[str, Any]
    options: Mapping[str, Any]
    budget: Mapping[str, float]
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    regression_threshold: float | None = None
    index: int = 0

    @property
    def is_module_spec(self) -> bool:
        return self.path is None


@dataclass(frozen=True)
class Config:
    """The effective ``[tool.wattlint]`` configuration (empty defaults when no file was found)."""

    path: Path | None = None  # the file read (pyproject.toml or a standalone TOML), None if none
    root: Path = field(default_factory=Path.cwd)  # directory relative paths are resolved against
    defaults: Mapping[str, Any] = field(default_factory=dict)  # plan options written at the top level
    select: tuple[str, ...] = ("WL",)
    extend_select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    # ``check --ignore`` codes: the command line overrides the file, so these win over any select, however specific
    # (a configured select = ["WL101"] would otherwise keep WL101 on under ``--ignore ALL`` or ``--ignore WL1``)
    force_ignore: tuple[str, ...] = ()
    preview: bool = False
    exclude: tuple[str, ...] = ()
    baseline: Path | None = None  # absolute
    regression_threshold: float = DEFAULT_REGRESSION_THRESHOLD
    cache: bool = True
    cache_dir: Path | None = None
    models_dir: Path | None = None  # absolute
    # ``check --models-dir``: searched before ``models_dir`` (the command line comes first, as for an estimate)
    cli_models_dir: Path | None = None
    format: str | None = None
    budget: Mapping[str, float] = field(default_factory=dict)  # default budget for every model
    rule_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # code -> {option: value}
    models: tuple[ModelConfig, ...] = ()

    @property
    def baseline_path(self) -> Path:
        return self.baseline if self.baseline is not None else self.root / DEFAULT_BASELINE

    def model(self, name: str) -> ModelConfig:
        for m in self.models:
            if m.name == name:
                return m
        raise ConfigError(f"no model named {name!r} in {self.path or '[tool.wattlint]'}")

    def check_sources(self) -> None:
        """Raise ConfigError for the first model whose source file does not exist, is a directory, or is no regular
        file (a named pipe, a device, a symbolic link loop: reading or hashing one never ends, or fails as "not
        found")."""
        from .io import not_a_file

        for m in self.models:
            if m.path is not None and m.path.is_dir():
                raise ConfigError(f"{_where(self.path)}: model {m.name!r}: source {m.raw_source} is a directory "
                                  f"({m.path}); name the model file (file.onnx, config.json or file.py:attr)")
            what = not_a_file(m.path) if m.path is not None else None
            if what is not None:
                raise ConfigError(f"{_where(self.path)}: model {m.name!r}: source {m.raw_source} is {what}, not a "
                                  f"file (resolved to {m.path}); name the model file (file.onnx, config.json or "
                                  "file.py:attr)")
            if m.path is not None and not m.path.exists():
                raise ConfigError(f"{_where(self.path)}: model {m.name!r}: source file not found: {m.raw_source} "
                                  f"(resolved to {m.path})")

    def is_excluded(self, path: Path | str) -> bool:
        return is_excluded(path, self.exclude, self.root)


# ---- loading ---------------------------------------------------------------------------------------------------

def _mentions_wattlint(text: str) -> bool:
    """Whether a pyproject.toml's text holds a ``tool.wattlint`` key, whatever its value: a ``[tool.wattlint]`` (or
    ``[[tool.wattlint...]]``) header, ``wattlint.gpu = ...`` or ``wattlint = ...`` under ``[tool]`` (TOML's dotted
    keys), ``tool.wattlint... = ...`` or ``tool = { wattlint = ... }`` at the top. Such a file is wattlint's
    configuration, broken or not: the search stops there and loading it says what is wrong, instead of going on to a
    parent directory's configuration (a CI check then gated other models and passed). A file that is not valid TOML
    is read line by line for the same keys; one that mentions wattlint elsewhere only (a dependency) is not ours."""
    if "wattlint" not in text:
        return False
    try:
        data = _toml.loads(text.lstrip("\ufeff"))
    except (_toml.TOMLDecodeError, RecursionError):
        return _mentions_wattlint_raw(text)
    tool = data.get("tool")
    return isinstance(tool, dict) and "wattlint" in tool


_HEADER = re.compile(r"^\[\[?([^\[\]#]*)")  # its closing bracket may be what is missing
_QUOTES_AND_BLANKS = re.compile(r"[\s\"']")


def _is_wattlint_key(dotted: str) -> bool:
    return dotted == "tool.wattlint" or dotted.startswith("tool.wattlint.")


def _mentions_wattlint_raw(text: str) -> bool:
    """:func:`_mentions_wattlint` for a file TOML cannot parse: table headers and ``key =`` lines, quotes and blanks
    around the dots of a key ignored (``[ "tool" . wattlint ]``)."""
    table = ""
    for line in text.lstrip("\ufeff").splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = _HEADER.match(s)
        if m:
            table = _QUOTES_AND_BLANKS.sub("", m.group(1))
            if _is_wattlint_key(table):
                return True
            continue
        key, eq, value = s.partition("=")
        if not eq:
            continue
        key = _QUOTES_AND_BLANKS.sub("", key)
        if _is_wattlint_key(f"{table}.{key}" if table else key):
            return True
        if not table and key == "tool" and _inline_names_wattlint(value):  # tool = { wattlint = {...} }
            return True
    return False


# a TOML string (basic or literal), a bracket, a separator, or a run of anything else
_INLINE_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"?|\'[^\']*\'?|[{}\[\],=.]|[^\s{}\[\],=."\']+')


def _inline_names_wattlint(value: str) -> bool:
    """Whether the inline table ``value`` (the right of ``tool = { ... }``, perhaps unclosed) has a key ``wattlint``
    at its own level, bare or quoted (``{ wattlint = {...} }``, ``{ "wattlint".gpu = "a100" }``): not the word in a
    string value (``{ note = "wattlint" }``), in a nested table's key or after a comment."""
    tokens = _INLINE_TOKEN.findall(value)
    if not tokens or tokens[0] != "{":
        return False
    depth, key_next = 0, False
    for i, tok in enumerate(tokens):
        if tok.startswith("#"):
            return False  # a comment: the rest of the line
        if tok in ("{", "["):
            depth += 1
            key_next = tok == "{" and depth == 1
        elif tok in ("}", "]"):
            depth -= 1
            key_next = False
            if depth == 0:
                return False
        elif tok == ",":
            key_next = depth == 1
        else:
            if key_next and tok.strip("\"'") == "wattlint" and tokens[i + 1:i + 2] in (["="], ["."]):
                return True
            key_next = False  # a value, '=', or a dotted key's '.' (its next part is no key of tool's)
    return False


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml at or above ``start`` that holds the ``[tool.wattlint]`` configuration, valid or not
    (:func:`_mentions_wattlint`), or that cannot be read (it may hold it: :func:`load_config` says it cannot read it,
    rather than using a configuration further up). A pyproject.toml that does not mention ``tool.wattlint`` (another
    subproject's) is passed over."""
    here = Path(start or Path.cwd()).resolve()
    if here.is_file():
        here = here.parent
    for d in (here, *here.parents):
        candidate = d / "pyproject.toml"
        if os.path.isfile(candidate):
            try:  # a file that is not UTF-8 is still found here if it names [tool.wattlint]; loading it says why not
                raw = candidate.read_bytes()
            except OSError:
                return candidate
            utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")  # an editor's UTF-16: found, then refused as not UTF-8
            text = raw.decode("utf-16" if utf16 else "utf-8", errors="replace")
            if _mentions_wattlint(text):
                return candidate
    return None


def load_config(start: Path | None = None, *, path: Path | None = None) -> Config:
    """Load ``[tool.wattlint]``.

    ``path``: an explicit file (``--config``): a pyproject.toml (its ``[tool.wattlint]`` table) or a standalone TOML
    file whose top level is the table (a ``[tool.wattlint]`` table inside it is used if present). Otherwise the nearest
    pyproject.toml with a ``[tool.wattlint]`` table at or above ``start`` (default: the current directory; one that
    holds a broken ``tool.wattlint`` or cannot be read is a ConfigError, never passed over for a parent's: see
    :func:`find_pyproject`); none found gives the defaults, rooted at ``start``.
    """
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"--config {path} is a directory: name the pyproject.toml (or TOML file) in it")
        from .io import not_a_file

        what = not_a_file(path)
        if what is not None:  # a pipe, a device, a link loop: it exists, "not found" was wrong
            raise ConfigError(f"--config {path}: is {what}, not a TOML file: name the pyproject.toml (or TOML file) "
                              "to read")
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        file = path.resolve()
    else:
        file = find_pyproject(start)
        if file is None:
            root = Path(start or Path.cwd()).resolve()
            return Config(path=None, root=root.parent if root.is_file() else root)
    try:
        data = _toml.loads(file.read_text(encoding="utf-8").lstrip("\ufeff"))  # a UTF-8 BOM some editors write
    except _toml.TOMLDecodeError as e:
        raise ConfigError(f"{_where(file)}: invalid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{_where(file)}: not UTF-8 text (byte {e.start}); TOML files must be UTF-8") from None
    except RecursionError:
        raise ConfigError(f"{_where(file)}: invalid TOML: arrays or tables nested too deeply") from None
    except OSError as e:  # found on the way up, it may hold the configuration: never passed over for a parent's
        hint = "" if path is not None else " (it may hold the [tool.wattlint] configuration: make it readable)"
        raise ConfigError(f"{_where(file)}: cannot read it: {e.strerror or e}{hint}") from None
    tool = data.get("tool")
    if isinstance(tool, dict) and "wattlint" in tool:
        table = tool["wattlint"]
    elif path is not None and file.name != "pyproject.toml":
        table = data
    elif path is not None:  # --config naming a pyproject.toml without the table: it checked nothing, exit 0
        raise ConfigError(f"--config {path}: no [tool.wattlint] table in it (see docs/CONFIG.md)")
    else:
        table = {}
    if not isinstance(table, dict):
        raise ConfigError(f"{_where(file)}: [tool.wattlint] must be a table (a [tool.wattlint] section of keys like "
                          f"gpu = \"h100\"), got {_toml_type(table)} {_show(table)}")
    return parse_config(table, root=file.parent, path=file)


def parse_config(table: Mapping[str, Any], *, root: Path, path: Path | None = None) -> Config:
    """Validate a ``[tool.wattlint]`` table (already parsed TOML) and build the :class:`Config`."""
    where = _where(path)
    table = _normalize(table, where, "[tool.wattlint]", {**PLAN_KEYS, **CHECK_KEYS})
    defaults: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key in PLAN_KEYS:
            defaults[key] = _check(PLAN_KEYS[key], value, where, "[tool.wattlint]", key)
        elif CHECK_KEYS.get(key) is not None:
            kwargs[key] = _check(CHECK_KEYS[key], value, where, "[tool.wattlint]", key)

    known_codes, rule_option_specs = _rule_registry()
    for key in ("select", "extend_select", "ignore"):
        if key in kwargs:  # case-insensitive, as --select / --ignore and '# wattlint: noqa' comments are
            kwargs[key] = type(kwargs[key])(c.upper() for c in kwargs[key])
        for code in kwargs.get(key, ()):
            _check_code(code, known_codes, where, "[tool.wattlint]", key)

    budget = _parse_budget(table.get("budget"), where, "[tool.wattlint.budget]")
    rule_options = _parse_rule_options(table.get("rules"), where, known_codes, rule_option_specs)

    root = Path(root).resolve()
    if "baseline" in kwargs:  # its folder resolved, the file itself not: a baseline that is a link stays a link
        q = Path(kwargs["baseline"]).expanduser()  # (write_baseline refuses a dangling one, writes through a live one)
        q = q if q.is_absolute() else root / q
        kwargs["baseline"] = q.parent.resolve() / q.name
    for key in ("cache_dir", "models_dir"):
        if key in kwargs:
            kwargs[key] = _resolve(root, kwargs[key])

    models_raw = table.get("models", [])
    if isinstance(models_raw, dict):
        models_raw = [models_raw]
    if not isinstance(models_raw, list) or not all(isinstance(m, dict) for m in models_raw):
        raise ConfigError(f"{where}: [tool.wattlint] 'models': expected an array of tables ([[tool.wattlint.models]])")
    models: list[ModelConfig] = []
    names: set[str] = set()
    for i, raw in enumerate(models_raw):
        m = _parse_model(raw, i, root, where, defaults, budget, known_codes)
        if m.name in names:
            raise ConfigError(f"{where}: [[tool.wattlint.models]] #{i + 1}: duplicate model name {m.name!r}")
        names.add(m.name)
        models.append(m)

    if "baseline" in kwargs:
        _refuse_baseline_over(kwargs["baseline"], path, models, where)
    return Config(path=path, root=root, defaults=defaults, budget=budget, rule_options=rule_options,
                  models=tuple(models), **kwargs)


def _refuse_baseline_over(baseline: Path, config_path: Path | None, models, where: str) -> None:
    """A ``baseline`` that names this configuration file or a model's source file is refused (ConfigError): the
    baseline is rewritten by ``--update-baseline``, and the advice for a damaged baseline ("delete it") would
    point at the user's configuration or model."""
    from .io import same_file

    what = "this configuration file" if same_file(baseline, config_path) else next(
        (f"the source of model {m.name!r}" for m in models if same_file(baseline, m.path)), None)
    if what is not None:
        raise ConfigError(f"{where}: [tool.wattlint] baseline = {str(baseline)!r}: is {what}; the baseline is a "
                          f"JSON file wattlint writes (default {DEFAULT_BASELINE}): name another file")


def _parse_model(raw: Mapping[str, Any], i: int, root: Path, where: str, defaults: Mapping[str, Any],
                 default_budget: Mapping[str, float], known_codes) -> ModelConfig:
    label = f"[[tool.wattlint.models]] #{i + 1}"
    if isinstance(raw.get("name"), str):
        label += f" ({raw['name']!r})"
    raw = _normalize(raw, where, label, {**PLAN_KEYS, **MODEL_KEYS})
    if "source" not in raw:
        raise ConfigError(f"{where}: {label}: missing required key 'source'")
    plan: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for key, value in raw.items():
        if key in PLAN_KEYS:
            plan[key] = _check(PLAN_KEYS[key], value, where, label, key)
        elif MODEL_KEYS.get(key) is not None:
            other[key] = _check(MODEL_KEYS[key], value, where, label, key)
    for key in ("select", "ignore"):
        if key in other:
            other[key] = type(other[key])(c.upper() for c in other[key])
        for code in other.get(key, ()):
            _check_code(code, known_codes, where, label, key)
    raw_source = other["source"]
    source, path, attr = resolve_source(raw_source, root)
    name = other.get("name") or (path.stem if path is not None else raw_source.split(":")[0].rsplit(".", 1)[-1])
    budget = dict(default_budget)
    budget.update(_parse_budget(raw.get("budget"), where, f"{label} budget"))
    return ModelConfig(name=name, source=source, path=path, attr=attr, raw_source=raw_source, plan=plan,
                       options=O.overlay(defaults, plan), budget=budget, select=other.get("select", ()),
                       ignore=other.get("ignore", ()), regression_threshold=other.get("regression_threshold"),
                       index=i)


def resolve_source(spec: str, root: Path) -> tuple[str, Path | None, str | None]:
    """Resolve a model spec against ``root``: (resolved spec, file or None for a module spec, attr or None).

    ``models/x.onnx`` and ``config.json`` are files; ``path/file.py:build`` is a file plus an attribute;
    ``pkg.module:build`` (no slash, no ``.py``) is an importable module plus an attribute.
    """
    attr = None
    target = spec
    m = re.match(r"^(.*):([A-Za-z_][\w.]*)$", spec)
    if m and not re.match(r"^[A-Za-z]:[\\/]", spec):  # not a Windows drive letter
        target, attr = m.group(1), m.group(2)
    # a folder named like the module (``mypkg:build`` beside ``mypkg/``) is the package, imported as a module
    is_file = attr is None or "/" in target or "\\" in target or target.endswith(".py") or \
        (root / target).is_file()
    if not is_file:
        return spec, None, attr
    path = _resolve(root, target)
    return (f"{path}:{attr}" if attr else str(path)), path, attr


# ---- helpers ---------------------------------------------------------------------------------------------------

def _where(path: Path | None) -> str:
    if path is None:
        return "[tool.wattlint]"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _toml_type(value: Any) -> str:
    """The TOML name of a parsed value's type ('a string', 'an array')."""
    import datetime

    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, (datetime.date, datetime.time)):
        return "a date-time"
    return "a " + type(value).__name__


def _resolve(root: Path, p: str) -> Path:
    q = Path(p).expanduser()
    if q.is_absolute():
        return q
    try:
        return (root / q).resolve()
    except (RuntimeError, OSError):  # a symbolic link loop (RuntimeError before Python 3.13): refused where it is used
        return Path(os.path.abspath(root / q))


def _normalize(table: Mapping[str, Any], where: str, label: str, allowed: Mapping[str, Any]) -> dict[str, Any]:
    """kebab-case -> snake_case; unknown keys and keys given twice are errors naming the key."""
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in table.items():
        norm = key.replace("-", "_")
        if norm in O.ALIASES and O.ALIASES[norm] in allowed:  # one option, two spellings ('price' = 'price-per-kwh')
            norm = O.ALIASES[norm]
        if norm not in allowed:
            raise ConfigError(f"{where}: {label}: unknown key '{key}'{_unknown_key_hint(norm, allowed)}")
        if norm in out:
            raise ConfigError(f"{where}: {label}: key '{key}' given twice (as '{spelled[norm]}' and '{key}')")
        out[norm] = value
        spelled[norm] = key
    return out


UNIT_WORDS = ("kwh", "hour", "co2", "usd")
# report options of the command line that no configuration file sets (docs/CONFIG.md)
CLI_ONLY = ("output", "compare", "top", "group_by", "depth")


def _unknown_key_hint(norm: str, allowed: Mapping[str, Any]) -> str:
    """What to say of an unknown key: a budget key outside a budget table, a command-line-only option, or a close
    spelling of an allowed key (close enough to be a typo: 'gpu-hours' is not 'gpu-hour-price')."""
    kebab = norm.replace("_", "-")
    if norm in BUDGET_KEYS and norm not in allowed:
        return f" ('{kebab}' is a budget key: put it in budget = {{ {kebab} = ... }})"
    if norm in CLI_ONLY:
        return f" (--{kebab} is a command-line option only)"
    choices = sorted({k.replace("_", "-") for k in allowed})
    unit = next((u for u in UNIT_WORDS if u in kebab), None)  # 'price-per-gpu-hour' is not 'price-per-kwh'
    if unit is not None:
        choices = [c for c in choices if unit in c]
    hint = difflib.get_close_matches(kebab, choices, n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


def _check(checker: Callable[[Any], Any], value: Any, where: str, label: str, key: str) -> Any:
    try:
        return checker(value)
    except ValueError as e:
        raise ConfigError(f"{where}: {label}: '{key.replace('_', '-')}' = {_show(value)}: {e}") from None


def _show(value: Any) -> str:
    text = repr(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_budget(raw: Any, where: str, label: str) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {label}: expected a table like {{ energy-kwh = 500, co2-kg = 200 }}")
    raw = _normalize(raw, where, label, BUDGET_KEYS)
    return {k: _check(BUDGET_KEYS[k], v, where, label, k) for k, v in raw.items()}


_CODE_RE = re.compile(r"^(ALL|WL\d{0,3})$")


def _check_code(code: str, known_codes, where: str, label: str, key: str) -> None:
    if not _CODE_RE.match(code):
        raise ConfigError(f"{where}: {label}: '{key}' has invalid rule selector {code!r} "
                          "(expected a code like 'WL301', a prefix like 'WL3', or 'ALL')")
    if code == "ALL" or not known_codes:
        return
    if not any(c.startswith(code) for c in known_codes):
        raise ConfigError(f"{where}: {label}: '{key}' selects no rule: {code!r} (see 'wattlint rules')")


def _rule_registry():
    """(set of codes, {code: {option_name: Option}}) from the lint registry; empty if lint is unavailable."""
    try:
        from .lint.registry import all_rules
    except ImportError:  # pragma: no cover - during bootstrap
        return set(), {}
    rules = all_rules()
    return set(rules), {code: rule.options for code, rule in rules.items()}


def _parse_rule_options(raw: Any, where: str, known_codes, specs) -> dict[str, dict[str, Any]]:
    """``[tool.wattlint.rules.WL104] min-share = 0.3`` (per-rule options; ``severity`` works for every rule)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: [tool.wattlint] 'rules': expected a table of per-rule tables "
                          "([tool.wattlint.rules.WL104])")
    out: dict[str, dict[str, Any]] = {}
    for code, opts in raw.items():
        label = f"[tool.wattlint.rules.{code}]"
        if known_codes and code not in known_codes:
            hint = difflib.get_close_matches(code, sorted(known_codes), n=1)
            raise ConfigError(f"{where}: [tool.wattlint.rules]: unknown rule '{code}'"
                              + (f" (did you mean '{hint[0]}'?)" if hint else ""))
        if not isinstance(opts, dict):
            raise ConfigError(f"{where}: {label}: expected a table of options")
        options = dict(specs.get(code, {}))
        allowed = {name: None for name in options} | {"severity": None}
        opts = _normalize(opts, where, label, allowed)
        parsed: dict[str, Any] = {}
        for key, value in opts.items():
            if key == "severity":
                parsed[key] = _check(O.choice("error", "warning", "info"), value, where, label, key)
            else:
                parsed[key] = _check(options[key].check, value, where, label, key)
        out[code] = parsed
    return out


def _exclude_globs(v) -> tuple[str, ...]:
    """``exclude``: a list of globs, each naming something besides slashes ('/' or '//' excluded exactly the models
    whose source sits outside the project)."""
    globs = _str_list(v)
    for g in globs:
        if not g.strip("/").strip():
            raise ValueError(f"{g!r} names no path: exclude globs are relative to the project root, e.g. "
                             f"'experiments/**' or '/legacy'")
    return globs


def is_excluded(path: Path | str, patterns: tuple[str, ...], root: Path) -> bool:
    """Whether ``path`` matches an exclude glob (gitignore-like: ``**`` spans directories; a pattern without ``/``
    matches any path component; a leading ``/`` anchors it at the project root, as in .gitignore)."""
    if not patterns:
        return False
    p = Path(path)
    p = p if p.is_absolute() else (Path.cwd() / p)
    try:
        rel = p.resolve().relative_to(root).as_posix()
        inside = True
    except ValueError:  # a source outside the project: only a pattern without '/' (a path component) can match it
        rel, inside = p.as_posix(), False
    parts = [x for x in rel.split("/") if x]
    for pat in patterns:
        pat = pat.strip()
        anchored = pat.startswith("/")
        if pat.startswith("./"):
            pat = pat[2:]
        pat = pat.strip("/")
        if not pat:
            continue
        rx = _glob_to_re(pat)
        if "/" in pat or anchored:
            if not inside:
                continue
            if rx.match(rel) or any(rx.match("/".join(parts[:i])) for i in range(1, len(parts))):
                return True
        elif any(rx.match(part) for part in parts):
            return True
    return False


def _glob_to_re(pat: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pat.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")
