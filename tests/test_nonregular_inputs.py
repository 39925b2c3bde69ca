"""Inputs and outputs that exist but are no regular file (a named pipe, a device, a symbolic link loop): refused at
once with one line saying what they are (exit 2), never read (a pipe or /dev/zero never ends), never "not found".
Cases that hung run in a subprocess with a timeout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ONNX = ROOT / "examples" / "gpt2-tiny.onnx"

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"),
                                reason="named pipes and /dev/zero (POSIX)")


def _wattlint(cwd: Path, *argv, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """``python -m wattlint ARGV`` in ``cwd``; a hang fails the test (TimeoutExpired) instead of hanging it."""
    return subprocess.run([sys.executable, "-m", "wattlint", *map(str, argv)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def _one_error_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert p.stderr.startswith("wattlint: error:") and p.stderr.count("\n") == 1, p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    return p.stderr


def _project(root: Path, source: str) -> None:
    (root / "pyproject.toml").write_text(f'[tool.wattlint]\ngpu = "a100"\n\n[[tool.wattlint.models]]\nname = "m"\n'
                                         f'source = "{source}"\n')


def _make(root: Path, kind: str) -> str:
    """A model source of ``kind`` in ``root``; returns its name as the configuration writes it."""
    if kind == "fifo":
        os.mkfifo(root / "f.onnx")
        return "f.onnx"
    if kind == "fifo-unknown-suffix":
        os.mkfifo(root / "weights.xyz")
        return "weights.xyz"
    if kind == "link-to-zero":
        os.symlink("/dev/zero", root / "z.onnx")
        return "z.onnx"
    if kind == "link-to-urandom":
        os.symlink("/dev/urandom", root / "u.onnx")
        return "u.onnx"
    if kind == "dev-zero":
        return "/dev/zero"
    raise AssertionError(kind)


_SAYS = {"fifo": "named pipe", "fifo-unknown-suffix": "named pipe", "link-to-zero": "a device",
         "link-to-urandom": "a device", "dev-zero": "a device"}


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
@pytest.mark.parametrize("kind", list(_SAYS))
def test_check_refuses_a_source_that_is_no_regular_file_without_reading_it(tmp_path, kind, cache):
    """A configured source that is a pipe or a device was hashed for the cache key before any file check: the check
    hung forever (with --no-cache too)."""
    source = _make(tmp_path, kind)
    _project(tmp_path, source)
    argv = ["check"] + ([] if cache else ["--no-cache"])
    err = _one_error_line(_wattlint(tmp_path, *argv, timeout=30))
    assert _SAYS[kind] in err and f"source {source} is " in err and "not found" not in err


def test_check_without_cache_hashes_nothing(tmp_path, monkeypatch):
    """--no-cache needs no key: no model file is read for one (a large ONNX file was hashed on every run)."""
    from wattlint.cache import HashMemo, ResultCache
    from wattlint.config import load_config
    from wattlint.lint import check as lint_check
    from wattlint.types import InputError

    (tmp_path / "models").mkdir()
    shutil.copy(ONNX, tmp_path / "models" / "lm.onnx")
    _project(tmp_path, "models/lm.onnx")
    monkeypatch.chdir(tmp_path)

    def no_hash(self, p):
        raise AssertionError(f"hashed {p} without a cache")

    def no_key(*a, **k):
        raise AssertionError("a cache key computed without a cache")

    def no_estimate(m, config):  # the estimate itself is not what is tested here
        raise InputError("not estimated in this test")

    monkeypatch.setattr(HashMemo, "digest", no_hash)
    monkeypatch.setattr(ResultCache, "key", no_key)
    monkeypatch.setattr(lint_check, "estimate_model", no_estimate)
    result = lint_check.check(load_config(tmp_path), [], use_cache=False)
    assert [r.error for r in result.models] == ["not estimated in this test"]


def test_hash_memo_refuses_a_pipe(tmp_path):
    """HashMemo.digest read a named pipe until a writer closed it (forever): refused with what it is."""
    os.mkfifo(tmp_path / "data.onnx")
    code = ("import sys\nfrom pathlib import Path\nfrom wattlint.cache import HashMemo\nfrom wattlint.types import "
            "ConfigError\ntry:\n    HashMemo(None).digest(Path(sys.argv[1]))\nexcept ConfigError as e:\n    "
            "print(e)\n")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "data.onnx")], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and "is a named pipe, not a file" in p.stdout, (p.stdout, p.stderr)


def test_output_to_a_pipe_nobody_reads_is_refused_and_one_with_a_reader_gets_the_report(tmp_path):
    """-o FIFO with no reader blocked forever in open(); with a reader the report goes through the pipe."""
    shutil.copy(ONNX, tmp_path / "m.onnx")
    os.mkfifo(tmp_path / "out.fifo")
    err = _one_error_line(_wattlint(tmp_path, "m.onnx", "--steps", "1", "-o", "out.fifo", timeout=60))
    assert "out.fifo" in err and "no process reads" in err
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append((tmp_path / "out.fifo").read_bytes()), daemon=True)
    reader.start()
    try:
        p = _wattlint(tmp_path, "m.onnx", "--steps", "1", "-o", "out.fifo", timeout=60)
    finally:
        if reader.is_alive():  # unblock the reader's open if wattlint never opened the pipe
            with open(os.open(tmp_path / "out.fifo", os.O_WRONLY | os.O_NONBLOCK), "wb", closefd=True):
                pass
        reader.join(10)
    assert p.returncode == 0, p.stderr
    assert got and b"wattlint estimate: m.onnx" in got[0]
    assert (tmp_path / "out.fifo").is_fifo()  # written into, never replaced by a file


@pytest.mark.parametrize("target", ["/dev/stdout", "/dev/stderr", "/dev/fd/1"])
def test_output_to_the_process_streams(tmp_path, target):
    """-o /dev/stdout and -o /dev/stderr were refused as 'a symbolic link': they are the streams they name."""
    shutil.copy(ONNX, tmp_path / "m.onnx")
    p = _wattlint(tmp_path, "m.onnx", "--steps", "1", "-o", target)
    assert p.returncode == 0, p.stderr
    stream = p.stderr if target == "/dev/stderr" else p.stdout
    assert "wattlint estimate: m.onnx" in stream
    assert f"wattlint: wrote {target}" in p.stderr
    assert not (tmp_path / "stdout").exists()


def test_output_to_an_inherited_descriptor(tmp_path):
    """-o /dev/fd/N (bash's `-o >(gzip > r.gz)`) writes into that descriptor; a closed one is refused in one line."""
    shutil.copy(ONNX, tmp_path / "m.onnx")
    r, w = os.pipe()
    try:
        p = subprocess.run([sys.executable, "-m", "wattlint", "m.onnx", "--steps", "1", "-o", f"/dev/fd/{w}"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60, pass_fds=(w,),
                           stdin=subprocess.DEVNULL)
        os.close(w)
        w = -1
        with os.fdopen(r, "rb") as f:
            r = -1
            data = f.read()
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)
    assert p.returncode == 0, p.stderr
    assert b"wattlint estimate: m.onnx" in data
    err = _one_error_line(_wattlint(tmp_path, "m.onnx", "--steps", "1", "-o", "/dev/fd/97"))
    assert "not open" in err


@pytest.mark.parametrize("kind, says", [("link-to-zero", "is a device"), ("fifo", "is a named pipe"),
                                        ("loop", "is a symbolic link loop"), ("loop-py", "is a symbolic link loop")])
def test_estimate_says_what_a_model_source_is(tmp_path, kind, says):
    """'wattlint zero.onnx' (a link to /dev/zero), a pipe and a link loop were all 'model file not found'."""
    if kind == "loop" or kind == "loop-py":
        os.symlink("b.onnx", tmp_path / "a.onnx")
        os.symlink("a.onnx", tmp_path / "b.onnx")
        os.symlink("loop.py", tmp_path / "loop.py")
        source = "a.onnx" if kind == "loop" else "loop.py:build"
    else:
        source = _make(tmp_path, kind)
    err = _one_error_line(_wattlint(tmp_path, source, "--steps", "1", timeout=30))
    assert says in err and "not found" not in err, err


def test_config_source_that_is_a_link_loop(tmp_path):
    """A configured source that is a symbolic link loop was an internal error (RuntimeError from Path.resolve)."""
    os.symlink("b.onnx", tmp_path / "a.onnx")
    os.symlink("a.onnx", tmp_path / "b.onnx")
    _project(tmp_path, "a.onnx")
    err = _one_error_line(_wattlint(tmp_path, "check", "--no-cache", timeout=30))
    assert "source a.onnx is a symbolic link loop" in err


def test_config_option_naming_a_link_loop(tmp_path):
    """--config LOOP said 'config file not found': the link is there, it leads nowhere."""
    os.symlink("y.toml", tmp_path / "x.toml")
    os.symlink("x.toml", tmp_path / "y.toml")
    err = _one_error_line(_wattlint(tmp_path, "check", "--config", "x.toml", timeout=30))
    assert "x.toml" in err and "symbolic link loop" in err and "not found" not in err
