"""GitHub Actions workflow commands: one ``::error|warning|notice file=..,line=..,title=..::message`` per finding,
an error per model that could not be estimated, a warning per skipped model and a notice per note of the check."""

from __future__ import annotations

from ..lint.results import CheckResult

LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def _escape_data(s: str) -> str:
    """Workflow-command escaping (%, CR, LF), then every other control character made visible."""
    from .tables import clean

    return clean(s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def _escape_prop(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


def render_github(result: CheckResult) -> str:
    from ..lint.registry import all_rules

    rules = all_rules()
    out = []
    for m in result.models:
        for it in m.items:
            f = it.finding
            name = rules[f.code].name if f.code in rules else ""
            title = f"{f.code} {name} ({m.name})".strip()
            msg = f"{m.name}: {f.message}" + (f" [layer {f.layer}]" if f.layer else "")
            if m.summary.get("calibration"):  # where the finding's numbers come from
                msg += f" [energy model {m.summary['calibration']} on {m.summary.get('gpu') or '?'}]"
            path = _escape_prop(it.repo_path(result.root))  # GitHub resolves it from the repository root
            out.append(f"::{LEVEL.get(f.severity, 'warning')} file={path},line={it.line},"
                       f"title={_escape_prop(title)}::{_escape_data(msg)}")
    for m in result.models:
        if m.error and m.error_at is not None:  # a model that could not be estimated, at its configuration entry
            path = _escape_prop(m.error_at.repo_path(result.root))
            out.append(f"::error file={path},line={m.error_at.line},title={_escape_prop(f'not checked ({m.name})')}"
                       f"::{_escape_data(m.error)}")
    for m in result.models:  # not checked in this environment (the light install): the job's log must say so
        if m.skipped:
            out.append(f"::warning title={_escape_prop(f'not checked ({m.name})')}::{_escape_data(f'{m.name}: {m.skipped}')}")
    out.extend(f"::notice title=wattlint::{_escape_data(n)}" for n in result.notices)
    return "\n".join(out) + ("\n" if out else "")
