"""Assertions shared by the CLI error-path tests."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SRC = ROOT / "src"


def one_error_line(err: str) -> str:
    """The single 'wattlint: error:' line a refused input prints (no traceback, no internal-error report)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattlint: error:"), err
    assert "Traceback" not in err and "internal error" not in err, err
    return lines[0]
