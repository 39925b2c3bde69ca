"""Result cache for ``wattlint check``: unchanged models cost reading their Python files' imports, a file stat, a few
hashes and one JSON read.

Key (sha256 of a canonical JSON document) =
  * model content: ONNX / config.json -> the file's bytes; PyTorch sources (``file.py:attr``, ``pkg.mod:attr``) ->
    the source file (a module source: with its packages' ``__init__.py``) and every file it imports, transitively,
    found by reading the code with ``ast``, without importing anything (:func:`dependencies`): ``import`` / ``from``
    statements anywhere in a file (module level, functions, try / if blocks; ``import a.b.c`` brings a/__init__.py
    and a/b/__init__.py; relative imports), and calls naming a module or file by a value the file alone determines
    (``importlib.import_module("pkg.dyn")``, ``__import__``, ``importlib.util.spec_from_file_location`` /
    ``find_spec``, ``runpy.run_path`` / ``run_module``, ``getattr(importlib, "import_module")``, the dotted
    targets of ``pydoc.locate`` and hydra's ``get_class`` / ``get_method`` / ``instantiate`` (``_target_``),
    ``exec`` of a literal string, ``sys.path.insert`` of a path built from ``__file__``). Only the project's own
    code is walked: modules are looked up in the source file's own folder (inside the project root or not:
    ``../shared/net.py:build`` importing its sibling ``blocks``), the current directory when inside the project,
    the project root (and ``src/``), start-up sys.path folders inside the project, and the folders the code puts
    on sys.path; every candidate file is kept. A module found only elsewhere (a start-up sys.path folder outside
    the project: PYTHONPATH, .pth files, ``pip install -e ../transformers``; site-packages; the standard library)
    is an installed dependency: not walked, so neither hashed nor scanned for dynamic imports (see versions). A
    model whose own imports only running it can tell (a module name, file or dotted target computed at run time,
    ``exec`` / ``eval`` of code that is not a literal, a sys.path folder or package ``__path__`` computed at run
    time, ``torch.hub.load``) is never cached: estimated on every check, and the pre-commit selection re-checks it for
    any .py file of the project (keying it on every .py file would still miss code read from elsewhere);
  * the model's effective options (plan, GPU) and the lint settings that change graph findings (select, ignore,
    preview, rule options);
  * versions: wattlint (``__version__`` plus a stat fingerprint of the installed package, which also covers its data
    files and the calibrated models shipped in ``wattlint/models``), the energy-model search path (a stat
    fingerprint of every folder on it: a model fitted into the user's folder re-prices the next check), torch (for
    PyTorch / HF sources), transformers (HF), onnx (for ONNX sources) and, for a ``pkg.mod:attr`` source that is
    no project file, its installed distribution, read from package metadata without importing them, and the
    cache schema. Other installed packages a PyTorch source imports (torchvision, timm) are not in the key.

Content hashes are memoized by (path, size, mtime_ns, inode, ctime_ns) in ``hashes.json`` so a large ONNX file is
hashed once.
Every write is atomic (temporary file in the same directory + ``os.replace``); a corrupt or foreign cache file is
treated as a miss, never as an error. The cache directory holds a ``.gitignore`` with ``*`` (its ``v1/`` does
when the directory existed before and is not named ``.wattlint-cache``).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterable, Mapping

from .io import atomic_write_text, escapes_root, remove_stale_temps_in
from .types import ConfigError

SCHEMA = "wattlint.check-cache/1"
DIRNAME = ".wattlint-cache"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # a damaged cache file is a miss (RecursionError: nested too deep)
        return None


# ---- versions ----------------------------------------------------------------------------------------------------

_VERSION_MEMO: dict[str, str] = {}


def dist_version(name: str) -> str:
    """Installed version of a distribution without importing it ("" when absent)."""
    if name in _VERSION_MEMO:
        return _VERSION_MEMO[name]
    mod = sys.modules.get(name)
    v = getattr(mod, "__version__", None) if mod is not None else None
    if not v:
        try:
            from importlib.metadata import PackageNotFoundError, version

            try:
                v = version(name)
            except PackageNotFoundError:
                v = ""
        except Exception:  # pragma: no cover - broken metadata
            v = ""
    _VERSION_MEMO[name] = str(v)
    return str(v)


_DISTS_OF: dict[str, list[str]] | None = None


def imported_distributions(names) -> dict[str, list[str]]:
    """Top-level module name -> the installed distributions that provide it, for the names an installed
    distribution provides (the standard library's are left out): a distribution named as the module (torch, timm,
    transformers) directly, else ``importlib.metadata``'s module -> distribution map (``yaml`` -> ``PyYAML``,
    ``sklearn`` -> ``scikit-learn``), built only then (it reads every installed distribution: ~0.1 s)."""
    global _DISTS_OF
    out: dict[str, list[str]] = {}
    for n in sorted(set(names)):
        if n in sys.stdlib_module_names or n == "__future__":
            continue
        if dist_version(n):
            out[n] = [n]
            continue
        if _DISTS_OF is None:
            try:
                from importlib.metadata import packages_distributions

                _DISTS_OF = {k: sorted(set(v)) for k, v in packages_distributions().items()}
            except Exception:  # pragma: no cover - broken metadata: no versions rather than no check
                _DISTS_OF = {}
        if n in _DISTS_OF:
            out[n] = _DISTS_OF[n]
    return out


def _hash_tree(h, root, skip=lambda d, f: False) -> None:
    """Add (relative path, size, mtime_ns) of every file below ``root`` to ``h``, in a stable order; ``skip(dir,
    file)`` leaves out directories (file None) and files. Linked folders are followed (a models folder linked in
    from elsewhere changes what is estimated), each real folder once (a link back up the tree is no loop)."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not skip(d, None))
        for fn in sorted(filenames):
            if skip(None, fn):
                continue
            p = os.path.join(dirpath, fn)
            try:
                st = os.stat(p)
            except OSError:
                continue
            h.update(f"{os.path.relpath(p, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())


def package_fingerprint() -> str:
    """wattlint's version + (relative path, size, mtime_ns) of every file of the installed package (code, data,
    calibrated models): an edited checkout or a new calibrated model invalidates the cache."""
    import wattlint

    root = Path(wattlint.__file__).resolve().parent
    h = hashlib.sha256(wattlint.__version__.encode())
    _hash_tree(h, root, lambda d, f: d == "__pycache__" or bool(f and f.endswith((".pyc", ".pyo"))))
    return h.hexdigest()


def models_fingerprint(dirs) -> str:
    """The energy-model search path (energy.predictor.search_path: --models-dir, [tool.wattlint] models-dir,
    $WATTLINT_MODELS_DIR, the user data folder, the shipped models) as its folders plus (relative path, size,
    mtime_ns) of every file in them: a model that ``wattlint fit`` writes, edits or removes, or a run correction,
    changes which energy model prices a check (and its numbers), so it invalidates the cached results."""
    h = hashlib.sha256()
    for d in dirs:
        root = Path(getattr(d, "path", d))
        h.update(f"dir\0{root}\n".encode())
        _hash_tree(h, root)
    return h.hexdigest()


# ---- model content -----------------------------------------------------------------------------------------------

def find_module_file(module: str, roots: Iterable[Path]) -> Path | None:
    """``pkg.mod`` -> pkg/mod.py or pkg/mod/__init__.py under one of ``roots`` (also ``src/`` layouts); no import."""
    parts = module.split(".")
    for root in roots:
        for base in (root, root / "src"):
            p = base.joinpath(*parts)
            for cand in (p.with_suffix(".py"), p / "__init__.py"):
                if cand.is_file():
                    return cand
    return None


def _installed_dirs() -> tuple[str, ...]:
    """The standard library and site-packages folders (with a trailing separator): code there belongs to the
    interpreter or an installed distribution, not to the project."""
    import site
    import sysconfig

    dirs = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    try:
        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
    except Exception:  # pragma: no cover - a stripped site module (some embedded interpreters)
        pass
    return tuple(sorted(os.path.join(os.path.realpath(d), "") for d in dirs if d))


def _is_installed(p: Path, installed: tuple[str, ...]) -> bool:
    parts = p.parts
    return "site-packages" in parts or "dist-packages" in parts or os.path.join(str(p), "").startswith(installed)


# sys.path as this module was first imported (before any model's import: an estimate puts the project root there
# for good, and a long-lived process (the tests) would collect every project's root checked before)
_START_PATH = tuple(sys.path)


def _inside(p: Path, root: Path) -> bool:
    """``p`` is ``root`` or below it, by name or by real path."""
    for q in (Path(os.path.abspath(p)), Path(os.path.realpath(p))):
        if q == root or root in q.parents:
            return True
    return False


def _external_start_dirs(root: Path) -> set[str]:
    """Real paths of the interpreter's start-up sys.path folders outside the project (PYTHONPATH, .pth files,
    editable installs: ``pip install -e ../transformers``, a source-built torch): installed code, not the
    project's."""
    return {os.path.realpath(e or os.curdir) for e in _START_PATH if not _inside(Path(e or os.curdir), root)}


def search_dirs(source_dir: Path | None, root: Path) -> list[Path]:
    """The folders of the project's own code an ``import`` in a model's code is looked up in when ``wattlint check``
    runs it: the source file's own folder (a ``file.py:attr`` source is run as a script: its folder comes first on
    sys.path, inside the project or not), the current directory when it is inside the project, the project root and
    its ``src/``, and those of the interpreter's start-up sys.path folders that are inside the project (PYTHONPATH=src,
    an editable install of the project itself). A module found only elsewhere (another start-up sys.path folder:
    PYTHONPATH, .pth files, an editable install of a dependency; site-packages; the standard library) is an
    installed dependency: not walked, so neither its files nor its own dynamic imports count."""
    installed = _installed_dirs()
    out: dict[Path, None] = {}
    start = [Path(e or os.curdir) for e in _START_PATH]
    for d in [source_dir, Path.cwd(), root, root / "src"] + start:
        if d is None:
            continue
        a = Path(os.path.abspath(d))  # as sys.path names it: a module's __file__ keeps a linked folder's name
        if d is not source_dir and not _inside(a, root):
            continue
        if a.is_dir() and not _is_installed(Path(os.path.realpath(a)), installed):
            out[a] = None
    return list(out)


# calls that import a module, or run a file, named by an argument: matched by the called name's last part
# (`importlib.import_module`, `import_module` imported from importlib and `il.import_module` are the same call);
# name -> (position, keyword) of that argument
_IMPORT_CALLS = {"import_module": (0, "name"), "__import__": (0, "name"), "run_module": (0, "mod_name"),
                 "find_spec": (0, "name")}
_FILE_CALLS = {"spec_from_file_location": (1, "location"), "run_path": (0, "path_name"), "load_source": (1, "pathname"),
               "SourceFileLoader": (1, "path"), "SourcelessFileLoader": (1, "path")}
_CODE_BUILTINS = ("exec", "eval", "compile")
# calls that import the module part of a dotted ``pkg.mod.Attr`` string (the longest importable prefix) and return
# the object it names: qualified name -> keyword of that argument
_TARGET_CALLS = {"pydoc.locate": "path", "hydra.utils.get_class": "path", "hydra.utils.get_method": "path",
                 "hydra.utils.get_object": "path", "hydra._internal.utils._locate": "path"}
# hydra's instantiate / call: the ``_target_`` strings of the config (nested ones too) are such dotted names
_INSTANTIATE_CALLS = ("hydra.utils.instantiate", "hydra.utils.call")
# modules whose attribute, fetched by a computed name (getattr(importlib, name)(...)), may be an import function
_IMPORT_OWNERS = ("importlib", "importlib.util", "builtins", "runpy", "pydoc", "hydra.utils", "__builtins__")
_LIST_MUTATORS = {"insert": 1, "append": 0, "extend": 0, "__setitem__": 1, "__iadd__": 0}
_CALL_NAMES = {*_IMPORT_CALLS, *_FILE_CALLS, *_CODE_BUILTINS, *_LIST_MUTATORS, "exec_module", "load_module",
               "addsitedir", "load", *(q.rsplit(".", 1)[-1] for q in (*_TARGET_CALLS, *_INSTANTIATE_CALLS))}
_PATH_FUNCS = {"os.path.dirname": os.path.dirname, "os.path.abspath": os.path.abspath,
               "os.path.realpath": os.path.realpath, "os.path.normpath": os.path.normpath, "str": str, "os.fspath": str}
_PATH_CTORS = ("os.path.join", "pathlib.Path", "pathlib.PurePath", "pathlib.PosixPath", "pathlib.PurePosixPath")


def _qualname(node: ast.AST, aliases: Mapping[str, str]) -> str | None:
    """``a.b.c`` of a Name / Attribute chain, its first name replaced by what the file imported under it."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _qualname(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    return None


def _last(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


class _FileScan:
    """What one Python file imports, read from its syntax tree without running it: the modules it imports by name
    (statements anywhere in the file, and calls with a name known from the file alone), relative imports, files it
    runs by path, folders it puts on sys.path, and (``unknown``) each import whose target only running the code can
    tell."""

    def __init__(self, path: Path, label: str, tree: ast.Module, full: bool = True):
        self.path, self.label, self.full = path, label, full
        self.modules: list[str] = []  # absolute module names
        self.relative: list[tuple[Path, str]] = []  # (package folder, dotted name under it; "" for its __init__.py)
        self.files: list[Path] = []  # files run by path
        self.path_dirs: list[Path] = []  # folders put on sys.path
        self.unknown: list[str] = []
        self.aliases: dict[str, str] = {}
        self.stores: dict[str, int] = {}  # name -> how often the file binds it
        self.consts: dict[str, ast.AST] = {}  # name -> value of its one binding (NAME = expr)
        self._finds_by_name = self._executes_spec = False
        trees = [tree]
        i = 0
        while i < len(trees):  # a literal exec() / eval() string is scanned as more code of this file
            trees.extend(self._scan(self._index(trees[i])))
            i += 1
        if self._finds_by_name and self._executes_spec:
            self.unknown.append(f"{self.label}: find_spec() of a name known only when the code runs, and a module "
                                "spec executed")

    def _index(self, tree: ast.AST) -> list[ast.AST]:
        """One walk over the tree: import statements, the names it binds and their aliases; returns the calls and
        assignments to look at once every name of the file is known."""
        assigns, later = [], []
        for node in ast.walk(tree) if self.full else _statements(tree):
            if isinstance(node, ast.Call):
                later.append(node)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    top = a.name.split(".")[0]
                    self.aliases[a.asname or top] = a.name if a.asname else top
                    self.modules.append(a.name)
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                names = [a.name for a in node.names if a.name != "*"]
                if node.level:
                    base = self.path.parent
                    for _ in range(node.level - 1):
                        base = base.parent
                    self.relative.append((base, ""))
                    self.relative.extend((base, t) for t in [mod] * bool(mod) + [f"{mod}.{n}" if mod else n
                                                                                 for n in names])
                else:
                    for a in node.names:
                        self.aliases[a.asname or a.name] = f"{mod}.{a.name}"
                    self.modules.append(mod)
                    self.modules.extend(f"{mod}.{n}" for n in names)  # a name may be a submodule
            elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                self.stores[node.id] = self.stores.get(node.id, 0) + 1
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.stores[node.name] = self.stores.get(node.name, 0) + 1
            elif isinstance(node, ast.arg):
                self.stores[node.arg] = self.stores.get(node.arg, 0) + 1
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                for n in node.names:  # bound elsewhere too: never a constant
                    self.stores[n] = self.stores.get(n, 0) + 2
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                later.append(node)
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    assigns.append(node)
        for node in assigns:
            if self.stores.get(node.targets[0].id) == 1:
                self.consts[node.targets[0].id] = node.value
        return later

    def _at(self, node: ast.AST) -> str:
        return f"{self.label}:{getattr(node, 'lineno', '?')}"

    def value(self, node: ast.AST | None, depth: int = 0) -> Any:
        """The value of an expression the file alone determines: strings, ints, lists of them, names bound once to
        one, and paths built from ``__file__`` with os.path / pathlib; None for anything else."""
        if node is None or depth > 30:
            return None
        d = depth + 1
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, (str, int)) and not isinstance(node.value, bool) else None
        if isinstance(node, (ast.List, ast.Tuple)):
            vals = [self.value(e, d) for e in node.elts]
            return None if any(v is None or isinstance(v, list) for v in vals) else vals
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                if isinstance(v, ast.FormattedValue):
                    if v.format_spec is not None or v.conversion not in (-1, ord("s")):
                        return None
                    v = v.value
                s = self.value(v, d)
                if not isinstance(s, str):
                    return None
                parts.append(s)
            return "".join(parts)
        if isinstance(node, ast.BinOp):
            a, b = self.value(node.left, d), self.value(node.right, d)
            if isinstance(a, str) and isinstance(b, str):
                if isinstance(node.op, ast.Add):
                    return a + b
                if isinstance(node.op, ast.Div):  # Path / "x"
                    return os.path.join(a, b)
            return None
        if isinstance(node, ast.Name):
            if node.id == "__file__":
                return str(self.path)
            return self.value(self.consts.get(node.id), d)
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            p = self.value(node.value, d)
            return (os.path.dirname(p) or os.curdir) if isinstance(p, str) else None
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
            p, n = self.value(node.value.value, d), self.value(node.slice, d)
            if not (isinstance(p, str) and isinstance(n, int) and n >= 0):
                return None
            p = os.path.abspath(p)
            for _ in range(n + 1):
                p = os.path.dirname(p)
            return p
        if isinstance(node, ast.Call) and not node.keywords:
            q = _qualname(node.func, self.aliases)
            args = [self.value(a, d) for a in node.args]
            if not all(isinstance(a, str) for a in args):
                return None
            if q in _PATH_CTORS and args:
                return os.path.join(*args)
            if q in _PATH_FUNCS and len(args) == 1:
                return _PATH_FUNCS[q](args[0])
            if q in ("os.getcwd", "pathlib.Path.cwd") and not args:
                return os.getcwd()
            if isinstance(node.func, ast.Attribute):  # a method of a path: Path(__file__).resolve().parent
                recv = self.value(node.func.value, d)
                m = node.func.attr
                if isinstance(recv, str):
                    if m == "resolve" and not args:
                        return os.path.realpath(recv)
                    if m == "absolute" and not args:
                        return os.path.abspath(recv)
                    if m in ("as_posix", "__fspath__") and not args:
                        return recv
                    if m == "joinpath":
                        return os.path.join(recv, *args)
                    if m == "with_name" and len(args) == 1:
                        return os.path.join(os.path.dirname(recv), args[0])
        return None

    @staticmethod
    def _arg(call: ast.Call, pos: int, name: str) -> ast.AST | None:
        if len(call.args) > pos:
            return call.args[pos]
        return next((k.value for k in call.keywords if k.arg == name), None)

    def _add_name(self, name: Any, package: ast.AST | None, level: int, node: ast.AST, what: str) -> None:
        """An import of ``name`` (``level`` dots, or leading dots in the name: relative to ``package``, else to the
        file's own package)."""
        if not isinstance(name, str):
            self.unknown.append(f"{self._at(node)}: {what} of a module name known only when the code runs")
            return
        dots = (len(name) - len(name.lstrip("."))) or level
        rest = name.lstrip(".")
        if not dots:
            self.modules.append(name)
            return
        base: Path | None = self.path.parent
        if package is not None:
            pkg = self.value(package)
            if isinstance(pkg, str) and pkg:  # import_module(".dyn", "pkg") is pkg.dyn
                self.modules.append(".".join([pkg.rsplit(".", dots - 1)[0]] + ([rest] if rest else [])))
                return
            if isinstance(package, ast.Name) and package.id == "__name__" and self.path.name != "__init__.py":
                base = self.path.with_suffix("")  # relative to a module, not a package: fails when run
            elif not (isinstance(package, ast.Name) and package.id in ("__package__", "__name__")):
                self.unknown.append(f"{self._at(node)}: {what} relative to a package known only when the code runs")
                return
        for _ in range(dots - 1):
            base = base.parent
        self.relative.append((base, rest))

    def _add_dirs(self, value: Any, node: ast.AST) -> None:
        vals = value if isinstance(value, list) else [value]
        if not vals or not all(isinstance(v, str) for v in vals):
            self.unknown.append(f"{self._at(node)}: puts a folder known only when the code runs on sys.path")
            return
        self.path_dirs.extend(Path(os.path.abspath(v)) for v in vals)

    def _add_target(self, value: Any, node: ast.AST, what: str) -> None:
        """A dotted ``pkg.mod.Attr`` that ``what`` imports the longest importable prefix of: every prefix may be a
        module (``models.blocks.Net`` is models/blocks.py's Net, or the module models/blocks/Net.py)."""
        if not isinstance(value, str) or not value.strip("."):
            self.unknown.append(f"{self._at(node)}: {what}() of a name known only when the code runs")
            return
        parts = [x for x in value.split(".") if x]
        self.modules.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1))

    def _config_targets(self, node: ast.AST | None, top: bool, depth: int = 0) -> list[str] | None:
        """The ``_target_`` strings of a hydra config the file alone determines (a dict literal, ``dict(...)``,
        ``OmegaConf.create(...)`` of one, a name bound once to one; nested ones too); None when a config, or a value
        in it that may be one, is known only when the code runs."""
        if node is None or depth > 30:
            return None
        d = depth + 1
        if isinstance(node, ast.Constant):
            return None if top else []
        if isinstance(node, ast.Name):
            if node.id in self.consts:
                return self._config_targets(self.consts[node.id], top, d)
            return None
        if isinstance(node, (ast.List, ast.Tuple)):
            out: list[str] = []
            for e in node.elts:
                sub = self._config_targets(e, False, d)
                if sub is None:
                    return None
                out += sub
            return out
        items: list[tuple[Any, ast.AST]] = []
        if isinstance(node, ast.Dict):
            if any(k is None for k in node.keys):
                return None  # {**other}: keys known only when the code runs
            items = [(self.value(k), v) for k, v in zip(node.keys, node.values)]
        elif isinstance(node, ast.Call):
            q = _qualname(node.func, self.aliases)
            if q == "dict" and "dict" not in self.stores and not node.args:
                if any(k.arg is None for k in node.keywords):
                    return None
                items = [(k.arg, k.value) for k in node.keywords]
            elif q is not None and q.rsplit(".", 1)[-1] in ("create", "DictConfig", "ListConfig") and \
                    q.startswith("omegaconf.") and len(node.args) == 1 and not node.keywords:
                return self._config_targets(node.args[0], top, d)
            else:
                return None
        else:
            return None
        out = []
        for k, v in items:
            if k == "_target_":
                t = self.value(v)
                if not isinstance(t, str):
                    return None
                out.append(t)
            else:
                sub = self._config_targets(v, False, d)
                if sub is None:
                    return None
                out += sub
        return out

    def _callee(self, f: ast.AST, node: ast.AST) -> tuple[str | None, str | None] | None:
        """(qualified name, last part) of a called function that may import, None for other calls; a function
        fetched by ``getattr(module, "name")`` is that module's function (``getattr(importlib, "import_module")``)."""
        if isinstance(f, ast.Call) and isinstance(f.func, ast.Name) and f.func.id == "getattr" and \
                "getattr" not in self.stores and len(f.args) >= 2:
            owner = _qualname(f.args[0], self.aliases)
            attr = self.value(f.args[1])
            if not isinstance(attr, str):
                if owner in _IMPORT_OWNERS:
                    self.unknown.append(f"{self._at(node)}: a function of {owner} named only when the code runs")
                return None
            q = f"{owner}.{attr}" if owner else attr
            return (q, attr) if attr in _CALL_NAMES else None
        if not self._may_import(f):
            return None
        q = _qualname(f, self.aliases)
        return q, (q.rsplit(".", 1)[-1] if q else _last(f))  # `from importlib import import_module as im`

    def _may_import(self, f: ast.AST) -> bool:
        """A quick test that leaves out most calls of a file (nn.Linear(...), print(...)) by the name called."""
        if isinstance(f, ast.Attribute):
            return f.attr in _CALL_NAMES
        if isinstance(f, ast.Name):
            return f.id in _CALL_NAMES or f.id in self.aliases  # `from importlib import import_module as im`
        return False  # a call of a call's result, a subscript: no import by name

    def _scan(self, nodes: list[ast.AST]) -> list[ast.Module]:
        more: list[ast.Module] = []
        for node in nodes:
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    t0 = t.value if isinstance(t, ast.Subscript) else t
                    if _qualname(t0, self.aliases) == "sys.path":  # sys.path = / += / [:0] = [...]
                        self._add_dirs(self.value(node.value), node)
                    elif isinstance(t0, ast.Name) and t0.id == "__path__" and not (
                            isinstance(node.value, ast.Call) and _last(node.value.func) == "extend_path"):
                        self.unknown.append(f"{self._at(node)}: changes the package's __path__")
            elif isinstance(node, ast.Call):
                callee = self._callee(node.func, node)
                if callee is None:
                    continue
                q, last = callee
                if q in _TARGET_CALLS:
                    self._add_target(self.value(self._arg(node, 0, _TARGET_CALLS[q])), node, q)
                elif q in _INSTANTIATE_CALLS:
                    targets = self._config_targets(self._arg(node, 0, "config"), True)
                    for k in node.keywords:  # overrides: instantiated too when they are configs
                        if targets is not None and k.arg is not None:
                            sub = self._config_targets(k.value, False)
                            targets = None if sub is None else targets + sub
                    if targets is None or any(k.arg is None for k in node.keywords):
                        self.unknown.append(f"{self._at(node)}: {q}() of a config known only when the code runs")
                    for t in targets or []:
                        self._add_target(t, node, q)
                elif last in _IMPORT_CALLS:
                    name = self.value(self._arg(node, *_IMPORT_CALLS[last]))
                    if last == "find_spec" and not isinstance(name, str):
                        self._finds_by_name = True  # only finding: unknown when the file also executes a spec
                        continue
                    if last == "__import__":
                        lv, fl = self._arg(node, 4, "level"), self._arg(node, 3, "fromlist")
                        level, froms = (self.value(lv) if lv is not None else 0), (self.value(fl) if fl else [])
                        if not isinstance(level, int) or not isinstance(froms, list):
                            self.unknown.append(f"{self._at(node)}: __import__ with a level or fromlist known only "
                                                "when the code runs")
                            continue
                        self._add_name(name, None, level, node, "__import__")
                        for f in froms if isinstance(name, str) else []:
                            if f != "*":
                                self._add_name(f"{name}.{f}" if name else f, None, level, node, "__import__")
                        continue
                    package = self._arg(node, 1, "package") if last in ("import_module", "find_spec") else None
                    self._add_name(name, package, 0, node, f"{last}()")
                elif last in _FILE_CALLS:
                    arg = self._arg(node, *_FILE_CALLS[last])
                    if arg is None and last == "spec_from_file_location":
                        continue  # no location: the loader finds nothing by path
                    p = self.value(arg)
                    if isinstance(p, str) and os.path.isfile(p):
                        self.files.append(Path(os.path.abspath(p)))
                    else:
                        self.unknown.append(f"{self._at(node)}: {last}() of a file known only when the code runs")
                elif last in ("exec_module", "load_module"):
                    self._executes_spec = True
                elif q in _CODE_BUILTINS + tuple(f"builtins.{b}" for b in _CODE_BUILTINS) and \
                        (q.startswith("builtins.") or q not in self.stores):
                    s = self.value(self._arg(node, 0, "source"))
                    if not isinstance(s, str):
                        self.unknown.append(f"{self._at(node)}: {last}() of code known only when it runs")
                        continue
                    try:
                        extra = ast.parse(s)
                    except (SyntaxError, ValueError):
                        continue  # fails when run: imports nothing
                    more.append(extra)
                elif isinstance(node.func, ast.Attribute) and node.func.attr in _LIST_MUTATORS:
                    owner = _qualname(node.func.value, self.aliases)
                    if owner == "sys.path":
                        self._add_dirs(self.value(self._arg(node, _LIST_MUTATORS[node.func.attr], "")), node)
                    elif owner == "__path__":
                        self.unknown.append(f"{self._at(node)}: changes the package's __path__")
                elif last == "addsitedir":
                    v = self.value(self._arg(node, 0, "sitedir"))
                    self._add_dirs(v, node)
                    if isinstance(v, str) and os.path.isdir(v) and any(f.endswith(".pth") for f in os.listdir(v)):
                        self.unknown.append(f"{self._at(node)}: addsitedir() of a folder with .pth files")
                elif q is not None and q.endswith("hub.load"):
                    self.unknown.append(f"{self._at(node)}: {q}() runs code from outside the project")
        return more


# a file without any of these words imports by statements only: its expressions need no walk
_DYNAMIC_WORDS = re.compile(rb"import_module|__import__|exec|eval|compile|run_path|run_module|spec_from|FileLoader|"
                            rb"load_source|find_spec|addsitedir|sys|__path__|hub|load_module|getattr|locate|hydra|instantiate|"
                            rb"get_class|get_method|get_object")


def _statements(tree: ast.AST) -> Iterable[ast.AST]:
    """The statements of a tree (in functions, classes, if / try / with / loop / match blocks), not expressions:
    where an import statement can be."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            sub = getattr(node, field, None)
            if isinstance(sub, list):
                todo.extend(sub)


class _Finder:
    """Files by path, with the stat and link resolution of each looked up once per walk."""

    def __init__(self, installed: tuple[str, ...]):
        self.installed = installed
        self._file: dict[str, Path | None] = {}
        self._dir: dict[str, bool] = {}

    def file(self, s: str) -> Path | None:
        """``s`` as a normalized absolute path (as an import finds it: what the module's ``__file__`` and relative
        imports see) when it is a file, not the standard library's nor site-packages'; else None."""
        if s not in self._file:
            hit = None
            if os.path.isfile(s) and not _is_installed(Path(os.path.realpath(s)), self.installed):
                hit = Path(os.path.abspath(s))
            self._file[s] = hit
        return self._file[s]

    def isdir(self, s: str) -> bool:
        if s not in self._dir:
            self._dir[s] = os.path.isdir(s)
        return self._dir[s]

    def module(self, name: str, bases: Iterable[Path]) -> list[Path]:
        """Every file an import of ``name`` may run, under any of ``bases``: the module's file, and the
        ``__init__.py`` of each package on the way (``import a.b.c`` runs a/__init__.py and a/b/__init__.py
        first)."""
        parts = [x for x in name.split(".") if x]
        out: list[Path] = []
        for base in bases if parts else ():
            p = str(base)
            for i, part in enumerate(parts):
                p = os.path.join(p, part)
                last = i == len(parts) - 1
                for cand in (p + ".py", os.path.join(p, "__init__.py")) if last else (os.path.join(p, "__init__.py"),):
                    f = self.file(cand)
                    if f is not None:
                        out.append(f)
                if not last and not self.isdir(p):
                    break  # no package a/ here: nothing of a.b.c either
        return out


class Dependencies:
    """The files a PyTorch source's code runs (the source and what it imports, transitively), in ``unknown`` why
    that set cannot be told without running the code (empty when it can), and in ``external`` the top-level names
    of the modules it imports from outside the project (installed packages, the standard library): their
    distributions' versions change the model as much as a file of the project does (a timm or transformers upgrade)."""

    def __init__(self, files: list[Path], unknown: list[str], external: list[str] | None = None):
        self.files = files
        self.unknown = unknown
        self.external = list(external or [])


def dependencies(path: Path | None, root: Path, source_dir: Path | None = None,
                 module: str | None = None) -> Dependencies:
    """The files run when the file ``path`` (or the module ``module``, with its packages' ``__init__.py``) is
    imported, and everything they import, transitively, read with ``ast`` (nothing is imported): ``import`` /
    ``from`` statements anywhere in a file (module level, a function, a try / if block), relative imports, and the
    calls that import a module or run a file named by a value the file alone determines (importlib.import_module,
    __import__, importlib.util.find_spec / spec_from_file_location, runpy.run_module / run_path, SourceFileLoader,
    exec / eval of a literal string, sys.path.insert / append of a path built from ``__file__``, pydoc.locate and
    hydra's get_class / get_method / instantiate targets, ``getattr(importlib, "import_module")``). Modules are
    looked up in :func:`search_dirs` (the project's own folders) and the folders the code puts on sys.path (but one
    the interpreter starts with outside the project), every candidate kept (a file that shadows another changes the
    model too); installed code (start-up sys.path folders outside the project, site-packages, the standard
    library) is left out. A target only running the code can tell is named in ``unknown``."""
    root = root.resolve()
    installed = _installed_dirs()
    external = _external_start_dirs(root)  # a folder the code puts on sys.path that is already there at start-up
    found_dirs: dict[Path, None] = {}
    while True:  # again with the folders the code puts on sys.path, until it puts no new one there
        bases = search_dirs(source_dir, root)
        bases += [d for d in found_dirs if d not in bases and d.is_dir() and not _is_installed(d, installed)
                  and os.path.realpath(d) not in external]
        finder = _Finder(installed)
        memo: dict[str, list[Path]] = {}
        scanned: dict[Path, None] = {}  # as found (a file linked into a package imports from that package)
        seen: dict[Path, None] = {}  # their real paths: the files hashed
        unknown: list[str] = []
        outside: dict[str, None] = {}  # top-level names imported from outside the project
        todo = [Path(os.path.abspath(path))] if path is not None else []
        if module is not None:
            todo += finder.module(module, bases)
        grew = False
        while todo:
            p = todo.pop()
            if p in scanned or not p.is_file():
                continue
            scanned[p] = None
            seen[p.resolve()] = None
            try:
                code = p.read_bytes()
                tree = ast.parse(code, filename=str(p))
            except (SyntaxError, ValueError):
                continue  # it fails to import: nothing it names runs (and fixing it changes its hash)
            except (OSError, RecursionError, MemoryError) as e:
                unknown.append(f"{_shown(p, root)}: not read ({type(e).__name__})")
                continue
            try:
                scan = _FileScan(p, _shown(p, root), tree, full=_DYNAMIC_WORDS.search(code) is not None)
            except RecursionError:  # an expression nested past the interpreter's limit
                unknown.append(f"{_shown(p, root)}: nested too deep to read")
                continue
            unknown += scan.unknown
            for d in scan.path_dirs:
                if d not in found_dirs:
                    found_dirs[d] = None
                    grew = True
            for name in scan.modules:
                if name not in memo:
                    memo[name] = finder.module(name, bases)
                if not memo[name]:  # not in the project: an installed package or the standard library
                    outside[name.split(".")[0]] = None
                todo += memo[name]
            for base, name in scan.relative:
                if name:
                    todo += finder.module(name, [base])
                elif (f := finder.file(os.path.join(base, "__init__.py"))) is not None:
                    todo.append(f)
            todo += scan.files
        if not grew:
            return Dependencies(sorted(seen), unknown, sorted(outside))


def _shown(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def project_imports(path: Path, root: Path) -> list[Path]:
    """``path`` and every Python file it imports, transitively (sorted, without duplicates): the files of
    :func:`dependencies` of a ``file.py:attr`` source."""
    return dependencies(path, root, source_dir=Path(os.path.abspath(path)).parent).files


def _python_files(root: Path) -> list[Path]:
    """Every .py file under ``root``, but in hidden folders, virtual environments, __pycache__ and node_modules."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in ("__pycache__", "node_modules",
                                                                                   "site-packages", DIRNAME)
                       and not os.path.isfile(os.path.join(dirpath, d, "pyvenv.cfg"))]
        out += [Path(dirpath, f).resolve() for f in filenames if f.endswith(".py")]
    return out


class HashMemo:
    """sha256 of files, memoized by (size, mtime_ns, inode, ctime_ns) in ``<cache>/hashes.json``: an in-place edit of
    the same size with its mtime set back (touch -d, rsync -t, an editor keeping times) still changes the ctime, which
    users cannot set back."""

    def __init__(self, path: Path | None):
        self.path = path
        data = _read_json(path) if path is not None else None
        self.data: dict[str, list] = data if isinstance(data, dict) else {}
        self.dirty = False

    def digest(self, p: Path) -> str:
        """sha256 of the regular file ``p`` (links followed); ConfigError for anything else: a named pipe or a
        device (/dev/zero) is never read, its content would never end."""
        import stat as _stat

        from .io import not_a_file

        st = p.stat()
        if not _stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{p}: is {not_a_file(p) or 'no regular file'}, not a file; refusing to read it")
        sig = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
        key = str(p)
        hit = self.data.get(key)
        if isinstance(hit, list) and len(hit) == len(sig) + 1 and hit[:-1] == sig:  # an older memo's entry: rehashed
            return hit[-1]
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        d = h.hexdigest()
        self.data[key] = sig + [d]
        self.dirty = True
        return d

    def save(self) -> None:
        if self.dirty and self.path is not None:
            try:
                atomic_write_text(self.path, json.dumps(self.data, sort_keys=True))
            except OSError:
                pass
            self.dirty = False


def source_kind(model) -> str:
    if model.path is None:
        return "torch"
    suffix = model.path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".json":
        return "hf"
    return "torch"


# the import walks of one `wattlint check` (shared_dependencies): None outside one
_DEPS: ContextVar[dict | None] = ContextVar("wattlint_dependencies", default=None)


@contextmanager
def shared_dependencies():
    """Within the block, a model's import walk (:func:`model_dependencies`) and its :func:`model_files` are read
    once per distinct model file or module, project root and current directory (one ``wattlint check``: its path
    selection, its cache keys and its exclude notice, and every entry naming the same model, share one walk); a
    block inside another shares the outer one's memo. The walk reads the files as they are when it first runs: a
    block is one check, not a session that outlives edits."""
    if _DEPS.get() is not None:
        yield
        return
    token = _DEPS.set({})
    try:
        yield
    finally:
        _DEPS.reset(token)


def _shared(what: str, model, root: Path, compute):
    memo = _DEPS.get()
    if memo is None:
        return compute()
    module = model.source.split(":")[0] if model.path is None else None
    key = (what, None if model.path is None else os.fspath(model.path), module, os.fspath(root), os.getcwd())
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def model_dependencies(model, root: Path) -> Dependencies:
    """The files whose content defines the model, and (``unknown``) why they cannot all be known before it runs."""
    deps = _shared("dependencies", model, root, lambda: _model_dependencies(model, root))
    return Dependencies(list(deps.files), list(deps.unknown), list(deps.external))  # a copy: the caller's own


def _model_dependencies(model, root: Path) -> Dependencies:
    if model.path is not None:
        if source_kind(model) == "torch" and model.path.suffix == ".py":
            return dependencies(model.path, root, source_dir=Path(os.path.abspath(model.path)).parent)
        return Dependencies([model.path], [])
    return dependencies(None, root, module=model.source.split(":")[0])


def model_files(model, root: Path) -> list[Path]:
    """The files whose content defines the model: ``check``'s path matching (the pre-commit hook's staged files)
    uses these. A model whose imports only running its code can tell matches every .py file of the project and of
    the folders of its known files too (its result is never cached: :meth:`ResultCache.key`)."""
    return list(_shared("files", model, root, lambda: _model_files(model, root)))


def _model_files(model, root: Path) -> list[Path]:
    deps = model_dependencies(model, root)
    if not deps.unknown:
        return deps.files
    files = dict.fromkeys(deps.files)
    files.update(dict.fromkeys(_python_files(root)))
    for d in {f.parent for f in deps.files}:
        files.update(dict.fromkeys(f.resolve() for f in d.glob("*.py")))
    return sorted(files)


# ---- the cache -------------------------------------------------------------------------------------------------

class ResultCache:
    def __init__(self, directory: Path, enabled: bool = True):
        self.dir = Path(directory) / "v1"
        self.enabled = enabled
        self.hashes = HashMemo(self.dir / "hashes.json" if enabled else None)
        self._fingerprint: str | None = None
        self._models_fp: dict[Any, str] = {}  # models-dir setting -> fingerprint of the energy-model search path
        # key -> why the model's imports are not all known before it runs (such a model is estimated every time)
        self.uncacheable: dict[str, list[str]] = {}

    @classmethod
    def for_config(cls, config, enabled: bool = True) -> "ResultCache":
        env = os.environ.get("WATTLINT_CACHE_DIR")
        d = Path(env) if env else (config.cache_dir or config.root / DIRNAME)
        enabled = enabled and config.cache
        if enabled and not env:  # an explicit WATTLINT_CACHE_DIR is the user's choice wherever it leads
            target = escapes_root(d, config.root)
            if target is not None:
                raise ConfigError(f"cache directory {d} resolves to {target}, outside the project {config.root} "
                                  "through a symbolic link; refusing to write there (remove the link, or set "
                                  "cache-dir / WATTLINT_CACHE_DIR to the real path, or pass --no-cache)")
        if enabled and d.exists() and not d.is_dir():
            src = "WATTLINT_CACHE_DIR" if env else "cache-dir"
            raise ConfigError(f"cache directory {d} ({src}) is a file, not a folder: nothing could be cached there "
                              "(point it at a folder, or pass --no-cache)")
        return cls(d, enabled=enabled)

    def key(self, model, config, extra: Mapping[str, Any] | None = None) -> tuple[str, list[str]]:
        """(key, model files) for one configured model."""
        if self._fingerprint is None:
            self._fingerprint = package_fingerprint()
        deps = model_dependencies(model, config.root)
        files = deps.files
        kind = source_kind(model)
        content = []
        for f in files:
            try:
                rel = f.relative_to(config.root).as_posix()
            except ValueError:
                rel = str(f)
            # a model whose imports are not all known is never cached: its files need no hashing
            content.append([rel, None if deps.unknown else self.hashes.digest(f)])
        dirs = (getattr(config, "cli_models_dir", None), getattr(config, "models_dir", None))
        if dirs not in self._models_fp:
            from .energy.predictor import search_path

            self._models_fp[dirs] = models_fingerprint(search_path(*dirs))
        versions = {"wattlint": self._fingerprint, "python": sys.version_info[:2],
                    "energy_models": self._models_fp[dirs]}
        if model.path is None and not files:  # an installed package's module (e.g. torchvision.models:resnet50)
            top = model.source.split(":")[0].split(".")[0]
            versions[top] = dist_version(top)
        for top, dists in imported_distributions(deps.external).items():  # what the source imports, installed
            versions[f"import:{top}"] = {d: dist_version(d) for d in dists}
        if kind == "onnx":
            versions["onnx"] = dist_version("onnx")
        else:
            versions["torch"] = dist_version("torch")
            if kind == "hf":
                versions["transformers"] = dist_version("transformers")
        rule_opts = {code: dict(v) for code, v in sorted(config.rule_options.items())}
        doc = {
            "schema": SCHEMA,
            "source": model.raw_source if model.path is None else None,
            "attr": model.attr,
            "content": content,
            "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(model.options.items())},
            "lint": {"select": list(config.select), "extend_select": list(config.extend_select),
                     "ignore": list(config.ignore), "force_ignore": list(config.force_ignore), "preview": config.preview, "model_select": list(model.select),
                     "model_ignore": list(model.ignore), "rules": rule_opts},
            "versions": versions,
            "extra": dict(extra or {}),
        }
        blob = json.dumps(doc, sort_keys=True, default=str).encode()
        key = hashlib.sha256(blob).hexdigest()
        if deps.unknown:  # never read nor written: a stored result could be stale without any key change
            self.uncacheable[key] = deps.unknown
        return key, [c[0] for c in content]

    def get(self, key: str) -> dict | None:
        if not self.enabled or key in self.uncacheable:
            return None
        data = _read_json(self.dir / f"{key}.json")
        if not isinstance(data, dict) or data.get("schema") != SCHEMA or data.get("key") != key:
            return None
        return data

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        if not self.enabled or key in self.uncacheable:
            return
        try:
            root = self.dir.parent
            # the '*' .gitignore goes into the cache directory when it is wattlint's own (the default name, or created
            # here); a cache-dir the user already had (cache-dir = "." or a shared build folder) gets it only in
            # wattlint's v1/ inside: a '*' at the project root made git ignore every new file of the repository
            ours = root.name == DIRNAME or not root.exists()
            self.dir.mkdir(parents=True, exist_ok=True)
            ignore = (root if ours else self.dir) / ".gitignore"
            if not ignore.exists():
                atomic_write_text(ignore, "# created by wattlint\n*\n")
            atomic_write_text(self.dir / f"{key}.json",
                              json.dumps({"schema": SCHEMA, "key": key, **value}, sort_keys=True))
        except OSError:
            pass  # a read-only checkout still works, just uncached

    def save(self) -> None:
        if self.enabled:
            self.hashes.save()
            remove_stale_temps_in(self.dir, older_than_s=STALE_TEMP_S)  # left by a killed check


# a cache entry is written in milliseconds: a temporary file older than this belongs to a killed writer
STALE_TEMP_S = 60.0
