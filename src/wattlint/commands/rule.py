"""``wattlint rule CODE``: print one rule's documentation (code or name)."""

from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("code", metavar="CODE", help="rule code (WL101) or name (fp32-training)")
    p.add_argument("--format", choices=("text", "markdown"), default="text", help="output format (default text)")


def run(args) -> int:
    from ..lint.registry import get_rule

    rule = get_rule(args.code)
    sys.stdout.write(rule.docs_markdown() + "\n" if args.format == "markdown" else rule.docs_text())
    return 0
