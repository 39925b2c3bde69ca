"""System physics around the ops: data-parallel communication, launch-bound gaps, host power, facility energy.

Everything that is not the time and power of one op on one GPU, and that turns a sum of op costs into a job's cost,
lives here (the aggregation in wattlint.estimate only adds up). Constants and their sources are in
docs/ENERGY_MODEL.md ("System").

Communication (``gpus > 1``), bandwidth-only ring model with NCCL bus efficiency, per GPU and optimizer step:

* none / zero1: gradient all-reduce, each GPU moves 2(n-1)/n x gradient bytes;
* zero2: reduce-scatter of gradients + all-gather of updated weights: the same 2(n-1)/n volume;
* zero3 / fsdp: weight all-gather in forward and again in backward (per micro-batch) + gradient reduce-scatter:
  (2 x grad-accum + 1)(n-1)/n x the bytes;

inside one node over NVLink (or PCIe without it); across nodes a hierarchical ring whose bottleneck is the node's
network link (``internode_gbps``), where each node moves the same algorithm factor with N nodes instead of n GPUs.
Every collective call adds a latency term ``calls x COLLECTIVE_LATENCY_S x log2(n)``. Collectives overlap the
backward pass (DDP buckets) or the whole forward + backward (FSDP prefetch); only the part longer than the overlapped
compute is exposed — never less than ``MIN_EXPOSED`` of it — at near-idle power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..types import CostGraph, GpuSpec, Plan

NCCL_BUS_EFFICIENCY = 0.80  # achieved / link bandwidth of large NCCL collectives (nccl-tests busbw)
COLLECTIVE_LATENCY_S = 30e-6  # per collective call and ring step (ring setup, small-message latency)
BUCKET_BYTES = 25 * 2**20  # DDP default bucket: 25 MiB -> one collective call per bucket
MAX_CALLS = 200  # large models: FSDP units / ZeRO buckets grow with the model (~one per layer), not 25 MiB each
PCIE_GBS = {3: 12.0, 4: 24.0, 5: 48.0, 6: 96.0}  # achievable GB/s per direction, x16 link
MIN_EXPOSED = 0.10  # at least this fraction of communication is never hidden (first/last buckets)
COMM_POWER_ACTIVITY = 0.10  # GPU activity while waiting on exposed communication (NCCL kernels spin a few SMs)
HOST_OP_S = 8e-6  # eager PyTorch CPU cost per launched op (Python + dispatcher + cudaLaunchKernel: ~5-20 us)
OPT_MAX_LAUNCHES = 16  # launches of a fused/foreach optimizer step (multi-tensor apply over chunks of tensors)
HOST_W_PER_GPU = 80.0  # CPU + DRAM share per GPU of a training server (e.g. DGX A100: 2x 225 W CPUs + ~1 TB / 8)
SHARDED = ("zero1", "zero2", "zero3", "fsdp")
HALF = ("fp16", "bf16", "fp8")


# ---- links -----------------------------------------------------------------------------------------------------

def intra_node_gbs(gpu: GpuSpec) -> tuple[float, str]:
    """Per-direction link bandwidth (GB/s) between GPUs of one node, and its name."""
    if gpu.nvlink_gbs:
        return gpu.nvlink_gbs / 2.0, f"NVLink {gpu.nvlink_gbs:g} GB/s bidirectional"
    gen = gpu.pcie_gen or 4
    return PCIE_GBS.get(gen, 24.0), f"PCIe gen{gen} x16"


def default_internode_gbps(gpu: GpuSpec) -> tuple[float, str]:
    """Network bandwidth per node (Gbit/s) of a typical cluster for this GPU class, and why."""
    if gpu.nvlink_gbs > 0 and gpu.pcie_gen >= 5:
        return 3200.0, "8 x 400 Gbit/s InfiniBand NDR per node (DGX H100-class)"
    if gpu.nvlink_gbs >= 600:
        return 1600.0, "8 x 200 Gbit/s InfiniBand HDR per node (DGX A100-class)"
    if gpu.nvlink_gbs > 0:
        return 400.0, "4 x 100 Gbit/s InfiniBand EDR per node (DGX-1-class)"
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
    if plan.sharding in ("zero3", "fsdp"):
        return (2 * ga * weight + grad, 3 * collective_calls(weight),
                "ring all-gather of weights (forward + backward, per micro-batch) + reduce-scatter of gradients")
    if plan.sharding == "zero2":
        return grad + weight, 2 * collective_calls(grad), "ring reduce-scatter of gradients + all-gather of weights"
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
        gbps = plan.internode_gbps or default_internode_gbps(gpu)[0]
        t_inter = bytes_unscaled * (nodes - 1) / nodes / (gbps / 8.0 * 1e9 * NCCL_BUS_EFFICIENCY)
        t = max(t_inter, t_intra)
        link = f"{intra_name} inside a node, {gbps:g} Gbit/s network per node between {nodes} nodes"
    t += calls * COLLECTIVE_LATENCY_S * math.log2(n)
    return t, volume, link


def data_parallel(graph: CostGraph, gpu: GpuSpec, plan: Plan, forward_s: float, backward_s: float
                  ) -> Communication | None:
    """Communication of one step given the per-GPU forward / backward compute time of the step (None on 1 GPU)."""
    if plan.gpus <= 1:
        return None
    grad, weight, half = sync_bytes(graph, plan)
    unscaled, calls, collective = _volume(plan, grad, weight)
    t, volume, link = collective_time(unscaled, calls, gpu, plan)
    if plan.sharding in ("zero3", "fsdp"):
        overlap = forward_s + backward_s  # FSDP prefetches the next unit's weights during compute
    else:
        overlap = backward_s / max(1, plan.grad_accum)  # DDP overlaps with the last micro-batch's backward
    exposed = max(t * MIN_EXPOSED, t - overlap)
    power = gpu.idle_w + COMM_POWER_ACTIVITY * (gpu.tdp_w - gpu.idle_w)
    note = (f"data parallel over {plan.gpus} GPUs ({plan.gpus_per_node} per node), sharding {plan.sharding}: "
            f"{collective}; {link}; NCCL bus efficiency {NCCL_BUS_EFFICIENCY:.0%}; overlapped with the backward "
            f"pass, exposed part (at least {MIN_EXPOSED:.0%}) at near-idle power ({power:.0f} W)")
    if half:
        note += "; sharded mixed precision: weights all-gathered and gradients reduce-scattered in 16-bit"
    return Communication(bytes=volume, time_s=t, exposed_s=exposed, power_w=power, calls=calls, note=note)


# ---- launch-bound gaps -----------------------------------------------------------------------------------------

def launch_gap_s(n_micro_ops: int, n_opt_ops: int, gpu_micro_s: float, optimizer_s: float, grad_accum: int) -> float:
    """GPU idle time per step while eager PyTorch launches ops from one CPU thread.

    When the GPU work of a micro-batch is shorter than the CPU time to launch its ops (``HOST_OP_S`` each), the GPU
    waits; a fused/foreach optimizer launches at most ``OPT_MAX_LAUNCHES`` multi-tensor kernels."""
    gap_mb = max(0.0, n_micro_ops * HOST_OP_S - gpu_micro_s)
    gap_opt = max(0.0, min(OPT_MAX_LAUNCHES, n_opt_ops) * HOST_OP_S - optimizer_s)
    return gap_mb * max(1, grad_accum) + gap_opt


def launch_gap_note(n_micro_ops: int, gap_s: float, idle_w: float) -> str:
    return (f"launch-bound: GPU work per micro-batch shorter than launching its {n_micro_ops} ops from eager PyTorch "
            f"at {HOST_OP_S * 1e6:.0f} us each; the GPU idles in the gaps ({gap_s * 1e3:.3g} ms per step at "
            f"{idle_w:.0f} W)")


# ---- host and facility -----------------------------------------------------------------------------------------

def host_power_w(gpu: GpuSpec, plan: Plan) -> tuple[float, str]:
    """CPU + DRAM power of the hosts for the whole job (W), and the assumption line."""
    return HOST_W_PER_GPU * max(1, plan.gpus), (f"host CPU + DRAM: {HOST_W_PER_GPU:.0f} W per GPU over the whole "
                                                 f"run (stated constant)")


def facility_kwh(gpu_kwh: float, host_kwh: float, pue: float) -> float:
    """Facility energy: IT energy (GPUs + hosts) x PUE."""
    return (gpu_kwh + host_kwh) * pue
