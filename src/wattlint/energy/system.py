"""System physics around the ops: data-parallel communication, launch-bound gaps, host power, facility energy.

Everything that is not the time and power of one op on one GPU, and that turns a sum of op costs into a job's cost,
lives here (the aggregation in wattlint.estimate only adds up). Constants and their sources are in
docs/ENERGY_MODEL.md ("System").

Communication (``gpus > 1``), bandwidth-only ring model with NCCL bus efficiency, per GPU and optimizer step:

* none / zero1: gradient all-reduce, each GPU moves 2(n-1)/n x gradient bytes;
* zero2: reduce-scatter of gradients after every micro-batch's backward (sharded gradients cannot be accumulated
  unreduced) + one all-gather of the updated weights: (grad-accum x G + W)(n-1)/n;
* zero3 / fsdp: weight all-gather in forward and again in backward + gradient reduce-scatter, per micro-batch:
  grad-accum x (2W + G)(n-1)/n;

inside one node over NVLink (or PCIe without it); across nodes NCCL's rings over all n ranks, one channel per NIC,
whose bottleneck is the node's network link (``internode_gbps``) carrying the ring's factor over the n ranks.
Every collective call adds a latency term ``calls x COLLECTIVE_LATENCY_S x log2(n)``. Collectives overlap the
backward pass (DDP buckets) or the whole forward + backward (FSDP prefetch); only the part longer than the overlapped
compute is exposed — never less than ``MIN_EXPOSED`` of it — at near-idle power. Under the ``megatron`` training
stack without ZeRO-2/3 / FSDP the gradient all-reduce runs after the backward pass and is exposed whole
(:func:`after_backward`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..report.units import ms as _ms
from ..types import LIB_CALL, ConfigError, CostGraph, GpuSpec, OpRecord, Plan

NCCL_BUS_EFFICIENCY = 0.80  # achieved / link bandwidth of large NCCL collectives (nccl-tests busbw)
COLLECTIVE_LATENCY_S = 30e-6  # per collective call and ring step (ring setup, small-message latency)
BUCKET_BYTES = 25 * 2**20  # DDP default bucket: 25 MiB -> one collective call per bucket
MAX_CALLS = 200  # large models: FSDP units / ZeRO buckets grow with the model (~one per layer), not 25 MiB each
PCIE_GBS = {3: 12.0, 4: 24.0, 5: 48.0, 6: 96.0}  # achievable GB/s per direction, x16 link
MIN_EXPOSED = 0.10  # at least this fraction of communication is never hidden (first/last buckets)
COMM_POWER_ACTIVITY = 0.10  # GPU activity while waiting on exposed communication (NCCL kernels spin a few SMs)
# Eager PyTorch CPU cost per launched op (Python + dispatcher + cudaLaunchKernel). Fitted on the Zeus NSDI'23 traces
# (ShuffleNetV2 / BERT-base at batch 4-8192 on V100, A40, P100, RTX 6000; PyTorch 1.x, traced with its zero_grad
# fills): the fit on all four GPUs; leave-one-GPU-out fits range 15-20 us (benchmarks/results/prior_vs_public.json
# "host_op_fit"; --host-op-time). Refitted when the prior or the Zeus traces change: 21 us before the NCHW BatchNorm
# rule, 17 us before PyTorch 1.x's zero_grad fills were traced, 15 us since (2026-12-04).
HOST_OP_S = 15e-6
# Host CPU time per launched op under the megatron training stack (--training-stack megatron), the stack's own
# default of the same launch-gap model: Megatron-LM / Megatron-DeepSpeed wrap each layer's kernels in Python that
# eager PyTorch does not run (the tensor-parallel region autograd Functions, apex / TorchScript fused-kernel wrappers,
# the activation-checkpoint function with its RNG-state save / restore per layer, DeepSpeed's engine and pipeline
# hooks), so each launch costs the host more than HOST_OP_S. Public fit, megatron stack, full recompute: the vTrain
# (MICRO'24) single-node train split fixed before fitting (index % 4 == 0, 360 of 1,440 rows), jointly with the
# per-call TP/PP latency (benchmarks/parallel_accuracy.py, 2026-12-04); the held-out rows and the multi-node rows
# were not used. --host-op-time overrides it.
MEGATRON_HOST_OP_S = 58e-6
MEGATRON_HOST_OP_SOURCE = ("megatron stack default, public fit on the vTrain MICRO'24 Megatron-DeepSpeed single-node "
                           "train split (360 rows fixed before fitting): Megatron's per-layer Python (tensor-parallel "
                           "region functions, fused-kernel wrappers, activation-checkpoint RNG save / restore, "
                           "DeepSpeed hooks) launches slower than eager PyTorch's "
                           f"{HOST_OP_S * 1e6:.3g} us; --host-op-time to change")


def host_op(plan: Plan) -> tuple[float, str]:
    """Host CPU time per eager op launch of ``plan`` and where it comes from: --host-op-time when given, else the
    training stack's default (``MEGATRON_HOST_OP_S`` for ``megatron``, ``HOST_OP_S`` for ``pytorch``)."""
    if plan.host_op_s is not None:
        return plan.host_op_s, "--host-op-time"
    if plan.training_stack == "megatron":
        return MEGATRON_HOST_OP_S, MEGATRON_HOST_OP_SOURCE
    return HOST_OP_S, "default: docs/ENERGY_MODEL.md"


# Fraction of the launch time the launch-gap rule hides that is nevertheless exposed: 0 = only what the rule exposes
# (whole-phase max: launching longer than the GPU work; launch queue: what the ordered queue exposes); 1 = launching
# adds to the step (GPU + host). Shipped: 0. The vTrain train split prefers 1 at HOST_OP_S = 21 us
# (benchmarks/host_exposed.py -> results/host_exposed.json), but HOST_OP_S refitted on Zeus under 1 is 10 us, where
# 1 gains less (host_exposed_10us.json); the H200 measured rows' time error grows 1.3-2x under 1
# (results/measured_host_exposure.json): docs/ENERGY_MODEL.md.
HOST_EXPOSED = 0.0
# Which launch-gap rule prices the step (launch_gap_s): True, the ordered launch queue; False (shipped), the
# whole-phase max. The queue loses on the Zeus held-out rows (time 26.9 -> 30.0 % MAPE) and is flat on vTrain,
# H200 and llm-foundry: docs/ENERGY_MODEL.md "Launch-bound gaps".
LAUNCH_QUEUE = False
OPT_MAX_LAUNCHES = 16  # launches of a fused/foreach optimizer step (multi-tensor apply over chunks of tensors)
SERVER_GPU_SLOTS = 8  # a data-centre PCIe server (and a cloud instance's host) holds 8 GPUs; a job's share is per GPU
SHARDED = ("zero1", "zero2", "zero3", "fsdp")
HALF = ("fp16", "bf16", "fp8")


# ---- links -----------------------------------------------------------------------------------------------------

def intra_node_gbs(gpu: GpuSpec) -> tuple[float, str]:
    """Per-direction link bandwidth (GB/s) between GPUs of one node, and its name."""
    if gpu.nvlink_gbs:
        return gpu.nvlink_gbs / 2.0, f"NVLink {gpu.nvlink_gbs:g} GB/s bidirectional"
    gen = gpu.pcie_gen or 4
    return PCIE_GBS.get(gen, 24.0), f"PCIe gen{gen} x16"


def default_internode_gbps(gpu: GpuSpec, gpus_per_node: int = 8) -> tuple[float, str]:
    """Network bandwidth per node (Gbit/s) of a typical cluster for this GPU class, and why. The NVLink classes have
    one NIC per GPU (DGX H100 / A100: 8 for 8 GPUs; DGX-1: 4 for 8): a node of fewer GPUs has that many fewer."""
    k = max(1, min(gpu.nvlink_domain or 8, int(gpus_per_node)))
    if gpu.nvlink_domain:  # a rack-scale NVLink domain (GB200 NVL72): one NIC per GPU for the network between racks
        return 400.0 * k, (f"{k} x 400 Gbit/s per NVLink domain of {k} GPUs (one NIC per GPU, as GB200 NVL72 "
                           f"racks)")
    if gpu.nvlink_gbs > 0 and gpu.pcie_gen >= 5:
        return 400.0 * k, f"{k} x 400 Gbit/s InfiniBand NDR per node (one per GPU, as DGX H100-class nodes)"
    if gpu.nvlink_gbs >= 600:
        return 200.0 * k, f"{k} x 200 Gbit/s InfiniBand HDR per node (one per GPU, as DGX A100-class nodes)"
    if gpu.nvlink_gbs > 0:
        nics = max(1, k // 2)
        return 100.0 * nics, f"{nics} x 100 Gbit/s InfiniBand EDR per node (one per 2 GPUs, as DGX-1-class nodes)"
    return 100.0, "100 Gbit/s Ethernet per node (PCIe servers)"


def collective_calls(nbytes: float) -> int:
    return max(1, min(MAX_CALLS, math.ceil(nbytes / BUCKET_BYTES)))


# ---- data-parallel communication -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Communication:
    """Data-parallel communication of one optimizer step, per GPU."""

    bytes: float  # moved by each GPU
    time_s: float  # the collectives' duration
    exposed_s: float  # not hidden behind compute
    power_w: float  # GPU power while waiting on the exposed part
    calls: int
    note: str  # the assumption line

    @property
    def energy_j(self) -> float:
        return self.exposed_s * self.power_w


def sync_bytes(graph: CostGraph, plan: Plan) -> tuple[float, float, bool]:
    """(gradient bytes, weight bytes, sent in 16-bit) synchronised per step.

    Gradients travel in the parameter dtype (fp32 under autocast); ZeRO-2/3 and FSDP mixed precision gather weights
    and reduce gradients in 16-bit (fp32 master weights and optimizer state stay sharded locally)."""
    bpp = (graph.model.param_bytes / graph.params) if graph.params else 4.0
    grad = graph.trainable_params * bpp
    weight = float(graph.model.param_bytes or graph.params * 4)
    half = plan.sharding in ("zero2", "zero3", "fsdp") and plan.precision in HALF and plan.gpus > 1
    if half:
        grad, weight = graph.trainable_params * 2.0, graph.params * 2.0
    return grad, weight, half


def _volume(plan: Plan, grad: float, weight: float) -> tuple[float, float, int, str]:
    """(algorithm factor x bytes without the (n-1)/n term, calls, collective description)."""
    ga = max(1, plan.grad_accum)
    # ZeRO-2/3 and FSDP keep only their shard of the gradients (wattlint.memory divides them), so every micro-batch's
    # backward reduce-scatters its gradients (DeepSpeed ZeRO-2/3 reduce in each micro-step; FSDP without no_sync,
    # which would keep whole unsharded gradients)
    if plan.sharding in ("zero3", "fsdp"):
        return (ga * (2 * weight + grad), 3 * ga * collective_calls(weight),
                "ring all-gather of weights (forward + backward) + reduce-scatter of gradients, per micro-batch")
    if plan.sharding == "zero2":
        return (ga * grad + weight, (ga + 1) * collective_calls(grad),
                "ring reduce-scatter of gradients per micro-batch + all-gather of the updated weights")
    return 2 * grad, collective_calls(grad), "ring all-reduce of gradients (2(n-1)/n x bytes per GPU)"


def collective_time(bytes_unscaled: float, calls: int, gpu: GpuSpec, plan: Plan) -> tuple[float, float, str]:
    """(time_s, bytes per GPU, link description) of ring collectives over ``plan.gpus`` GPUs that would move
    ``bytes_unscaled`` x (n-1)/n per GPU: flat ring inside one node, hierarchical across nodes."""
    n = max(1, plan.gpus)
    if n == 1:
        return 0.0, 0.0, "none"
    volume = bytes_unscaled * (n - 1) / n
    per_node = max(1, min(plan.gpus_per_node, n))
    nodes = math.ceil(n / per_node)
    intra_bw, intra_name = intra_node_gbs(gpu)
    t_intra = volume / (intra_bw * 1e9 * NCCL_BUS_EFFICIENCY) if per_node > 1 else 0.0
    if nodes <= 1:
        t, link = t_intra, intra_name
    else:
        gbps = plan.internode_gbps or default_internode_gbps(gpu, plan.gpus_per_node)[0]
        # NCCL's rings run over all n ranks, one channel per NIC: every node's network carries the ring's factor
        # over the n ranks (2 x 15/16 of the tensor for an all-reduce over 2 nodes of 8), as tensor-parallel groups
        # spanning nodes are priced (_group_collective); a factor over the N nodes (2 x 1/2) moved about half of it
        t_inter = volume / (gbps / 8.0 * 1e9 * NCCL_BUS_EFFICIENCY)
        t = max(t_inter, t_intra)
        link = (f"{intra_name} inside a node, " if per_node > 1 else "one GPU per node: ") + \
            f"{gbps:g} Gbit/s of network per node, NCCL rings over all {n} ranks between {nodes} nodes"
    t += calls * COLLECTIVE_LATENCY_S * math.log2(n)
    return t, volume, link


def data_parallel(graph: CostGraph, gpu: GpuSpec, plan: Plan, forward_s: float, backward_s: float,
                  job: Plan | None = None) -> Communication | None:
    """Communication of one step given the per-GPU forward / backward compute time of the step (None on 1 GPU);
    ``plan`` is the data-parallel group's (:func:`data_parallel_plan` of ``job``, the whole job's plan)."""
    if plan.gpus <= 1:
        return None
    network_share = ""
    if job is not None and job is not plan and plan.gpus > plan.gpus_per_node:
        full = job.internode_gbps or default_internode_gbps(gpu, job.gpus_per_node)[0]
        rings = max(1, job.gpus_per_node // max(1, plan.gpus_per_node))
        network_share = (f" (the node's {full:g} Gbit/s shared by the {rings} data-parallel rings of its "
                         f"model-parallel ranks)") if rings > 1 else ""
    grad, weight, half = sync_bytes(graph, plan)
    unscaled, calls, collective = _volume(plan, grad, weight)
    ep = max(1, int(getattr(plan, "expert_parallel", 1) or 1))
    experts = ""
    if ep > 1 and graph.params and plan.gpus % ep == 0:
        from .. import parallel as _parallel

        split = _parallel.expert_split(graph, ep)
        if split.expert > 0:
            # each GPU holds experts / ep of every MoE layer: their gradients are reduced over the n / ep ranks that
            # hold the same experts (Megatron's expert-data-parallel group, every ep-th data-parallel rank), the
            # other parameters over all n; the experts other ranks hold are not reduced here at all
            dense, held = (split.params - split.expert) / graph.params, split.expert / graph.params
            unscaled, calls, collective = _volume(plan, grad * dense, weight * dense)
            # the ring's ranks in one node belong to min(ep, ranks per node) expert-data-parallel rings, which run at
            # once and share the ring's network
            ring_gbps = plan.internode_gbps or default_internode_gbps(gpu, plan.gpus_per_node)[0]
            rings_here = max(1, min(ep, plan.gpus_per_node))
            eplan = dataclasses.replace(plan, gpus=plan.gpus // ep, gpus_per_node=max(1, plan.gpus_per_node // ep),
                                        internode_gbps=ring_gbps / rings_here)
            e_unscaled, e_calls, _ = _volume(eplan, grad * held, weight * held)
            t_e, vol_e, _ = collective_time(e_unscaled, e_calls, gpu, eplan)
            experts = (f"; expert parallel {ep}: this GPU's {split.expert:,.0f} routed-expert parameters over the "
                       f"{plan.gpus // ep} ranks holding the same experts, its {split.params - split.expert:,.0f} "
                       f"others over all {plan.gpus}")
    t, volume, link = collective_time(unscaled, calls, gpu, plan)
    latency = calls * COLLECTIVE_LATENCY_S * math.log2(plan.gpus)  # collective_time's latency term
    lat_how = f"{calls:,} calls x {COLLECTIVE_LATENCY_S * 1e6:g} us x log2({plan.gpus})"
    tail = 0.0  # ZeRO-2's all-gather of the updated weights after the optimizer step: nothing left to hide it under
    if plan.sharding == "zero2":
        w_share = weight / (max(1, plan.grad_accum) * grad + weight) if grad + weight > 0 else 0.0
        tail = t * w_share
    if experts:
        if plan.sharding == "zero2":
            tail += t_e * w_share
        t, volume, calls = t + t_e, volume + vol_e, calls + e_calls
        if eplan.gpus > 1:
            latency += e_calls * COLLECTIVE_LATENCY_S * math.log2(eplan.gpus)
            lat_how += f" + {e_calls:,} x log2({eplan.gpus})"
    after = after_backward(plan)
    if plan.sharding in ("zero3", "fsdp"):
        overlap = forward_s + backward_s  # FSDP prefetches the next unit's weights during compute
    elif after:
        overlap = 0.0
    elif plan.sharding == "zero2":
        overlap = backward_s  # each micro-batch's reduce-scatter runs under its own backward (the all-gather: tail)
    else:
        overlap = backward_s / max(1, plan.grad_accum)  # DDP overlaps with the last micro-batch's backward
    exposed = t if after else max((t - tail) * MIN_EXPOSED, t - tail - overlap) + tail
    power = comm_power_w(gpu)
    passes = ("the forward and backward passes (the next unit's weights prefetched)"
              if plan.sharding in ("zero3", "fsdp") else "the backward pass")
    how = (f"after the backward pass, not overlapped ({AFTER_BACKWARD_SOURCE})" if after else
           f"overlapped with {passes}, exposed part (at least {MIN_EXPOSED:.0%})")
    note = (f"data parallel over {plan.gpus} GPUs ({plan.gpus_per_node} per node), sharding {plan.sharding}: "
            f"{collective}{experts}; {link}{network_share}; NCCL bus efficiency {NCCL_BUS_EFFICIENCY:.0%}, + "
            f"latency {lat_how} ({latency * 1e3:,.3g} ms of the step's {t * 1e3:,.3g} ms of collectives); {how} "
            f"at near-idle power ({power:.0f} W)")
    if half:
        note += "; sharded mixed precision: weights all-gathered and gradients reduce-scattered in 16-bit"
    return Communication(bytes=volume, time_s=t, exposed_s=exposed, power_w=power, calls=calls, note=note)


AFTER_BACKWARD_SOURCE = ("training stack megatron: Megatron-LM's DistributedDataParallel all-reduces the fp32 "
                         "gradient buffer once the last micro-batch's backward has finished unless "
                         "--overlap-grad-reduce is given (off by default), as Megatron-DeepSpeed's "
                         "allreduce_gradients does")


def after_backward(plan: Plan) -> bool:
    """Whether the data-parallel gradient reduction runs after the backward pass instead of overlapping it: the
    ``megatron`` training stack without ZeRO-2/3 or FSDP (Megatron-LM / Megatron-DeepSpeed reduce the gradient
    buffer after the last micro-batch's backward by default); PyTorch DDP (the ``pytorch`` stack) and sharded
    data parallelism overlap it."""
    return plan.training_stack == "megatron" and plan.sharding in ("none", "zero1")


def comm_power_w(gpu: GpuSpec) -> float:
    """GPU power while it waits on a collective: idle plus ``COMM_POWER_ACTIVITY`` of the way to TDP."""
    return gpu.idle_w + COMM_POWER_ACTIVITY * (gpu.tdp_w - gpu.idle_w)


# ---- launch-bound gaps -----------------------------------------------------------------------------------------

class Launches:
    """Counts eager launches: the ONE place that decides what a record costs the host.

    A record with no time launches nothing (views, metadata); any other record is one eager op launch
    (``host_op_s``), except the records of one library call (``LIB_CALL`` tag in ``dims``: cuDNN's RNN, whose
    per-step kernels cuDNN launches from C++), which are ONE launch per phase: torch launches ``_cudnn_rnn`` once in
    forward and ``_cudnn_rnn_backward`` once in backward (a forward call re-run by activation checkpointing launches
    once more). The library's own per-kernel launch cost is GPU-side time, priced with the op (energy/prior.py)."""

    __slots__ = ("n", "_calls")

    def __init__(self) -> None:
        self.n = 0
        self._calls: set = set()

    def add(self, r: OpRecord, t: float, recompute: bool = False) -> int:
        """Count ``r`` (priced at ``t`` seconds) and return its launches (0 or 1); ``recompute``: a forward record
        run again in backward."""
        if t <= 0:
            return 0
        call = r.dim(LIB_CALL, 0) if r.dims else 0
        if not call:
            self.n += 1
            return 1
        key = (call, r.phase, recompute)
        if key not in self._calls:
            self._calls.add(key)
            self.n += 1
            return 1
        return 0


LAUNCH_QUEUE_SYNCS = ("each optimizer step starts from an idle GPU and an empty launch queue (the loop's "
                      "host-device sync once per iteration: loss.item() / logging, AMP GradScaler's found-inf "
                      "check, Megatron's grad-norm and found-inf .item()); no sync between forward and backward "
                      "(loss.backward() hands the graph to the autograd engine's device thread, which issues the "
                      "backward ops from one CPU thread without synchronising the GPU), between accumulated "
                      "micro-batches, or before optimizer.step()")


@dataclass(frozen=True)
class LaunchStream:
    """One issue-ordered op stream: the GPU time of each op (``kernel_s``) and the eager launches it costs the
    host (``launches``, 0 or 1 each, from :class:`Launches`), as numpy arrays of equal length."""

    kernel_s: object
    launches: object

    @classmethod
    def of(cls, kernel_s, launches) -> "LaunchStream":
        import numpy as np

        k = np.asarray(kernel_s, dtype=float)
        n = np.asarray(launches, dtype=float)
        if k.shape != n.shape or k.ndim != 1:
            raise ValueError(f"launch stream: {k.shape} kernel times against {n.shape} launch counts")
        return cls(k, n)

    @property
    def n_launches(self) -> float:
        return float(self.launches.sum())

    @property
    def gpu_s(self) -> float:
        return float(self.kernel_s.sum())


def queue_end_s(kernel_s, host_s, gpu_free_s: float = 0.0, host_at_s: float = 0.0) -> float:
    """When the GPU finishes an ordered op stream issued from one CPU thread through an asynchronous launch queue.

    Op i cannot start before the GPU finished op i-1 nor before the host issued it:
    ``end_i = max(end_{i-1}, issue_i) + kernel_i``, ``issue_i = issue_{i-1} + host_i``, with ``end_0 = gpu_free_s``
    and ``issue_0 = host_at_s``. Unrolled, ``end_N = max(gpu_free_s + sum_j kernel_j, max_i (issue_i + sum_{j>=i}
    kernel_j))``: O(n) with a prefix sum of the host times and a suffix sum of the kernel times."""
    import numpy as np

    k = np.asarray(kernel_s, dtype=float)
    if k.size == 0:
        return max(gpu_free_s, host_at_s)
    issue = host_at_s + np.cumsum(np.asarray(host_s, dtype=float))
    suffix = np.cumsum(k[::-1])[::-1]
    return float(max(gpu_free_s + suffix[0], float((issue + suffix).max())))


def launch_gap_s(micro: LaunchStream, optimizer: LaunchStream, micro_scale: float, grad_accum: int,
                 host_op_s: float = HOST_OP_S, opt_multi_tensor: bool = True,
                 exposed: float = HOST_EXPOSED, queue: bool | None = None) -> float:
    """GPU idle time per step while eager PyTorch launches ops from one CPU thread (``host_op_s`` each).

    ``micro``: one micro-batch's forward and backward ops in issue order (its kernel times x ``micro_scale`` when
    the plan's micro-batch differs from the traced one); ``grad_accum`` of them run, then the ``optimizer`` ops. A
    fused/foreach (multi-tensor) optimizer launches at most ``OPT_MAX_LAUNCHES`` kernels (spread evenly over its
    timed records); a for-loop one launches every recorded op.

    ``queue`` (default ``LAUNCH_QUEUE``): True, the ordered launch queue (:func:`queue_end_s`) with the syncs
    ``LAUNCH_QUEUE_SYNCS`` states: micro-batches back to back, then the optimizer; the gap is the step's queue end
    minus its GPU work. False, the whole-phase max: per micro-batch max(0, launching - GPU work), the same for the
    optimizer step (each from an idle queue). Either way ``exposed`` x the launch time not already in the gap is
    added (0 shipped; 1 = GPU + host)."""
    import numpy as np

    ga = max(1, int(grad_accum))
    k = micro.kernel_s * micro_scale
    h = micro.launches * host_op_s
    K, H = float(k.sum()), float(h.sum())
    if not (LAUNCH_QUEUE if queue is None else queue):
        n_opt = optimizer.n_launches
        n_opt = min(OPT_MAX_LAUNCHES, n_opt) if opt_multi_tensor else n_opt
        Ho, Ko = n_opt * host_op_s, optimizer.gpu_s

        def gap_max(host: float, gpu: float) -> float:
            return max(0.0, host - gpu) + exposed * min(host, gpu)

        return gap_max(H, K) * ga + gap_max(Ho, Ko)
    if k.size:
        # one micro-batch from an idle queue, then ga - 1 more back to back: the stream repeats, so the max over
        # its ops of issue + remaining GPU work is reached in the first copy when the GPU is the bottleneck
        # (K >= H) and in the last one otherwise: end = (ga - 1) x max(H, K) + max_i (issue_i + sum_{j>=i} k_j)
        one = float((np.cumsum(h) + np.cumsum(k[::-1])[::-1]).max())
        end = max(ga * K, (ga - 1) * max(H, K) + one)
    else:
        end = 0.0
    host = ga * H
    ko = optimizer.kernel_s
    n_opt = optimizer.n_launches
    ho = optimizer.launches * host_op_s
    if opt_multi_tensor and n_opt > OPT_MAX_LAUNCHES:
        ho = ho * (OPT_MAX_LAUNCHES / n_opt)
    end = queue_end_s(ko, ho, end, host)
    host += float(ho.sum())
    gap = max(0.0, end - ga * K - float(ko.sum()))
    return gap + exposed * max(0.0, host - gap)


def launch_gap_note(n_ops: int, gap_s: float, idle_w: float, host_op_s: float = HOST_OP_S,
                    stated: bool | str = False, exposed: float = HOST_EXPOSED, queue: bool | None = None) -> str:
    """The launch-gap assumption line; ``stated``: True for --host-op-time, or the source line of the value."""
    src = stated if isinstance(stated, str) else ("--host-op-time" if stated else "default: docs/ENERGY_MODEL.md")
    extra = f"; plus {exposed:g} x the launch time otherwise hidden (HOST_EXPOSED)" if exposed else ""
    if LAUNCH_QUEUE if queue is None else queue:
        return (f"launch-bound gaps from the eager launch queue: {n_ops} ops per step launched from one CPU thread "
                f"at {host_op_s * 1e6:.3g} us each ({src}); an op starts when the GPU has finished the previous one "
                f"and the host has issued it, so the CPU runs ahead only while kernels outlast their launches; "
                f"{LAUNCH_QUEUE_SYNCS}{extra}: the GPU idles {_ms(gap_s)} ms per step (at {idle_w:.0f} W)")
    return (f"launch-bound: GPU work shorter than launching its {n_ops} ops per step from eager PyTorch at "
            f"{host_op_s * 1e6:.3g} us each ({src}); per micro-batch and for the optimizer step, the part of "
            f"launching that outlasts the GPU work shows (the CPU runs ahead otherwise){extra}: the GPU idles in "
            f"the gaps ({_ms(gap_s)} ms per step at {idle_w:.0f} W)")


# ---- host and facility -----------------------------------------------------------------------------------------

def host_power_w_per_job_gpu(gpu: GpuSpec, gpus_per_node: int, node_given: bool = False) -> tuple[float, str]:
    """Host power (CPUs, DRAM, fans, NICs, power-supply losses) each GPU of a job carries (W), and the assumption
    line, by the platform class of the GPU (energy.host). ``node_given``: the user stated the node size
    (--gpus-per-node), so the node holds ``gpus_per_node`` GPUs and they share its base. Otherwise a job on fewer
    GPUs than a data-centre server holds (a 1-GPU cloud instance) carries its per-GPU share of that 8-slot server; a
    desktop is the job's own machine. The one rule for estimates (host_power_w) and tracked runs (wattlint.track)."""
    from .host import host_power_w_per_gpu, platform_class

    cls = platform_class(gpu)
    n = max(1, int(gpus_per_node or 1))
    per_node = n if cls == "desktop" or node_given else max(n, SERVER_GPU_SLOTS)
    node = ""
    if cls == "pcie_server":
        node = (f"--gpus-per-node {n}, as given" if node_given else
                f"--gpus-per-node not given: a {SERVER_GPU_SLOTS}-slot server, the job's GPUs carry their share")
    return host_power_w_per_gpu(gpu, per_node, cls, node=node)


def host_power_w(gpu: GpuSpec, plan: Plan) -> tuple[float, str]:
    """Host power of the whole job (W), and the assumption line: :func:`host_power_w_per_job_gpu` x the plan's
    GPUs. The machine is the one --gpus-per-node gave (``Plan.host_node_gpus``, also above --gpus: the node the
    job's GPUs sit in); without it (a default, or a Plan built by hand) a PCIe card sits in an 8-slot server."""
    given = plan.host_node_gpus is not None
    w, text = host_power_w_per_job_gpu(gpu, plan.host_node_gpus if given else plan.gpus_per_node, node_given=given)
    return w * max(1, plan.gpus), text


def facility_kwh(gpu_kwh: float, host_kwh: float, pue: float) -> float:
    """Facility energy: IT energy (GPUs + hosts) x PUE."""
    return (gpu_kwh + host_kwh) * pue


# ---- goodput ---------------------------------------------------------------------------------------------------

GOODPUT_LARGE = 0.90
GOODPUT_MIN_GPUS = 512
GOODPUT_SOURCE = ("Llama 3 (Dubey et al. 2024): >90 % effective training time on 16K H100s despite 419 unexpected "
                  "interruptions in 54 days; MegaScale (Jiang et al., NSDI 2024): >90 % effective training time on "
                  "10K+ GPUs")


def default_goodput(gpus: int) -> tuple[float, str | None]:
    """The default fraction of wall time in useful steps, and its assumption line (None when it is 1)."""
    if gpus >= GOODPUT_MIN_GPUS:
        return GOODPUT_LARGE, (f"goodput {GOODPUT_LARGE:.2f} (default from {GOODPUT_MIN_GPUS} GPUs up; {GOODPUT_SOURCE}): "
                               f"wall time = productive step time / {GOODPUT_LARGE:.2f}; --goodput to change")
    return 1.0, None


def loader_started_epochs(plan: Plan) -> int:
    """Epochs the plan starts (each starts its DataLoader afresh): the steps over the steps per epoch (the last
    partial batch kept) when the dataset size is known, else its epochs rounded up; at least 1."""
    if plan.dataset_size and plan.batch_size:
        per_epoch = max(1, math.ceil(plan.dataset_size / plan.batch_size))
        return max(1, math.ceil(plan.steps / per_epoch))
    return max(1, math.ceil((plan.epochs or 0.0) - 1e-9))


def loader_batch(plan: Plan) -> int:
    """Samples one DataLoader builds per iteration: a data-parallel rank's micro-batch; under nn.DataParallel
    (``uneven_batch``: one process scatters the batch) the whole micro-step's batch."""
    if plan.uneven_batch:
        return max(1, plan.batch_size // max(1, plan.grad_accum))
    return plan.micro_batch_size


def loader_wait_h(plan: Plan) -> tuple[float, str]:
    """Wall time (h) the GPUs wait for each epoch's first data-loader batch, and its assumption line.

    ``--loader-sample-time S``: a PyTorch DataLoader without persistent workers starts new worker processes every
    epoch, and each worker builds whole batches, so an epoch's first batch is built by ONE worker, sample by sample
    (S each), before the GPU has any work: :func:`loader_batch` x S per started epoch (the last partial one
    included), the GPUs at idle power and the host at its power. Later batches come from the workers in parallel
    while the GPU computes (a loader slower than the GPU overall is not modelled; loaders with persistent workers or
    one endless iterator, as Megatron-style stacks use, do not restart: leave the option out). Not given: not
    modelled, and said so when the plan has epochs."""
    s = plan.loader_sample_time_s
    if plan.epochs is None:  # a tokens plan, or steps without a dataset: no epoch is known to start a loader
        kind = ("its work is given in tokens; give --epochs, or --steps with --dataset" if plan.tokens is not None
                else "its work is given in steps, with no dataset size; add --dataset, or give --epochs")
        return 0.0, ("" if s is None else f"--loader-sample-time {s:g} s: not applied (the plan has no epochs: "
                                          f"{kind})")
    if s is None:
        return 0.0, ("data loading not modelled: each epoch's first batch, built by one DataLoader worker before the "
                     "GPU starts, is not priced (--loader-sample-time to state one worker's seconds per sample)")
    epochs, batch = loader_started_epochs(plan), loader_batch(plan)
    wait_s = batch * s
    h = epochs * wait_s / 3600.0
    each = f"{wait_s * 1e3:.4g} ms" if wait_s < 1 else f"{wait_s:.4g} s"
    return h, (f"data loading: {'each of the ' + format(epochs, ',') + ' epochs waits' if epochs > 1 else 'the epoch waits'}"
               f" {each} for its first batch ({batch:,} samples x {s:g} s, built by one DataLoader worker: new "
               f"workers every epoch, no persistent_workers), {h:.4g} h in all, GPUs at idle power "
               "(--loader-sample-time)")


def goodput_note(goodput: float, lost_h: float, idle_w: float) -> str:
    return (f"goodput {goodput:g}: {lost_h:,.4g} h of non-productive wall time (restarts, checkpoint saves, "
            f"evaluation) added to time and GPU-hours; its energy priced at GPU idle power ({idle_w:.0f} W) + host "
            f"power (a lower bound: steps redone after a failure draw full power)")


# ---- tensor / pipeline / expert parallelism ----------------------------------------------------------------------

NVLINK_CALL_LATENCY_S = 20e-6  # one NCCL call, small message, inside a node (nccl-tests all_reduce_perf ~10-30 us)
NETWORK_CALL_LATENCY_S = 40e-6  # one NCCL call across nodes over InfiniBand
LATENCY_SOURCE = ("NCCL small-message latency: nccl-tests all_reduce_perf reports ~10-30 us per call for 8 B-64 KiB "
                  "messages on 8-GPU NVLink nodes without CUDA graphs (6 us for 2 H100 with NVLS and CUDA graphs, "
                  "NVIDIA/nccl#1259), a few 10 us more across InfiniBand")


@dataclass(frozen=True)
class ModelParallelCost:
    """Per-GPU, per-step time of the model-parallel communication and of the pipeline bubble."""

    tp_s: float
    pp_s: float
    ep_s: float
    bubble_s: float
    comm_power_w: float
    notes: tuple[str, ...]
    cp_s: float = 0.0  # context-parallel key/value ring, the part not hidden behind attention


def _link(gpu: GpuSpec, plan: Plan, inside_node: bool) -> tuple[float, float, str]:
    """(achieved bytes/s per GPU, latency per call, description) of the link a group uses."""
    if inside_node:
        gbs, name = intra_node_gbs(gpu)
        lat = NVLINK_CALL_LATENCY_S
        bw = gbs * 1e9 * NCCL_BUS_EFFICIENCY
    else:
        gbps = plan.internode_gbps or default_internode_gbps(gpu, plan.gpus_per_node)[0]
        per_node = max(1, plan.gpus_per_node)
        bw = gbps / 8.0 * 1e9 / per_node * NCCL_BUS_EFFICIENCY
        lat = NETWORK_CALL_LATENCY_S
        name = f"network {gbps:g} Gbit/s per node shared by {per_node} GPUs"
    if plan.launch_overhead_s is not None:
        lat = plan.launch_overhead_s
    return bw, lat, name


def _group_collective(fn, nbytes: float, n: int, gpu: GpuSpec, plan: Plan) -> tuple[float, float, str]:
    """(time, latency per call, link) of collective ``fn`` (wattlint.parallel arithmetic) over a group of ``n``
    adjacent ranks: inside one node over NVLink / PCIe; spanning nodes, as NCCL's rings run it: one ring over all
    ``n`` ranks per channel, each channel leaving the node through its own NIC (so a group holding every GPU of its
    nodes gets the whole node's network bandwidth), i.e. the ring's algorithm factor over the ``n`` ranks (not the
    nodes: for 2 nodes of 8 an all-reduce moves 2 x 15/16 of the tensor through the node's NICs, not 2 x 1/2) at the
    node's bandwidth; the NVLink links carry the same factor over the ``n`` ranks, the slower of the two bounds."""
    per_node = max(1, plan.gpus_per_node)
    if n <= per_node:
        bw, lat, name = _link(gpu, plan, True)
        return fn(nbytes, n, bw, lat), lat, name
    nodes = math.ceil(n / per_node)
    intra_bw, _, intra_name = _link(gpu, plan, True)
    gbps = plan.internode_gbps or default_internode_gbps(gpu, plan.gpus_per_node)[0]
    node_bw = gbps / 8.0 * 1e9 * NCCL_BUS_EFFICIENCY
    lat = NETWORK_CALL_LATENCY_S if plan.launch_overhead_s is None else plan.launch_overhead_s
    # every link of the n-rank ring carries the ring's factor over n ranks, the NVLink ones inside a node too (an
    # 8-rank ring split over 2 nodes of 4 is never faster than the same ring inside one node)
    t = max(fn(nbytes, n, intra_bw) if per_node > 1 else 0.0, fn(nbytes, n, node_bw)) + lat  # 1 GPU: no link
    inside = f"{intra_name} inside a node and " if per_node > 1 else "one GPU per node: "
    return t, lat, (f"{inside}{gbps:g} Gbit/s per node between {nodes} nodes (NCCL rings over "
                    f"all {n} ranks, one channel per NIC)")


def expert_all_to_all(nbytes: float, ep: int, tp: int, gpu: GpuSpec, plan: Plan) -> tuple[float, float, str]:
    """(time, latency per call, link) of one MoE all-to-all in which each GPU scatters ``nbytes`` over its ``ep``
    expert-parallel ranks, which sit ``tp`` apart (Megatron's rank order: tensor, then expert): (ep-1)/ep of the
    buffer leaves the GPU; when the group spans nodes, the share bound for the local = gpus_per_node / tp ranks of
    its own node goes over NVLink and the rest over the node's network (shared by its GPUs, all exchanging at once),
    the slower of the two bounds."""
    from .. import parallel as P

    per_node = max(1, plan.gpus_per_node)
    if ep * tp <= per_node:
        bw, lat, name = _link(gpu, plan, True)
        return P.all_to_all_s(nbytes, ep, bw, lat), lat, name
    local = max(1, min(ep, per_node // max(1, tp)))
    intra_bw, _, intra_name = _link(gpu, plan, True)
    net_bw, lat, net_name = _link(gpu, plan, False)
    t = max(nbytes * (local - 1) / ep / intra_bw, nbytes * (ep - local) / ep / net_bw) + lat
    if local <= 1:  # no other expert rank in the node (one GPU per node, or tp filling it): all over the network
        return t, lat, f"the {net_name} to the other {ep - 1} expert ranks (none in this GPU's node)"
    return t, lat, (f"{intra_name} to the {local - 1} expert rank{'' if local == 2 else 's'} in the node, the "
                    f"{net_name} to the other {ep - local}")


def model_parallel(stage: CostGraph, gpu: GpuSpec, plan: Plan, micro_compute_s: float,
                   micro_block_s: float | None = None, micro_attention_s: float = 0.0,
                   micro_gap_s: float = 0.0) -> ModelParallelCost | None:
    """Tensor-parallel collectives, pipeline point-to-point sends, MoE all-to-all and the 1F1B bubble of one step
    on one GPU of the bottleneck stage (``stage``: the per-GPU graph of wattlint.parallel.per_gpu_graph), given the
    stage's forward + backward compute per micro-batch and the part of it inside the repeated blocks.

    1F1B step = m x the last stage's micro-batch time + the fill and drain of the other p-1 stages, each one
    micro-batch of its blocks (+ its collectives and sends): (p-1) x (block time + communication). With balanced
    stages this is the (p-1)/(m+p-1) bubble; the LM head and loss, which only the last stage runs, are not
    repeated in it (with one micro-batch the step is the sum of the stages, as GPipe measures show)."""
    from .. import parallel as P

    tp, pp, ep = plan.tensor_parallel, plan.pipeline_parallel, plan.expert_parallel
    cp = max(1, int(getattr(plan, "context_parallel", 1) or 1))
    if tp <= 1 and pp <= 1 and ep <= 1 and cp <= 1:
        return None
    ga = max(1, plan.grad_accum)
    act_bytes = 2 if plan.precision in HALF else 4
    hidden = int((stage.extra or {}).get("parallel_hidden") or P.hidden_size(stage, P.find_blocks(stage)))
    # tokens of one micro-batch on this GPU (its 1/cp of every sequence under context parallelism)
    tokens = max(1, plan.micro_batch_size) * max(1, int(plan.seq_len or P.sequence_length(stage) or 1)) // cp
    msg = float(tokens * hidden * act_bytes)
    layers = P.count_layers(stage)
    notes: list[str] = []
    power = comm_power_w(gpu)
    lat_src = ("--launch-overhead " + f"{plan.launch_overhead_s * 1e6:g} us per call" if plan.launch_overhead_s
               is not None else LATENCY_SOURCE)
    tp_mb = 0.0
    if tp > 1:
        if plan.sequence_parallel:
            one = (_group_collective(P.all_gather_s, msg, tp, gpu, plan)[0]
                   + _group_collective(P.reduce_scatter_s, msg, tp, gpu, plan)[0])
            what = "2 all-gathers + 2 reduce-scatters per layer forward and again backward (sequence parallel)"
        else:
            one = _group_collective(P.ring_all_reduce_s, msg, tp, gpu, plan)[0]
            what = "2 all-reduces per layer forward and 2 backward"
        _, lat, name = _group_collective(P.ring_all_reduce_s, msg, tp, gpu, plan)
        per_layer = 4
        if P.recompute_mode(plan.recompute) == "full":  # the re-run forward repeats its 2 collectives per layer
            per_layer = 6
            what += " + 2 per layer in the recomputed forward (full recompute)"
        tp_mb = per_layer * layers * one
        notes.append(f"tensor parallel {tp}: {what} of micro-batch x seq x hidden = {tokens:,} x {hidden:,} x "
                     f"{act_bytes} B = {msg / 2**20:,.1f} MiB each, {layers} layer{'' if layers == 1 else 's'} on "
                     f"this GPU, over {name} (NCCL "
                     f"bus efficiency {NCCL_BUS_EFFICIENCY:.0%}, {lat * 1e6:g} us per call: {lat_src}): "
                     f"{_ms(tp_mb)} ms per micro-batch, on the critical path (not overlapped with compute)")
    pp_mb = hop = 0.0
    vpp = max(1, int(getattr(plan, "virtual_pipeline_stages", 1) or 1))
    hops: list[float] = []  # the two sends of one micro-batch at each stage boundary (stage i -> i + 1)
    if pp > 1:
        p2p_bytes = msg / tp  # Megatron scatters the boundary activation over the TP ranks
        # each boundary over the link its two stages share (pipeline_boundaries_in_node: the tp-cp-ep-dp-pp rank
        # order): adjacent stages smaller than a node sit in the same node and send over NVLink
        inside = P.pipeline_boundaries_in_node(plan.gpus, pp, plan.gpus_per_node)
        links = {k: _link(gpu, plan, k) for k in set(inside)}
        hops = [2 * P.p2p_s(p2p_bytes, links[k][0], links[k][1]) for k in inside]
        crossed = hops if vpp > 1 else hops[:-1]  # the wrap (last -> first stage) only under interleaving
        hop = max(crossed)
        # every stage sends and receives each micro-batch: the step runs at the pace of its slowest boundary
        pp_mb = vpp * hop  # interleaved: every model chunk's boundary is crossed by every micro-batch
        chunks = (f"; {vpp} model chunks per stage (interleaved): {vpp} boundaries per micro-batch" if vpp > 1
                  else "")
        n_in = sum(1 for k in inside[:-1] if k)
        if n_in == pp - 1:
            where = f"over {links[True][2]}"
        elif n_in == 0:
            where = f"over {links[False][2]}"
        else:
            where = (f"over {links[True][2]} at the {n_in} boundar{'y' if n_in == 1 else 'ies'} whose two stages "
                     f"share a node and the {links[False][2]} at the other {pp - 1 - n_in} (ranks in Megatron-LM's "
                     f"tp-cp-ep-dp-pp order, {plan.gpus // pp} per stage, {plan.gpus_per_node} per node); the step "
                     f"runs at the pace of the slowest boundary")
        notes.append(f"pipeline parallel {pp}: per micro-batch one activation send forward and one gradient send "
                     f"backward of {p2p_bytes / 2**20:,.2f} MiB at each stage boundary {where}{chunks}, exposed "
                     f"({_ms(pp_mb)} ms per micro-batch)")
    ep_mb = ep_fill = 0.0
    if ep > 1:
        moe = [ly for ly in P.moe_layers(stage) if any(r.module.startswith(ly["module"]) for r in stage.records)]
        if moe:
            # each tensor-parallel rank routes its 1/tp of the tokens (sequence parallelism scatters them; without
            # it DeepSpeed-MoE drops the copies its TP ranks share before the all-to-all)
            a2a_tokens = tokens / tp
            cf = float(((stage.extra or {}).get("moe") or {}).get("capacity_factor") or 1.0)
            seq = max(1, int(plan.seq_len or P.sequence_length(stage) or 1))
            # the recomputed forward (full recompute) dispatches and combines again
            per_layer, again = (6, ", + 2 in the recomputed forward") if P.recompute_mode(plan.recompute) == "full" \
                else (4, "")
            rows = []
            disp = plan.moe_token_dispatcher_type
            # flex deduplicates inside one node too: DeepEP's intranode dispatch sends a token once to each GPU
            # holding one of its experts (get_dispatch_layout's is_token_in_rank: one bool per token and rank), not
            # once per token-to-expert assignment (parallel.expert_dispatch_copies' single-node rule)
            dedup = disp == "flex"
            spans = ep * tp > max(1, plan.gpus_per_node)
            copies = []
            for ly in moe:
                r = P.dispatched_rows_per_assignment(ly, cf, seq)
                rows.append(r)
                a2a = float(a2a_tokens * int(ly.get("top_k", 1)) * r * hidden * act_bytes)
                one, lat, name = expert_all_to_all(a2a, ep, tp, gpu, plan)
                if dedup:
                    # flex (DeepEP): one network copy per destination node, fanned out there over NVLink; the two
                    # paths run at once (parallel.expert_dispatch_copies: the expected copies per token, bounded by
                    # node-limited routing n_group / topk_group where the config sets it)
                    c = P.expert_dispatch_copies(ly, ep, tp, plan.gpus_per_node, disp)
                    copies.append(c)
                    row = a2a_tokens * r * hidden * act_bytes
                    intra_bw, lat, _ = _link(gpu, plan, True)
                    if spans:
                        net_bw, lat, _ = _link(gpu, plan, False)
                        one = max(row * c.nvlink / intra_bw, row * c.network / net_bw) + lat
                    else:  # one node: every copy over NVLink
                        one = row * c.nvlink / intra_bw + lat
                ep_mb += per_layer * one
            ep_fill = ep_mb  # the fill and drain run unpaired: their all-to-all stays exposed in the bubble
            exposed = ep_mb
            if plan.overlap_moe_expert_parallel_comm:
                # combined 1F1B pairs one micro-batch's forward with another's backward: the forward's dispatch and
                # combine (2 of the 4 all-to-alls per MoE layer, half the bytes) hide behind the partner's backward
                # compute, the backward's behind the partner's forward. The caller passes forward + backward as one
                # number, so the split is the 1:2 FLOP ratio of a training step (backward = 2 x forward): c_f = 1/3,
                # c_b = 2/3 of the micro-batch compute. Per pair max(0, a2a/2 - c_b) + max(0, a2a/2 - c_f); the
                # unpaired first forward and last backward expose a2a/2 each: parallel.overlapped_all_to_all_s per
                # direction, a2a/2 + (m - 1) x max(0, a2a/2 - partner's compute), summed. (Full recompute, 3 of 6
                # per direction, is refused with the overlap: plan._moe_overlap.)
                half = ep_mb / 2
                ep_mb = (P.overlapped_all_to_all_s(half, 2 * micro_compute_s / 3, ga)
                         + P.overlapped_all_to_all_s(half, micro_compute_s / 3, ga)) / ga
            share = f" / tp {tp}" if tp > 1 else ""
            pad = (f" x {rows[0]:.3g} (the experts' buffers: capacity factor / expert capacity)"
                   if rows and all(abs(x - rows[0]) < 1e-9 for x in rows) and abs(rows[0] - 1.0) > 1e-9 else
                   " x the experts' buffer share" if any(abs(x - 1.0) > 1e-9 for x in rows) else "")
            if dedup:
                net = sum(c.network for c in copies) / len(copies)
                nvl = sum(c.nvlink for c in copies) / len(copies)
                how = ("one network copy per destination node, then NVLink inside it" if spans else
                       "one NVLink copy per destination GPU holding one of the token's experts, the expert group "
                       "inside one node")
                what = (f"tokens{share}{pad} x hidden x {act_bytes} B, dispatcher flex (DeepEP-style: {how}; "
                        f"--moe-token-dispatcher-type): "
                        + (f"{net:.3g} network + " if spans else "")
                        + f"{nvl:.3g} NVLink copies per token (expected under balanced routing"
                        + (f", node-limited routing: {copies[0].topk_group} of {copies[0].groups} expert groups"
                           if copies[0].groups > 1 else "") + "; top-k copies with alltoall)")
            else:
                what = (f"tokens{share} x top-k{pad} x hidden x {act_bytes} B over {name}"
                        + (" (dispatcher alltoall: one copy per token-to-expert assignment, as Megatron-Core's "
                           "alltoall token dispatcher and torchtitan's all-to-all send them; "
                           "--moe-token-dispatcher-type flex: one per destination node)"
                           if spans else ""))
            if plan.overlap_moe_expert_parallel_comm:
                exp = (f"overlapped with another micro-batch's compute (--overlap-moe-expert-parallel-comm, "
                       f"combined 1F1B: each forward's dispatch and combine behind the partner's backward, each "
                       f"backward's behind the partner's forward, taken as 2/3 and 1/3 of the micro-batch compute "
                       f"(the 1:2 FLOP ratio); the first forward's and last backward's stay exposed: a2a + (m - 1) x "
                       f"[max(0, a2a/2 - 2/3 compute) + max(0, a2a/2 - 1/3 compute)] over m = {ga} micro-batches): "
                       f"{_ms(exposed)} ms per micro-batch, "
                       f"{_ms(ep_mb)} ms exposed on average; the SMs the communication kernels take from compute "
                       f"are not modelled")
            else:
                exp = f"exposed ({_ms(ep_mb)} ms per micro-batch)"
            notes.append(f"expert parallel {ep}: {per_layer} all-to-alls per MoE layer (dispatch and combine, forward "
                         f"and backward{again}) of {what} for {len(moe)} MoE layers, {exp}; expert compute "
                         f"unchanged (balanced routing)")
        elif not P.moe_layers(stage):
            raise ConfigError(f"--expert-parallel {ep}: the model has no mixture-of-experts layer to spread")
        else:
            notes.append(f"--expert-parallel {ep}: no mixture-of-experts layer on the costed pipeline stage; no "
                         f"all-to-all costed")
    cp_mb = 0.0
    if cp > 1:
        info = (stage.extra or {}).get("context_parallel") or {}
        mb_scale = max(1, plan.micro_batch_size) / max(1, int(stage.micro_batch or 1))
        kv_local = float(info.get("kv_bytes_per_layer") or 0.0) * mb_scale / (tp * cp)
        # a group of tp x cp adjacent ranks stays in one node only when it divides the node (review: 12 GPUs, tp 2 x
        # cp 3 on nodes of 8: ranks 6-11 straddle two nodes, priced over NVLink)
        in_node = plan.gpus <= plan.gpus_per_node or (tp * cp <= plan.gpus_per_node
                                                      and plan.gpus_per_node % (tp * cp) == 0)
        bw, lat, name = _link(gpu, plan, in_node)
        # the ring runs in the attention layers only (a Jamba-like hybrid: its Mamba layers exchange nothing)
        n_attn = int(info.get("attention_layers", layers))
        ring = (cp - 1) * (P.p2p_s(kv_local, bw, lat) + P.p2p_s(2 * kv_local, bw, lat)) * n_attn
        cp_mb = max(ring * MIN_EXPOSED, ring - micro_attention_s)
        notes.append(f"context parallel {cp}: per layer and micro-batch a ring of {cp - 1} key/value sends forward "
                     f"and {cp - 1} key/value + gradient sends backward of this GPU's chunk ({kv_local / 2**20:,.2f} "
                     f"MiB: {info.get('kv_source', 'keys and values')} / (tp {tp} x cp {cp})) over {name}, "
                     f"{n_attn} attention layer{'' if n_attn == 1 else 's'}"
                     + (f" of {layers}" if n_attn != layers else "")
                     + f": {_ms(ring)} ms per micro-batch, overlapped with the attention kernels "
                     f"({_ms(micro_attention_s)} ms): {_ms(cp_mb)} ms exposed (at least "
                     f"{MIN_EXPOSED:.0%})")
    block_s = micro_compute_s if micro_block_s is None else micro_block_s
    bubble = 0.0
    if pp > 1:
        # fill and drain: the other stages' blocks, one micro-batch each (their tensor-parallel collectives and MoE
        # all-to-alls scale with them), at the costed stage's time per block, plus one boundary send per stage; the
        # interleaved schedule runs them in chunks of 1/v of a stage (Narayanan et al. 2021: bubble / v)
        stages = (stage.extra or {}).get("pipeline_stages") or {}
        sizes = list(stages.get("blocks") or [])
        costed = int(stages.get("costed") or 0)
        if len(sizes) != pp or not sizes[costed]:
            sizes, costed = [1] * pp, pp - 1
        # + the launch gaps of one micro-batch (``micro_gap_s``): the other stages launch their blocks as slowly
        per_block = (block_s + tp_mb + (ep_fill if ep > 1 and P.moe_layers(stage) else ep_mb) + cp_mb
                     + micro_gap_s) / sizes[costed]
        others = sum(sizes) - sizes[costed]
        sends = sum(hops[:pp - 1])  # the fill and drain cross each stage boundary once, over its own link
        bubble = others * per_block / vpp + sends
        unequal = len(set(sizes)) > 1
        what = (f"their {others} blocks ({_ms(per_block)} ms per block" if unequal
                else f"their blocks each ({_ms(per_block * sizes[costed])} ms per stage")
        inter = f", in chunks of 1/{vpp} of a stage (interleaved)" if vpp > 1 else ""
        gaps = (f" and launch gaps ({_ms(micro_gap_s)} ms per micro-batch on the costed stage, taken per block)"
                if micro_gap_s > 0 else "")
        notes.append(f"{'interleaved ' if vpp > 1 else ''}1F1B pipeline bubble: fill and drain of the other {pp - 1} "
                     f"stage(s), one micro-batch of {what} incl. communication{gaps}{inter}, + {_ms(sends)} ms of sends "
                     f"over the {pp - 1} stage boundaries; the LM head and loss run on the last stage only) = {_ms(bubble)} ms per step "
                     f"at idle power ({gpu.idle_w:.0f} W); balanced-stage bubble (p-1)/(v m+p-1) = {pp - 1}/"
                     f"{vpp * ga + pp - 1} = {P.bubble_fraction(pp, ga, vpp):.1%}")
    return ModelParallelCost(tp_s=tp_mb * ga, pp_s=pp_mb * ga, ep_s=ep_mb * ga, bubble_s=bubble, comm_power_w=power,
                             notes=tuple(notes), cp_s=cp_mb * ga)


def data_parallel_plan(plan: Plan) -> Plan:
    """The plan the data-parallel collectives see under tensor / pipeline parallelism: ``dp`` ranks, the ones in
    one node (TP ranks adjacent, then DP: per_node // tp of them), and their share of the node's network (the
    node's other model-parallel groups run their own data-parallel rings at the same time)."""
    import dataclasses

    cp = max(1, int(getattr(plan, "context_parallel", 1) or 1))
    if plan.tensor_parallel * plan.pipeline_parallel * cp <= 1:
        return plan
    # context-parallel ranks hold the same weights: the gradients are reduced over data-parallel x context-parallel
    # ranks (Megatron-Core's data-parallel group with context parallelism)
    dp = plan.shard_group
    per_node = max(1, plan.gpus_per_node)
    local = max(1, min(dp, per_node // plan.tensor_parallel))
    gbps = (plan.internode_gbps or 0.0) * local / per_node
    return dataclasses.replace(plan, gpus=dp, gpus_per_node=local, internode_gbps=gbps, tensor_parallel=1,
                               pipeline_parallel=1, context_parallel=1)
