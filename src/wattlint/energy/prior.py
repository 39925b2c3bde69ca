"""Physics prior for one op on one GPU: a roofline whose bounds match how kernels run, and a power model that knows
the power limit.

No calibration needed; every constant is documented with its source in docs/ENERGY_MODEL.md ("Prior constants").
A calibrated LightGBM model (wattlint.energy.model) only *corrects* this prior, so the prior must be sane on its own.

Time (at full clock)::

    compute_s = flops / (peak[compute dtype] x eff_c)
    memory_s  = bytes / (bandwidth x eff_m)
    busy_s    = max(compute_s, memory_s);   time_s = busy_s + GAP_S     (GAP_S: launch / tail gap, at idle power)

* GEMM-family ops (matmul, dense convolution, attention, RNN GEMMs): eff_c = ceiling[family, unit] x wave
  quantisation x tile fill x reduction depth x alignment, ceilings from published measurements per unit (tensor
  cores, CUDA cores; CUDA cores of GA10x/AD10x chips, whose doubled FP32 lanes are shared with INT32, reach less).
* Memory-bound kernels (elementwise, norms, softmax, pooling, reductions, losses, optimizer steps, and depthwise /
  narrow grouped convolutions, which cannot fill tensor-core tiles): priced by bytes at the achievable bandwidth
  (eff_m = EFF_MEM_MAX[memory type] x bytes / (bytes + bandwidth x MEM_LATENCY_S)), compute on CUDA cores as the
  secondary bound.

Power (busy part of the op, at full clock)::

    P = idle + P_mem + P_core
    P_mem  = E_BIT[memory type] x 8 x bytes / busy_s                              (DRAM interface energy)
    P_core = P_core_ref x g / g_ref,   g = fill x A_BUSY + (1 - A_BUSY) x w x u (u: fraction of the unit's peak;
                                                                             w = TENSOR_MATH_POWER on tensor cores, 1)

P_core_ref is the core power of a large tensor-core GEMM at boost clock. It comes from the chip generation, not the
board: the highest-powered board of a chip generation in the database (W per SM-GHz) shows what the silicon draws,
so a board with a lower limit (A10, L4, T4, PCIe variants) cannot hold its boost clock under dense math.

Power limit: when P exceeds the board limit the clocks drop until it fits. Dynamic power ~ f x V^2 and, in the DVFS
range, V ~ f, so P_core ~ f^3: clock scale s = ((limit - idle - P_mem) / P_core)^(1/3); compute time / s, core power
x s^3 (memory-bound work barely slows). Per op; documented in docs/ENERGY_MODEL.md.

Pure Python, no numpy: it runs per op on the sub-second ONNX path.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from ..types import GpuSpec, OpKind, OpRecord, Phase

# ---- time constants (docs/ENERGY_MODEL.md, "Prior constants") -------------------------------------------------
# Best achievable fraction of the unit's dense peak for large, well-shaped problems.
EFF_MAX: dict[str, float] = {
    # cuBLAS large tensor-core GEMMs (A100 bf16 ~ 80-90 % of 312 TF/s). FP8 shares it: on one (500 W) H100, FP8
    # GEMMs ran 1.88-2.09x the bf16 rate of the same shapes (pytorch/FBGEMM PR #2546: 8192^3 bf16 585 TF/s, FP8
    # row-wise 1,126; 65536 x 8192 x 7168: 575 vs 1,083), i.e. the same fraction of a 2x peak; DeepGEMM's tuned
    # FP8 kernels reach 1,500 TF/s on an H800 SXM (deepseek-ai/DeepGEMM PR #81), 0.76 of its 1,979
    "matmul_tc": 0.80,
    "matmul_simt": 0.88,   # SGEMM on CUDA cores: NeuSight V100 large GEMMs median 0.876, A100 80GB 0.909
    "conv_tc": 0.80,       # cuDNN implicit-GEMM convolutions on tensor cores: GEMM-class kernels
    "conv_simt": 0.85,     # FP32 cuDNN convs: implicit GEMM (SGEMM 0.88), Winograd 3x3 up to ~1.0 (NeuSight)
    "conv_direct": 0.50,   # depthwise / narrow grouped convs: direct kernels on CUDA cores (memory bound anyway)
    "attention": 0.55,     # FlashAttention-2 forward ~ 50-73 % of peak on A100; backward lower (factor below)
    "rnn": 0.35,           # cuDNN LSTM/GRU: sequential time steps, small GEMMs
    "other": 0.35,         # non-GEMM arithmetic on CUDA cores (rarely the bound)
}
ATTENTION_BACKWARD_FACTOR = 0.8  # FA2 backward reaches ~ 80 % of the forward's efficiency
# FlashAttention-2 (what PyTorch's SDPA runs) does not use Hopper's asynchronous tensor-core instructions: it reaches
# ~35 % of the H100's peak (Shah et al., FlashAttention-3, 2024), against 50-73 % of the A100's.
ATTENTION_EFF_BY_CHIP: dict[str, float] = {"GH100": 0.35}
# FlashAttention-1-generation kernels (records tagged ``fa1`` by wattlint.framework: SDPA before PyTorch 2.2, the
# flash-attn 1.x package): FlashAttention-2 is "around 2x" faster (Dao 2023, abstract: FlashAttention reaches 25-40 %
# of the A100's peak, FlashAttention-2 50-73 %; the ratio of those ranges spans 1.25-2.9). The rates above are
# FlashAttention-2's; an fa1 record runs at them / FA1_SLOWDOWN. Fitted inside that published range on the
# llm-foundry benchmark rows that are not held out (benchmarks/parallel_accuracy.py section 3: A100 and H100, torch
# 1.13 / 2.0 with flash-attn 1.0.x; grid 1.25-2.0; the 13b / 70b rows never used): docs/ENERGY_MODEL.md.
FA1_SLOWDOWN = 1.5
# Hopper tensor-core GEMMs launched by PyTorch 2.1 or earlier (matmul records tagged ``gemm_2023`` by
# wattlint.framework) run at this fraction of today's achieved rate (after the power limit; the same dynamic energy
# over the longer time, as CONSUMER_GEMM_ROOF the other way). Fitted, cause not identified: llm-foundry's H100 BF16
# tables (torch 2.1 nightly 2023-08-27, CUDA 12.1) ran ~10 MFU points below what today's rates price, as much on one
# 8-GPU node as on 512 GPUs and least on the attention-bound 32k-65k-token rows, where the same sweep's A100-80GB rows
# and modern-stack H100 runs (Llama 3 405B; torchtitan, torch 2024-12) match. Fitted on the 54 H100 BF16 rows that
# are not held out (13b / 70b never used), minimising their mean |MFU error|: benchmarks/parallel_accuracy.py section
# 3 (hopper_gemm_2023_fit, rerun each time). Beside it, pytorch/pytorch#100850 measured PyTorch's H100 bf16 GEMMs of
# that era (cuBLAS 12.0.2; batched / folded 2-4 x 2048 x 8192 x 8192) at 0.73-0.74 of the single GEMM's rate.
HOPPER_GEMM_2023 = 0.71
HOPPER_GEMM_2023_CHIPS = ("GH100",)
# torch._grouped_mm (the MoE experts' grouped GEMM) runs ONE fused CUTLASS grouped kernel only when both operands
# and the output are bf16 on a CUDA device of compute capability 9.x or 10.x (aten/src/ATen/native/cuda/
# GroupedBlas.cpp, _grouped_mm_cuda: use_fast_path = _scaled_mm_allowed_device(sm90_only, sm100_only) && bf16, and
# that check is dprops->major == 9 || dprops->major == 10): Hopper (GH100) and data-centre Blackwell (GB100; not the
# GeForce GB20x, compute capability 12.x). Everything else (fp32, fp16, pre-Hopper GPUs, ROCm builds without the
# CK grouped GEMM) takes _grouped_mm_fallback (aten/src/ATen/native/GroupedMMUtils.h): the offsets copied to the
# host, then one at::mm_out per group (a 3-D x 3-D call: one bmm_out). Priced as those kernels by
# wattlint.energy.pricing (grouped_kernels).
GROUPED_MM_FUSED_CHIPS = ("GH100", "GB100")
# GA10x / AD10x (and GB20x) SMs: 128 FP32 lanes of which 64 also execute INT32 (GA102 whitepaper); GEMM loops issue
# integer and load instructions, so SGEMM reaches this fraction of what single-issue SMs reach of their FP32 peak.
DUAL_FP32_SIMT = 0.70
DUAL_FP32_CHIPS = ("GA10", "AD10", "GB20")
# achieved fraction of spec DRAM bandwidth by large streaming kernels (NeuSight PyTorch 2.1 elementwise kernels,
# >= 200 MB: V100 0.88, A100 0.82, P100 0.73 (HBM); T4 0.75 (GDDR6), P4 0.75 (GDDR5))
# GDDR6X / GDDR7 boards (the GeForce RTX 30x0 / 40x0 / 50x0 high end): PyTorch's copy_ of >= 256 MB tensors, 2 x
# bytes / time (chsasank/device-benchmarks README table, benchmark.py): RTX 3090 831 of 936 GB/s (0.888), RTX 4090
# 912 of 1008 (0.905), RTX 4070 SUPER 411 of 504 (0.815); mean 0.869. The same table's GDDR6 boards agree with
# "gddr" (T4 240 of 320 = 0.75, A10 469 of 600 = 0.78). GDDR7 check: cub::DeviceTransform copy on an RTX 5090, 87.8 %
# of its 1,792 GB/s (NVIDIA/cccl PR #9881, nvbench). benchmarks/gemm_roofs.py recomputes these.
EFF_MEM_MAX: dict[str, float] = {"hbm": 0.85, "gddr": 0.76, "gddr6x": 0.87}
# per chip where its own streaming kernels sit far from its memory type's value: GP100 (Pascal's HBM2) 0.73, the
# NeuSight P100 elementwise kernels >= 200 MB above (510-535 of 732 GB/s; V100 / A100 0.88 / 0.82 keep "hbm")
EFF_MEM_MAX_BY_CHIP: dict[str, float] = {"GP100": 0.73}
MEM_LATENCY_S = 2.0e-6  # bytes = bw x this reach half the achievable bandwidth (ramp-up, tail of small kernels)
GAP_S = 4.0e-6  # per-kernel launch + tail gap on a busy stream (CUDA launch ~ 3-5 us; eager PyTorch)
K_HALF = 48  # GEMM reduction depth at which tensor-core efficiency is halved (pipelining of the K loop)
K_HALF_SIMT = 8
# Tensor-core convolutions on NCHW tensors (PyTorch's default layout): cuDNN's tensor-core kernels work on NHWC, so it
# transposes the NCHW operands to NHWC before the convolution and the result back after it, in separate bandwidth-bound
# kernels (NVIDIA, "Convolutional Layers User's Guide" (Deep Learning Performance), "Tensor Layouts In Memory: NCHW vs
# NHWC"; MosaicML Composer's Channels Last method card: NHWC removes these transposes, ~30 % faster ResNet-50
# training on V100 and A100). Channels-last inputs (the record's ('nhwc', 1) dim) skip them. Per convolution record:
# one transpose of the operand(s) in and one of the result out. (On the H200, cuDNN 9.19, stride-1 1x1 convolutions
# evidently skip them: docs/ENERGY_MODEL.md, "H200 convolution fits"; not shipped, it worsens held-out public GPUs.)
LAYOUT_TRANSPOSES = 2
SPLIT_K_MIN_DEPTH = 256  # split-K slices keep >= 8 k-steps of 32 (CUTLASS's 128x128x32 tensor-core tiles)
SPLIT_K_MAX = 32  # most slices considered (the GPU's SM count is reached long before for the tiles of one GEMM)
UNALIGNED_PENALTY = 0.6  # tensor-core GEMM dims not multiples of 8 (fp16/bf16) / 4 (tf32): padded or SIMT fallback
# Hopper: cuBLAS's Hopper kernels load operands with the Tensor Memory Accelerator, whose tensor maps need every
# global stride to be a multiple of 16 bytes (CUDA Driver API, cuTensorMapEncodeTiled: "globalStrides ... must be a
# multiple of 16"); GEMMs with an unaligned dim fall back to older kernels with narrow loads. Fitted on the H200 op
# samples (GEMMs with an unaligned k or n: 1023 x 4097 x 4095 and GPT-2's 768 -> 50,257 head on 512 rows, forward
# and backward; neither launch-bound nor autograd-overhead-corrected): implied penalty per sample = 0.6 x prior
# compute time at 0.6 / measured busy time; geometric means per element width: 16-bit (bf16/fp16, 6 samples:
# 0.13-0.25) 0.19, tf32 (4 samples: 0.32-0.42) 0.35 (a 4-byte element still loads whole). Only an unaligned n or k
# counts on these chips: the one GEMM unaligned in m alone (tf32, 8191 x 3000 x 1000) ran at the aligned rate (implied
# 0.92). docs/ENERGY_MODEL.md.
UNALIGNED_PENALTY_BY_CHIP: dict[str, dict[str, float]] = {"GH100": {"16bit": 0.19, "tf32": 0.35}}
DIRECT_CONV_MAX_N = 8  # grouped convs with fewer output channels per group run as direct (non-GEMM) kernels
# PyTorch's own depthwise kernels (aten/src/ATen/native/cuda/DepthwiseConv2d.cu; 1-D convs run as 2-D with height 1),
# which it runs for every depthwise conv that cuDNN does not get (see native_depthwise): one thread per output
# (forward) or input-gradient element loops over the filter taps with two loads per multiply-add; the weight gradient
# runs one block per filter tap that reduces over batch x positions with an integer div/mod per element. Load- and
# issue-bound on the CUDA cores whatever the dtype (fp32 accumulation), so they do a fixed number of multiply-adds
# per SM clock. Published measurement (BlinkDL/RWKV-CUDA README and depthwise_conv1d/run.py, PyTorch issue #75747):
# F.conv1d(groups=C), B=32, C=768, 768 outputs, K=768 taps (14.5e9 MACs per pass), fp32: RTX 3090 forward 14 ms,
# backward (input + weight grad) 65 ms; GTX 1070 mobile 94 ms / 529 ms. Per SM clock (82 SMs x 1.695 GHz; 16 SMs x
# 1.645 GHz): forward 7.45 and 5.9 MACs, backward 3.2 and 2.1 MACs per kernel; geometric means below. The
# measurement times the two backward kernels together: both get the mean rate.
DW_NATIVE_MACS_PER_SM_CLK: dict[str, float] = {"forward": 6.6, "backward": 2.6}
# The forward kernel also pays a fixed cost per output element (index arithmetic: n, c, h, w from the thread index by
# div/mod, bounds, the store), which the 768-tap published runs cannot see but which dominates short filters: SM
# clocks per output = DW_NATIVE_FWD_OUT_SM_CLK + taps / DW_NATIVE_MACS_PER_SM_CLK["forward"]. Fitted on the H200
# op samples (calibration/runs/h200-sxm-141gb, 7 forward depthwise samples, fp32/tf32/bf16: 3x3 on 32 channels
# 112x112 and 7x7 on 96 ch 56x56 / 384 ch 14x14, batch 64): implied constant per sample = measured SM clocks per
# output (time x 132 SMs x 1.98 GHz / outputs) - taps / 6.6 = 1.11, 1.11, 1.12, 1.22, 1.63, 1.70, 2.03; geometric
# mean 1.4. It adds 0.2 % to the 768-tap published runs the rate comes from.
DW_NATIVE_FWD_OUT_SM_CLK = 1.4
DW_NATIVE_TEMPLATED_TAPS = (1, 9, 25)  # 1x1, 3x3, 5x5 filters: unrolled forward / input-grad kernels (not generic)
DW_CUDNN_MIN_CHANNELS = 32  # PyTorch's use_cudnn_depthwise: fp16, >= 32 channels (Convolution.cpp)
# Tensor-core convolutions whose input channels (one group) are not a multiple of the vector width (8 16-bit / 4
# 32-bit elements: one 16-byte load; NVIDIA, "Convolutional Layers User's Guide", "Channels In And Out
# Requirements"), typically a network's first layer on RGB input (C = 3): on the H200 op samples they run no faster
# than FP32 CUDA-core convolutions (12-30 TF/s in bf16 and tf32, 2-3 % of the bf16 tensor peak), so they are priced
# on CUDA cores, and those fallback kernels reach only this fraction of an aligned CUDA-core convolution's efficiency
# (scalar loads, a reduction loop that crosses a filter tap every C elements). Fitted on the 12 bf16/tf32 H200 op
# samples with C = 3 that are neither launch-bound (< 30 us) nor autograd-overhead-corrected: geometric mean of
# (prior compute time with the factor at 1) / (measured time - gaps) = 0.437 (per sample 0.16-0.63; fit written in
# docs/ENERGY_MODEL.md, "H200 convolution fits"). FP32 (TF32 off) convolutions, on CUDA cores anyway, are not
# re-priced: the H200 ran its C = 3 ones at 0.32-0.45 of the prior's rate too, but on a V100 (DLE ResNet-50 FP32)
# the factor overshoots.
UNALIGNED_CONV_SIMT = 0.44
# tile shapes (rows x cols of the output) a GEMM library picks from, with their relative per-tile efficiency
TILES: tuple[tuple[int, int, float], ...] = (
    (256, 128, 1.00),
    (128, 128, 0.96),
    (128, 64, 0.88),
    (64, 64, 0.72),
    (32, 32, 0.45),
)
THREADS_PER_SM = 2048  # resident threads per SM (elementwise kernels: one thread per element)
# Most resident threads per SM by compute capability (CUDA C++ Programming Guide, "Technical Specifications per
# Compute Capability"): 2048 on 6.0/7.0/8.0/9.0 (GP100, GV100, GA100, GH100), 1024 on 7.5 (TU10x), 1536 on 8.6/8.9
# (GA10x, AD10x). Used by BN_REDUCE_THREADS below.
MAX_THREADS_PER_SM_BY_CHIP: dict[str, int] = {"TU10x": 1024, "GA10x": 1536, "AD10x": 1536}
# Training-mode BatchNorm on NCHW tensors: the per-channel reduction pass (statistics forward, sum(dy), sum(dy x)
# backward) runs ONE thread block per channel: PyTorch's batch_norm_collect_statistics_kernel and
# batch_norm_backward_reduce_kernel (aten/src/ATen/native/cuda/Normalization.cuh: ``dim3 blocks(input.size(1))``,
# threads (tf, MAX_BLOCK_SIZE / tf) with MAX_BLOCK_SIZE = 512), cuDNN's NCHW spatial BN kernels likewise
# (bn_fw_tr_1C11_kernel_NCHW<..., 512, ...>: 512 threads, one block per channel in profiles; not measured by us).
# A streaming kernel's bandwidth is bytes in flight / latency (Little's law), so with fewer blocks than the GPU holds
# the pass reaches only C x 512 / (SMs x max resident threads) of the achievable bandwidth (a 64-channel BN on a
# 132-SM H200: 12 %). The normalize / element pass fills the GPU (grid over elements). Checked on the H200 op
# samples (training data; docs/ENERGY_MODEL.md, "BatchNorm channel blocks"): FP32 BN of 64 channels, measured
# forward 123.9 us (56x56, batch 64), backward 300.3 / 117.2 us (56x56 b64 / 32x32 b128): predicted/measured
# 0.36 / 0.23 / 0.41 before, 1.14 / 0.86 / 1.48 with the rule; no constant fitted.
BN_REDUCE_THREADS = 512

# ---- power constants --------------------------------------------------------------------------------------------
# DRAM interface + device energy per bit moved: HBM2 ~3.9 pJ/bit (O'Connor et al., MICRO 2017), GDDR6/6X ~7.5
# pJ/bit (Micron GDDR6X: 7.25 pJ/bit), GDDR5 ~14 pJ/bit (O'Connor et al.).
# GDDR7: no published figure found; priced as GDDR6X.
E_BIT_J: dict[str, float] = {"hbm": 3.9e-12, "gddr6": 7.5e-12, "gddr6x": 7.5e-12, "gddr7": 7.5e-12, "gddr5": 14e-12}
# Core power of a kernel that occupies every SM but waits on memory, as a fraction of a large tensor GEMM's core
# power (clocks, schedulers, register files, caches and NoC stay busy). Fitted leave-one-GPU-out on the Zeus named
# GPU-bound rows (benchmarks/prior_fit.py; held-out errors in docs/accuracy/prior.md): 0.54 on all four GPUs (folds
# 0.54-0.58), shipped 2026-12-05 in place of the first reconstruction's 0.46. Independent support: a lent H200 SXM's
# streaming kernels drew 84-100 % of its 700 W limit (588-711 W at >= 0.85 of its bandwidth; 0.46 gives 80 %, 0.54
# 87 %): docs/ENERGY_MODEL.md, "Where the H200 power error came from".
A_BUSY = 0.54
SHIPPED_A_BUSY = A_BUSY  # what benchmarks compare a refit with (benchmarks/prior_fit.py sets A_BUSY while fitting)
# Tensor-core math draws this many times the dynamic power of CUDA-core math at the same fraction of the unit's peak
# (it runs 7-15x more FLOP/s), so a large tensor-core GEMM asks for more than the board's rated core power and the
# power limit lowers its clock. Fitted on the H200 op samples (calibration/runs/h200-sxm-141gb, training data only) to
# the quantity the power-limit rule predicts, the SM clock: over the 151 tensor-core GEMM / convolution / attention
# samples of >= 50 us, grid 1.0-2.0 (docs/ENERGY_MODEL.md, "Tensor-core math power"), the mean |predicted - measured
# clock| / boost is 0.059 at 1.0, 0.056 (flat minimum) at 1.25-1.5, 0.065 at 2.0; of the minimum, 1.5 has the smallest
# power bias (mean power error -28 W at 1.0, -12 W at 1.5; MAE 84 -> 80 W). At 1.0 none of the 54 samples whose SM
# clock fell below boost (the 700 W limit binding) was predicted to throttle, at 1.5 49 of them are (and 40 of the 97
# measured at boost); benchmarks/h200_power.py reproduces the grid. Held out: the public rows of
# benchmarks/prior_vs_public.py (docs/accuracy/prior.md).
TENSOR_MATH_POWER = 1.5
REDUCE_KINDS = (OpKind.REDUCTION, OpKind.LOSS)
DVFS_EXPONENT = 3.0  # P_dyn ~ f V^2 with V ~ f in the DVFS range
MIN_CLOCK_SCALE = 0.3  # lowest sustained clock / boost clock considered

# GeForce boards reach more of their rated peak in GEMMs than the data-centre and workstation boards the ceilings
# above were set on: they boost past their rated clock when the power limit allows (GPU Boost; the rated "boost
# clock" is a typical, not a maximum), and their tensor cores accumulate FP32 at half the rate of the same chip's
# professional boards, which makes that rate easier to feed. Published square-GEMM microbenchmarks (torch.mm,
# PyTorch 2.x, the best of 1024-10240: zzc0721/torch-performance-test-data database.md) give each board's measured
# rate / the prior's rate for the same GEMM; this is the geometric mean of the GeForce boards' ratios over that of
# the other boards', per unit (tensor: fp16 and bf16; simt: fp32 without TF32). Fitted, leave-one-GeForce-board-out
# errors and the rows in benchmarks/gemm_roofs.py (results/gemm_roofs.json); docs/ENERGY_MODEL.md, "GeForce roofs".
# It multiplies the compute rate of GEMM-family kernels (matmul, dense convolution, attention, RNN) on GeForce boards
# after the power limit's clock scale (CUDA-core roof: dual-FP32 GeForce chips only, what it was fitted on); the
# kernel's dynamic core energy stays the same, so its core power rises by the roof, capped at the board's limit.
CONSUMER_GEMM_ROOF: dict[str, float] = {"tensor": 1.32, "simt": 1.14}

TENSOR_FAMILIES = (OpKind.MATMUL, OpKind.CONV, OpKind.ATTENTION, OpKind.RNN)
COMPUTE_DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8")
_DTYPE_TO_KEY = {
    "float32": "fp32", "float": "fp32", "float64": "fp32", "double": "fp32",
    "float16": "fp16", "half": "fp16", "bfloat16": "bf16",
    "float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "float8_e4m3fnuz": "fp8", "float8_e5m2fnuz": "fp8",
}
_HBM_CHIPS = ("GV100", "GA100", "GH100", "GP100", "GB100", "GB200", "GK210")
_GDDR5_PREFIXES = ("GP10", "GM", "GK")


@dataclass(frozen=True, slots=True)
class OpPrior:
    """The prior's prediction for one op at the traced micro-batch."""

    time_s: float
    power_w: float
    energy_j: float
    compute_s: float  # flops / (peak x eff_c), at the sustained clock
    memory_s: float  # bytes / (bw x eff_m)
    bound: str  # "compute" | "memory" | "overhead"
    compute_dtype: str = "fp32"  # peak key used
    eff_c: float = 0.0
    eff_m: float = 0.0
    activity: float = 0.0  # core activity g / g_ref (1 = a large tensor GEMM)
    clock_scale: float = 1.0  # sustained clock / boost clock (< 1: the power limit binds)
    kernel: str = ""  # "gemm" | "direct_conv" | "memory"
    layout_s: float = 0.0  # NCHW <-> NHWC transposes around a tensor-core convolution (separate kernels)


# ---- hardware classes ---------------------------------------------------------------------------------------------

def _chip(gpu: GpuSpec) -> tuple[str, str]:
    """(letters, digits) of the chip code in the arch string ('Ampere (GA102)' -> ('GA', '102'), 'Blackwell (GB100,
    2 dies)' -> ('GB', '100')), or ('', '')."""
    m = re.search(r"\(([A-Z]+)(\d+)\b", gpu.arch or "")
    return (m.group(1), m.group(2)) if m else ("", "")


def chip_group(gpu: GpuSpec) -> str:
    """The chip generation a board belongs to: GA100, GA10x, AD10x, GH100, TU10x, ... (or the arch string)."""
    letters, digits = _chip(gpu)
    if not letters:
        return (gpu.arch or gpu.key).strip()
    if digits.endswith("00"):
        return letters + digits
    return letters + digits[:-1] + "x"


def memory_kind(gpu: GpuSpec) -> str:
    """'hbm' | 'gddr6' | 'gddr6x' | 'gddr7' | 'gddr5': the database's ``memory_type`` where it names one, else from
    the chip (HBM on the x100 data-centre chips, AMD Instinct and Intel Gaudi)."""
    if gpu.memory_type:
        return gpu.memory_type.lower()
    letters, digits = _chip(gpu)
    code = letters + digits
    arch = gpu.arch or ""
    if code in _HBM_CHIPS or "CDNA" in arch or "Gaudi" in arch or "hbm" in gpu.name.lower():
        return "hbm"
    if code and code.startswith(_GDDR5_PREFIXES):
        return "gddr5"
    return "gddr6"


def dual_fp32(gpu: GpuSpec) -> bool:
    """GA10x / AD10x / GB20x SMs: doubled FP32 lanes, half of them shared with INT32 (not GA100)."""
    letters, digits = _chip(gpu)
    return not digits.endswith("00") and (letters + digits).startswith(DUAL_FP32_CHIPS)


def eff_mem_max(gpu: GpuSpec) -> float:
    chip = EFF_MEM_MAX_BY_CHIP.get(chip_group(gpu))
    if chip is not None:
        return chip
    kind = memory_kind(gpu)
    return EFF_MEM_MAX["hbm" if kind == "hbm" else "gddr6x" if kind in ("gddr6x", "gddr7") else "gddr"]


EFF_MEM_SOURCES: dict[str, str] = {
    "hbm": "HBM value: NeuSight's PyTorch 2.1 elementwise kernels >= 200 MB, V100 0.88, A100 0.82 of spec",
    "gddr": "GDDR5 / GDDR6 value: NeuSight's elementwise kernels, T4 0.75, P4 0.75; copy benchmarks, A10 0.78",
    "gddr6x": "GDDR6X / GDDR7 value: PyTorch copy_ of >= 256 MB, RTX 3090 0.89, RTX 4090 0.90, RTX 4070 SUPER 0.82 "
              "(chsasank/device-benchmarks); RTX 5090 0.88 (NVIDIA/cccl PR #9881)",
}
EFF_MEM_CHIP_SOURCES: dict[str, str] = {
    "GP100": "per-chip value for GP100: NeuSight's P100 elementwise kernels >= 200 MB, 510-535 of 732 GB/s",
}


def eff_mem_max_source(gpu: GpuSpec) -> str:
    """Where :func:`eff_mem_max`'s fraction for this GPU comes from (one line)."""
    chip = chip_group(gpu)
    if chip in EFF_MEM_MAX_BY_CHIP:
        return EFF_MEM_CHIP_SOURCES[chip]
    kind = memory_kind(gpu)
    return EFF_MEM_SOURCES["hbm" if kind == "hbm" else "gddr6x" if kind in ("gddr6x", "gddr7") else "gddr"]


def memory_power_full(gpu: GpuSpec) -> float:
    """DRAM power (W) when streaming at the achievable bandwidth."""
    return E_BIT_J[memory_kind(gpu)] * 8 * gpu.memory_bw_gbs * 1e9 * eff_mem_max(gpu)


def _sm_ghz(gpu: GpuSpec) -> float:
    return max(1, gpu.sm_count) * max(gpu.boost_mhz, 1.0) / 1000.0


def _board_k(gpu: GpuSpec) -> float:
    """W per SM-GHz the board's limit leaves above idle: boards are rated so that their heaviest work, dense tensor
    math (whose DRAM traffic is small), runs at the limit."""
    return max(1e-3, gpu.tdp_w - gpu.idle_w) / _sm_ghz(gpu)


def consumer(gpu: GpuSpec) -> bool:
    """GeForce boards: opportunistic boost runs them above the rated boost clock, so their limit per rated SM-GHz
    overstates what the silicon draws per clock; they do not set a generation's reference."""
    return gpu.name.lower().startswith("geforce")


@lru_cache(maxsize=64)
def _group_k(group: str) -> float:
    try:
        from ..hardware import load_gpus

        gpus = [g for g in load_gpus().values() if chip_group(g) == group]
    except Exception:  # pragma: no cover - the database always loads in a working install
        return 0.0
    ref = [g for g in gpus if not consumer(g) and not g.tdp_is_provider_cap] or gpus
    return max((_board_k(g) for g in ref), default=0.0)


# Boards whose database power is a provider's cap, not a vendor rating of what dense tensor math draws
# (gpus.toml ``tdp_is_provider_cap``) do not set their generation's reference. The AWS A10G's NVML cap is 300 W, while
# a public cuBLAS fp16 burn-in on one peaked at 244 W at 67 TFLOPS (gpus.toml sources): taken as the GA10x reference
# it would raise every data-centre GA10x board's core power by 7 % (its 225 W over 80 SMs x 1.71 GHz against the
# A40's 225 W over 84 x 1.74).


def core_power_ref(gpu: GpuSpec) -> float:
    """Core power (W) of a large tensor-core GEMM at boost clock on this board: the chip generation's W per SM-GHz
    (the highest-powered data-centre / workstation board of the generation in the database, or this board if it
    is higher) x SMs x boost GHz."""
    own = 0.0 if gpu.tdp_is_provider_cap else _board_k(gpu)  # a provider's cap is no rating of its own either
    return max(_group_k(chip_group(gpu)), own) * _sm_ghz(gpu)


# ---- compute dtype and efficiency -----------------------------------------------------------------------------------

def _dtype_key(dtype: str) -> str:
    name = str(dtype).rsplit(".", 1)[-1].lower()
    return _DTYPE_TO_KEY.get(name, "fp32")


def has_tf32(gpu: GpuSpec) -> bool:
    return bool(gpu.tensor_cores and gpu.peak_tflops.get("tf32"))


def compute_dtype(rec: OpRecord, gpu: GpuSpec, precision: str) -> str:
    """The peak-rate key (fp32|tf32|fp16|bf16|fp8) an op runs at on ``gpu`` under ``precision``.

    * ``default`` = PyTorch's defaults: FP32 matmuls without TF32 (``torch.backends.cuda.matmul.allow_tf32 = False``),
      cuDNN convolutions in TF32 on GPUs that have it (``torch.backends.cudnn.allow_tf32 = True``, Ampere and newer).
    * ``tf32``: FP32 matmuls and convolutions on TF32 tensor cores where the GPU has them.
    * ``fp16`` / ``bf16``: autocast; the record's dtype tells which ops run in half precision.
    * ``fp8``: the linear-layer GEMMs Transformer Engine runs in FP8 (records tagged ``('fp8', 1)`` by
      :func:`wattlint.fp8.apply`) run at the FP8 peak; every other half-precision record (the output layer,
      batched matmuls, attention, convolutions) stays in bf16/fp16.
    Non-GEMM ops run on CUDA cores (FP32 peak; they are almost always memory bound).
    """
    key = _dtype_key(rec.dtype)
    if rec.kind not in TENSOR_FAMILIES:
        return "fp32"
    if not gpu.tensor_cores:
        return "fp32" if key in ("fp32", "tf32") else key
    if key == "fp8":
        return "fp8"
    if key in ("fp16", "bf16"):
        if precision == "fp8" and rec.kind is OpKind.MATMUL and rec.dim("fp8", 0) and gpu.peak_tflops.get("fp8"):
            return "fp8"
        return key
    # float32 records
    if precision == "tf32" or (precision in ("default", "fp16", "bf16", "fp8") and rec.kind is OpKind.CONV):
        return "tf32" if has_tf32(gpu) else "fp32"
    return "fp32"


def direct_conv(rec: OpRecord) -> bool:
    """Depthwise / narrow grouped convolution: fewer than DIRECT_CONV_MAX_N output channels per group (the implicit
    GEMM's n) or a reduction shorter than 8 per group; such convs run as direct, bandwidth-bound kernels."""
    if rec.kind is not OpKind.CONV:
        return False
    groups, n, k = rec.dim("b", 1), rec.dim("n", 0), rec.dim("k", 0)
    return groups > 1 and (0 < n < DIRECT_CONV_MAX_N or 0 < k < 8)


def _conv_shapes(rec: OpRecord) -> tuple[tuple, tuple]:
    """(input, weight) shapes of a convolution record: forward (x, w, ...), backward (grad_output, x, w)."""
    sh = rec.shapes
    if "backward" in rec.op and len(sh) >= 3:
        return tuple(sh[1]), tuple(sh[2])
    if len(sh) >= 2:
        return tuple(sh[0]), tuple(sh[1])
    return (), ()


def _weight_grad(rec: OpRecord, x: tuple, w: tuple) -> bool:
    """A convolution's weight-gradient record: tagged ('grad', 2) by the torch frontend; untagged backward records
    (the ONNX frontend's synthesized backward) are the weight gradient when they write the weight's bytes."""
    if rec.phase is not Phase.BACKWARD:
        return False
    tag = rec.dim("grad", 0)
    if tag:
        return tag == 2
    e = 2 if _dtype_key(rec.dtype) in ("fp16", "bf16") else 4
    nw, nx = math.prod(int(d) for d in w), math.prod(int(d) for d in x)
    return nw != nx and rec.bytes_written == nw * e


def channels_aligned(rec: OpRecord, cdt: str) -> bool:
    """A convolution's input channels per group are a multiple of the 16-byte vector width (8 fp16/bf16, 4 tf32/fp32
    elements); unknown shapes and grouped convolutions (not measured) count as aligned."""
    if rec.kind is not OpKind.CONV or rec.dim("b", 1) != 1:
        return True
    _, w = _conv_shapes(rec)
    if len(w) < 3:
        return True
    mult = 8 if cdt in ("fp16", "bf16", "fp8") else 4
    return int(w[1]) % mult == 0


def unaligned_tc_fallback(rec: OpRecord, gpu: GpuSpec, cdt: str) -> bool:
    """A convolution that would run on tensor cores (a tensor-core GPU, a tensor-core dtype) but whose input channels
    are unaligned (``channels_aligned``): it runs on CUDA cores at ``UNALIGNED_CONV_SIMT`` of ``conv_simt``. FP32
    (TF32 off) convolutions, on CUDA cores anyway, are not re-priced."""
    return bool(gpu.tensor_cores) and cdt != "fp32" and not channels_aligned(rec, cdt)


def native_depthwise(rec: OpRecord) -> str:
    """Which PyTorch depthwise kernel runs this record, or '' when it is not one of them.

    PyTorch (aten/src/ATen/native/Convolution.cpp, ``select_conv_backend``) runs depthwise 1-D / 2-D convolutions
    (groups = input channels, one input channel per group) with its own CUDA kernels unless
    ``use_cudnn_depthwise`` holds: float16 (not bfloat16, not fp32/tf32), >= 32 channels, not dilated and, with
    cuDNN >= 8.2, a 1-D conv with stride 1 or a 2-D conv with a square 1x1/3x3/5x5 filter (stride 1, or stride 2
    under a workload heuristic taken here as yes). Dilation is not in the record (taken as none). Channels-last
    inputs (the record's ('nhwc', 1) dim) always run cuDNN ("always use cudnn_depthwise for channels_last format"
    in the same function), whatever the dtype. A record tagged ``dw_native`` (``--torch-version`` before 1.11, which had
    no cuDNN depthwise path: wattlint.framework) runs PyTorch's kernels in fp16 too. Returns 'generic' (the looped
    kernels: filter sizes other than 1/3/5 and every weight gradient), 'templated' (unrolled 1x1/3x3/5x5 forward and
    input-gradient kernels) or ''.
    """
    if rec.kind is not OpKind.CONV or rec.dim("nhwc", 0):
        return ""
    x, w = _conv_shapes(rec)
    if len(x) not in (3, 4) or len(w) != len(x) or int(w[1]) != 1 or rec.dim("b", 1) != int(x[1]) or int(x[1]) < 2:
        return ""
    taps = math.prod(int(d) for d in w[2:])
    if _dtype_key(rec.dtype) == "fp16" and int(x[1]) >= DW_CUDNN_MIN_CHANNELS and not rec.dim("dw_native", 0):
        out_px = rec.dim("m", 0) // max(1, int(x[0]))
        in_px = math.prod(int(d) for d in x[2:])
        strided = out_px > 0 and in_px >= 1.5 * out_px
        if len(x) == 3 and not strided:
            return ""
        if len(x) == 4 and w[2] == w[3] and taps in DW_NATIVE_TEMPLATED_TAPS and in_px < 4.5 * max(out_px, 1):
            return ""
    weight_grad = _weight_grad(rec, x, w)
    if len(x) == 4 and w[2] == w[3] and taps in DW_NATIVE_TEMPLATED_TAPS and not weight_grad:
        return "templated"
    return "generic"


def uses_tensor_cores(rec: OpRecord, gpu: GpuSpec, cdt: str) -> bool:
    if rec.kind not in TENSOR_FAMILIES or not gpu.tensor_cores:
        return False
    if cdt == "fp32":
        return False
    if cdt in ("fp16", "bf16", "fp8", "tf32") and not gpu.peak_tflops.get(cdt) and not (
            cdt == "bf16" and gpu.peak_tflops.get("fp16")):
        return False
    # depthwise / tiny-channel convolutions and GEMMs with a degenerate dim do not map onto tensor-core tiles
    n = rec.dim("n", 0)
    k = rec.dim("k", 0)
    if rec.kind is OpKind.CONV and (0 < n < 8 or 0 < k < 8 or direct_conv(rec) or unaligned_tc_fallback(rec, gpu, cdt)):
        return False
    return True


def peak_flops(gpu: GpuSpec, cdt: str, tensor: bool) -> float:
    """Dense FLOP/s for a compute dtype; non-tensor half precision runs at the FP32 rate (conservative)."""
    if not tensor:
        return gpu.peak("fp32")
    return gpu.peak(cdt)


def gemm_dims(rec: OpRecord) -> tuple[int, int, int, int]:
    """(batch, m, n, k) of the op's GEMM view; falls back to a square guess from FLOPs when dims are absent."""
    b, m, n, k = rec.dim("b", 1) or 1, rec.dim("m", 0), rec.dim("n", 0), rec.dim("k", 0)
    if rec.kind is OpKind.ATTENTION:
        bb, h, sq, sk, d = rec.dim("b", 1), rec.dim("h", 1), rec.dim("sq", 0), rec.dim("sk", 0), rec.dim("d", 0)
        if sq and d:
            return max(1, bb * h), sq, d, max(sk, 1)  # flash attention tiles over (b*h) x query blocks
    if m and n and k:
        return b, m, n, k
    # unknown: a square-ish GEMM with the same FLOPs
    side = max(1, int(round((max(rec.flops, 2) / 2) ** (1 / 3))))
    return 1, side, side, side


def wave_efficiency(gpu: GpuSpec, b: int, m: int, n: int) -> tuple[float, float, float]:
    """(efficiency, waves, tile efficiency) of the best tile shape for a b x [m, n] output on the GPU's SMs.

    A tile is one thread block on one SM; ``waves = tiles / SMs``; the last partial wave leaves SMs idle,
    so wave efficiency = waves / ceil(waves) (wave quantization)."""
    sms = max(1, gpu.sm_count)
    best = (0.0, 0.0, 0.0)
    for tm, tn, teff in TILES:
        tiles = b * math.ceil(m / tm) * math.ceil(n / tn)
        waves = tiles / sms
        q = waves / math.ceil(waves) if waves > 0 else 0.0
        # fill of the tile itself (a 256-row tile on a 40-row problem wastes most of it)
        fill = (m / (math.ceil(m / tm) * tm)) * (n / (math.ceil(n / tn) * tn))
        e = teff * q * fill
        if e > best[0]:
            best = (e, waves, teff)
    return best


def split_k(gpu: GpuSpec, b: int, m: int, n: int, k: int, kh: int, weff: float, waves: float,
            depth: float) -> tuple[float, float, float]:
    """(wave efficiency, waves, depth efficiency) of the best split-K launch of a GEMM whose output cannot fill the
    SMs once even with the smallest tile (a weight gradient: small m x n, long k over the batch's samples).

    cuBLAS / CUTLASS then cut the reduction into s slices computed by separate thread blocks and reduce the partial
    sums ("split-K", CUTLASS docs/efficient_gemm.md, "Parallelized Reductions"; cuBLASLt CUBLASLT_ALGO_CONFIG_SPLITK_NUM):
    s x tiles blocks over the SMs, each a k/s-deep reduction of at least SPLIT_K_MIN_DEPTH. The best s (up to
    SPLIT_K_MAX) is kept, as the best tile is. The partial-sum traffic (s x m x n fp32 values written and re-read)
    is small when split-K pays (m x n small) and is not priced."""
    best = (weff * depth, weff, waves, depth)
    for s in range(2, min(SPLIT_K_MAX, k // SPLIT_K_MIN_DEPTH) + 1):
        w_s, waves_s, _ = wave_efficiency(gpu, b * s, m, n)
        ks = k / s
        d_s = ks / (ks + kh)
        if w_s * d_s > best[0]:
            best = (w_s * d_s, w_s, waves_s, d_s)
    return best[1], best[2], best[3]


def _elementwise_waves(rec: OpRecord, gpu: GpuSpec) -> float:
    elems = max(1, rec.bytes_written // 4 or rec.bytes_read // 4)
    return elems / (max(1, gpu.sm_count) * THREADS_PER_SM)


def compute_efficiency(rec: OpRecord, gpu: GpuSpec, cdt: str, tensor: bool) -> tuple[float, float, float]:
    """(eff_c, waves, wave efficiency) for the op's compute."""
    kind = rec.kind
    if kind in TENSOR_FAMILIES and not direct_conv(rec):
        b, m, n, k = gemm_dims(rec)
        weff, waves, _ = wave_efficiency(gpu, b, m, n)
        if kind is OpKind.MATMUL:
            base = EFF_MAX["matmul_tc" if tensor else "matmul_simt"]
        elif kind is OpKind.CONV:
            base = EFF_MAX["conv_tc" if tensor else "conv_simt"]
            if unaligned_tc_fallback(rec, gpu, cdt):
                base *= UNALIGNED_CONV_SIMT
        elif kind is OpKind.ATTENTION:
            base = ATTENTION_EFF_BY_CHIP.get(chip_group(gpu), EFF_MAX["attention"]) * (
                ATTENTION_BACKWARD_FACTOR if rec.phase is Phase.BACKWARD else 1.0)
            if rec.dim("fa1", 0):
                base /= FA1_SLOWDOWN
        else:
            base = EFF_MAX["rnn"]
        if not tensor and dual_fp32(gpu):
            base *= DUAL_FP32_SIMT
        kh = K_HALF if tensor else K_HALF_SIMT
        depth = k / (k + kh) if k else 0.5
        smallest = TILES[-1]
        if kind is OpKind.MATMUL and k >= 2 * SPLIT_K_MIN_DEPTH and \
                b * math.ceil(m / smallest[0]) * math.ceil(n / smallest[1]) < max(1, gpu.sm_count):
            weff, waves, depth = split_k(gpu, b, m, n, k, kh, weff, waves, depth)
        align = 1.0
        if tensor:
            mult = 4 if cdt == "tf32" else 8
            by_chip = UNALIGNED_PENALTY_BY_CHIP.get(chip_group(gpu))
            if kind is OpKind.MATMUL and by_chip is not None:
                # the output's row length n is a stride, and so is the reduction k of the forward / input-gradient
                # GEMMs' operands; the output's row count m is not (H200: tf32 8191 x 3000 x 1000 ran at full speed)
                if any(x % mult for x in (n, k) if x > 1):
                    align = by_chip["tf32" if cdt == "tf32" else "16bit"]
            elif kind is OpKind.MATMUL and any(x % mult for x in (m, n, k) if x > 1):
                align = UNALIGNED_PENALTY
        return max(1e-3, base * weff * depth * align), waves, weff
    # direct convolutions and non-GEMM ops: one thread per output element over ~2048 threads/SM x SMs
    waves = _elementwise_waves(rec, gpu)
    weff = waves / math.ceil(waves) if waves > 0 else 1.0
    # PyTorch's own CUDA / HIP depthwise kernels, priced per SM clock: a CPU (or a spec without a clock) runs
    # other kernels (oneDNN / ATen CPU loops), so it keeps the direct-convolution price
    native = native_depthwise(rec) if kind is OpKind.CONV and gpu.vendor != "cpu" and gpu.boost_mhz > 0 else ""
    if native == "generic" or (native == "templated" and rec.phase is not Phase.BACKWARD):
        return _native_depthwise_efficiency(rec, gpu)
    base = EFF_MAX["conv_direct" if kind is OpKind.CONV else "other"]
    return max(1e-3, base * max(weff, 0.5)), waves, weff


def _native_depthwise_efficiency(rec: OpRecord, gpu: GpuSpec) -> tuple[float, float, float]:
    """(eff_c, waves, wave efficiency) of PyTorch's looped depthwise kernels: DW_NATIVE_MACS_PER_SM_CLK
    multiply-adds per SM per clock (2 FLOPs each) over the FP32 CUDA-core peak, times the partial last wave.

    Forward / input gradient: one thread per element of what they write (2048 resident threads per SM); the
    forward (looped or unrolled) also pays DW_NATIVE_FWD_OUT_SM_CLK per output element. Weight gradient: one block
    per filter tap (output channels x taps blocks) of min(32 x batch, 256) threads."""
    sms = max(1, gpu.sm_count)
    x, w = _conv_shapes(rec)
    if _weight_grad(rec, x, w):
        rate = DW_NATIVE_MACS_PER_SM_CLK["backward"]
        threads = min(32 * max(1, int(x[0])), 256)
        waves = int(w[0]) * math.prod(int(d) for d in w[2:]) / (sms * (THREADS_PER_SM // threads))
    elif rec.phase is Phase.BACKWARD:
        rate = DW_NATIVE_MACS_PER_SM_CLK["backward"]
        waves = _elementwise_waves(rec, gpu)
    else:
        # forward: a fixed cost per output element on top of the per-tap rate (DW_NATIVE_FWD_OUT_SM_CLK)
        taps = max(1, math.prod(int(d) for d in w[2:]))
        rate = taps / (DW_NATIVE_FWD_OUT_SM_CLK + taps / DW_NATIVE_MACS_PER_SM_CLK["forward"])
        waves = _elementwise_waves(rec, gpu)
    weff = waves / math.ceil(waves) if waves > 0 else 1.0
    macs_per_s = rate * sms * max(gpu.boost_mhz, 1.0) * 1e6
    eff = 2.0 * macs_per_s / gpu.peak("fp32")
    return max(1e-4, min(1.0, eff * max(weff, 1e-3))), waves, weff


def max_threads_per_sm(gpu: GpuSpec) -> int:
    return MAX_THREADS_PER_SM_BY_CHIP.get(chip_group(gpu), THREADS_PER_SM)


def batchnorm_channels(rec: OpRecord) -> int:
    """Channels of a BatchNorm record on a channels-first tensor (N, C, ...) or the ONNX frontend's synthesized
    (N x H x W, C) one; 0 when the record is not a BatchNorm or runs channels-last (('nhwc', 1) dim)."""
    if rec.kind is not OpKind.NORM or rec.dim("nhwc", 0) or not rec.shapes or len(rec.shapes[0]) < 2:
        return 0
    name = rec.op.lower().replace("_", "")
    if "batchnorm" not in name:
        return 0
    return max(1, int(rec.shapes[0][1]))


def batchnorm_reduce_fill(rec: OpRecord, gpu: GpuSpec) -> tuple[float, float]:
    """(fraction of the record's bytes moved by the per-channel reduction pass, fraction of the achievable bandwidth
    that pass reaches) for a channels-first training BatchNorm (BN_REDUCE_THREADS); (0, 1) for other records.

    The reduction pass reads the input once forward (x) and twice backward (dy, x): half of what the record reads
    (costs.norm: BATCHNORM_PASSES = 2 reads of each operand)."""
    c = batchnorm_channels(rec)
    if not c or rec.bytes <= 0:
        return 0.0, 1.0
    share = (rec.bytes_read / 2) / rec.bytes
    fill = c * BN_REDUCE_THREADS / (max(1, gpu.sm_count) * max_threads_per_sm(gpu))
    return share, min(1.0, fill)


def memory_efficiency(nbytes: int, gpu: GpuSpec) -> float:
    bw = gpu.memory_bw_gbs * 1e9
    top = eff_mem_max(gpu)
    if nbytes <= 0:
        return top
    return top * nbytes / (nbytes + bw * MEM_LATENCY_S)


# ---- power --------------------------------------------------------------------------------------------------------

def _g_ref() -> float:
    return A_BUSY + (1.0 - A_BUSY) * EFF_MAX["matmul_tc"]


def core_activity(u: float, fill: float, tensor: bool = False) -> float:
    """Core activity relative to a large tensor GEMM (g / g_ref): ``fill`` = fraction of SMs the kernel occupies
    (they draw the busy power), ``u`` = fraction of the unit's whole-chip peak in use (the math itself: its energy per
    FLOP does not depend on how many SMs share it). ``tensor``: the math runs on tensor cores, whose math power at a
    fraction u of their peak is TENSOR_MATH_POWER x that of CUDA-core math at the same u; a large tensor-core GEMM
    then asks for more than the reference core power and the power limit lowers its clock (clock_scale)."""
    w = TENSOR_MATH_POWER if tensor else 1.0
    return (max(0.0, min(1.0, fill)) * A_BUSY + (1.0 - A_BUSY) * w * max(0.0, u)) / _g_ref()


def _power_fill(rec: OpRecord, gpu: GpuSpec, waves: float) -> float:
    """Average fraction of SMs a kernel keeps busy (power side): the partial last wave of its blocks leaves the rest
    idle. Reductions and loss forwards (a small output from a large input) are the exception to one thread per output
    element: PyTorch's reduce kernels split the INPUT over blocks until every SM is busy (aten/src/ATen/native/cuda/
    Reduce.cuh, ``ReduceConfig``: block and grid sized from the number of input values), so their waves count input
    elements (H200 op samples: a 64 MB sum / mean draws 497-569 W, as much as an elementwise kernel of that size, where
    one thread per output element would give ~1 % of the SMs)."""
    if rec.kind in REDUCE_KINDS and rec.bytes_read > rec.bytes_written:
        waves = max(1, rec.bytes_read // 4) / (max(1, gpu.sm_count) * THREADS_PER_SM)
    return waves / math.ceil(waves) if waves > 0 else 1.0


def consumer_gemm_roof(gpu: GpuSpec, tensor: bool) -> float:
    """CONSUMER_GEMM_ROOF of the unit on a GeForce board, 1 on every other board. The CUDA-core roof was fitted on
    dual-FP32 GeForce boards only (GA10x / AD10x / GB20x): older GeForce chips (Turing, Maxwell) keep 1 there."""
    if not consumer(gpu):
        return 1.0
    if tensor:
        return CONSUMER_GEMM_ROOF["tensor"]
    return CONSUMER_GEMM_ROOF["simt"] if dual_fp32(gpu) else 1.0


def grouped_mm_fused(gpu: GpuSpec, dtype: str) -> bool:
    """Whether ``torch._grouped_mm`` in ``dtype`` runs as PyTorch's fused grouped kernel on ``gpu``
    (GROUPED_MM_FUSED_CHIPS); otherwise it runs its per-group fallback loop."""
    return (str(gpu.vendor).upper() == "NVIDIA" and chip_group(gpu) in GROUPED_MM_FUSED_CHIPS
            and str(dtype).rsplit(".", 1)[-1] == "bfloat16")


def hopper_2023(rec: OpRecord, gpu: GpuSpec, tensor: bool) -> bool:
    """A tensor-core matmul launched by PyTorch 2.1 or earlier (tagged ``gemm_2023``) on a Hopper GPU."""
    return (tensor and rec.kind is OpKind.MATMUL and bool(rec.dim("gemm_2023", 0))
            and chip_group(gpu) in HOPPER_GEMM_2023_CHIPS)


def clock_scale(gpu: GpuSpec, p_mem: float, p_core: float) -> float:
    """Sustained clock / boost clock so that idle + P_mem + P_core x s^3 fits the board limit (1 when it fits)."""
    if p_core <= 0 or gpu.idle_w + p_mem + p_core <= gpu.tdp_w:
        return 1.0
    room = gpu.tdp_w - gpu.idle_w - p_mem
    if room <= 0:
        return MIN_CLOCK_SCALE
    return max(MIN_CLOCK_SCALE, min(1.0, (room / p_core) ** (1.0 / DVFS_EXPONENT)))


def op_prior(rec: OpRecord, gpu: GpuSpec, precision: str = "default", utilization: float | None = None) -> OpPrior:
    """Time, power and energy of one op (one record, one micro-batch) on ``gpu``.

    ``utilization`` (a what-if override, 0 < u <= 1) replaces the predicted compute efficiency of every op (and the
    power limit's clock scaling: the user states the achieved fraction of peak). Communication records are not
    priced here (the system layer models collectives over the interconnect); they get zero GPU time.
    """
    if rec.kind in (OpKind.VIEW, OpKind.COMMUNICATION) or (rec.flops == 0 and rec.bytes == 0):
        return OpPrior(0.0, gpu.idle_w, 0.0, 0.0, 0.0, "overhead", "fp32", 0.0, 0.0, 0.0, 1.0, "")
    cdt = compute_dtype(rec, gpu, precision)
    tensor = uses_tensor_cores(rec, gpu, cdt)
    peak = peak_flops(gpu, cdt, tensor)
    bw = gpu.memory_bw_gbs * 1e9
    eff_c, waves, _ = compute_efficiency(rec, gpu, cdt, tensor)
    gemm = rec.kind in TENSOR_FAMILIES and not direct_conv(rec)
    kernel = "gemm" if gemm else "direct_conv" if rec.kind is OpKind.CONV else "memory"
    if utilization is not None:
        eff_c = max(1e-3, min(1.0, float(utilization)))
    eff_m = memory_efficiency(rec.bytes, gpu)
    bn_share, bn_fill = batchnorm_reduce_fill(rec, gpu)
    if bn_share > 0 and bn_fill < 1.0:
        # the per-channel reduction pass at bn_fill of the bandwidth, the rest at the full rate
        eff_m = eff_m / (bn_share / bn_fill + (1.0 - bn_share))
    compute_s = rec.flops / (peak * eff_c) if rec.flops else 0.0
    memory_s = rec.bytes / (bw * eff_m) if rec.bytes else 0.0
    busy = max(compute_s, memory_s)

    # power of the busy part at boost clock
    # average fraction of SMs busy over the kernel: the partial last wave leaves the rest idle (so the busy SM-time
    # of a GEMM, tiles x time per tile, does not depend on how the work is split over GPUs)
    fill = _power_fill(rec, gpu, waves)
    u = rec.flops / busy / peak if (busy > 0 and rec.flops) else 0.0  # fraction of the unit's peak in use
    act = core_activity(u, fill, tensor)
    p_core = core_power_ref(gpu) * act
    p_mem_rate = E_BIT_J[memory_kind(gpu)] * 8  # J per byte
    p_mem = p_mem_rate * rec.bytes / busy if busy > 0 else 0.0
    s = 1.0 if utilization is not None else clock_scale(gpu, p_mem, p_core)
    if s < 1.0:
        compute_s /= s
        busy = max(compute_s, memory_s)
        p_mem = p_mem_rate * rec.bytes / busy if busy > 0 else 0.0
        p_core *= s ** DVFS_EXPONENT
    roof = consumer_gemm_roof(gpu, tensor) if (gemm and utilization is None) else 1.0
    if gemm and utilization is None and hopper_2023(rec, gpu, tensor):
        roof *= HOPPER_GEMM_2023
    if roof != 1.0 and compute_s > 0:
        # the same work done faster (a higher clock) or slower (the 2023 stack's Hopper GEMMs): its dynamic core
        # energy is unchanged, so core power follows the busy time inversely (by the roof when compute-bound); the
        # board's limit caps it below (a throttled GEMM stays at the limit)
        compute_s /= roof
        busy_before, busy = busy, max(compute_s, memory_s)
        p_mem = p_mem_rate * rec.bytes / busy if busy > 0 else 0.0
        p_core *= busy_before / busy if busy > 0 else 1.0
    p_busy = min(gpu.tdp_w, gpu.idle_w + p_mem + p_core)
    time_s = busy + GAP_S
    if busy < GAP_S:
        bound = "overhead"
    else:
        bound = "compute" if compute_s >= memory_s else "memory"
    energy = p_busy * busy + gpu.idle_w * GAP_S
    layout_s = 0.0
    if tensor and rec.kind is OpKind.CONV and not rec.dim("nhwc", 0):
        # NCHW tensors: cuDNN's tensor-core convolutions run on NHWC, so it transposes the operands in and the result
        # back with separate bandwidth-bound kernels (LAYOUT_TRANSPOSES of them); every operand byte is read and
        # written once more
        moved = 2 * rec.bytes
        layout_s = moved / (bw * memory_efficiency(rec.bytes, gpu))
        p_layout = min(gpu.tdp_w, gpu.idle_w + p_mem_rate * moved / layout_s
                       + core_power_ref(gpu) * core_activity(0.0, 1.0))
        energy += p_layout * layout_s + gpu.idle_w * LAYOUT_TRANSPOSES * GAP_S
        time_s += layout_s + LAYOUT_TRANSPOSES * GAP_S
    power_w = energy / time_s
    return OpPrior(time_s, power_w, energy, compute_s, memory_s, bound, cdt, eff_c * s * roof, eff_m,
                   act * (s ** DVFS_EXPONENT), s, kernel, layout_s)


def naive_time_energy(flops: float, gpu: GpuSpec, dtype_key: str = "fp32") -> tuple[float, float]:
    """The naive baseline most calculators use: time = FLOPs / peak, energy = time x TDP."""
    t = flops / gpu.peak(dtype_key)
    return t, t * gpu.tdp_w
