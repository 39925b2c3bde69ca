"""Command-line entry point: argument parsing and exit codes only; no logic.

Exit codes: 0 ok, 1 findings / budget exceeded (``check``), 2 usage or input error (one line on stderr).
Each subcommand lives in ``wattlint.commands.<name>`` with ``add_arguments(parser)`` and ``run(args) -> int``;
modules are imported only when their command runs, so ``wattlint --help`` and the ONNX path stay light.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import re
from pathlib import Path
import sys

from . import __version__

# name -> (module, one-line help). The default command (``wattlint MODEL ...``) is "estimate".
COMMANDS: dict[str, tuple[str, str]] = {
    "estimate": ("wattlint.commands.estimate", "estimate energy, time, CO2 and cost of a training plan (default)"),
    "analyze": ("wattlint.commands.analyze", "trace one training step: FLOPs and bytes per layer and phase"),
    "gpus": ("wattlint.commands.gpus", "list the GPU database with the energy model each GPU uses"),
    "check": ("wattlint.commands.check", "lint configured models against rules, budgets and the baseline"),
    "rules": ("wattlint.commands.rules", "list lint rules"),
    "rule": ("wattlint.commands.rule", "show one rule's documentation"),
    "calibrate": ("wattlint.commands.calibrate", "measure op micro-benchmarks on this machine's accelerator"),
    "fit": ("wattlint.commands.fit", "fit a LightGBM energy model from calibration runs"),
    "validate": ("wattlint.commands.validate", "predict / measure / compare held-out whole models"),
    "compare-run": ("wattlint.commands.compare_run", "a tracked run or CodeCarbon/Zeus/Carbontracker log vs estimate"),
}
DEFAULT_COMMAND = "estimate"

EPILOG = "Run 'wattlint COMMAND --help' for a command's options. 'wattlint MODEL ...' is 'wattlint estimate MODEL ...'."


_NEGATIVE_NUMBER = re.compile(r"^-(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage + exiting, so errors are one line."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # a negative number in scientific notation ('--tokens -1e9') is a value, not an option: argparse's own
        # pattern knows only -12 and -1.5, and said "expected one argument" instead of the option's range
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{_context(self.prog)}{message}")


class UsageError(Exception):
    """A command line argparse (or wattlint's own option check) refuses: printed as every input error is, one
    'wattlint: error: ...' line, exit 2."""


def _context(prog: str) -> str:
    """What names the command in a usage error: '' for the default command (estimate) and the top level, 'check: '
    for 'wattlint check' (and 'validate compare: ' for a sub-command)."""
    words = prog.split()[1:]
    return "" if not words or words == ["[estimate]"] else " ".join(words) + ": "


def _top_parser() -> _Parser:
    p = _Parser(prog="wattlint", description="What a training run will cost, before it runs.", epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"wattlint {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return p


def build_parser(command: str) -> _Parser:
    module = importlib.import_module(COMMANDS[command][0])
    p = _Parser(prog=f"wattlint {command}" if command != DEFAULT_COMMAND else "wattlint [estimate]",
                description=COMMANDS[command][1], formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(p)
    p.set_defaults(_run=module.run)
    return p


# errors of writing to standard output that are the environment's, not wattlint's (no file name: the stream's)
OUTPUT_ERRNOS = (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EROFS)


class _StdoutClosedError(OSError):
    """Writing to a standard output that was closed when wattlint started (``wattlint gpus >&-``)."""


class _ClosedStdout:
    """``sys.stdout`` of a process started with fd 1 closed (Python sets it to None): a command that prints fails
    with :class:`_StdoutClosedError` (exit 2, one line; it exited 0 having written nothing); one that writes only
    a file (``-o report.txt``) runs as before."""
    encoding = "utf-8"
    errors = "replace"

    def write(self, text: str) -> int:
        raise _StdoutClosedError(errno.EBADF, "standard output is closed")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        raise _StdoutClosedError(errno.EBADF, "standard output is closed")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        # a UTF-8 locale's stdout is strict: a file name that is not UTF-8, printed by a command, must not end the
        # run with an internal error (reports go through write_output, which replaces such bytes itself)
        try:
            sys.stdout.reconfigure(errors="replace")
        except (ValueError, OSError):  # pragma: no cover - a stream that cannot be reconfigured
            pass
    if sys.stdout is None:  # started with stdout closed (`wattlint ... >&-`): printing to it is refused (exit 2)
        sys.stdout = _ClosedStdout()
    try:
        return _main(argv)
    except UsageError as e:
        print(f"wattlint: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except _StdoutClosedError as e:  # (--help, a usage message): as a command's output below
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
        print(f"wattlint: error: cannot write the output: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wattlint: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # pragma: no cover - e.g. `wattlint ... | head`
        return 0


def _one_line(e: BaseException | str) -> str:
    """An error message as one line: newlines folded, other control characters escaped (a message can quote a name
    from the user's files, which must not inject lines into a terminal or a CI log)."""
    text = " ".join(str(e).split("\n"))
    if any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 or c in "\u2028\u2029" for c in text):
        from .report.tables import clean

        text = clean(text)
    if len(text) > MAX_ERROR_CHARS:  # a message quoting a huge argument (a 100,000-character GPU name)
        cut = len(text) - MAX_ERROR_CHARS
        text = f"{text[:MAX_ERROR_CHARS // 2]} … ({cut:,} characters cut) … {text[-MAX_ERROR_CHARS // 2:]}"
    return text


MAX_ERROR_CHARS = 1000


def _refuse_command_typo(word: str) -> None:
    """'wattlint chek' is a mistyped command, not a model source: say so (a model source has a '.', ':' or a path
    separator, or exists)."""
    import difflib

    if any(c in word for c in ".:/\\") or word.startswith("-") or os.path.exists(word):
        return
    close = difflib.get_close_matches(word, list(COMMANDS), n=1, cutoff=0.75)
    if close:
        raise UsageError(f"unknown command {word!r}; did you mean '{close[0]}'? ('wattlint --help' lists "
                         "the commands; a model source is file.onnx, config.json or module:attr)")


def _inside_package(filename) -> bool:
    """Whether an OSError's file is one of wattlint's own (a missing or unreadable packaged data file is our bug, exit
    3, never the user's input)."""
    try:
        return Path(os.path.abspath(os.fsdecode(filename))).is_relative_to(Path(__file__).resolve().parent)
    except (TypeError, ValueError):
        return False


def _innermost_code(e: BaseException):
    """The code object of the innermost Python frame ``e`` was raised in (None without a traceback)."""
    tb, last = e.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last.tb_frame.f_code if last is not None else None


def _raised_by_json(e: BaseException) -> bool:
    """Whether ``e`` came out of the json decoder (its innermost Python frame is json/decoder.py; the encoder, run on
    wattlint's own data, is our bug)."""
    code = _innermost_code(e)
    return code is not None and code.co_filename == json.decoder.__file__


def _refuse_unknown_option(parser: argparse.ArgumentParser, command: str, rest: list[str]) -> None:
    """A mistyped long option, or an unknown short one ('-x'), is named as such: argparse checks the required MODEL
    first, so 'wattlint --versoin' would say "MODEL required". Mirrors argparse's own matching (exact, '--opt=value',
    unambiguous prefixes; a known short option with its value or cluster attached; negative numbers as values)."""
    import difflib

    def options(p: argparse.ArgumentParser) -> set[str]:  # with those of its sub-commands ('validate compare ...')
        found = {s for a in p._actions for s in a.option_strings}
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub in a.choices.values():
                    found |= options(sub)
        return found

    every = options(parser)
    longs = sorted(o for o in every if o.startswith("--"))
    shorts = {o for o in every if not o.startswith("--")}
    for tok in rest:
        if tok == "--":
            return
        if (tok.startswith("-") and not tok.startswith("--") and len(tok) > 1 and " " not in tok
                and tok[:2] not in shorts and not _NEGATIVE_NUMBER.match(tok)):
            # an unknown short option ('wattlint -x'): argparse would ask for MODEL first. '-ofile' / clusters
            # start with a known short option and negative numbers are values, as _Parser takes them
            close = difflib.get_close_matches(tok, longs + sorted(shorts), n=1, cutoff=0.7)
            hint = f"did you mean '{close[0]}'?" if close else \
                f"'wattlint {command if command != DEFAULT_COMMAND else 'estimate'} --help' lists the options"
            raise UsageError(f"{_context(parser.prog)}unknown option {tok!r}; {hint}")
        if not tok.startswith("--") or len(tok) <= 2 or " " in tok:  # argparse takes '--a b' as a value
            continue
        name = tok.split("=", 1)[0]
        if name in longs or (parser.allow_abbrev and any(o.startswith(name) for o in longs)):
            continue
        offered = longs + ["--version"]
        close = difflib.get_close_matches(name, offered, n=1, cutoff=0.7)
        if close == [name]:  # --version after a command or a model: it is a top-level option
            raise UsageError(f"{_context(parser.prog)}{name} goes first: 'wattlint {name}'")
        hint = f"did you mean '{close[0]}'?" if close else \
            f"'wattlint {command if command != DEFAULT_COMMAND else 'estimate'} --help' lists the options"
        raise UsageError(f"{_context(parser.prog)}unrecognized option {name!r}; {hint}")


def _long_options(p: argparse.ArgumentParser) -> set[str]:
    """The long option names of ``p`` and of its sub-commands ('validate compare ...')."""
    found = {s for a in p._actions for s in a.option_strings if s.startswith("--")}
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub in a.choices.values():
                found |= _long_options(sub)
    return found


# abbreviations that name another command's option of the same meaning: still read as this command's option
# ('wattlint MODEL --out r.json' writes the report, as 'fit --out DIR' writes the model)
_SAME_MEANING = {"--out": ["--output"]}


def _refuse_foreign_abbreviation(parser: argparse.ArgumentParser, command: str, rest: list[str]) -> None:
    """A long option that is not this command's but abbreviates one of its options is refused when it is the exact
    name of another command's option: argparse takes any unique prefix, so 'wattlint analyze m.onnx --gpu a100' was
    read as '--gpus a100' ("expected a number") and '--gpu 8' silently as '--gpus 8' (walk 48); 'fit --model' was
    '--model-hash'. Other unique prefixes ('--batch 64') still abbreviate, and '--out' still means '--output'
    (_SAME_MEANING). The other
    commands' parsers are built only when a token abbreviates one of this command's options."""
    mine = _long_options(parser)
    run_as = command
    for a in parser._actions:  # a command with sub-commands (validate): the options of the one being run
        if isinstance(a, argparse._SubParsersAction):
            name = next((t for t in rest if not t.startswith("-") and t in a.choices), None)
            if name is not None:
                parser, run_as = a.choices[name], f"{command} {name}"
                mine = _long_options(parser)
    short = []
    for tok in rest:
        if tok == "--":
            break
        if not tok.startswith("--") or len(tok) <= 2 or " " in tok:
            continue
        name = tok.split("=", 1)[0]
        if name not in mine and name not in short:
            full = sorted(o for o in mine if o.startswith(name))
            if full and full != _SAME_MEANING.get(name):
                short.append(name)
    for name in short:
        owners = [c for c in COMMANDS if c != command and name in _long_options(build_parser(c))]
        if not owners:
            continue
        full = sorted(o for o in mine if o.startswith(name))
        ctx = _context(parser.prog)
        if command == "analyze" and name == "--gpu":
            raise UsageError(f"{ctx}'wattlint analyze' takes no --gpu: it counts FLOPs and bytes only (no time, energy or cost); "
                             "for a GPU's time, energy and cost run 'wattlint MODEL --gpu ...' (the number of GPUs "
                             "is --gpus, written in full)")
        where = " / ".join(f"'wattlint {'MODEL' if c == DEFAULT_COMMAND else c}'" for c in owners)
        mine_name = "'wattlint MODEL'" if command == DEFAULT_COMMAND else f"'wattlint {run_as}'"
        raise UsageError(f"{ctx}{name} is an option of {where}, not of {mine_name}, where it would abbreviate "
                         f"{' or '.join(full)}; write {full[0] if len(full) == 1 else 'the option'} in full if that "
                         "is what you meant")


_SINGLE = (argparse._StoreAction, argparse._StoreConstAction, argparse._StoreTrueAction, argparse._StoreFalseAction,
           argparse.BooleanOptionalAction)


def _refuse_repeated_option(parser: argparse.ArgumentParser, rest: list[str]) -> None:
    """An option that takes one value given twice ('--gpu a100 --gpu h100', '--steps 10 --steps 20') is refused:
    argparse keeps the last silently, so one of the two was not what the user meant. Repeatable options (--input,
    --select ...: append actions) are not concerned. Exact names and '--opt=value' forms, each sub-command's options
    included; an option whose action differs between sub-commands is left to them."""
    actions: dict[str, list] = {}

    def collect(p: argparse.ArgumentParser) -> None:
        for a in p._actions:
            for o in a.option_strings:
                actions.setdefault(o, []).append(a)
            if isinstance(a, argparse._SubParsersAction):
                for sub in a.choices.values():
                    collect(sub)

    collect(parser)
    seen: dict[int, str] = {}
    i = 0
    while i < len(rest):
        tok = rest[i]
        i += 1
        if tok == "--":
            return
        if not tok.startswith("-") or tok == "-":
            continue
        name, has_value = (tok.split("=", 1)[0], True) if tok.startswith("--") and "=" in tok else (tok, False)
        acts = actions.get(name)
        if not acts:
            continue
        shown = tok
        if not has_value and all(a.nargs is None and isinstance(a, argparse._StoreAction) for a in acts):
            if i < len(rest):  # its value, whatever it looks like ('-o -', '--price -5')
                shown = f"{tok} {rest[i]}"
            i += 1
        if len({id(a) for a in acts}) != 1 or not isinstance(acts[0], _SINGLE):
            continue
        key = id(acts[0])
        if key in seen:
            raise UsageError(f"{_context(parser.prog)}{name} given twice ('{seen[key]}', then '{shown}'): give it "
                             "once (only the last would count)")
        seen[key] = shown


def _main(argv: list[str]) -> int:
    from .types import WattlintError

    if not argv or argv[0] in ("-h", "--help", "--version"):
        parser = _top_parser()
        if not argv:
            # nothing to do is a usage error (a script or hook that lost its arguments must not pass silently)
            print(f"wattlint: error: give a model to estimate or a command ({', '.join(COMMANDS)}); "
                  "'wattlint --help' lists them", file=sys.stderr)
            return 2
        try:
            parser.parse_args(argv)
        except SystemExit as e:  # --help / --version
            return int(e.code or 0)
        return 0
    if argv[0] in COMMANDS:
        command, rest = argv[0], argv[1:]
    else:
        _refuse_command_typo(argv[0])
        command, rest = DEFAULT_COMMAND, argv
    parser = build_parser(command)
    _refuse_unknown_option(parser, command, rest)
    _refuse_foreign_abbreviation(parser, command, rest)
    _refuse_repeated_option(parser, rest)
    try:
        args = parser.parse_args(rest)
    except SystemExit as e:  # --help inside a command
        return int(e.code or 0)
    try:
        return int(args._run(args) or 0)
    except WattlintError as e:
        print(f"wattlint: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, UsageError, BrokenPipeError):
        raise
    except SystemExit as e:  # wattlint's commands return their code: this is code they ran (a user's model source)
        code = _innermost_code(e)
        if code is not None and code.co_name == "on_broken_pipe":  # rich's reaction to a closed pipe (`... | head`)
            return 0
        print(f"wattlint: error: code run for this command called sys.exit({e.code!r}) (a model source's import, "
              "factory or forward?); nothing was estimated", file=sys.stderr)
        return 2
    except Exception as e:  # an internal error: still one line, traceback on demand
        if os.environ.get("WATTLINT_DEBUG"):
            raise
        # a path the user gave that cannot be read or written, or a user's file that is not JSON: input errors
        if isinstance(e, OSError) and e.filename is not None and not _inside_package(e.filename):
            print(f"wattlint: error: {_one_line(f'{e.filename}: {e.strerror or e}')}", file=sys.stderr)
            return 2
        if isinstance(e, OSError) and e.filename is None and (e.errno in OUTPUT_ERRNOS
                                                               or isinstance(e, _StdoutClosedError)):
            # standard output could not take the report (`> /dev/full`, a full disk, a dead terminal): the
            # environment's error; stdout is dropped so that the exit's own flush does not fail a second time
            sys.stdout = open(os.devnull, "w", encoding="utf-8")
            print(f"wattlint: error: cannot write the output: {e.strerror or e}", file=sys.stderr)
            return 2
        if isinstance(e, json.JSONDecodeError):
            print(f"wattlint: error: not valid JSON: {_one_line(e)}", file=sys.stderr)
            return 2
        if isinstance(e, RecursionError) and _raised_by_json(e):  # a user's file nested thousands of levels deep
            print("wattlint: error: a JSON file given is nested too deeply to read (thousands of levels); it is not "
                  "one wattlint writes", file=sys.stderr)
            return 2
        print(f"wattlint: internal error: {type(e).__name__}: {_one_line(e)} (set WATTLINT_DEBUG=1 for a traceback); "
              "please report it",
              file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
