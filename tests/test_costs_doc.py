"""docs/COSTS.md mirrors the constants of wattlint.costs."""

import re
from pathlib import Path

from wattlint import costs as C

DOC = (Path(__file__).resolve().parents[1] / "docs" / "COSTS.md").read_text()


def _row(name):
    m = re.search(r"^\| `" + re.escape(name) + r"` \|([^\n]*)$", DOC, re.M)
    assert m, f"{name} missing from docs/COSTS.md"
    return [int(x) for x in re.findall(r"-?\d+", m.group(1))]


def test_elementwise_table_matches_code():
    for k, v in C.ELEMENTWISE_FLOPS.items():
        assert _row(k) == [v], k


def test_other_constants_match_code():
    for k in C.NORM_FLOPS_FWD:
        assert _row(k) == [C.NORM_FLOPS_FWD[k], C.NORM_FLOPS_BWD[k]]
    for name in ("SOFTMAX_FLOPS_FWD", "SOFTMAX_FLOPS_BWD", "ATTENTION_SCORE_FLOPS_FWD", "ATTENTION_SCORE_FLOPS_BWD",
                 "BACKWARD_FACTOR"):
        assert _row(name) == [getattr(C, name)]
    for k in C.OPTIMIZER_FLOPS:
        assert _row(k) == [C.OPTIMIZER_FLOPS[k], *C.OPTIMIZER_TENSORS[k], C.OPTIMIZER_STATE[k]]


def test_complex_tables_match_code():
    for k, v in C.COMPLEX_REAL_ELEMENTWISE_FLOPS.items():
        assert _row(f"complex-real {k}") == [v], k
    assert _row("REAL_BY_COMPLEX_DIV_FLOPS") == [C.REAL_BY_COMPLEX_DIV_FLOPS]
    assert _row("COMPLEX_MAC_FLOPS") == [C.COMPLEX_MAC_FLOPS]
    for k, v in C.COMPLEX_ELEMENTWISE_FLOPS.items():
        assert _row(f"complex {k}") == [v], k
