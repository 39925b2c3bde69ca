"""The committed baseline file (``wattlint-baseline.json``): per-model totals that regressions are measured against.

Deterministic JSON (sorted keys, 2-space indent, trailing newline, no timestamps) so it diffs cleanly in review;
written atomically, and an unreadable or foreign file is a ConfigError (exit 2) rather than silently replaced.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from ..types import ConfigError

SCHEMA = "wattlint.baseline/1"
STALE_TEMP_S = 60.0  # the baseline is written in milliseconds: an older temporary file is a killed writer's
KEYS = ("energy_kwh", "gpu_energy_kwh", "co2_kg", "cost_usd", "time_h", "gpu_hours")


def load_baseline(path: Path) -> dict[str, dict[str, Any]]:
    """{model name: entry}; an absent file is an empty baseline."""
    path = Path(path)
    if not path.exists():
        return {}
    if path.is_dir():
        raise ConfigError(f"baseline {path} is a folder, not a file: point 'baseline' at a JSON file (it is created by "
                          "'wattlint check --update-baseline')")
    from ..io import not_a_file

    odd = not_a_file(path)
    if odd:  # a device (/dev/null read as "empty"), a named pipe (never read: it may never end): never the baseline
        raise ConfigError(f"baseline {path}: not a regular file ({odd}); point 'baseline' at a JSON file (it is "
                          f"created by {_UPDATE})")
    try:  # utf-8-sig: a UTF-8 BOM some editors write is read, as in pyproject.toml
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raw = _read_bytes(path)
        raise ConfigError(f"baseline {path}: not UTF-8 text (byte {e.start}); "
                          f"{_FIX if _MARKER.encode() in raw else _not_ours(path)}") from None
    except OSError as e:  # the file may be fine (a permission, a file system): never advise deleting it
        raise ConfigError(f"baseline {path}: cannot read it: {e.strerror or e}; the file is unchanged: make it "
                          "readable (or point 'baseline' at another file)") from None
    if not text.strip():  # an empty file holds nothing to lose; the update writes a baseline only where none is
        raise ConfigError(f"baseline {path}: the file is empty, not a wattlint baseline; remove the empty file or "
                          f"point 'baseline' at another path, then run {_UPDATE}")
    # a file is taken for a damaged baseline (and the advice may be to delete it) only when it names the baseline's
    # schema: any other file (baseline = "/etc/passwd", a notes file) is never to be deleted (walk 48)
    ours = _MARKER in text
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:  # a merge that kept both sides: the last entry silently won, hiding a regression
        fix = (f"the file is unchanged: remove one of them, or delete the file and run {_UPDATE}" if ours
               else _not_ours(path))
        raise ConfigError(f"baseline {path}: key {e.key!r} appears twice in one object (a merge that kept both "
                          f"sides?): which one counts is not clear; {fix}") from None
    except RecursionError:
        raise ConfigError(f"baseline {path}: JSON nested too deeply to be a wattlint baseline; "
                          f"{_FIX if ours else _not_ours(path)}") from None
    except ValueError as e:
        why = f"not valid JSON ({' '.join(str(e).split())})"
        if ours:
            raise ConfigError(f"baseline {path}: {why}; {_FIX}") from None
        raise ConfigError(f"baseline {path}: {why}; {_not_ours(path)}") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if isinstance(schema, str) and schema != SCHEMA and schema.startswith(SCHEMA.split("/")[0] + "/"):
        raise ConfigError(f"baseline {path}: written as {schema} by another wattlint version (this one reads "
                          f"{SCHEMA}); update wattlint, or regenerate the baseline with this one")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ConfigError(f"baseline {path}: not a wattlint baseline (expected \"schema\": \"{SCHEMA}\"); the "
                          "file is unchanged: point 'baseline' at another path (a wattlint baseline file, or one "
                          f"that does not exist yet: {_UPDATE} creates it)")
    if not isinstance(data.get("models"), dict):  # the schema is right: say what is wrong (review)
        got = f"got {json_type(data['models'])}" if "models" in data else "but there is none"
        raise ConfigError(f"baseline {path}: \"models\" must be an object of model name -> totals, {got}; {_FIX}")
    for name, entry in data["models"].items():
        check_entry(path, name, entry)
    return dict(data["models"])


_UPDATE = "'wattlint check --update-baseline'"
_FIX = f"fix it or delete it and run {_UPDATE}"
_MARKER = SCHEMA.split("/")[0] + "/"  # "wattlint.baseline/": the schema marker every baseline file carries


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook refusing a key twice in one object (json.loads keeps the last silently)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _not_ours(path: Path) -> str:
    """The advice for a file that is not recognisably a wattlint baseline (no schema marker in it): it may be
    anything of the user's, so never 'delete it'."""
    return (f"it is not a wattlint baseline (no \"schema\": \"{SCHEMA}\" in it); the file is unchanged: point "
            f"'baseline' at another path (a wattlint baseline file, or one that does not exist yet: {_UPDATE} creates "
            "it)")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def json_type(value: Any) -> str:
    """A parsed JSON value's type for a message: ``null`` as JSON writes it (not Python's NoneType); other types by
    their Python names (list, str, ...), as the messages have always said."""
    return "null" if value is None else type(value).__name__


def check_entry(path: Path, name: str, entry: Any) -> None:
    """A baseline entry is an object whose totals are finite numbers >= 0 (energy > 0): a string, NaN, infinity or a
    zero energy would turn the regression gate off (every comparison false) or fail it falsely, so it is refused
    (ConfigError naming the entry)."""
    label = f"baseline {path}: model {name!r}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{label}: expected an object of totals, got {json_type(entry)}; {_FIX}")
    for k in KEYS:
        if k not in entry:
            continue
        v = entry[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{label}: {k} = {repr(v)[:40]} is not a number; {_FIX}")
        try:
            finite = math.isfinite(v)
        except OverflowError:  # an integer beyond any float (a 340-digit energy)
            finite = False
        if not finite or v < 0:
            raise ConfigError(f"{label}: {k} = {repr(v)[:40]} is not a finite number >= 0; {_FIX}")
        if k == "energy_kwh" and v == 0:  # the regression gate measures rises against it: 0 would switch it off
            raise ConfigError(f"{label}: energy_kwh = 0: an estimate is never zero; {_FIX}")
    for k in ("gpu", "calibration", "source"):
        if entry.get(k) is not None and not isinstance(entry[k], str):
            raise ConfigError(f"{label}: {k} must be a string; {_FIX}")
    unknown = sorted(set(entry) - set(KEYS) - {"gpu", "calibration", "source"})
    if unknown:  # a misspelt total ('energy_kwhh') would leave the gate without the figure it compares
        import difflib

        hint = difflib.get_close_matches(unknown[0], KEYS, n=1)
        raise ConfigError(f"{label}: unknown key {unknown[0]!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f"; {_FIX}")
    if "energy_kwh" not in entry:  # WL305 compares it: an entry without it turned the gate off for the model
        raise ConfigError(f"{label}: no energy_kwh, the total the regression gate (WL305) compares; {_FIX}")


@contextlib.contextmanager
def locked(path: Path):
    """Hold an exclusive advisory lock (flock on the baseline's folder) while reading, merging and writing the
    baseline: two `check --update-baseline` runs at once (parallel CI jobs on one checkout, a pre-commit hook
    without require_serial) each merged their models into the file as they had read it, and the second write lost
    the first one's entries. Where there is no flock (Windows, some network file systems) it does nothing."""
    from ..io import exclusive_lock

    with exclusive_lock(Path(path).resolve().parent):
        yield


def shared_how(path: Path, root: Path) -> str | None:
    """Why the baseline may hold other projects' entries, or None: its file (a symbolic link followed) lies outside
    the configuration's folder ``root``. An update keeps the entries no model configured here has in such a file: it
    removed the other projects' entries as "no longer configured", project by project (review). A link whose target
    stays inside the folder (``wattlint-baseline.json -> baselines/current.json``) is the project's own: its retired
    entries are dropped (review). A file above the folder is taken as shared even in the same git repository (two
    projects of a monorepo sharing one baseline lost each other's entries that way): keeping a retired entry, named
    in a note, is the safe side of losing another project's."""
    path = Path(path)
    project = Path(root).resolve()
    try:
        target = path.resolve()
    except (OSError, RuntimeError):  # a link loop (RuntimeError before Python 3.13): not a file a project owns alone
        return "not a plain file of the project"
    try:
        target.relative_to(project)
    except ValueError:
        if path.is_symlink():
            return f"a symbolic link to {os.readlink(path)}, outside the project folder {project}"
        return f"outside the project folder {project}"
    return None


def stored(value: float) -> float:
    """A total as the baseline file keeps it (6 significant digits): a check compares an estimate rounded the same
    way, so an unchanged model is never a regression, even at regression-threshold = 0."""
    return float(f"{float(value):.6g}")


def entry_from_summary(summary: Mapping[str, Any], source: str) -> dict[str, Any]:
    total = summary.get("total", {})
    entry: dict[str, Any] = {"source": source, "gpu": summary.get("gpu"), "calibration": summary.get("calibration")}
    for k in KEYS:
        v = total.get(k)
        if isinstance(v, (int, float)):
            entry[k] = stored(v)
    return entry


def baseline_extras(path: Path) -> dict[str, Any]:
    """The top-level keys of a baseline file other than schema, generator and models (a reviewer's "_comment"),
    which an update keeps; {} without a readable file (load_baseline has already judged it)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))  # as load_baseline reads it
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    extras = {k: v for k, v in data.items() if k not in ("schema", "generator", "models")}
    for k, v in extras.items():  # json reads NaN / Infinity; a baseline is written without them
        try:
            json.dumps(v, allow_nan=False)
        except ValueError:
            raise ConfigError(f"baseline {path}: top-level key {k!r} holds NaN or Infinity, which a baseline cannot "
                              f"keep; fix or remove it, the file is unchanged") from None
    return extras


def render_baseline(models: Mapping[str, Mapping[str, Any]], version: str,
                    extras: Mapping[str, Any] | None = None) -> str:
    doc = {**dict(extras or {}), "schema": SCHEMA, "generator": f"wattlint {version}",
           "models": {k: dict(v) for k, v in sorted(models.items())}}
    return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"  # a NaN/inf entry is a bug: exit 3


def write_baseline(path: Path, updates: Mapping[str, Mapping[str, Any]], *, keep: Mapping[str, Any] | None = None,
                   version: str = "") -> dict[str, dict[str, Any]]:
    """Merge ``updates`` into the existing entries (``keep``: entries of models not run this time) and write the file
    atomically, keeping its other top-level keys (:func:`baseline_extras`). Every entry written must pass
    :func:`check_entry`: one that would not is our bug (RuntimeError, exit 3), raised before anything is written, so
    that a baseline is never replaced by one the next check refuses. Returns the new mapping."""
    from ..io import atomic_write_text

    from ..io import remove_stale_temps

    path = Path(path)
    if path.is_symlink():  # a baseline shared through a link: update the file it names, keep the link
        if not path.exists():
            raise ConfigError(f"baseline {path} is a symbolic link to a missing file ({os.readlink(path)}); create "
                              f"that file or remove the link")
        # the target exists and was read as a wattlint baseline (load_baseline): writing through the link can
        # replace nothing but a baseline; replacing the link by a file would leave the shared baseline stale
        path = path.resolve()
    if path.is_file() and not path.stat().st_mode & 0o222:  # an atomic rename would replace it all the same
        raise ConfigError(f"baseline {path} is read-only; refusing to replace it (make it writable to update it)")
    remove_stale_temps(path, older_than_s=STALE_TEMP_S)  # left by a killed --update-baseline
    models = {k: dict(v) for k, v in (keep or {}).items()}
    models.update({k: dict(v) for k, v in updates.items()})
    for name, entry in updates.items():
        try:
            check_entry(path, name, entry)
        except ConfigError as e:
            raise RuntimeError(f"refusing to write a baseline entry the check would refuse: {e}") from None
    try:
        atomic_write_text(path, render_baseline(models, version, baseline_extras(path)))
    except OSError as e:
        raise ConfigError(f"cannot write baseline {path}: {e.strerror or e}; the previous file is unchanged") from None
    return models
