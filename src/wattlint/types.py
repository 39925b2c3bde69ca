"""Frozen types that cross module boundaries.

Data flows one way (see docs/DESIGN.md): frontends produce a :class:`CostGraph` of :class:`OpRecord`s;
the energy model turns a graph + :class:`GpuSpec` + plan into an estimate; lint turns both into findings.
Nothing in this module imports torch, onnx or lightgbm.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Mapping


class WattlintError(Exception):
    """A user-facing error: bad input, bad configuration, unknown name.

    The CLI prints ``str(error)`` as one line on stderr and exits 2. Library code raises it (or a subclass)
    and never prints or exits.
    """


class InputError(WattlintError):
    """The model source or its inputs cannot be used (missing file, bad attr, malformed graph, bad spec)."""


class ConfigError(WattlintError):
    """Configuration ([tool.wattlint], CLI values) is invalid."""


class Phase(str, Enum):
    FORWARD = "forward"
    BACKWARD = "backward"
    OPTIMIZER = "optimizer"
    COMMUNICATION = "communication"

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


class Status(str, Enum):
    """How an op was treated: costed by a formula, free (views/metadata), or not understood."""

    HANDLED = "handled"
    IGNORED = "ignored"
    UNSUPPORTED = "unsupported"

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


class OpKind(str, Enum):
    """Op family. Used for reporting, lint rules and as an energy-model feature."""

    MATMUL = "matmul"
    CONV = "conv"
    ATTENTION = "attention"
    NORM = "norm"
    SOFTMAX = "softmax"
    EMBEDDING = "embedding"
    POOL = "pool"
    ELEMENTWISE = "elementwise"
    REDUCTION = "reduction"
    LOSS = "loss"
    DROPOUT = "dropout"
    INDEX = "index"
    MEMORY = "memory"  # copies, cat, transposes that move data
    RNN = "rnn"
    OPTIMIZER = "optimizer"
    COMMUNICATION = "communication"
    VIEW = "view"  # free: views, metadata
    OTHER = "other"

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


# ``dims`` tag of a record launched from inside a library call (a cuDNN RNN: the host launches the call once, the
# library launches its kernels from C++). Records with the same tag and phase are one host launch:
# wattlint.energy.system.launch_key decides what counts as a launch.
LIB_CALL = "lib_call"

# How a frontend's batch line ends when the micro-batch came from the example inputs or --input specs (no
# --batch-size): an estimate that sets its own batch on the traced graph drops the line (wattlint.aggregate).
BATCH_HINT = "pass --batch-size to set the global batch"


def lib_call_dims(dims: tuple[tuple[str, int], ...], call: int) -> tuple[tuple[str, int], ...]:
    """``dims`` tagged as belonging to library call ``call`` (0: untouched); kept sorted."""
    return tuple(sorted(dims + ((LIB_CALL, call),))) if call else dims


@dataclass(frozen=True, slots=True)
class OpRecord:
    """One op of one training step.

    ``dims`` carries named problem sizes the energy model needs beyond FLOPs and bytes (GEMM ``b,m,n,k``;
    attention ``b,h,sq,sk,d``; conv implicit-GEMM sizes), as a sorted tuple of (name, int) pairs.
    """

    op: str  # "aten.mm.default", "onnx::MatMul"
    kind: OpKind
    module: str  # innermost module, dotted path ("" = the root module)
    phase: Phase
    dtype: str  # compute dtype name: float32, bfloat16, float16, ...
    shapes: tuple[tuple[int, ...], ...] = ()
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    status: Status = Status.HANDLED
    module_type: str = ""  # class / op-type of that module ("Linear", "Conv")
    dims: tuple[tuple[str, int], ...] = ()
    recompute: bool = False  # activation checkpointing recompute (in backward)

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    def dim(self, name: str, default: int = 0) -> int:
        for k, v in self.dims:
            if k == name:
                return v
        return default


@dataclass(frozen=True, slots=True)
class Totals:
    flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    count: int = 0

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(
            self.flops + other.flops,
            self.bytes_read + other.bytes_read,
            self.bytes_written + other.bytes_written,
            self.count + other.count,
        )

    @staticmethod
    def of(records: Iterable[OpRecord]) -> "Totals":
        f = r = w = n = 0
        for rec in records:
            f += rec.flops
            r += rec.bytes_read
            w += rec.bytes_written
            n += 1
        return Totals(f, r, w, n)

    def as_dict(self) -> dict:
        return {"flops": self.flops, "bytes_read": self.bytes_read, "bytes_written": self.bytes_written}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input: name, dtype name and concrete shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    source: str
    format: str  # "torch" | "onnx" | "hf" (a Hugging Face config.json, traced by the torch frontend)
    params: int
    param_bytes: int
    trainable_params: int = -1  # -1: same as params
    name: str = ""

    def as_dict(self) -> dict:
        return {"source": self.source, "format": self.format, "params": self.params, "param_bytes": self.param_bytes}


@dataclass(frozen=True)
class CostGraph:
    """All ops of one traced training step (forward, backward, optimizer) at the traced micro-batch."""

    model: ModelInfo
    records: tuple[OpRecord, ...]
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    modules: tuple[tuple[str, str], ...] = ()  # (dotted path, type) for every module, in definition order
    assumptions: tuple[str, ...] = ()
    micro_batch: int = 1  # leading dim of the traced inputs
    seq_len: int = 0  # traced sequence length when known (language models)
    precision: str = "fp32"  # the precision the trace was made in (fp32|tf32|fp16|bf16|fp8)
    optimizer: str = "adamw"
    extra: Mapping[str, object] = field(default_factory=dict)  # frontend-specific facts (e.g. folded_batchnorm)

    # ---- queries -------------------------------------------------------------------------------------------
    def select(self, phase: Phase | str | None = None, kind: OpKind | str | None = None,
               status: Status | str | None = Status.HANDLED) -> list[OpRecord]:
        ph = Phase(phase) if phase is not None else None
        kd = OpKind(kind) if kind is not None else None
        st = Status(status) if status is not None else None
        return [r for r in self.records
                if (ph is None or r.phase is ph) and (kd is None or r.kind is kd) and (st is None or r.status is st)]

    def total(self, phase: Phase | str | None = None) -> Totals:
        return Totals.of(self.select(phase=phase, status=None))

    def by_phase(self) -> dict[str, Totals]:
        out: dict[str, Totals] = {p.value: Totals() for p in (Phase.FORWARD, Phase.BACKWARD, Phase.OPTIMIZER)}
        for r in self.records:
            out[r.phase.value] = out.get(r.phase.value, Totals()) + Totals(r.flops, r.bytes_read, r.bytes_written, 1)
        return out

    def by_kind(self, phase: Phase | str | None = None) -> dict[str, Totals]:
        out: dict[str, Totals] = defaultdict(Totals)
        for r in self.select(phase=phase, status=None):
            out[r.kind.value] += Totals(r.flops, r.bytes_read, r.bytes_written, 1)
        return dict(out)

    def by_module(self, depth: int | None = None, phase: Phase | str | None = None) -> dict[str, Totals]:
        """Totals per module path truncated to ``depth`` components (None: the innermost module)."""
        out: dict[str, Totals] = defaultdict(Totals)
        for r in self.select(phase=phase, status=None):
            name = truncate_path(r.module, depth)
            out[name] += Totals(r.flops, r.bytes_read, r.bytes_written, 1)
        return dict(out)

    def by_module_phase(self) -> dict[tuple[str, str], Totals]:
        out: dict[tuple[str, str], Totals] = defaultdict(Totals)
        for r in self.records:
            out[(r.module, r.phase.value)] += Totals(r.flops, r.bytes_read, r.bytes_written, 1)
        return dict(out)

    @property
    def single_tensor_optimizer(self) -> bool:
        """The traced optimizer is torch's for-loop (single-tensor) implementation: every optimizer record is its own
        kernel and launch (``--optimizer-impl for-loop``)."""
        return self.extra.get("optimizer_impl") == "for-loop"

    def module_types(self) -> dict[str, str]:
        types = dict(self.modules)
        for r in self.records:
            if r.module not in types and r.module_type:
                types[r.module] = r.module_type
        return types

    def status_counts(self) -> dict[str, int]:
        c = Counter(r.status.value for r in self.records)
        return {s.value: c.get(s.value, 0) for s in Status}

    def unsupported(self) -> dict[str, int]:
        return dict(sorted(Counter(r.op for r in self.records if r.status is Status.UNSUPPORTED).items()))

    @property
    def params(self) -> int:
        return self.model.params

    @property
    def trainable_params(self) -> int:
        return self.model.params if self.model.trainable_params < 0 else self.model.trainable_params


def truncate_path(path: str, depth: int | None) -> str:
    if depth is None or not path:
        return path
    parts = path.split(".")
    return ".".join(parts[:depth])


# ---- hardware, plan, estimate, findings ---------------------------------------------------------------------

@dataclass(frozen=True)
class GpuSpec:
    """One GPU of the hardware database (src/wattlint/data/gpus.toml). Peak rates are dense (no sparsity)."""

    key: str  # database key, e.g. "h100-sxm5-80gb"
    name: str  # marketing name
    vendor: str
    arch: str
    peak_tflops: Mapping[str, float]  # dtype -> dense TFLOP/s: fp32, tf32, fp16, bf16, fp8, int8 (tensor, fp32 accumulate)
    memory_gb: float
    memory_bw_gbs: float
    sm_count: int
    boost_mhz: float
    tdp_w: float
    idle_w: float
    idle_estimated: bool = True
    # tdp_w is a cloud provider's power cap (NVML on the instance), not a vendor rating of what the board draws under
    # dense math (gpus.toml ``tdp_is_provider_cap``): the board sets neither its own nor its generation's core power
    tdp_is_provider_cap: bool = False
    pcie_gen: int = 0
    nvlink_gbs: float = 0.0  # per-GPU NVLink bandwidth (GB/s, bidirectional) ; 0 = none
    # GPUs one NVLink domain joins when it is larger than a server (GB200 NVL72: 72); 0 = the server (8 by default)
    nvlink_domain: int = 0
    tensor_cores: bool = True
    l2_mb: float = 0.0
    # DRAM technology when the chip code does not tell it ("GDDR6X", "GDDR7"; gpus.toml ``memory_type``); "" = from
    # the chip (energy/prior.py memory_kind: HBM on the x100 data-centre chips, GDDR6 / GDDR5 otherwise)
    memory_type: str = ""
    aliases: tuple[str, ...] = ()
    nvml_names: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)
    unconfirmed: tuple[str, ...] = ()  # fields whose values are flagged unconfirmed in the source data
    # training precisions the hardware runs natively (subset of fp32, tf32, fp16, bf16, fp8; gpus.toml
    # ``precisions``); empty = derive from peak_tflops (hand-built specs). See hardware.supported_precisions.
    precisions: tuple[str, ...] = ()

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s (not TFLOP/s) for a compute dtype name; falls back sensibly."""
        t = self.peak_tflops
        for k in _PEAK_FALLBACK.get(dtype, (dtype, "fp32")):
            if t.get(k):
                return float(t[k]) * 1e12
        return float(t.get("fp32", 1.0)) * 1e12

    @property
    def ridge_point(self) -> float:
        """FLOP/byte where fp32 compute and memory bandwidth balance."""
        return self.peak("fp32") / (self.memory_bw_gbs * 1e9)


_PEAK_FALLBACK: dict[str, tuple[str, ...]] = {
    "fp32": ("fp32",),
    "tf32": ("tf32", "fp32"),
    "fp16": ("fp16", "bf16", "fp32"),
    "bf16": ("bf16", "fp16", "fp32"),
    "fp8": ("fp8", "fp16", "bf16", "fp32"),
    "int8": ("int8", "fp16", "fp32"),
}


@dataclass(frozen=True)
class Plan:
    """A training plan: how much work, at which batch and precision, on how many GPUs, where.

    Built (and every default stated as an assumption) by wattlint.plan.build_plan. The fields that change a number
    and have no neutral value (PUE, grid intensity) have no defaults here, so nothing is costed with an unstated one.
    """

    batch_size: int  # global batch (samples per optimizer step)
    steps: int  # optimizer steps in the whole plan
    pue: float
    carbon_intensity_g_per_kwh: float
    epochs: float | None = None
    dataset: str | None = None
    dataset_size: int | None = None  # samples per epoch
    tokens: float | None = None
    seq_len: int | None = None
    grad_accum: int = 1
    precision: str = "default"  # default|fp32|tf32|fp16|bf16|fp8
    optimizer: str = "adamw"
    gpus: int = 1
    gpus_per_node: int = 1
    host_node_gpus: int | None = None  # the GPUs of one machine as --gpus-per-node gave them (not cut to --gpus);
    #                                    None: not given (a default; a PCIe card's host is then an 8-slot server's)
    sharding: str = "none"  # none|zero1|zero2|zero3|fsdp
    region: str | None = None
    # the intensity was given (--carbon-intensity / configuration), recorded by wattlint.plan.build_plan; None (a Plan
    # built by hand): decided by __post_init__ (wattlint.carbon.intensity_given: its figure is not its region's)
    carbon_intensity_given: bool | None = None
    price_per_kwh: float | None = None
    gpu_hour_price: float | None = None
    utilization: float | None = None  # override of predicted efficiency (what-if)
    internode_gbps: float | None = None  # network bandwidth per node, Gbit/s (None: the GPU class default, stated)
    activation_checkpointing: bool = False  # = recompute "full" (kept in step by __post_init__)
    recompute: str = "none"  # none | selective | full (Korthikanti et al. 2022)
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    virtual_pipeline_stages: int = 1  # interleaved 1F1B: model chunks per pipeline stage (1: plain 1F1B)
    context_parallel: int = 1  # sequence split over this many GPUs (ring attention)
    expert_parallel: int = 1
    sequence_parallel: bool = False
    # expert-parallel all-to-all: alltoall (one copy per token-to-expert assignment) | flex (DeepEP: one per node)
    moe_token_dispatcher_type: str = "alltoall"
    overlap_moe_expert_parallel_comm: bool = False  # all-to-all behind another micro-batch's compute (1F1B combined)
    launch_overhead_s: float | None = None  # per model-parallel communication call (None: NCCL latency defaults)
    host_op_s: float | None = None  # CPU time per eager op launch (None: energy.system.HOST_OP_S, stated)
    goodput: float = 1.0  # fraction of wall time in useful steps
    loader_sample_time_s: float | None = None  # one data-loader worker's CPU s per sample (None: not modelled)
    # a global batch scattered unevenly over the replicas (nn.DataParallel): each micro-step costed at the largest
    # share, ceil(batch / (dp x grad-accum)); otherwise the batch must divide (wattlint.plan refuses it)
    uneven_batch: bool = False
    training_stack: str = "pytorch"  # pytorch (as traced) | megatron (wattlint.stack)
    loss_impl: str | None = None  # torch | fused cross-entropy memory (None: the training stack's default)
    ddp_bucket_view: bool = False  # DDP built with gradient_as_bucket_view=True: no bucket copy of the gradients
    assumptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.carbon_intensity_given is None:
            from .carbon import intensity_given

            object.__setattr__(self, "carbon_intensity_given", intensity_given(self))
        # activation_checkpointing is the full-recompute flag: a plan built with it alone recomputes in full, and a
        # plan built with recompute="full" alone has it set (dataclasses.replace must change both together)
        if self.activation_checkpointing and self.recompute != "full":
            object.__setattr__(self, "recompute", "full")
        elif self.recompute == "full" and not self.activation_checkpointing:
            object.__setattr__(self, "activation_checkpointing", True)

    @property
    def data_parallel(self) -> int:
        return max(1, self.gpus // (self.tensor_parallel * self.context_parallel * self.pipeline_parallel))

    @property
    def shard_group(self) -> int:
        """Ranks holding the same weights, over which gradients are reduced and ZeRO / FSDP / the distributed
        optimizer shard their state: data-parallel x context-parallel (Megatron-Core's data-parallel group with
        context parallelism; context-parallel ranks hold the same weights)."""
        return self.data_parallel * max(1, self.context_parallel)

    @property
    def micro_batch_size(self) -> int:
        d = self.data_parallel * self.grad_accum
        return max(1, -(-self.batch_size // d) if self.uneven_batch else self.batch_size // d)


@dataclass(frozen=True, slots=True)
class LayerEstimate:
    name: str
    type: str
    flops: int
    time_s: float
    gpu_energy_j: float
    share: float  # of per-step GPU energy


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    severity: str  # error|warning|info
    message: str
    layer: str | None = None
    saving_kwh: float | None = None
    saving_pct: float | None = None
    model: str | None = None  # configured model name (check)

    def as_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "message": self.message, "layer": self.layer,
                "saving_kwh": self.saving_kwh, "saving_pct": self.saving_pct}


Range = tuple[float, float]  # (p5, p95)


@dataclass(frozen=True, slots=True)
class StepCost:
    """One optimizer step of the whole job (all GPUs): the ``per_step`` block of ``wattlint.estimate/1``."""

    flops: float
    time_s: float
    gpu_energy_j: float  # all GPUs of the job (what NVML measures, summed)
    host_energy_j: float  # CPU + DRAM of the hosts
    avg_gpu_power_w: float  # per GPU


@dataclass(frozen=True, slots=True)
class TotalCost:
    """The whole plan: the ``total`` block. Ranges are 5-95 % prediction intervals."""

    steps: int
    time_h: float
    time_h_range: Range
    gpu_hours: float
    gpu_hours_range: Range
    gpu_energy_kwh: float
    host_energy_kwh: float
    energy_kwh: float  # facility: (GPU + host) x PUE
    energy_kwh_range: Range
    co2_kg: float
    co2_kg_range: Range
    cost_usd: float | None
    goodput: float = 1.0  # time_h and gpu_hours include the (1/goodput - 1) share of non-productive wall time
    loader_wait_h: float = 0.0  # wall time waiting for each epoch's first data-loader batch (in time_h)
    cost_usd_range: Range | None = None  # None where cost_usd is


@dataclass(frozen=True, slots=True)
class PhaseCost:
    """Per optimizer step: wall time of the phase on one GPU and its energy on all GPUs."""

    time_s: float
    gpu_energy_j: float


@dataclass(frozen=True)
class Utilization:
    """Throughput of a language-model step: tokens/s/GPU, MFU (6N + attention FLOPs per token, the llm-foundry /
    PaLM convention) and HFU (the FLOPs wattlint traced, recompute included) against the dense peak."""

    tokens_per_s_per_gpu: float
    mfu: float
    hfu: float
    model_flops_per_token: float
    peak_tflops: float
    convention: str


VERDICTS = ("fits", "tight", "does_not_fit")  # the memory verdicts, best first: rules and the compare ★ rank by it


@dataclass(frozen=True)
class MemoryUse:
    peak_bytes_per_gpu: int
    gpu_memory_bytes: int
    fits: bool
    breakdown: Mapping[str, int] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """'fits', 'tight' or 'does_not_fit': the peak against the usable memory with the memory model's error band
        (wattlint.memory.memory_verdict)."""
        from .memory import memory_verdict

        return memory_verdict(self.peak_bytes_per_gpu, self.gpu_memory_bytes)

    def fits_worse_than(self, other: "MemoryUse") -> bool:
        """Whether this run's verdict is worse than ``other``'s (fits < tight < does_not_fit): a variant a rule would
        recommend over the planned run ``other`` must not be (a 'tight' variant of a run that fits may run out of
        memory; the boolean ``fits`` alone accepted it)."""
        return VERDICTS.index(self.verdict) > VERDICTS.index(other.verdict)


@dataclass(frozen=True)
class Estimate:
    """The cost of one plan on one GPU type. Field names follow the ``wattlint.estimate/1`` contract."""

    model: ModelInfo
    gpu: GpuSpec
    plan: Plan
    calibration: str  # measured|public-fit|transferred|prior
    calibration_source: str
    per_step: StepCost
    total: TotalCost
    memory: MemoryUse
    layers: tuple[LayerEstimate, ...]
    phases: Mapping[str, PhaseCost] = field(default_factory=dict)  # forward, backward, optimizer, idle_gaps, ...
    findings: tuple[Finding, ...] = ()
    assumptions: tuple[str, ...] = ()
    graph: CostGraph | None = None
    op_times_s: tuple[float, ...] = ()  # per record of graph, per micro-batch
    op_energy_j: tuple[float, ...] = ()
    utilization: Utilization | None = None  # language models: MFU, HFU, tokens/s/GPU
    calibration_coverage: float = 1.0  # share of the step's op time priced by the named model (the prior the rest)
