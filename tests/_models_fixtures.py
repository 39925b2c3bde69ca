"""A fitted GPU model for tests: the shipped H200 calibration stands in for what `wattlint fit` writes for another
GPU, with its card saying that GPU (a card of another GPU is not used: energy.predictor.card_problem)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

H200_MODEL = Path(__file__).resolve().parents[1] / "src" / "wattlint" / "models" / "h200-sxm-141gb"


def stand_in_model(dest: Path, key: str | None = None) -> Path:
    """Copy the shipped H200 model to ``dest`` (a ``<models dir>/<gpu key>`` folder) as a calibration of ``key``
    (default: the folder's name)."""
    shutil.copytree(H200_MODEL, dest)
    card = json.loads((dest / "card.json").read_text())
    card["gpu"]["key"] = key or dest.name
    (dest / "card.json").write_text(json.dumps(card, indent=2))
    return dest
