"""benchmarks/padding.py: the expected cost of a step padded to its batch's longest sequence, as weights over traced
lengths (the Zeus BERT-base / SQuAD reconstruction). Expected values worked out by hand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from padding import batch_max_weights  # noqa: E402

GRID = (64, 128, 192, 256)


def test_one_draw_splits_each_length_between_its_grid_neighbours():
    # lengths 100 and 200, one each; batch 1: each is the batch's longest with p = 1/2.
    # 100 lies 36/64 of the way from 64 to 128: 0.5 x 28/64 = 0.21875 on 64, 0.5 x 36/64 = 0.28125 on 128;
    # 200 lies 8/64 past 192: 0.5 x 56/64 = 0.4375 on 192, 0.5 x 8/64 = 0.0625 on 256
    w = dict(batch_max_weights({100: 1, 200: 1}, 1, GRID))
    assert w == pytest.approx({64: 0.21875, 128: 0.28125, 192: 0.4375, 256: 0.0625})
    assert sum(g * x for g, x in w.items()) == pytest.approx(150.0)  # a linear cost: the mean length


def test_a_bigger_batch_weights_its_longest_member():
    # batch 2: the longest is 100 only when both draws are 100, p = 1/4; else 200, p = 3/4
    w = dict(batch_max_weights({100: 1, 200: 1}, 2, GRID))
    assert w == pytest.approx({64: 0.25 * 28 / 64, 128: 0.25 * 36 / 64, 192: 0.75 * 56 / 64, 256: 0.75 * 8 / 64})
    assert sum(g * x for g, x in w.items()) == pytest.approx(0.25 * 100 + 0.75 * 200)


def test_lengths_outside_the_grid_are_clamped_and_a_grid_length_is_exact():
    assert dict(batch_max_weights({30: 1, 400: 1}, 1, (64, 384))) == pytest.approx({64: 0.5, 384: 0.5})
    assert batch_max_weights({128: 3}, 4, GRID) == [(128, 1.0)]
