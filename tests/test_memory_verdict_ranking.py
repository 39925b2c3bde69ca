"""A 'tight' memory verdict (the peak within the memory model's error band of the usable memory, measured peaks
0.95-1.15x the prediction) is never treated as a fit to spare: WL201 warns on it even below the capacity (a LitGPT 7B
LoRA run at 0.97 of the usable memory went out of memory), WL203 does not send a run that fits to a GPU it is tight
on, the compare ★ prefers a GPU that fits over a cheaper tight one, and a cached lint summary keeps the verdict.
Stop 51's review: these read the boolean ``fits`` (central peak <= usable), which calls a 0.99 peak a fit."""

from __future__ import annotations

import dataclasses

import pytest

from wattlint.lint import testing
from wattlint.lint.engine import Context, run_rules
from wattlint.lint.registry import all_rules
from wattlint.types import MemoryUse

GIB = 1 << 30
RULES = all_rules()


class Model:
    name = "m"
    select = ignore = ()
    budget: dict = {}
    regression_threshold = None


def _mem(ratio: float, cap: int = 80 * GIB) -> MemoryUse:
    peak = int(ratio * cap)
    return MemoryUse(peak_bytes_per_gpu=peak, gpu_memory_bytes=cap, fits=peak <= cap)


@pytest.mark.parametrize("a, b, worse", [
    # by hand with the band (0.95, 1.15): 0.80 x 1.15 = 0.92 <= 1 fits; 0.90 x 1.15 = 1.035 > 1 and 0.90 x 0.95 <= 1
    # tight; 1.02 x 0.95 = 0.969 <= 1 tight (above the capacity); 1.10 x 0.95 = 1.045 > 1 does not fit
    (0.90, 0.80, True), (0.80, 0.90, False), (1.02, 0.90, False), (1.10, 1.02, True), (0.80, 0.80, False),
    (1.10, 0.80, True), (0.90, 1.10, False),
])
def test_fits_worse_than_orders_the_verdicts(a, b, worse):
    assert _mem(a).fits_worse_than(_mem(b)) is worse


def _run(rule, est, reestimator, options=None):
    return run_rules(est, None, Model(), rules=[rule], reestimator=reestimator, gpus=testing.gpus_list,
                     options={rule.code: dict(options or {})}, strict=True)


def test_wl201_warns_on_a_tight_peak_below_the_capacity():
    cap = 80 * GIB
    _, est = testing.scenario([{"op": "linear", "m": 256, "n": 256, "k": 256}],
                              memory={"peak_bytes_per_gpu": int(0.95 * cap), "fits": True})
    assert est.memory.gpu_memory_bytes == cap and est.memory.verdict == "tight"
    (f,) = _run(RULES["WL201"], est, testing.simple_estimate)
    assert f.severity == "warning" and "it may run out of memory" in f.message, f.message
    _, roomy = testing.scenario([{"op": "linear", "m": 256, "n": 256, "k": 256}],
                                memory={"peak_bytes_per_gpu": int(0.85 * cap), "fits": True})
    assert roomy.memory.verdict == "fits" and _run(RULES["WL201"], roomy, testing.simple_estimate) == []


def _tight_on(key):
    """simple_estimate with GPU ``key``'s peak set at 0.95 of its memory (tight: 0.95 x 1.15 > 1 >= 0.95 x 0.95)."""
    def estimator(graph, gpu, plan):
        est = testing.simple_estimate(graph, gpu, plan)
        if gpu.key == key:
            cap = est.memory.gpu_memory_bytes
            est = dataclasses.replace(est, memory=MemoryUse(int(0.95 * cap), cap, True))
        return est
    return estimator


SCENE = [{"op": "linear", "m": 256, "n": 256, "k": 256}]  # WL203's own invalid case: the L4 trains it


def test_wl203_does_not_send_a_run_that_fits_to_a_gpu_it_is_tight_on():
    _, est = testing.scenario(SCENE, gpu="h100-sxm5-80gb", params=100_000)
    assert est.memory.verdict == "fits"
    opts = {"max_slowdown": 4.0, "candidates": ("l4",)}
    plain = _run(RULES["WL203"], est, testing.simple_estimate, opts)
    assert len(plain) == 1 and "L4 (l4, 72 W)" in plain[0].message  # control: holding it with room, it is named
    assert _run(RULES["WL203"], est, _tight_on("l4"), opts) == []
    # a planned run that is itself tight may move to a GPU of the same memory it is tight on too (no worse)
    opts = {"max_slowdown": 4.0, "candidates": ("a100-sxm4-80gb",)}
    assert "A100 SXM4 80GB" in _run(RULES["WL203"], est, testing.simple_estimate, opts)[0].message
    assert _run(RULES["WL203"], est, _tight_on("a100-sxm4-80gb"), opts) == []
    cap = est.memory.gpu_memory_bytes
    tight = dataclasses.replace(est, memory=MemoryUse(int(0.95 * cap), cap, True))
    moved = _run(RULES["WL203"], tight, _tight_on("a100-sxm4-80gb"), opts)
    assert len(moved) == 1 and "A100 SXM4 80GB" in moved[0].message


def test_compare_star_prefers_a_gpu_that_fits_over_a_cheaper_tight_one():
    from wattlint.report.json_out import most_efficient, most_efficient_why

    ests = [testing.scenario(SCENE, gpu=g, params=100_000)[1] for g in ("h100-sxm5-80gb", "a100-sxm4-80gb", "l4")]
    order = sorted(range(3), key=lambda i: ests[i].total.energy_kwh)
    cheapest, second = order[0], order[1]
    assert most_efficient(ests) == cheapest
    ests[cheapest] = dataclasses.replace(ests[cheapest], memory=_mem(0.95, ests[cheapest].memory.gpu_memory_bytes))
    assert most_efficient(ests) == second
    assert most_efficient_why(ests).startswith("least facility energy among GPUs where the model fits")
    # all tight but one that does not fit: the tight ones rank before it, however cheap it is
    for i in (0, 1, 2):
        ests[i] = dataclasses.replace(ests[i], memory=_mem(0.95 if i != cheapest else 1.2,
                                                           ests[i].memory.gpu_memory_bytes))
    assert most_efficient(ests) == second
    assert "may fit (tight" in most_efficient_why(ests)


def test_a_cached_summary_keeps_the_verdict():
    from wattlint.lint.engine import summarize

    _, est = testing.scenario(SCENE, memory={"peak_bytes_per_gpu": int(1.02 * 80 * GIB), "fits": False})
    summary = summarize(est)
    assert summary["memory"]["verdict"] == "tight"
    ctx = Context(RULES["WL203"], graph=None, estimate=None, summary=summary, options={})
    assert ctx.base_fits  # tight above the capacity: the run may start, the other rules keep their savings
    summary["memory"]["verdict"] = "does_not_fit"
    assert not Context(RULES["WL203"], graph=None, estimate=None, summary=summary, options={}).base_fits


def test_wl201_offers_a_fused_step_where_the_foreach_temporaries_set_the_peak():
    # review s52: a GPT-2-shaped 2560-wide model at 0.94 of an A100's memory was offered a smaller micro-batch and
    # checkpointing "alone would still need" the same peak: the foreach step's temporaries set it
    cap = 80 * GIB
    peak = int(0.95 * cap)
    _, est = testing.scenario(SCENE, memory={"peak_bytes_per_gpu": peak, "fits": True,
                                             "breakdown": {"optimizer_step_temporaries": 3 * GIB}})
    (f,) = _run(RULES["WL201"], est, testing.simple_estimate)
    assert "--optimizer-impl fused" in f.message, f.message
    _, other = testing.scenario(SCENE, memory={"peak_bytes_per_gpu": peak, "fits": True, "breakdown": {}})
    (g,) = _run(RULES["WL201"], other, testing.simple_estimate)
    assert "--optimizer-impl" not in g.message, g.message


def test_wl201_offers_a_for_loop_step_for_an_optimizer_torch_cannot_fuse():
    # torch fuses Adam / AdamW / SGD / Adagrad only: Adadelta's foreach temporaries go with a for-loop step
    cap = 80 * GIB
    _, est = testing.scenario(SCENE, memory={"peak_bytes_per_gpu": int(0.95 * cap), "fits": True,
                                             "breakdown": {"optimizer_step_temporaries": 3 * GIB}})
    est = dataclasses.replace(est, plan=dataclasses.replace(est.plan, optimizer="adadelta"))
    (f,) = _run(RULES["WL201"], est, testing.simple_estimate)
    assert "--optimizer-impl for-loop" in f.message and "fused" not in f.message, f.message
