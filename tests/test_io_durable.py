"""Atomic writes are durable: the directory holding the renamed (or newly linked) file is fsynced after the rename,
so a power loss cannot bring back the old file or lose the new name (POSIX renames are durable once the directory
entry is on disk)."""

from __future__ import annotations

import os

import pytest

from wattlint import io as wio


def _record(monkeypatch):
    events: list[tuple[str, str]] = []
    fds: dict[int, str] = {}
    real_open, real_fsync, real_replace, real_link = os.open, os.fsync, os.replace, os.link

    def opened(path, flags, *a, **k):
        fd = real_open(path, flags, *a, **k)
        fds[fd] = os.fspath(path)
        return fd

    def fsynced(fd):
        events.append(("fsync", fds.get(fd, "file")))
        return real_fsync(fd)

    def replaced(src, dst):
        events.append(("replace", os.fspath(dst)))
        return real_replace(src, dst)

    def linked(src, dst):
        events.append(("link", os.fspath(dst)))
        return real_link(src, dst)

    monkeypatch.setattr(os, "open", opened)
    monkeypatch.setattr(os, "fsync", fsynced)
    monkeypatch.setattr(os, "replace", replaced)
    monkeypatch.setattr(os, "link", linked)
    return events


def test_atomic_write_fsyncs_the_directory_after_the_rename(tmp_path, monkeypatch):
    events = _record(monkeypatch)
    target = tmp_path / "baseline.json"
    wio.atomic_write_text(target, "{}\n")
    assert target.read_text() == "{}\n"
    i = events.index(("replace", str(target)))
    assert ("fsync", str(tmp_path)) in events[i + 1:], events


def test_write_new_text_fsyncs_the_directory_after_the_link(tmp_path, monkeypatch):
    events = _record(monkeypatch)
    target = tmp_path / "run.jsonl"
    wio.write_new_text(target, "x\n")
    i = events.index(("link", str(target)))
    assert ("fsync", str(tmp_path)) in events[i + 1:], events


def test_a_folder_that_refuses_new_files_is_named_not_our_temporary(tmp_path, monkeypatch):
    """Review: a read-only output folder failed with '.../.2026...-quick.json.uvegr9m7.tmp: Operation not permitted',
    naming an internal temporary; the error names the file asked for and its folder."""
    import errno
    import tempfile

    from wattlint.io import atomic_write_text

    def refuse(*a, **k):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(tmp_path / ".r.json.abcdefgh.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OSError) as e:
        atomic_write_text(tmp_path / "r.json", "{}")
    assert e.value.filename == str(tmp_path / "r.json") and e.value.errno == errno.EPERM
    assert f"cannot write in {tmp_path}" in str(e.value) and ".tmp" not in str(e.value)


def test_a_new_file_follows_the_umask(tmp_path):
    """Review: a new -o file was always 0644 (world-readable) whatever the umask; a plain write gives 0600 under
    umask 077. An existing file keeps its own bits."""
    import os

    from wattlint.io import atomic_write_text

    old = os.umask(0o077)
    try:
        atomic_write_text(tmp_path / "private.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    os.chmod(tmp_path / "private.json", 0o640)
    atomic_write_text(tmp_path / "private.json", "{}\n")
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o640
