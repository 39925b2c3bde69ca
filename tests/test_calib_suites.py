"""Calibration suites as data: coverage, sizes, planned durations (issue 5 requirement 1)."""

from pathlib import Path

import pytest

from wattlint.calibrate import benchmarks
from wattlint.calibrate.suites import load_suite, parse_suite, plan_text
from wattlint.types import ConfigError

TINY = Path(__file__).parent / "data" / "calib-tiny.toml"


def test_default_suite_covers_every_family_and_fits_the_h100_budget():
    s = load_suite("default")
    fams = s.family_counts()
    assert set(fams) == set(benchmarks.FAMILIES)
    assert len(s.samples) >= 600  # the GPU campaign needs >= 600 measured op samples
    total = s.planned_seconds("cuda")
    assert total <= 12 * 60
    for k in (1, 2):
        assert s.planned_seconds("cuda", len(s.part(k, 2))) <= 8 * 60
    # parts partition the suite, each covers most families
    ids = [x.id for x in s.part(1, 2)] + [x.id for x in s.part(2, 2)]
    assert sorted(ids) == sorted(x.id for x in s.samples)
    assert len({x.family for x in s.part(1, 2)}) == len(fams)
    phases = {x.phase for x in s.samples}
    assert phases == {"forward", "backward", "optimizer"}
    assert {x.precision for x in s.samples} >= {"fp32", "tf32", "bf16"}


def test_default_suite_has_the_required_shapes():
    s = load_suite("default")
    gemms = [x.params_dict for x in s.samples if x.family == "gemm"]
    assert any(any(g[d] % 8 for d in ("m", "n", "k")) for g in gemms)  # non-multiples of 8
    assert any(g["m"] * g["n"] <= 128 * 128 for g in gemms)  # sub-wave outputs
    convs = [x.params_dict for x in s.samples if x.family == "conv"]
    assert any(c["k"] == 1 for c in convs) and any(c["k"] == 3 for c in convs)
    assert any(c.get("groups") == -1 for c in convs) and any(c.get("stride", 1) > 1 for c in convs)
    att = [x.params_dict for x in s.samples if x.family == "attention"]
    assert {a["causal"] for a in att} == {0, 1} and len({a["s"] for a in att}) >= 4 and len({a["d"] for a in att}) >= 3
    opt = {x.params_dict["name"] for x in s.samples if x.family == "optimizer"}
    assert {"adamw", "sgd"} <= opt


def test_plan_text_and_quick_suite():
    q = load_suite("quick")
    assert len(q.samples) < len(load_suite("default").samples)
    assert {x.precision for x in q.samples} == {"fp32"}
    text = plan_text(q, "cuda")
    assert "planned" in text and "min" in text and str(len(q.samples)) in text


def test_samples_are_deterministic_and_rebuild_records():
    a, b = load_suite(str(TINY)), load_suite(str(TINY))
    assert [x.id for x in a.samples] == [x.id for x in b.samples]
    assert a.sha256 == b.sha256
    for smp in a.samples:
        recs = smp.records()
        assert recs and all(r.flops >= 0 and r.bytes > 0 for r in recs)
        assert all(r.phase.value == smp.phase for r in recs)


def test_gemm_records_match_hand_counts():
    recs = benchmarks.records("gemm", {"m": 64, "n": 32, "k": 16}, "fp32", "forward")
    assert len(recs) == 1 and recs[0].flops == 2 * 64 * 32 * 16
    bwd = benchmarks.records("gemm", {"m": 64, "n": 32, "k": 16}, "bf16", "backward")
    assert [r.flops for r in bwd] == [2 * 64 * 32 * 16] * 2 and bwd[0].dtype == "bfloat16"


@pytest.mark.parametrize("bad, msg", [
    ({"group": [{"family": "nope", "shapes": [{}]}]}, "unknown family"),
    ({"group": [{"family": "gemm"}]}, "no shapes"),
    ({"group": [{"family": "gemm", "shapes": [{"m": 1}]}]}, "bad shape"),
    ({"group": [{"family": "gemm", "shape": []}]}, "unknown key"),
    ({"bogus": 1}, "unknown top-level"),
])
def test_bad_suites_are_clear_errors(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_suite(bad)


def test_unknown_suite_name_lists_available():
    with pytest.raises(ConfigError, match="default"):
        load_suite("no-such-suite")


@pytest.mark.parametrize("name, ok", [("../../../escaped", False), ("llm/ffn", False), (".hidden", False),
                                      ("my-suite_2.1", True)])
def test_suite_name_is_a_plain_file_name_part(name, ok):
    """Review: a suite's name is part of the run's file names (<stamp>-<name>.csv); '../../../escaped' wrote the
    run outside --out, 'llm/ffn' into a subfolder that `fit` never reads."""
    doc = {"suite": {"name": name},
           "group": [{"family": "gemm", "precisions": ["fp32"], "phases": ["forward"],
                      "shapes": [{"m": 64, "n": 64, "k": 64}]}]}
    if ok:
        assert parse_suite(doc).name == name
    else:
        with pytest.raises(ConfigError, match="letters, digits"):
            parse_suite(doc)


def test_fitting_without_torch_names_the_extra(monkeypatch):
    """Review: in the light install `wattlint fit` swallowed the missing torch and built every sample's records
    from the formulas (310 op rows instead of 421, a worse model), exit 0 and no word; now one line naming the
    extra (exit 2 through the CLI)."""
    import sys

    from wattlint.types import InputError

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails as where it is not installed
    monkeypatch.setattr(benchmarks, "_TRACE_CACHE", {})
    with pytest.raises(InputError, match=r"'torch' package is not installed; pip install 'wattlint\[torch\]'"):
        benchmarks.traced_records("gemm", {"m": 64, "n": 64, "k": 64}, "fp32", "forward")


def test_a_suite_file_name_with_a_space_gives_a_usable_name(tmp_path):
    """Review: a suite file 'my suite.toml' without [suite] name was refused as "name 'my suite'", a name the user
    never wrote; the file's stem is made a file-name part."""
    p = tmp_path / "my suite.toml"
    p.write_text('[[group]]\nfamily = "gemm"\nprecisions = ["fp32"]\nphases = ["forward"]\n'
                 'shapes = [{m = 64, n = 64, k = 64}]\n')
    assert load_suite(str(p)).name == "my-suite"
