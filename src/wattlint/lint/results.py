"""What ``wattlint check`` produced, independent of the output format."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..types import Finding


@dataclass(frozen=True)
class Place:
    """A file position: ``path`` relative to the config root when inside it (forward slashes), else absolute."""

    path: str
    line: int = 1

    def display_path(self, root: Path) -> str:
        """The path relative to the current directory (what terminals, editors and GitHub annotations expect)."""
        import os

        p = Path(self.path)
        full = p if p.is_absolute() else Path(root) / p
        try:
            rel = os.path.relpath(full, Path.cwd())
        except ValueError:  # pragma: no cover - another drive
            return full.as_posix()
        return Path(rel).as_posix() if not rel.startswith("..") or not p.is_absolute() else full.as_posix()

    def repo_path(self, root: Path) -> str:
        """The path relative to the repository root (GITHUB_WORKSPACE, else the nearest folder above ``root`` holding
        ``.git``, else ``root``), as GitHub annotations and SARIF uploads resolve it: relative to the current
        directory, a check run from a subfolder or a monorepo's project folder attached nowhere."""
        import os

        p = Path(self.path)
        full = (p if p.is_absolute() else Path(root) / p).resolve()
        base = repository_root(Path(root))
        try:
            return full.relative_to(base).as_posix()
        except ValueError:
            return os.path.relpath(full, base).replace(os.sep, "/") if not p.is_absolute() else full.as_posix()


@dataclass(frozen=True)
class Located:
    """A finding and where it points."""

    finding: Finding
    path: str  # relative to the config root when inside it (forward slashes), else absolute
    line: int = 1

    def display_path(self, root: Path) -> str:
        return Place(self.path, self.line).display_path(root)

    def repo_path(self, root: Path) -> str:
        return Place(self.path, self.line).repo_path(root)


def repository_root(start: Path) -> Path:
    """$GITHUB_WORKSPACE when ``start`` lies inside it, else the nearest folder at or above ``start`` with a ``.git``
    (folder or file: worktrees, submodules), else ``start`` itself. Looked up once per folder and workspace (every
    finding's location asks)."""
    import os

    return _repository_root(str(Path(start).resolve()), os.environ.get("GITHUB_WORKSPACE"))


@lru_cache(maxsize=64)
def _repository_root(start_text: str, ws: str | None) -> Path:
    start = Path(start_text)
    if ws:
        w = Path(ws).resolve()
        if start == w or w in start.parents:
            return w
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return start


@dataclass
class ModelResult:
    name: str
    source: str  # the source as written in the configuration
    summary: dict[str, Any]
    items: list[Located] = field(default_factory=list)
    cached: bool = False
    skipped: str | None = None  # why the model was not checked (a missing optional extra), else None
    error: str | None = None  # the input error that stopped this model's estimate (the others are still checked)
    error_at: Place | None = None  # where that error points: the model's entry in the configuration

    @property
    def findings(self) -> list[Finding]:
        return [i.finding for i in self.items]


@dataclass
class CheckResult:
    root: Path
    models: list[ModelResult] = field(default_factory=list)
    baseline_path: Path | None = None
    baseline_updated: bool = False
    config_path: Path | None = None
    # what --update-baseline did to each entry: written (checked now), kept (configured, not checked this time),
    # removed (no longer configured)
    baseline_changes: dict[str, list[str]] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # what was not checked and why (no baseline entry, ...)
    fail_on: str = "error"  # the command's --fail-on
    exit_zero: bool = False  # the command's --exit-zero
    configured: bool = True  # the configuration has models (else "no configured model matched" misleads)

    @property
    def items(self) -> list[Located]:
        return [i for m in self.models for i in m.items]

    def counts(self) -> dict[str, int]:
        c = {"error": 0, "warning": 0, "info": 0}
        for i in self.items:
            c[i.finding.severity] = c.get(i.finding.severity, 0) + 1
        return c

    @property
    def errors(self) -> list[str]:
        """One line per model whose estimate stopped on bad input (its source, options or configuration)."""
        return [m.error for m in self.models if m.error]

    @property
    def exit_code(self) -> int:
        """The process's exit status for this result: 2 when a model could not be estimated (bad input, whatever
        --exit-zero says: that model was not checked), else --exit-zero and --fail-on applied."""
        if self.errors:
            return 2
        return 0 if self.exit_zero else self.exit_code_for(self.fail_on)

    def exit_code_for(self, fail_on: str = "error") -> int:
        """1 when a finding is at least as severe as ``fail_on`` (error | warning | info), else 0."""
        levels = {"error": ("error",), "warning": ("error", "warning"), "info": ("error", "warning", "info")}
        c = self.counts()
        return 1 if any(c[s] for s in levels[fail_on]) else 0
