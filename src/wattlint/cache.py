"""Result cache for ``wattlint check``: unchanged models cost a file stat, a few hashes and one JSON read.

Key (sha256 of a canonical JSON document) =
  * model content: ONNX / config.json -> the file's bytes; PyTorch sources (``file.py:attr``, ``pkg.mod:attr``) ->
    the source file and every project file it imports, transitively (resolved by reading ``import`` statements
    with ``ast`` under the project root, without importing anything);
  * the model's effective options (plan, GPU) and the lint settings that change graph findings (select, ignore,
    preview, rule options);
  * versions: wattlint (``__version__`` plus a stat fingerprint of the installed package, which also covers its data
    files and the calibrated models shipped in ``wattlint/models``), the energy-model search path (a stat
    fingerprint of every folder on it: a model fitted into the user's folder re-prices the next check), torch (for
    PyTorch / HF sources) and onnx (for ONNX sources), read from package metadata without importing them, and the
    cache schema.

Content hashes are memoized by (path, size, mtime_ns, inode) in ``hashes.json`` so a large ONNX file is hashed once.
Every write is atomic (temporary file in the same directory + ``os.replace``); a corrupt or foreign cache file is
treated as a miss, never as an error. The cache directory holds a ``.gitignore`` with ``*`` (its ``v1/`` does
when the directory existed before and is not named ``.wattlint-cache``).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
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


def project_imports(path: Path, root: Path) -> list[Path]:
    """``path`` and every .py file under ``root`` it imports, transitively (sorted, without duplicates)."""
    root = root.resolve()
    seen: dict[Path, None] = {}
    todo = [path.resolve()]
    while todo:
        p = todo.pop()
        if p in seen or not p.is_file():
            continue
        seen[p] = None
        try:
            tree = ast.parse(p.read_bytes(), filename=str(p))
        except (SyntaxError, ValueError, OSError):
            continue
        roots = [root, p.parent]
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative import
                    base = p.parent
                    for _ in range(node.level - 1):
                        base = base.parent
                    mod = node.module or ""
                    targets = [mod] if mod else []
                    targets += [f"{mod}.{a.name}" if mod else a.name for a in node.names]
                    for t in targets:
                        f = find_module_file(t, [base]) if t else None
                        if f is not None:
                            todo.append(f.resolve())
                    init = base / "__init__.py"
                    if init.is_file():
                        todo.append(init.resolve())
                    continue
                mod = node.module or ""
                names = [mod] + [f"{mod}.{a.name}" for a in node.names]
            # importing pkg.sub runs pkg/__init__.py first: the packages on the way are part of the model too
            names += [".".join(n.split(".")[:i]) for n in list(names) for i in range(1, n.count(".") + 1)]
            for name in names:
                f = find_module_file(name, roots)
                if f is not None:
                    try:
                        f.resolve().relative_to(root)
                    except ValueError:
                        continue  # outside the project: an installed package, covered by versions
                    todo.append(f.resolve())
    return sorted(seen)


class HashMemo:
    """sha256 of files, memoized by (size, mtime_ns, inode) in ``<cache>/hashes.json``."""

    def __init__(self, path: Path | None):
        self.path = path
        data = _read_json(path) if path is not None else None
        self.data: dict[str, list] = data if isinstance(data, dict) else {}
        self.dirty = False

    def digest(self, p: Path) -> str:
        st = p.stat()
        sig = [st.st_size, st.st_mtime_ns, st.st_ino]
        key = str(p)
        hit = self.data.get(key)
        if isinstance(hit, list) and len(hit) == 4 and hit[:3] == sig:
            return hit[3]
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


def model_files(model, root: Path) -> list[Path]:
    """The files whose content defines the model (the cache key and ``check``'s path matching use these)."""
    kind = source_kind(model)
    if model.path is not None:
        if kind == "torch" and model.path.suffix == ".py":
            return project_imports(model.path, root)
        return [model.path]
    module = model.source.split(":")[0]
    f = find_module_file(module, [root])
    return project_imports(f, root) if f is not None else []


# ---- the cache -------------------------------------------------------------------------------------------------

class ResultCache:
    def __init__(self, directory: Path, enabled: bool = True):
        self.dir = Path(directory) / "v1"
        self.enabled = enabled
        self.hashes = HashMemo(self.dir / "hashes.json" if enabled else None)
        self._fingerprint: str | None = None
        self._models_fp: dict[Any, str] = {}  # models-dir setting -> fingerprint of the energy-model search path

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
        files = model_files(model, config.root)
        kind = source_kind(model)
        content = []
        for f in files:
            try:
                rel = f.relative_to(config.root).as_posix()
            except ValueError:
                rel = str(f)
            content.append([rel, self.hashes.digest(f)])
        dirs = (getattr(config, "cli_models_dir", None), getattr(config, "models_dir", None))
        if dirs not in self._models_fp:
            from .energy.predictor import search_path

            self._models_fp[dirs] = models_fingerprint(search_path(*dirs))
        versions = {"wattlint": self._fingerprint, "python": sys.version_info[:2],
                    "energy_models": self._models_fp[dirs]}
        if model.path is None and not files:  # an installed package's module (e.g. torchvision.models:resnet50)
            top = model.source.split(":")[0].split(".")[0]
            versions[top] = dist_version(top)
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
        return hashlib.sha256(blob).hexdigest(), [c[0] for c in content]

    def get(self, key: str) -> dict | None:
        if not self.enabled:
            return None
        data = _read_json(self.dir / f"{key}.json")
        if not isinstance(data, dict) or data.get("schema") != SCHEMA or data.get("key") != key:
            return None
        return data

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        if not self.enabled:
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
