"""Where the public data sets the accuracy benchmarks read live (one home for the path).

The data is not in this repository (each set keeps its own licence beside it): it sits in a ``shared/data`` folder
next to the checkout (``../shared/data``). Set ``WATTLINT_SHARED_DATA`` to a folder holding the same sub-folders
(``zeus-nsdi23``, ``neusight-asplos25``, ``vtrain-micro24``, ``llm-foundry-mfu``, ``mayaki-charpenay-ecai2025``,
``nvidia-dle-training``) to run the benchmarks elsewhere; see ``shared/data/README.md`` for each set's source.
"""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """``$WATTLINT_SHARED_DATA`` if set, else ``../shared/data`` beside the checkout, else the workspace's copy."""
    env = os.environ.get("WATTLINT_SHARED_DATA")
    if env:
        return Path(env).expanduser()
    for cand in (_ROOT.parent / "shared" / "data", Path("/work/shared/data")):
        if cand.is_dir():
            return cand
    return _ROOT.parent / "shared" / "data"


DATA = shared_data()
