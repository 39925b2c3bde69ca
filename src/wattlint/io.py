"""Small file and provenance helpers used across wattlint: atomic writes, UTC stamps, content hashes.

Atomic writes go to a temporary file in the same directory, are fsynced, then ``os.replace``d over the target and the
directory fsynced, so a reader (or a crash, or a power loss) sees either the old file or the complete new one, never a
torn one. The temporary name starts
with ``.<name>.`` and ends with ``.tmp``; :func:`remove_stale_temps` clears those a killed writer left behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import glob
import hashlib
import json
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

STALE_TEMP_S = 3600.0  # a temporary file older than this belongs to a writer that died
_TEMP_RANDOM = re.compile(r"[a-z0-9_]{8}")  # tempfile.mkstemp's random part


def _write_temp(path: Path, text: str) -> str:
    """``text`` in a new temporary file next to ``path`` (flushed to disk, with ``path``'s permission bits if it
    exists); returns the temporary's name. Removed again if writing fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    except OSError as e:  # a read-only folder: name the file the user asked for, not our temporary
        raise OSError(e.errno, f"{e.strerror} (cannot write in {path.parent})", str(path)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(path).st_mode & 0o777 if path.exists() else 0o666 & ~_umask()  # as open() would
            os.chmod(tmp, mode)
        except OSError:
            pass
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return tmp


def _fsync_dir(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename or a new link in it) to disk, so that a power loss right after a write
    cannot bring back the old file or lose the new name (POSIX: the rename is durable only once the directory is
    synced). Best effort: a platform or file system that cannot open or sync a directory (Windows, some network file
    systems) keeps the guarantee of the rename alone."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path | str, text: str, *, refuse_symlink: bool = False) -> None:
    """Write ``text`` to ``path`` atomically, keeping the file's permission bits.

    ``refuse_symlink``: refuse (OSError) when ``path`` is a symbolic link, instead of replacing the link by a file
    (the link's target is never written through either way: ``os.replace`` replaces the link itself)."""
    path = Path(path)
    if refuse_symlink and path.is_symlink():
        raise OSError(f"refusing to write through the symbolic link {path}")
    atomic_write_texts({path: text})


def atomic_write_texts(files: Mapping[Path | str, str]) -> None:
    """Write several files that belong together (a model's boosters and the card holding their hashes): every
    temporary is written first, then each is moved into place, so a write that fails (disk full, a kill while
    writing) leaves all the previous files untouched and no temporary behind."""
    pending: list[tuple[str, Path]] = []
    for path in files:
        _refuse_special(Path(path))
    try:
        for path, text in files.items():
            pending.append((_write_temp(Path(path), text), Path(path)))
        while pending:
            os.replace(*pending[0])
            pending.pop(0)
        for folder in dict.fromkeys(Path(p).parent for p in files):
            _fsync_dir(folder)
    except BaseException:
        for tmp, _ in pending:  # the temporaries not moved into place
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise


def write_new_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path``, which must not exist (FileExistsError otherwise, even when another process creates
    it meanwhile): complete or absent, never torn, never replacing a file. The complete temporary is hard-linked to
    ``path`` (atomic, and refused by the kernel when ``path`` exists); where links are not supported, ``path`` is
    created exclusively and written."""
    path = Path(path)
    tmp = _write_temp(path, text)
    try:
        os.link(tmp, path)
        _fsync_dir(path.parent)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network / FUSE file systems): exclusive create, then write
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(path.parent)
        except BaseException:
            os.unlink(path)
            raise
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _refuse_special(path: Path) -> None:
    """A rename replaces whatever is at ``path``: over a device or a pipe (``/dev/null``, a FIFO, as root) it would put
    a regular file in its place. Such a target is refused (OSError); a report writer that means to write into one
    opens it itself (commands._common.write_output)."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise OSError(errno.EINVAL, "not a regular file (a device, pipe or socket): refusing to replace it", str(path))


def atomic_write_json(path: Path | str, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def remove_stale_temps(path: Path | str, *, older_than_s: float = STALE_TEMP_S) -> int:
    """Remove ``.<name>.*.tmp`` files next to ``path`` left by killed atomic writers; returns how many."""
    path = Path(path)
    n = 0
    now = time.time()
    try:  # exactly the names mkstemp gives (8 random characters): a user's '.notes.md.backup.tmp' is not ours
        candidates = [c for c in path.parent.glob(f".{glob.escape(path.name)}.{'?' * 8}.tmp")
                      if _TEMP_RANDOM.fullmatch(c.name[len(path.name) + 2:-4])]
    except OSError:
        return 0
    for tmp in candidates:
        try:
            if now - tmp.stat().st_mtime >= older_than_s:
                tmp.unlink()
                n += 1
        except OSError:
            continue
    return n


def remove_stale_temps_in(directory: Path | str, *, older_than_s: float = STALE_TEMP_S) -> int:
    """Remove every ``.*.tmp`` file a killed atomic writer left in ``directory``; returns how many."""
    n = 0
    now = time.time()
    try:
        candidates = [c for c in Path(directory).glob(".*.????????.tmp") if _TEMP_RANDOM.fullmatch(c.name[-12:-4])]
    except OSError:
        return 0
    for tmp in candidates:
        try:
            if tmp.is_file() and not tmp.is_symlink() and now - tmp.stat().st_mtime >= older_than_s:
                tmp.unlink()
                n += 1
        except OSError:
            continue
    return n


def escapes_root(path: Path | str, root: Path | str) -> Path | None:
    """Where ``path`` really leads when it names a place inside ``root`` but resolves (through a symbolic link in one
    of its components) outside it; None when it stays inside, or when it names a place outside ``root`` outright
    (an explicit outside path is the user's choice, a link that carries a write out of the project is not)."""
    absolute = Path(os.path.abspath(path))
    root_abs = Path(os.path.abspath(root))
    if absolute != root_abs and root_abs not in absolute.parents:
        return None
    resolved = absolute.resolve()
    root_res = root_abs.resolve()
    if resolved == root_res or root_res in resolved.parents:
        return None
    return resolved


# ---- what an --output may replace ---------------------------------------------------------------------------------

#: JSON documents wattlint writes as reports (``"schema": "wattlint.check/1"`` ..., compare-run's
#: ``wattlint.run-comparison/1``); its other JSON files (baselines, run records, run corrections, energy models,
#: calibration and validation data) are data, never replaced by a report
REPORT_SCHEMAS = re.compile(r"wattlint\.(?:check|estimate|comparison|analysis|run-comparison)/\d+")
REPORT_MAX_BYTES = 64 << 20  # far beyond any report wattlint writes
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# A report is recognised by how it begins, by marks its renderer always writes and that no line wrapping can take
# away: rich wraps a long model path onto the next lines, so a title is matched as its words up to the colon.
# What follows the marks (a user's notes appended to a report) does not matter: the whole file is regenerated.
# estimate / --compare text (report/text.py, the title alone on its line when the path wraps) and markdown
_ESTIMATE_TITLE = re.compile(r"wattlint (?:estimate|compare):(?: |$)")
_MARKDOWN_TITLE = re.compile(r"### wattlint (?:estimate|compare):(?: |$)")
# analyze text (report/analysis.py): a header "<model> (<format>) — <n> parameters, ..." that wraps at 120 columns
# (a long path: many lines), then the first table's title on a line of its own
_ANALYSIS_TITLE = "One training step (per micro-batch)"
_PARAMETERS = re.compile(r" parameters\b")
_HEAD_LINES = 64  # the analysis title comes after the header: up to ~35 lines for a path of PATH_MAX (4096) bytes
# `wattlint check` text (report/lint_text.py): it begins with a finding ("<path>:<line>: WL101 warning: ..."), a
# model's line ("<model>: 0.1 kWh, ... on <gpu> (<energy model>)", "<model>: not checked: ...", "<model>: skipped:
# ..."), a note or its summary; its summary line, written in full on a line of its own, is further down
_CHECK_FINDING = re.compile(r".+:\d+: WL\d+ (?:error|warning|info)\b")
_CHECK_OTHER_FIRST = ("note: ", "updated baseline ", "assumed: ")
_CHECK_SUMMARY = re.compile(r"Found \d+ error\(s\), \d+ warning\(s\), \d+ info\(s\)(?: .*)?|All checks passed\.|"
                            r"no configured model matched \(see \[\[tool\.wattlint\.models\]\] in .+\)|"
                            r"no models configured: add \[\[tool\.wattlint\.models\]\] entries to .+ \(docs/CONFIG\.md\)|"
                            r"\d+ model\(s\) could not be estimated \(input errors above\): exit 2")
# `wattlint check --format github` (report/github.py): annotations titled with a rule code, 'not checked' or wattlint
_GITHUB_LINE = re.compile(r"::(?:error|warning|notice) (?:file=[^,]*,line=\d+,)?title=(?:WL\d+ |wattlint::|not checked )")
# `wattlint compare-run` text (commands/compare_run.py; it has no -o: saved with '> file'): a first line naming the
# run record (the summary a tracked run also prints at its end) or the other tool's log, then indented lines only.
# It has no title of its own, so it is recognised only as a whole: a training log holding a run's summary is not it
_RUN_COMPARISON_FIRST = re.compile(r"wattlint run record: \S|(?:codecarbon|zeus|carbontracker) measurement .+: \S")


def _json_head(body: str) -> Any:
    """The JSON value ``body`` begins with (text after it ignored, as a user's notes appended to a report), or None
    when it does not begin with one."""
    if not body.startswith(("{", "[")):
        return None
    try:
        return json.JSONDecoder().raw_decode(body)[0]
    except (ValueError, RecursionError):
        return None


def _begins_a_check(line: str) -> bool:
    """Whether ``line`` can be the first of a check's text report: a finding, a model's line (its totals "... on
    <gpu> (<energy model>)", "not checked: ...", "skipped: ..."), a note, the factors, a baseline update or the
    summary (string tests, no nested regular expression: a line may be megabytes long)."""
    return bool(_CHECK_FINDING.match(line) or line.startswith(_CHECK_OTHER_FIRST) or _CHECK_SUMMARY.fullmatch(line)
                or ": not checked: " in line or ": skipped: " in line
                or (": " in line and " on " in line and line.endswith(")")))


def report_kind(text: str) -> str | None:
    """Which wattlint report ``text`` is ('json', 'sarif', 'text', 'markdown', 'html', 'github'), from how every
    report of that format begins: the JSON ``schema`` of a report, SARIF's tool driver ``wattlint``, the title of an
    estimate or a comparison (text or markdown; a long model path wraps after it), an analysis table's title after
    its header, a check's first line and summary line, GitHub annotations titled with rule codes, compare-run's
    text as a whole; None for anything else (another tool's log, a user's notes, wattlint's own data files). Text
    appended after a recognised report does not change what it is."""
    body = text.lstrip("\ufeff").strip()
    doc = _json_head(body)
    if isinstance(doc, dict):
        schema = doc.get("schema")
        if isinstance(schema, str) and REPORT_SCHEMAS.fullmatch(schema):
            return "json"
        runs = doc.get("runs")
        if isinstance(runs, list) and runs and all(
                isinstance(r, dict) and isinstance(r.get("tool"), dict) and isinstance(r["tool"].get("driver"), dict)
                and r["tool"]["driver"].get("name") == "wattlint" for r in runs):
            return "sarif"
        return None
    # else text, also one that begins with '[' (a check report whose first model is named '[...]')
    raw = [line.rstrip() for line in _ANSI.sub("", body).splitlines() if line.strip()]
    lines = [line.strip() for line in raw]
    if not lines:
        return None
    if _ESTIMATE_TITLE.match(lines[0]):
        return "text"
    for i, line in enumerate(lines[1:_HEAD_LINES], 1):
        if line == _ANALYSIS_TITLE:
            header = " ".join(lines[:i])  # "<model> (<format>) — <n> parameters, ..." as wrapped
            at = header.find(") — ")
            if at >= 0 and _PARAMETERS.search(header, at):
                return "text"
            break
    if _begins_a_check(lines[0]) and any(_CHECK_SUMMARY.fullmatch(line) for line in lines):
        return "text"
    if _RUN_COMPARISON_FIRST.match(raw[0]) and len(raw) > 1 and all(line.startswith("  ") for line in raw[1:]):
        return "text"
    if _MARKDOWN_TITLE.match(lines[0]):
        return "markdown"
    if lines[0].lower().startswith("<!doctype html>") and "<title>wattlint: " in body[:4096]:
        return "html"
    if _GITHUB_LINE.match(lines[0]):
        return "github"
    return None


def not_a_report(path: Path | str) -> str | None:
    """Why the file at ``path`` must not be replaced by a report, or None when it may be: nothing there, not a regular
    file (a device, a pipe: written into; a folder or a link: the caller's own checks), an empty file, or a report
    wattlint wrote (:func:`report_kind`: a CI job that reruns writes the same path; what a user appended to it is
    replaced with it). Anything else (another tool's measurements such as CodeCarbon's emissions.csv, a .gitignore,
    notes, wattlint's own data) is the user's: the reason names what it is when known."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return None
    if st.st_size > REPORT_MAX_BYTES:
        return "an existing file too large to be a wattlint report"
    try:
        with open(path, "rb") as f:
            raw = f.read(REPORT_MAX_BYTES + 1)
    except OSError as e:
        return f"an existing file that cannot be read ({e.strerror or e}) to tell whether it is a wattlint report"
    text = raw.decode("utf-8", errors="replace")
    if report_kind(text) is not None:
        return None
    doc = _json_head(text.lstrip("\ufeff").strip())
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if isinstance(schema, str) and schema.startswith("wattlint."):
        return f"an existing {schema} file (wattlint's data, not a report)"
    return "an existing file that is not a wattlint report"


class LockHeld(OSError):
    """:func:`exclusive_lock` with ``wait=False`` found the lock held by another process."""


@contextlib.contextmanager
def exclusive_lock(path: Path | str, *, wait: bool = True, create: bool = False):
    """Hold an exclusive advisory lock (flock) on ``path`` (a file, or a folder) for the ``with`` block. ``wait``:
    block until it is free, else raise :class:`LockHeld` at once; ``create``: create a missing file (empty). Where
    there is no flock (Windows, some network file systems) it locks nothing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_CREAT if create else 0), 0o644)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockHeld(errno.EWOULDBLOCK, "locked by another process", str(path)) from None
        except OSError:  # a file system without flock: proceed unlocked
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def not_a_file(path: Path | str) -> str | None:
    """What ``path`` names when it is there but is no regular file, following symbolic links (stat only: nothing is
    opened, so a named pipe or a device never blocks): "a named pipe", "a device", "a socket", "a directory" (with
    " (a symbolic link to TARGET)" when reached through one) or "a symbolic link loop". None for a regular file and
    for nothing there (a missing file, a link to one: "not found" is true of those)."""
    try:
        st = os.stat(path)
    except OSError as e:
        return "a symbolic link loop" if e.errno == errno.ELOOP else None
    except ValueError:  # an embedded NUL: no such file
        return None
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    what = ("a directory" if stat.S_ISDIR(mode) else "a named pipe" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a special file")
    if os.path.islink(path):
        what += f" (a symbolic link to {os.path.realpath(path)})"
    return what


def same_file(a: Path | str | None, b: Path | str | None) -> bool:
    """Whether ``a`` and ``b`` name one existing file (through links or other spellings of the path)."""
    try:
        return a is not None and b is not None and os.path.exists(a) and os.path.samefile(a, b)
    except OSError:
        return False


def _umask() -> int:
    """The process's umask (read by setting it and putting it back; no other way in the standard library)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def utc_now() -> str:
    """ISO-8601 UTC time to the second: ``2026-12-03T08:11:02Z``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_stamp() -> str:
    """A file-name-safe UTC stamp: ``20261203T081102Z``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
