"""The GPU count the README and the database's SOURCES.md state is the database's (it went stale at 43 when the
RTX 6000 Ada was added)."""

import re
from pathlib import Path

from wattlint.hardware import load_gpus

ROOT = Path(__file__).resolve().parents[1]


def test_stated_gpu_counts_match_the_database():
    n = len(load_gpus())
    readme = re.search(r"lists the database \((\d+) GPUs", (ROOT / "README.md").read_text())
    sources = re.search(r"the GPU database \((\d+) GPUs\)", (ROOT / "src/wattlint/data/SOURCES.md").read_text())
    assert readme and sources
    assert int(readme.group(1)) == n and int(sources.group(1)) == n, (readme.group(1), sources.group(1), n)
