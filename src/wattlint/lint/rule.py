"""The rule framework: a rule is a class with a stable code, status, severity, docs, options and test cases.

Codes: ``WL1xx`` graph (what the model computes), ``WL2xx`` hardware fit (model x GPU), ``WL3xx`` budgets and
regressions (estimate x configuration), ``WL4xx`` estimate quality (how far to trust the numbers). A code is never
reused for a different check; a removed rule keeps its code reserved.

A rule's ``check(ctx)`` yields :class:`~wattlint.types.Finding` objects through ``ctx.finding(...)``, which fills in
the code, the severity (rule default or the ``severity`` option) and the saving in kWh and % of the run's energy.
Rules never print and never import torch/onnx at module level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Mapping

from ..types import Finding

SEVERITIES = ("error", "warning", "info")
STATUSES = ("stable", "preview")


@dataclass(frozen=True)
class Option:
    """A rule option, set in ``[tool.wattlint.rules.CODE]`` (kebab-case or snake_case)."""

    name: str
    default: Any
    check: Callable[[Any], Any]
    doc: str


@dataclass(frozen=True)
class Case:
    """A VALID (no finding) or INVALID (at least one finding) scenario; tests are generated from these.

    ``scenario`` is keyword arguments for :func:`wattlint.lint.testing.scenario`. ``expect`` is a substring that
    must appear in the first finding's message (INVALID cases); ``saving_pct`` (optional) the expected saving,
    checked to 1 percentage point.
    """

    description: str
    scenario: Mapping[str, Any] = field(default_factory=dict)
    expect: str | None = None
    saving_pct: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


class Rule:
    code: ClassVar[str] = ""
    name: ClassVar[str] = ""  # kebab-case, stable
    status: ClassVar[str] = "stable"
    severity: ClassVar[str] = "warning"
    summary: ClassVar[str] = ""  # one line
    what: ClassVar[str] = ""  # What it does
    why: ClassVar[str] = ""  # Why it matters (with the source of the claim)
    example: ClassVar[str] = ""
    use_instead: ClassVar[str] = ""
    sources: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[dict[str, Option]] = {}
    #: False for rules that only need the totals (budgets, regressions): they also run on cached results.
    uses_graph: ClassVar[bool] = True
    valid: ClassVar[tuple[Case, ...]] = ()
    invalid: ClassVar[tuple[Case, ...]] = ()

    def check(self, ctx) -> Iterable[Finding]:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---- docs ---------------------------------------------------------------------------------------------
    @classmethod
    def docs_markdown(cls) -> str:
        lines = [f"## {cls.code} `{cls.name}`", "",
                 f"*{cls.summary}*", "",
                 f"Severity: **{cls.severity}** · Status: **{cls.status}**", ""]
        for title, text in (("What it does", cls.what), ("Why it matters", cls.why), ("Example", cls.example),
                            ("Use instead", cls.use_instead)):
            if text:
                lines += [f"### {title}", "", _dedent(text), ""]
        if cls.options:
            lines += ["### Options", "", "| option | default | meaning |", "|---|---|---|"]
            for opt in cls.options.values():
                lines.append(f"| `{opt.name.replace('_', '-')}` | `{opt.default!r}` | {opt.doc} |")
            lines += ["", f"Set in `[tool.wattlint.rules.{cls.code}]`; `severity = \"error\"|\"warning\"|\"info\"` "
                          "overrides the severity.", ""]
        if cls.sources:
            lines += ["### Sources", ""] + [f"- {s}" for s in cls.sources] + [""]
        return "\n".join(lines)

    @classmethod
    def docs_text(cls) -> str:
        out = [f"{cls.code} ({cls.name}) — {cls.summary}", f"severity: {cls.severity}   status: {cls.status}", ""]
        for title, text in (("What it does", cls.what), ("Why it matters", cls.why), ("Example", cls.example),
                            ("Use instead", cls.use_instead)):
            if text:
                out += [f"{title}:", _indent(_dedent(text)), ""]
        if cls.options:
            out.append("Options ([tool.wattlint.rules.%s]):" % cls.code)
            for opt in cls.options.values():
                out.append(f"    {opt.name.replace('_', '-')} = {opt.default!r}    {opt.doc}")
            out.append("")
        if cls.sources:
            out.append("Sources:")
            out += [f"    - {s}" for s in cls.sources]
        return "\n".join(out).rstrip() + "\n"


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip("\n")


def _indent(text: str) -> str:
    return "\n".join(("    " + ln) if ln.strip() else "" for ln in text.splitlines())


# ---- option checkers (shared with config) --------------------------------------------------------------------

def fraction(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
        raise ValueError("expected a number between 0 and 1")
    return float(v)


def positive(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise ValueError("expected a number > 0")
    return float(v)


def positive_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError("expected a positive integer")
    return v


def str_list(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError("expected a list of strings")
    return tuple(v)


def gpu_list(v: Any) -> tuple[str, ...]:
    """GPU names (keys, aliases or NVML names, as --gpu takes them) -> database keys; an unknown name is an error
    (matched as raw keys, an alias or a typo made the option select nothing, silently)."""
    from ..hardware import resolve_gpu
    from ..types import WattlintError

    keys = []
    for name in str_list(v):
        try:
            keys.append(resolve_gpu(name)[0].key)
        except WattlintError as e:
            raise ValueError(str(e)) from None
    return tuple(keys)
