"""Argument helpers shared by commands: every estimate option comes from the one table in wattlint.options."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import options as O

MODEL_OPTIONS = ("inputs", "batch_size", "seq_len", "precision", "optimizer", "optimizer_impl", "attention",
                 "torch_version", "capacity_factor")


def cli_type(opt: O.Option):
    """An argparse ``type`` that validates with the option's checker (numbers may be written 1e3 or 4_096)."""
    def parse(text: str):
        try:
            return opt.check(text, text=True)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None

    parse.__name__ = opt.name  # argparse names the type in some messages
    return parse


def positive_int(text: str) -> int:
    """A positive whole number for options outside the estimate table (``--top``, ``--limit``, ``--folds``)."""
    return cli_type(O.Option("n", "", O.integer(1, 10**9), "", "", ""))(text)


def nonempty(what: str):
    """An argparse ``type`` that refuses an empty (or blank) value with "expected a non-empty <what>": ``--gpu ''``,
    ``--models-dir ''``, ``--part ''`` read as "not given" (``Path('')`` is the current folder). The value is kept as
    written otherwise."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{text!r}: expected a non-empty {what}")
        return text

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def add_option(group, name: str, **overrides: Any) -> None:
    """Add the option ``name`` of :data:`wattlint.options.OPTIONS` to an argparse group (dest = name)."""
    opt = O.OPTIONS[name]
    kw: dict[str, Any] = {"dest": opt.name, "help": opt.help, "default": None}
    if opt.check is O.boolean:  # --flag / --no-flag: the command line can turn off what [tool.wattlint] turns on
        kw["action"] = argparse.BooleanOptionalAction
    else:
        kw["metavar"] = opt.metavar
        if opt.choices:
            kw["choices"] = opt.choices
        elif name == "inputs":
            kw["action"] = "append"  # each spec is parsed (and refused with its reason) by frontends/inputs.py
        else:
            kw["type"] = cli_type(opt)
    kw.update(overrides)
    if kw.get("choices") is None:
        kw.pop("choices", None)
    group.add_argument(opt.flag, **kw)


def add_model_arguments(p: argparse.ArgumentParser, *, model_required: bool = True) -> None:
    p.add_argument("model", nargs=None if model_required else "?", metavar="MODEL",
                   help="model source: file.onnx | config.json (Hugging Face) | package.module:attr | path/file.py:attr")
    for name in MODEL_OPTIONS:
        add_option(p, name)


def shown_setting(v) -> str:
    """A configured value as the user wrote it: per-GPU prices as {a100 = 1.8, h100 = 3.9}, the rest as repr."""
    if isinstance(v, tuple) and v and all(isinstance(p, tuple) and len(p) == 2 for p in v):
        return "{" + ", ".join(f"{n} = {x:g}" for n, x in v) + "}"
    return repr(v)


def written_keys(config, names) -> dict[str, str]:
    """The ``[tool.wattlint]`` key of each option in ``names`` as the file spells it (``price`` for ``price_per_kwh``,
    ``batch_size`` where written so): the Config keeps option names only, so the file is read back. The kebab-case
    name where it cannot be (no file, or a file changed or removed since)."""
    out = {n: n.replace("_", "-") for n in names}
    path = getattr(config, "path", None)
    if path is None or not out:
        return out
    from ..config import _toml

    try:
        data = _toml.loads(Path(path).read_text(encoding="utf-8").lstrip("\ufeff"))
    except (OSError, UnicodeDecodeError, RecursionError, _toml.TOMLDecodeError):
        return out
    tool = data.get("tool")
    table = tool["wattlint"] if isinstance(tool, dict) and isinstance(tool.get("wattlint"), dict) else data
    for key in table:
        name = O.canonical(key) if isinstance(key, str) else None
        if name in out:
            out[name] = key
    return out


def config_given(config, values) -> dict[str, tuple[str, str, Any]]:
    """For :func:`wattlint.options.said_as`: each configured option of ``values`` (``(name, value)`` pairs) as its
    key in the file and where that is (``price``, ``in [tool.wattlint] of pyproject.toml``)."""
    from ..config import _where

    values = list(values)
    keys = written_keys(config, [k for k, _ in values])
    return {k: (keys[k], f"in [tool.wattlint] of {_where(config.path)}", v) for k, v in values}


def settings_note(config, from_file) -> str:
    """The line every command that takes ``[tool.wattlint]`` defaults prints: which settings (``(name, value)``
    pairs) came from which file, each by its key as the file writes it."""
    from ..config import _where

    from_file = list(from_file)
    keys = written_keys(config, [k for k, _ in from_file])
    said = ", ".join(f"{keys[k]} = {shown_setting(v)}" for k, v in from_file)
    return f"settings from [tool.wattlint] of {_where(config.path)} (the command line overrides them): {said}"


def cli_options(args: argparse.Namespace, names) -> dict[str, Any]:
    """The options among ``names`` the user gave on the command line (argparse already validated them)."""
    out = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    if "inputs" in out:
        out["inputs"] = tuple(out["inputs"])
    return out


def model_file(source: str | None) -> str | None:
    """The file a model source names (``model.onnx``, ``config.json``, ``file.py`` of ``file.py:attr``), or None (a
    ``package.module:attr`` source, a name that is no file). A source that names something there that is no file
    nor folder (a named pipe, a device such as /dev/zero, a symbolic link loop) is refused (InputError) with what it
    is: it was reported as "model file not found"."""
    import os

    from ..io import not_a_file
    from ..types import InputError

    if not source:
        return None
    if os.path.isfile(source):
        return source
    head = source.rsplit(":", 1)[0] if ":" in source else ""
    for name in (source, head):
        what = not_a_file(name) if name else None
        if what is not None and not what.startswith("a directory"):  # a folder is named as one where it is read
            raise InputError(f"model source {name}: is {what}, not a file; name the model file (file.onnx, "
                             "config.json or file.py:attr)")
    return head if head and os.path.isfile(head) else None


_SUFFIX_FORMATS = {".json": "json", ".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html",
                   ".sarif": "sarif", ".txt": "text"}


def output_arg(text: str) -> str | None:
    """``--output`` value: a file name; '-' is stdout (None); an empty name is refused (it printed to stdout)."""
    import argparse

    if text == "-":
        return None
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a file name ('-' for stdout)")
    return text


def add_output_argument(p, formats: "tuple[str, ...]") -> None:
    """``--output``; its help names the file suffixes that pick one of ``formats`` (the command's own)."""
    picks = [s for s, f in _SUFFIX_FORMATS.items() if f in formats and f != "text"]
    p.add_argument("--output", "-o", metavar="FILE", type=output_arg,
                   help="write the report to FILE instead of stdout ('-': stdout; atomically; missing parent folders "
                        "are created); without --format, a " + " / ".join(picks) + " name picks the format (any "
                        "other name: text)")


def format_for(output: str | None, allowed: "tuple[str, ...]") -> str | None:
    """The report format an ``--output`` file name implies (its suffix), if the command writes that format."""
    if not output:
        return None
    fmt = _SUFFIX_FORMATS.get(Path(output).suffix.lower())
    return fmt if fmt in allowed else None


def project_inputs(config=None) -> list[tuple[object, str]]:
    """(path, what) of the project files a report must never replace: the ``[tool.wattlint]`` configuration and the
    baseline of ``config``, or of the project found from the current directory (an unreadable configuration names
    its file only; its errors are the commands' own to report)."""
    if config is None:
        from ..config import find_pyproject, load_config
        from ..types import WattlintError

        try:
            config = load_config(Path.cwd())
        except WattlintError:
            return [(find_pyproject(Path.cwd()), "the configuration file")]
    if config.path is None:
        return [(config.baseline_path, "the baseline")]
    return [(config.path, "the configuration file"), (config.baseline_path, "the baseline")]


# suffixes of files a report never replaces: a project's code (a model module the configured model imports), model
# weights and graphs, configurations (any name: the model-file and pyproject guards only know the run's own inputs)
NEVER_A_REPORT = (".py", ".pyi", ".ipynb", ".onnx", ".pt", ".pth", ".safetensors", ".ckpt", ".bin", ".toml", ".yaml",
                  ".yml", ".cfg", ".ini",
                  # weights and models of other formats, an ONNX file's external data (model.onnx.data, .onnx_data)
                  ".data", ".onnx_data", ".h5", ".hdf5", ".keras", ".gguf", ".ggml", ".pb", ".tflite", ".pkl",
                  ".pickle", ".joblib", ".npz", ".npy", ".msgpack", ".mlmodel", ".pte")


def check_output_path(path: str | None, root: Path | str | None = None,
                      inputs: "tuple[tuple[object, str], ...] | list[tuple[object, str]]" = ()) -> None:
    """Refuse (InputError) an ``--output`` path that is a symbolic link, that names a place inside ``root`` (the
    project; default the current directory) but resolves outside it through a linked folder, that is one of the
    run's own ``inputs`` ((path, what it is) pairs: the model file, the configuration, the baseline), which the report
    would replace, or (with the run's ``inputs`` known) an existing file that is not a report wattlint wrote
    (io.not_a_report, recognised by how it begins: a rerun replaces its own report, notes appended to it included;
    another tool's log or the user's own file is kept)."""
    import os

    from ..io import escapes_root, same_file
    from ..types import InputError

    if not path:
        return
    for src, what in inputs:
        if same_file(path, src):
            raise InputError(f"--output {path}: is {what} of this run; refusing to overwrite it with the report "
                             "(write the report to another file)")
        if src is not None and not os.path.exists(src) and os.path.realpath(path) == os.path.realpath(src):
            # the baseline's place before its first --update-baseline: a report there broke every later check
            raise InputError(f"--output {path}: is where {what} of this run goes; refusing to write the report "
                             "there (write the report to another file)")
    fd = stream_fd(path)
    if fd is not None:  # /dev/stdout, /dev/stderr, /dev/fd/N (`-o >(gzip > r.gz)`): the stream, not a link
        try:
            os.fstat(fd)
        except OSError:
            raise InputError(f"--output {path}: file descriptor {fd} is not open in this process") from None
        return
    if os.path.isfile(path):
        from ..tracking.record import is_run_record

        if is_run_record(path):  # a tracked run's measurements, never a report
            raise InputError(f"--output {path}: is a wattlint run record (measured data); refusing to overwrite "
                             "it with the report (write the report to another file)")
    if os.path.basename(path) == "config.json" and os.path.isfile(path):  # a Hugging Face model's configuration
        raise InputError(f"--output {path}: an existing config.json (a model's configuration, not a report); refusing "
                         "to overwrite it with the report (write the report to another file)")
    if os.path.basename(path) == "pyproject.toml":  # a project's configuration, never a report
        raise InputError(f"--output {path}: is a project's pyproject.toml; refusing to overwrite it with the report "
                         "(write the report to another file)")
    if inputs and os.path.isfile(path) and os.path.splitext(path)[1].lower() in NEVER_A_REPORT:
        # (checked with the run's inputs known, so that the model's own file is named as such first)
        raise InputError(f"--output {path}: an existing {os.path.splitext(path)[1]} file (code, a model or a "
                         "configuration, not a report); refusing to overwrite it with the report (write the report "
                         "to another file)")
    if os.path.islink(path):
        raise InputError(f"--output {path}: is a symbolic link; refusing to write through it (write to the file "
                         "it points to, or remove the link)")
    if path.endswith(("/", os.sep)) and not os.path.isdir(path):  # else a FILE named like the folder was written
        raise InputError(f"--output {path}: ends in a path separator, so it names a folder (which does not exist); "
                         f"name a file to write (e.g. {os.path.join(path, 'report.txt')})")
    if os.path.isdir(path):  # else the rename fails with "Device or resource busy" (for '.') or "Is a directory"
        raise InputError(f"--output {path}: is a directory; name a file to write (e.g. "
                         f"{os.path.join(path, 'report.txt')})")
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)  # missing folders are created; the nearest existing one must be a folder
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise InputError(f"--output {path}: {parent} is a file, not a folder")
    if os.path.isfile(path) and not os.stat(path).st_mode & 0o222:  # write-protected: a rename would replace it
        raise InputError(f"--output {path}: the file is read-only; refusing to replace it (make it writable or "
                         "write elsewhere)")
    from ..io import not_a_report

    # another tool's log (CodeCarbon's emissions.csv), notes, a .gitignore: the user's. Checked with the run's inputs
    # known (after the more specific refusals above: the model's own file, the baseline, weights are named as such)
    why = not_a_report(path) if inputs else None
    if why is not None:
        raise InputError(f"--output {path}: {why}; refusing to replace it with the report (remove it first, or "
                         "write the report to another file)")
    target = escapes_root(path, root if root is not None else Path.cwd())
    if target is not None:
        raise InputError(f"--output {path}: resolves to {target}, outside {Path(root or Path.cwd()).resolve()} "
                         "through a symbolic link; refusing to write there (name the real path if you mean it)")


def write_output(path: str | None, text: str, root: Path | str | None = None,
                 inputs: "tuple[tuple[object, str], ...] | list[tuple[object, str]]" = ()) -> None:
    """Write a report to ``path`` (atomically, never through a symbolic link, never out of ``root`` through a linked
    folder: :func:`check_output_path`) or to stdout."""
    import os
    import sys

    from ..io import atomic_write_text, remove_stale_temps
    from ..types import InputError

    # a name taken from the file system (a model file whose name is not UTF-8) arrives with surrogate escapes, which
    # a UTF-8 file or a strict stdout cannot encode: the report is written as UTF-8, such bytes shown as U+FFFD
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte (a JSON "\\ud800" in a config.json)
        text = text.encode("utf-8", "replace").decode("utf-8")
    if not path:
        sys.stdout.write(text)
        return
    check_output_path(path, root, inputs)
    fd = stream_fd(path)
    if fd is not None:  # written to the stream the process has, never reopened through /proc
        try:
            if fd in (1, 2):
                stream = sys.stdout if fd == 1 else sys.stderr
                stream.write(text)
                stream.flush()
            else:
                data = text.encode("utf-8")
                while data:
                    data = data[os.write(fd, data):]
        except OSError as e:
            raise InputError(f"cannot write {path}: {e.strerror or e}") from None
        return
    if _is_special(path):  # /dev/null, a FIFO: written into, never replaced by a renamed file
        try:
            with _open_special(path) as f:
                f.write(text)
        except OSError as e:
            raise InputError(f"cannot write {path}: {e.strerror or e}") from None
        return
    remove_stale_temps(Path(path), older_than_s=STALE_OUTPUT_TEMP_S)
    try:
        atomic_write_text(Path(path), text, refuse_symlink=True)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None


def stream_fd(path: str) -> int | None:
    """The file descriptor ``path`` names when it is one of the process's streams: /dev/stdout (1), /dev/stderr (2),
    /dev/fd/N and /proc/self/fd/N (N); else None. They are links to the stream, written as that stream."""
    import re

    m = re.fullmatch(r"/dev/(stdout|stderr)|/dev/fd/(\d+)|/proc/self/fd/(\d+)", path)
    if m is None:
        return None
    if m.group(1):
        return 1 if m.group(1) == "stdout" else 2
    n = m.group(2) or m.group(3)
    return int(n) if len(n) < 10 else None


def _open_special(path: str):
    """``path`` (a device or a named pipe) opened for writing. A named pipe is opened without waiting: with no
    process reading it the open would block forever, so that is refused (InputError) with one line."""
    import errno
    import os
    import stat

    from ..types import InputError

    if not stat.S_ISFIFO(os.stat(path).st_mode):
        return open(path, "w", encoding="utf-8", newline="\n")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ENXIO:
            raise InputError(f"--output {path}: a named pipe that no process reads; refusing to wait for a reader "
                             "(start the reader first, or write the report to a file)") from None
        raise
    os.set_blocking(fd, True)  # a slow reader is waited for, as with any pipe
    return os.fdopen(fd, "w", encoding="utf-8", newline="\n")


def _is_special(path: str) -> bool:
    """``path`` exists and is a character device or a pipe (not a file, folder or link)."""
    import os
    import stat

    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


# a report is written in well under a second: a temporary file older than this is a killed writer's
STALE_OUTPUT_TEMP_S = 60.0
