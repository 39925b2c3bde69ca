"""Inline suppression: ``# wattlint: noqa[: CODES]`` comments on a model's entry in the configuration file.

A noqa comment waives rules for ONE model, so it must be tied to that model's entry with certainty. The entries are
found by reading the file's TOML structure (:class:`_Scanner`: table headers with their keys normalised -- blanks
around the dots, quoted keys such as ``[["tool".wattlint.models]]`` -- dotted keys, inline tables in an array, each
with its own span of lines, strings and comments), not by matching the spelling ``[[tool.wattlint.models]]``: that
spelling alone put a noqa on the wrong model (the quoted header was not counted, so the entries were taken by
position) or dropped it silently (review). Each entry found is then parsed on its own and compared with the model
tomllib read; when the entries cannot be tied to the models that way (models written with dotted keys, a file the
scanner does not follow), a noqa comment in the file is refused (exit 2) rather than applied by guess, and so is one
on a line shared by two entries (``models = [{...}, {...}]  # wattlint: noqa``).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from pathlib import Path

try:  # Python 3.11+
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as _toml  # type: ignore[no-redef]

NOQA = re.compile(r"#\s*wattlint:\s*noqa\b(?P<rest>[^#]*)", re.I)
NOQA_FORM = "write '# wattlint: noqa: WL101, WL2' (codes or prefixes) or a bare '# wattlint: noqa'"
_REWRITE = ("write each model as a [[tool.wattlint.models]] table (or an inline table on a line of its own in "
            "models = [...])")


class _Unsure(Exception):
    """The scanner met something it does not follow: the entries' lines are not known with certainty."""


@dataclass
class _Value:
    start: int  # position of its first character
    end: int  # position after its last character
    kind: str  # "array", "inline" or "scalar"
    elements: list = field(default_factory=list)  # an array's values
    items: list = field(default_factory=list)  # an inline table's (key, value)


_BARE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\", "e": "\x1b"}


class _Scanner:
    """The structure of a TOML document already known to be valid (tomllib read it): its table headers (kind, key
    parts, position), its key/value pairs (full key parts -- the table's, then the dotted key's, then those of the
    inline tables it sits in --, value, position) and its comments (position, text)."""

    def __init__(self, text: str):
        self.s, self.n, self.i = text, len(text), 0
        self.headers: list[tuple[str, tuple[str, ...], int]] = []
        self.pairs: list[tuple[tuple[str, ...], _Value, int]] = []
        self.comments: list[tuple[int, str]] = []

    def run(self) -> "_Scanner":
        table: tuple[str, ...] = ()
        while True:
            self._blank(newlines=True)
            if self.i >= self.n:
                return self
            pos = self.i
            if self.s.startswith("[[", pos):
                self.i += 2
                table = self._key()
                self._expect("]]")
                self.headers.append(("array", table, pos))
            elif self.s[pos] == "[":
                self.i += 1
                table = self._key()
                self._expect("]")
                self.headers.append(("table", table, pos))
            else:
                key = self._key()
                self._expect("=")
                self._record(table + key, self._value(), pos)
            self._blank(newlines=False)
            if self.i < self.n and self.s[self.i] not in "\r\n":
                raise _Unsure(f"unexpected {self.s[self.i]!r}")

    def _record(self, key: tuple[str, ...], value: _Value, pos: int) -> None:
        self.pairs.append((key, value, pos))
        for sub_key, sub, sub_pos in value.items:
            self._record(key + sub_key, sub, sub_pos)

    def _blank(self, *, newlines: bool) -> None:
        """Skip blanks (and newlines), recording the comments on the way."""
        s, n = self.s, self.n
        while self.i < n:
            c = s[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif c == "#":
                end = self.i
                while end < n and s[end] not in "\r\n":
                    end += 1
                self.comments.append((self.i, s[self.i:end]))
                self.i = end
            else:
                return

    def _expect(self, token: str) -> None:
        self._blank(newlines=False)
        if not self.s.startswith(token, self.i):
            raise _Unsure(f"expected {token!r}")
        self.i += len(token)
        self._blank(newlines=False)

    def _key(self) -> tuple[str, ...]:
        parts = []
        while True:
            self._blank(newlines=False)
            parts.append(self._simple_key())
            self._blank(newlines=False)
            if self.i < self.n and self.s[self.i] == ".":
                self.i += 1
                continue
            return tuple(parts)

    def _simple_key(self) -> str:
        c = self.s[self.i] if self.i < self.n else ""
        if c == '"':
            return self._basic()
        if c == "'":
            return self._literal()
        m = _BARE.match(self.s, self.i)
        if not m:
            raise _Unsure("expected a key")
        self.i = m.end()
        return m.group()

    def _basic(self) -> str:
        """A one-line basic string (``self.i`` at its quote): its value."""
        s, n, i = self.s, self.n, self.i + 1
        out = []
        while i < n and s[i] != '"':
            if s[i] == "\\":
                e = s[i + 1:i + 2]
                if e in ("u", "U"):
                    width = 4 if e == "u" else 8
                    try:
                        out.append(chr(int(s[i + 2:i + 2 + width], 16)))
                    except ValueError:
                        raise _Unsure("bad escape") from None
                    i += 2 + width
                    continue
                if e not in _ESCAPES:
                    raise _Unsure("bad escape")
                out.append(_ESCAPES[e])
                i += 2
                continue
            if s[i] in "\r\n":
                raise _Unsure("newline in a string")
            out.append(s[i])
            i += 1
        if i >= n:
            raise _Unsure("unclosed string")
        self.i = i + 1
        return "".join(out)

    def _literal(self) -> str:
        end = self.s.find("'", self.i + 1)
        if end < 0 or any(c in "\r\n" for c in self.s[self.i + 1:end]):
            raise _Unsure("unclosed string")
        text, self.i = self.s[self.i + 1:end], end + 1
        return text

    def _multiline(self, quote: str) -> None:
        """Skip a multi-line string (``self.i`` at its opening triple quote)."""
        s, n, i = self.s, self.n, self.i + 3
        while i < n:
            if quote == '"' and s[i] == "\\":
                i += 2
                continue
            if s.startswith(quote * 3, i):
                i += 3
                for _ in range(2):  # up to two quotes of the content may sit against the closing ones
                    if i < n and s[i] == quote:
                        i += 1
                self.i = i
                return
            i += 1
        raise _Unsure("unclosed multi-line string")

    def _value(self) -> _Value:
        s, start = self.s, self.i
        c = s[start] if start < self.n else ""
        if s.startswith('"""', start) or s.startswith("'''", start):
            self._multiline(c)
        elif c == '"':
            self._basic()
        elif c == "'":
            self._literal()
        elif c == "[":
            return self._array()
        elif c == "{":
            return self._inline()
        else:
            while self.i < self.n and s[self.i] not in ",]}#\r\n":
                self.i += 1
            if not s[start:self.i].strip():
                raise _Unsure("expected a value")
            while self.i > start and s[self.i - 1] in " \t":
                self.i -= 1
        return _Value(start, self.i, "scalar")

    def _array(self) -> _Value:
        v = _Value(self.i, self.i, "array")
        self.i += 1
        while True:
            self._blank(newlines=True)
            if self.i < self.n and self.s[self.i] == "]":
                break
            v.elements.append(self._value())
            self._blank(newlines=True)
            if self.i < self.n and self.s[self.i] == ",":
                self.i += 1
            elif not (self.i < self.n and self.s[self.i] == "]"):
                raise _Unsure("expected ',' or ']'")
        self.i += 1
        v.end = self.i
        return v

    def _inline(self) -> _Value:
        v = _Value(self.i, self.i, "inline")
        self.i += 1
        self._blank(newlines=True)
        if self.i < self.n and self.s[self.i] == "}":
            self.i += 1
            v.end = self.i
            return v
        while True:
            self._blank(newlines=True)
            pos = self.i
            key = self._key()
            self._expect("=")
            v.items.append((key, self._value(), pos))
            self._blank(newlines=True)
            if self.i < self.n and self.s[self.i] == ",":
                self.i += 1
            elif self.i < self.n and self.s[self.i] == "}":
                self.i += 1
                v.end = self.i
                return v
            else:
                raise _Unsure("expected ',' or '}'")


@dataclass
class EntryMap:
    """Where each ``[[tool.wattlint.models]]`` entry of a configuration file lies (by model index), and the file's
    comments. ``certain`` is False when the entries could not be tied to the configured models (``why`` says why):
    then no line is known, and a noqa comment is refused rather than applied by guess."""

    certain: bool
    why: str = ""
    spans: list[tuple[int, int]] = field(default_factory=list)  # (first line, last line), 1-based, by model index
    comments: list[tuple[int, str]] = field(default_factory=list)  # (line, comment text)
    first_line: int = 1  # where the models are written (the fallback location of a finding)

    def owners(self, line: int) -> list[int]:
        return [k for k, (a, b) in enumerate(self.spans) if a <= line <= b]

    def noqa_comments(self) -> list[tuple[int, re.Match]]:
        return [(ln, m) for ln, text in self.comments for m in NOQA.finditer(text)]


_MEMO: dict[str, tuple[str, EntryMap]] = {}


def entry_map(path: Path) -> EntryMap | None:
    """The :class:`EntryMap` of a configuration file (None when it cannot be read now)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    hit = _MEMO.get(str(path))
    if hit is not None and hit[0] == text:
        return hit[1]
    result = _build(text, Path(path).name)
    _MEMO[str(path)] = (text, result)
    return result


def _build(text: str, file_name: str) -> EntryMap:
    text = text[1:] if text.startswith("\ufeff") else text  # as load_config reads it: the lines are the same
    starts = [0] + [m.end() for m in re.finditer(r"\r\n|\n|\r", text)]

    def line(pos: int) -> int:
        return bisect.bisect_right(starts, pos)

    try:
        data = _toml.loads(text)
    except (_toml.TOMLDecodeError, RecursionError):
        return EntryMap(False, "the file is not valid TOML", comments=_line_comments(text))
    try:
        scan = _Scanner(text).run()
    except (_Unsure, RecursionError, IndexError) as e:
        return EntryMap(False, f"wattlint cannot follow the file's TOML ({e})", comments=_line_comments(text))
    comments = [(line(p), t) for p, t in scan.comments]
    tool = data.get("tool")
    # the table load_config reads: [tool.wattlint], else (a standalone --config file) the top level
    prefix: tuple[str, ...] = ("tool", "wattlint") if isinstance(tool, dict) and "wattlint" in tool else ()
    if not prefix and file_name == "pyproject.toml":
        return EntryMap(True, comments=comments)
    models = prefix + ("models",)
    table = data
    for k in prefix:
        table = table[k]
    raw = table.get("models", []) if isinstance(table, dict) else []
    raw = [raw] if isinstance(raw, dict) else raw

    def under(key: tuple[str, ...]) -> bool:
        return key[:len(models)] == models

    entries: list[tuple[int, int, object]] = []  # (start, end position, the entry as tomllib reads it alone)
    for k, (_kind, key, pos) in enumerate(scan.headers):
        if key != models:
            continue
        end = next((p for _, key2, p in scan.headers[k + 1:] if not (under(key2) and len(key2) > len(models))),
                   len(text))
        entries.append((pos, end, ("table", text[pos:end])))
    for key, value, _pos in scan.pairs:
        if key != models:
            continue
        for el in (value.elements if value.kind == "array" else [value]):
            entries.append((el.start, el.end, ("inline", text[el.start:el.end])))
    entries.sort(key=lambda e: e[0])
    # everything else written under the models key must lie inside an entry (the pair `models = [...]` holds them)
    touching = [p for _, key, p in scan.headers if under(key)] + \
        [p for key, _, p in scan.pairs if under(key) and len(key) > len(models)]
    written = touching + [p for key, _, p in scan.pairs if key == models]
    first = line(min(written)) if written else 1
    outside = [p for p in touching if not any(a <= p < b for a, b, _ in entries)]
    if outside:
        return EntryMap(False, f"line {line(outside[0])} adds to the models outside their entries' own lines: "
                               "dotted keys, or a sub-table apart from its entry",
                        comments=comments, first_line=first)
    if len(entries) != len(raw) or not all(_alone(how, models) == r for (_, _, how), r in zip(entries, raw)):
        return EntryMap(False, "the entries found do not match the models read", comments=comments, first_line=first)
    spans = []
    for a, b, _ in entries:
        last = b - 1
        # a table's span ends on the line before the next header, whose indentation is no part of it (an indented
        # header put the two entries' spans on one line: its noqa was refused as shared by both, review)
        while last > a and text[last] in " \t\r\n":
            last -= 1
        spans.append((line(a), line(last)))
    return EntryMap(True, spans=spans, comments=comments, first_line=first)


def _alone(how, models: tuple[str, ...]):
    """One entry's text parsed on its own: what tomllib reads for it (None if it does not parse alone)."""
    kind, text = how
    try:
        if kind == "inline":
            return _toml.loads("x = " + text)["x"]
        value = _toml.loads(text)
        for k in models:
            value = value[k]
        return value[0] if isinstance(value, list) and len(value) == 1 else value
    except (_toml.TOMLDecodeError, RecursionError, KeyError, TypeError):
        return None


def _line_comments(text: str) -> list[tuple[int, str]]:
    """Each line's comment as :func:`wattlint.lint.check.toml_comments` reads it (the scanner did not follow the
    file: enough to find the noqa comments it holds, which are then refused)."""
    from .check import toml_comments

    return [(i + 1, c) for i, c in enumerate(toml_comments(text.splitlines())) if c]


# ---- the comments' codes -----------------------------------------------------------------------------------------

def noqa_codes(config, model) -> frozenset[str]:
    """Codes suppressed by ``# wattlint: noqa: WL101, WL203`` comments on the lines of the model's entry (a bare
    ``# wattlint: noqa`` suppresses every rule for that model, like ruff's bare noqa). A comment that is not one of
    those two forms, or names a code no rule has, is a ConfigError: read loosely, a typo such as ``noqa=WL101`` or
    ``noqa: WL10l`` silenced every rule (budgets included) or a whole family. So is a noqa comment in a file whose
    entries cannot be tied to the models with certainty, or on a line two entries share (:func:`check_entries`)."""
    from ..config import _where

    em = _checked(config)
    if em is None or not em.certain or model.index >= len(em.spans):
        return frozenset()
    a, b = em.spans[model.index]
    codes: set[str] = set()
    for ln, m in em.noqa_comments():
        if a <= ln <= b:
            codes.update(noqa_selectors(m.group("rest"), f"{_where(config.path)}:{ln}"))
    return frozenset(codes)


def check_entries(config) -> None:
    """Refuse (ConfigError, exit 2) a noqa comment that cannot be tied to one model with certainty: in a file whose
    entries wattlint cannot locate, or on a line shared by two entries (inline tables on one line)."""
    _checked(config)


def _checked(config) -> EntryMap | None:
    from ..config import _where
    from ..types import ConfigError

    if config.path is None:
        return None
    em = entry_map(config.path)
    if em is None:
        return None
    found = em.noqa_comments()
    if found and not em.certain:
        raise ConfigError(f"{_where(config.path)}:{found[0][0]}: cannot tell which model entry this noqa comment "
                          f"belongs to ({em.why}); refusing to guess: {_REWRITE}")
    names = [m.name for m in sorted(config.models, key=lambda m: m.index)]
    for ln, _m in found:
        owners = em.owners(ln)
        if len(owners) > 1:
            who = ", ".join(repr(names[k]) if k < len(names) else f"#{k + 1}" for k in owners)
            raise ConfigError(f"{_where(config.path)}:{ln}: noqa comment on a line holding several model entries "
                              f"({who}): it cannot say which it waives; {_REWRITE}")
    return em


def stray_noqa(config) -> list[str]:
    """Notices for ``# wattlint: noqa`` comments outside every model entry (its sub-tables included): they suppress
    nothing, which the user would not otherwise learn (review)."""
    from ..config import _where

    em = _checked(config)
    if em is None or not em.certain:
        return []
    out = []
    for ln, _m in em.noqa_comments():
        if not em.owners(ln):
            out.append(f"{_where(config.path)}:{ln}: noqa comment outside every [[tool.wattlint.models]] entry "
                       "suppresses nothing (put it inside the model's entry)")
    return list(dict.fromkeys(out))  # two noqa in one comment: one line


def entry_line(config, model) -> int:
    """The first line of the model's entry in the configuration file; where the entries cannot be located, the line
    where the models are written (1 if none)."""
    em = entry_map(config.path) if config.path is not None else None
    if em is None:
        return 1
    if em.certain and model.index < len(em.spans):
        return em.spans[model.index][0]
    return em.first_line


def noqa_selectors(rest: str, where: str) -> set[str]:
    from ..types import ConfigError
    from .registry import all_rules

    rest = rest.strip()
    if not rest:
        return {"ALL"}
    if not rest.startswith(":"):
        raise ConfigError(f"{where}: malformed noqa comment ('noqa {rest}'): {NOQA_FORM}")
    tokens = [t for t in re.split(r"[\s,]+", rest[1:].strip()) if t]
    if not tokens:
        raise ConfigError(f"{where}: the noqa comment names no code after ':': {NOQA_FORM}")
    rules = all_rules()
    names = {r.name: code for code, r in rules.items()}
    out = set()
    for t in tokens:
        u = t.upper()
        if t.lower() in names:
            raise ConfigError(f"{where}: noqa names the rule {t!r}: write its code ({names[t.lower()]})")
        if not re.fullmatch(r"ALL|WL\d{0,3}", u):
            raise ConfigError(f"{where}: noqa: {t!r} is not a rule code: {NOQA_FORM}")
        if u != "ALL" and not any(c.startswith(u) for c in rules):
            raise ConfigError(f"{where}: noqa: {t!r} selects no rule (see 'wattlint rules')")
        out.add(u)
    return out
