"""Expert-parallel dispatch copies per token (wattlint.parallel.expert_dispatch_copies) and the all-to-all left
exposed under Megatron-Core's combined-1F1B overlap (wattlint.parallel.overlapped_all_to_all_s), review s54.

Expected values are derived by hand in the comments, and the small cases are also checked against a brute-force
enumeration of every routing decision (an oracle that shares no code with the closed forms)."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from wattlint import parallel as P
from wattlint.types import ConfigError


def _brute(experts: int, top_k: int, ep: int, local: int, groups: int, topk_group: int) -> tuple[Fraction, Fraction]:
    """(expected network copies, expected NVLink copies) of a DeepEP-style dispatch from rank 0, by enumerating
    every choice of topk_group groups (equally likely) and then every top-k subset of their experts (equally
    likely): network = remote nodes holding one of the token's experts; NVLink = GPUs holding one that are not the
    entry GPU of their node (local index 0, rank 0's own index; on rank 0's node the entry GPU is rank 0 itself)."""
    per_rank, per_group = experts // ep, experts // groups
    net = nv = Fraction(0)
    group_sets = list(itertools.combinations(range(groups), topk_group))
    for gs in group_sets:
        cand = [x for g in gs for x in range(g * per_group, (g + 1) * per_group)]
        picks = list(itertools.combinations(cand, top_k))
        for pick in picks:
            ranks = {x // per_rank for x in pick}
            nodes = {r // local for r in ranks}
            w = Fraction(1, len(group_sets) * len(picks))
            net += w * len(nodes - {0})
            nv += w * sum(1 for r in ranks if r % local != 0)
    return net, nv


def test_node_limited_routing_two_nodes_one_group_each():
    # 8 experts, top-4, 2 groups of 4 (each group = one node's GPU: ep 2, one GPU per node), topk_group 1: the token
    # picks one group (1/2 each) and all 4 of its experts, so the other node is hit with probability 1/2: 0.5 copies
    # over the network per token under a deduplicating (DeepEP) dispatcher; at most 1 = topk_group off-node copy
    ly = {"experts": 8, "top_k": 4, "n_group": 2, "topk_group": 1}
    c = P.expert_dispatch_copies(ly, ep=2, tp=1, gpus_per_node=1, dispatcher="flex")
    assert c.network == pytest.approx(0.5)
    assert c.nvlink == 0.0 and c.nodes == 2
    assert c.network == pytest.approx(float(_brute(8, 4, 2, 1, 2, 1)[0]))
    # per-expert all-to-all (Megatron's alltoall dispatcher): every assignment travels, top-k x (ep - local) / ep =
    # 4 x 1 / 2 = 2 copies over the network, group limit or not
    a = P.expert_dispatch_copies(ly, ep=2, tp=1, gpus_per_node=1, dispatcher="alltoall")
    assert (a.network, a.nvlink) == (pytest.approx(2.0), 0.0)


def test_dedup_without_group_limit_counts_distinct_remote_nodes():
    # no n_group: the other node (4 of the 8 experts) is missed only when all 4 picks are on this node:
    # C(4,4) / C(8,4) = 1 / 70, so 1 - 1/70 = 69/70 network copies per token
    c = P.expert_dispatch_copies({"experts": 8, "top_k": 4}, ep=2, tp=1, gpus_per_node=1, dispatcher="flex")
    assert c.network == pytest.approx(69 / 70)
    assert c.network == pytest.approx(float(_brute(8, 4, 2, 1, 1, 1)[0]))


def test_node_holding_several_groups_and_nvlink_fan_out():
    # 16 experts, 4 groups of 4, topk_group 2, top-3, ep 4 GPUs on 2 nodes of 2 (tp 1): each node holds 2 groups,
    # each GPU one group. By hand for the remote node (groups 2, 3): it meets h of the 2 chosen groups,
    # P(h=0) = C(2,2)/C(4,2) = 1/6 (missed), P(h=1) = 4/6 (4 of the 8 candidates on it: missed when all 3 picks
    # are in the other group, C(4,3)/C(8,3) = 4/56), P(h=2) = 1/6 (never missed): P(miss) = 1/6 + 4/6 x 1/14 = 3/14
    # -> 11/14 network copies. NVLink: the 2 non-entry GPUs, each hit with P = P(its group chosen) x (1 - C(4,3) /
    # C(8,3)) = 1/2 x 13/14 = 13/28 -> 2 x 13/28 = 13/14
    ly = {"experts": 16, "top_k": 3, "n_group": 4, "topk_group": 2}
    c = P.expert_dispatch_copies(ly, ep=4, tp=1, gpus_per_node=2, dispatcher="flex")
    assert c.network == pytest.approx(11 / 14)
    assert c.nvlink == pytest.approx(13 / 14)
    net, nv = _brute(16, 3, 4, 2, 4, 2)
    assert (c.network, c.nvlink) == (pytest.approx(float(net)), pytest.approx(float(nv)))
    # alltoall: top-k x (local - 1) / ep = 3/4 over NVLink, top-k x (ep - local) / ep = 3/2 over the network
    a = P.expert_dispatch_copies(ly, ep=4, tp=1, gpus_per_node=2, dispatcher="alltoall")
    assert (a.nvlink, a.network) == (pytest.approx(0.75), pytest.approx(1.5))


def test_deepseek_v3_layout_ep64_on_8_nodes():
    # DeepSeek-V3: 256 experts, top-8, 8 groups, topk_group 4; EP64 over 8 nodes of 8 GPUs: each node is one group.
    # A remote node is hit when its group is among the 4 chosen (1/2) and one of the 8 picks among the 128
    # candidates falls in its 32: 1 - prod_{i<8} (96 - i) / (128 - i). Network copies = 7 x 1/2 x that (~3.18,
    # against 8 x 56/64 = 7 for a per-expert all-to-all, and at most topk_group = 4 nodes as the paper states)
    miss = 1.0
    for i in range(8):
        miss *= (96 - i) / (128 - i)
    ly = {"experts": 256, "top_k": 8, "n_group": 8, "topk_group": 4}
    c = P.expert_dispatch_copies(ly, ep=64, tp=1, gpus_per_node=8, dispatcher="flex")
    assert c.network == pytest.approx(7 * 0.5 * (1 - miss))
    assert 3.0 < c.network < 4.0
    assert P.expert_dispatch_copies(ly, ep=64, tp=1, gpus_per_node=8).network == pytest.approx(7.0)


def test_group_straddling_a_gpu_drops_the_limit():
    # 12 experts in 3 groups of 4 over ep 2 (6 per rank, one rank per node): a rank straddles two groups, so the
    # group limit is dropped for the plain rule: 1 - C(6,2)/C(12,2) = 1 - 15/66 = 51/66 for top-2
    ly = {"experts": 12, "top_k": 2, "n_group": 3, "topk_group": 1}
    c = P.expert_dispatch_copies(ly, ep=2, tp=1, gpus_per_node=1, dispatcher="flex")
    assert (c.groups, c.topk_group) == (1, 1)
    assert c.network == pytest.approx(51 / 66)


def test_unknown_dispatcher_is_refused():
    with pytest.raises(ConfigError, match="dispatcher"):
        P.expert_dispatch_copies({"experts": 8, "top_k": 2}, ep=2, tp=1, gpus_per_node=1, dispatcher="deepep")


def test_overlapped_all_to_all():
    # combined 1F1B, 8 micro-batches, 10 ms of all-to-all and 4 ms of compute each: the first forward and the last
    # backward unpaired (10 ms together), 7 paired slots each exposing 10 - 4 = 6 ms: 10 + 42 = 52 ms (no overlap:
    # 80 ms)
    assert P.overlapped_all_to_all_s(0.010, 0.004, 8) == pytest.approx(0.052)
    # compute longer than the all-to-all: only the unpaired micro-batch's 10 ms
    assert P.overlapped_all_to_all_s(0.010, 0.030, 8) == pytest.approx(0.010)
    # one micro-batch: nothing to pair with
    assert P.overlapped_all_to_all_s(0.010, 0.030, 1) == pytest.approx(0.010)
