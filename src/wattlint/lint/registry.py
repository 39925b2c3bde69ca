"""Rule registry: ``@register`` on a Rule class; ``all_rules()`` -> {code: rule class}, sorted by code."""

from __future__ import annotations

import re

from .rule import SEVERITIES, STATUSES, Rule

_RULES: dict[str, type[Rule]] = {}
_LOADED = False
_CODE = re.compile(r"^WL[1-9]\d\d$")
_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


def register(cls: type[Rule]) -> type[Rule]:
    if not _CODE.match(cls.code):
        raise ValueError(f"bad rule code {cls.code!r}")
    if not _NAME.match(cls.name):
        raise ValueError(f"bad rule name {cls.name!r}")
    if cls.code in _RULES and _RULES[cls.code] is not cls:
        raise ValueError(f"duplicate rule code {cls.code}")
    if cls.severity not in SEVERITIES or cls.status not in STATUSES:
        raise ValueError(f"{cls.code}: bad severity/status")
    _RULES[cls.code] = cls
    return cls


def all_rules() -> dict[str, type[Rule]]:
    global _LOADED
    if not _LOADED:
        from .rules import budget, graph, hardware, quality  # noqa: F401  (registers the built-ins)

        _LOADED = True
    return dict(sorted(_RULES.items()))


def get_rule(code: str) -> type[Rule]:
    rules = all_rules()
    key = code.strip().upper()
    if key in rules:
        return rules[key]
    for rule in rules.values():
        if rule.name == code.strip().lower():
            return rule
    from ..types import WattlintError

    import difflib

    prefixed = sorted(c for c in rules if c.startswith(key)) if key.startswith("WL") else []
    if prefixed:  # 'WL1' is a selector of many rules, not a near miss of one
        raise WattlintError(f"{code.strip()!r} is a prefix of {len(prefixed)} rules ({', '.join(prefixed)}): "
                            f"'wattlint rule' shows one; 'wattlint rules' lists them")
    if re.fullmatch(r"WL\d{3}", key):  # a code-shaped miss: its hundred's codes ('WL199' -> WL101 ... WL108)
        group = sorted(c for c in rules if c[:3] == key[:3])
        groups = sorted({c[:3] + "xx" for c in rules})
        raise WattlintError(f"unknown rule {code!r}" + (f" (its group has {', '.join(group)})" if group else
                                                         f" (the rules are {', '.join(groups)})")
                            + "; 'wattlint rules' lists them")
    hint = (difflib.get_close_matches(key, list(rules), n=1)
            or difflib.get_close_matches(code.strip().lower(), [r.name for r in rules.values()], n=1))
    raise WattlintError(f"unknown rule {code!r}" + (f" (did you mean {hint[0]}?)" if hint else "")
                        + "; 'wattlint rules' lists them")
