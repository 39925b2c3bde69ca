"""The one table of estimate options: names, CLI flags, choices, defaults, bounds and validators.

The CLI (argparse types), ``[tool.wattlint]`` (config.py), the training plan (plan.py) and the Python API (api.py)
all validate through :data:`OPTIONS`, so a value is accepted or refused the same way wherever it is given, and the
error names the place the user wrote it (``--batch-size``, ``batch-size`` in pyproject.toml, ``batch_size=``).

Validators take a value and return it normalised, or raise ``ValueError("expected ...")``; callers add where the
value came from. ``text=True`` (the command line) also parses numbers written as text (``1e3``, ``4_096``).
Bounds exist to refuse absurd values with one clear line (``--gpus 4611686018427387904``), not to second-guess plans:
each is far beyond any real training run. Pure Python; nothing here imports the rest of wattlint.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

PRECISIONS = ("default", "fp32", "tf32", "fp16", "bf16", "fp8")
OPTIMIZERS = ("adamw", "adam", "sgd", "adadelta")
OPTIMIZER_IMPLS = ("foreach", "fused", "for-loop")
ATTENTIONS = ("sdpa", "eager")
SHARDINGS = ("none", "zero1", "zero2", "zero3", "fsdp")
RECOMPUTES = ("none", "selective", "full")
TRAINING_STACKS = ("pytorch", "megatron")
# how an expert-parallel all-to-all sends a token (Megatron-Core --moe-token-dispatcher-type; wattlint.parallel)
MOE_DISPATCHERS = ("alltoall", "flex")
LOSS_IMPLS = ("torch", "fused")
ESTIMATE_FORMATS = ("text", "json", "markdown", "html")
CHECK_FORMATS = ("text", "json", "sarif", "github")

DEFAULT_GPU = "a100-sxm4-80gb"
DEFAULT_OPTIMIZER = "adamw"
DEFAULT_PRECISION = "default"
DEFAULT_GPUS_PER_NODE = 8
DEFAULT_PUE = 1.2

Checker = Callable[..., Any]


# ---- validators ------------------------------------------------------------------------------------------------

def _parse_number(v: Any, text: bool) -> float | int:
    if isinstance(v, bool):
        raise ValueError("expected a number, not true/false")
    if isinstance(v, (int, float)):
        return v
    if text and isinstance(v, str):
        t = v.strip().replace("_", "")
        if not t.isascii():
            # int() and float() read '٣' (Arabic-Indic three) or a fullwidth '３' as digits: a number on the
            # command line is written in ASCII (1000, 1_000, 1e3)
            raise ValueError("expected a number in ASCII digits (e.g. 1000, 1_000, 1e3)")
        if re.fullmatch(r"[+-]?[0-9]+", t):
            return int(t)
        try:
            return float(t)
        except ValueError:
            raise ValueError(f"expected a number, got {v!r}") from None
    raise ValueError(f"expected a number, got {type(v).__name__} {v!r}")


def integer(lo: int = 1, hi: int = 10**12) -> Checker:
    """A whole number in [lo, hi]; integral floats (``1e3``) are accepted."""
    def check(v: Any, *, text: bool = False) -> int:
        x = _parse_number(v, text)
        if isinstance(x, float):
            if not math.isfinite(x) or x != int(x):
                raise ValueError(f"expected a whole number between {lo:,} and {hi:,}")
            x = int(x)
        if not lo <= x <= hi:
            raise ValueError(f"expected a whole number between {lo:,} and {hi:,}")
        return x

    return check


def number(lo: float = 0.0, hi: float = 1e18, *, lo_open: bool = True, what: str = "a number") -> Checker:
    """A finite number in (lo, hi] (``lo_open``) or [lo, hi]."""
    def check(v: Any, *, text: bool = False) -> float:
        try:
            x = float(_parse_number(v, text))
        except OverflowError:  # an integer past the float range (a TOML budget of 1 followed by 400 zeros)
            x = math.inf
        ok = math.isfinite(x) and (x > lo if lo_open else x >= lo) and x <= hi
        if not ok:
            left = "(" if lo_open else "["
            raise ValueError(f"expected {what} in {left}{lo:g}, {hi:g}]")
        return x

    return check


def choice(*choices: str) -> Checker:
    def check(v: Any, *, text: bool = False) -> str:
        if not isinstance(v, str) or v.lower() not in choices:
            raise ValueError("expected one of " + ", ".join(choices))
        return v.lower()

    return check


def boolean(v: Any, *, text: bool = False) -> bool:
    if isinstance(v, bool):
        return v
    if text and isinstance(v, str) and v.lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.lower() in ("true", "1", "yes")
    raise ValueError("expected true or false")


def nonempty_str(v: Any, *, text: bool = False) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected a non-empty string")
    return v.strip()


def torch_version(v: Any, *, text: bool = False) -> str:
    """A PyTorch version, MAJOR.MINOR (a TOML float such as 1.1 is ambiguous with 1.10: write it as a string)."""
    if not isinstance(v, str) or not re.fullmatch(r"\s*\d{1,2}\.\d{1,3}(\.\d+)?([a-z+].*)?\s*", v):
        raise ValueError("expected a PyTorch version MAJOR.MINOR as a string, e.g. \"1.10\" or \"2.1\"")
    return v.strip()


def str_list(v: Any, *, text: bool = False) -> tuple[str, ...]:
    """A list of non-empty strings (a single string is NOT a list: ``select = "WL"`` is an error)."""
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and x.strip() for x in v):
        # the example is the user's own value as a list (the same checker reads rule codes and exclude globs)
        one = json.dumps(v.strip()) if isinstance(v, str) and v.strip() else '"..."'
        raise ValueError(f"expected a list of non-empty strings, e.g. [{one}]")
    return tuple(x.strip() for x in v)


MAX_SAMPLES = 10**13  # samples per epoch (--dataset N, --dataset-size): beyond any real run


def dataset(v: Any, *, text: bool = False) -> str:
    """A preset name or a sample count (resolved by plan.resolve_dataset)."""
    if isinstance(v, bool):
        raise ValueError("expected a dataset preset name or a sample count")
    if isinstance(v, (int, float)):
        return str(integer(1, MAX_SAMPLES)(v))
    s = nonempty_str(v)
    if any(c.isdigit() and not c.isascii() for c in s):
        # float() reads '٥' (Arabic-Indic five) or a fullwidth '５' as a digit: a count is written in ASCII digits
        raise ValueError("expected a dataset preset name or a sample count in ASCII digits (e.g. 50000, 50_000, 1e6)")
    return s


_INPUT_RE = re.compile(r"^[A-Za-z_][\w.:/-]*=\w+\[[\w\s,*?]*\]$")


#: what ``inputs=`` takes, named in every refusal of a malformed one
INPUT_FORMS = ("spec strings (one, or a list: ['x=float32[8,3,224,224]']), a dict of name -> spec string "
               "('float32[8,3,224,224]'), TensorSpec or example tensor, or example tensors (one, or a tuple / list "
               "of them, bound by position: to the forward's parameters, or an ONNX graph's inputs, in order)")
#: the names positional example tensors get (``input:0``, ``input:1``...): not Python identifiers, so never a
#: forward parameter's name, and the torch frontend binds them by position (trace_with_inputs)
POSITIONAL_INPUT = "input:{}"


def _example_tensor(v: Any) -> bool:
    """A torch tensor (or Parameter), told without importing torch (options.py imports nothing of wattlint)."""
    return hasattr(v, "shape") and hasattr(v, "dtype") and type(v).__module__.split(".", 1)[0] == "torch"


def positional_inputs(v: Any) -> bool:
    """True for ``inputs=`` as :func:`input_specs` returns example tensors given by position."""
    return isinstance(v, Mapping) and bool(v) and all(k == POSITIONAL_INPUT.format(i) for i, k in enumerate(v))


def input_specs(v: Any, *, text: bool = False) -> tuple[str, ...] | dict[str, Any]:
    """Spec strings (``'x=float32[8,16]'``, one or a list), or (the API, as wattlint.analyze takes them) a dict of
    name -> spec string (``'float32[8,16]'``), TensorSpec or example tensor, returned as a dict (the frontend reads
    a TensorSpec's or a tensor's dtype and shape). An example tensor, or a tuple / list of them (the API), is bound
    by position as a factory's ``(module, example_inputs)`` are: returned as a dict keyed ``input:0``, ``input:1``...
    (:data:`POSITIONAL_INPUT`; the API names them after the forward's parameters when it has the module, the
    source loader after a Hugging Face model's forward parameters, the ONNX frontend after the graph's inputs)."""
    if not text and (_example_tensor(v) or (isinstance(v, (list, tuple)) and v
                                            and all(_example_tensor(t) for t in v))):
        return {POSITIONAL_INPUT.format(i): t for i, t in enumerate((v,) if _example_tensor(v) else v)}
    if isinstance(v, Mapping) and not text:
        for name, spec in v.items():
            if not isinstance(name, str) or not _INPUT_RE.match(f"{name}=x[]"):
                raise ValueError(f"expected input names as keys, e.g. {{'x': 'float32[8,3,224,224]'}}, got {name!r}")
            if isinstance(spec, str) and not _INPUT_RE.match((spec if "=" in spec else f"{name}={spec}")
                                                               .replace(" ", "")):
                raise ValueError(f"expected input specs like {{'x': 'float32[8,3,224,224]'}}, got {spec!r}")
        return dict(v)
    if not isinstance(v, str) and not (isinstance(v, (list, tuple)) and all(isinstance(x, str) and x.strip()
                                                                           for x in v)):
        raise ValueError(f"expected {INPUT_FORMS}" if not text else
                         "expected an input spec or a list of them, e.g. ['x=float32[8,3,224,224]']")
    items = (v,) if isinstance(v, str) else str_list(v)
    for s in items:
        if not _INPUT_RE.match(s.replace(" ", "")):
            raise ValueError(f"expected input specs like 'x=float32[8,3,224,224]', got {s!r}")
    return tuple(items)


def gpu_list(v: Any, *, text: bool = False) -> tuple[str, ...]:
    """``--compare a100,h100``: a comma-separated list (or a list) of GPU names, none empty."""
    items = v.split(",") if isinstance(v, str) else list(str_list(v))
    names = tuple(x.strip() for x in items)
    if not names or any(not x for x in names):
        raise ValueError("expected a comma-separated list of GPU names, e.g. h100,l40s (no empty entries)")
    return names


MAX_GPU_HOUR_PRICE = 1e5


def gpu_hour_price(v: Any, *, text: bool = False) -> float | tuple[tuple[str, float], ...]:
    """USD per GPU-hour: one number for every GPU, or one per GPU (``--gpu-hour-price a100=1.8,h100=3.9``; a TOML
    table ``{a100 = 1.8, h100 = 3.9}``; a dict in the API) as ((GPU name as written, price), ...), resolved to the
    estimated GPU by plan.build_plan."""
    price = number(0, MAX_GPU_HOUR_PRICE, lo_open=False)
    pairs = isinstance(v, tuple) and v and all(isinstance(p, tuple) and len(p) == 2 for p in v)  # validated once
    if pairs or isinstance(v, Mapping) or (text and isinstance(v, str) and "=" in v):
        items = list(v) if pairs else list(v.items()) if isinstance(v, Mapping) else \
            [p.partition("=")[::2] for p in v.split(",")]
        out = []
        for name, val in items:
            if not isinstance(name, str) or not name.strip():
                raise ValueError("expected GPU=USD pairs, e.g. a100=1.8,h100=3.9 (no empty GPU name)")
            try:
                out.append((name.strip(), price(val.strip() if isinstance(val, str) else val, text=True)))
            except ValueError as e:
                raise ValueError(f"{name.strip()}: {e}") from None
        if not out:
            raise ValueError("expected a number or GPU=USD pairs, e.g. a100=1.8,h100=3.9")
        return tuple(out)
    return price(v, text=text)


# ---- the table -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Option:
    """One estimate option. ``name`` is the API keyword, the config key (snake_case; kebab-case in TOML) and the
    argparse dest; ``scope`` says who consumes it: the frontend (tracing), the plan, or the request (GPU choice)."""

    name: str
    flag: str
    check: Checker
    help: str
    group: str  # model | hardware | work | site
    scope: str  # frontend | plan | both | request
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    flag_only: bool = False  # command line only (not a config key)
    config_only: bool = False  # config / API only (no flag)
    aliases: tuple[str, ...] = ()  # other accepted config keys / API keywords

    @property
    def config_key(self) -> str:
        return self.name.replace("_", "-")


_INT = integer(1, 10**9)
OPTIONS: dict[str, Option] = {o.name: o for o in (
    # model / tracing
    Option("inputs", "--input", input_specs, "an input spec, e.g. x=float32[8,3,224,224] or ids=int64[4,512] "
           "(repeatable)", "model", "frontend", "NAME=DTYPE[DIMS]"),
    Option("batch_size", "--batch-size", integer(1, 10**9), "global batch size; rebinds the batch dim of the "
           "inputs (the leading one; dim 1 for a torch model whose RNN / attention modules are all batch_first="
           "False) (traced micro-batch = global / (data-parallel x grad-accum))", "model", "both", "N"),
    Option("seq_len", "--seq-len", integer(1, 10**8), "sequence length for language models", "model", "both", "N"),
    Option("precision", "--precision", choice(*PRECISIONS), "training precision (default: PyTorch's default: fp32 "
           "weights, TF32 cuDNN convs on Ampere+; fp8: Transformer Engine's recipe, the transformer blocks' linear "
           "layers in FP8 with their casts)", "model", "both", choices=PRECISIONS),
    Option("optimizer", "--optimizer", choice(*OPTIMIZERS), "optimizer (default: as traced, else adamw)", "model",
           "both", choices=OPTIMIZERS),
    Option("optimizer_impl", "--optimizer-impl", choice(*OPTIMIZER_IMPLS), "optimizer kernels: foreach "
           "(PyTorch 2.x's CUDA default: several multi-tensor passes over the parameters), fused (fused=True: one "
           "pass) or for-loop (foreach=False, PyTorch 1.x's default: the same passes launched once per parameter "
           "tensor)", "model", "frontend", choices=OPTIMIZER_IMPLS),
    Option("torch_version", "--torch-version", torch_version, "the PyTorch version the run uses (default: 2.x "
           "behaviour): before 2.0 for-loop optimizers, eager attention and zero_grad(set_to_none=False) (a zero "
           "fill per gradient, an accumulating add per parameter tensor in backward) by default, before 2.2 "
           "FlashAttention-1 speed for fused attention, before 1.11 PyTorch's own "
           "fp16 depthwise kernels, 1.7-1.11 TF32 matmuls under --precision default, through 2.1 on a Hopper GPU "
           "(H100 / H200 / GH200) tensor-core matmuls at 0.71 of today's rate (fitted on llm-foundry's 2023 H100 "
           "tables; from 2.2 current rates)", "model", "both", "X.Y"),
    Option("attention", "--attention", choice(*ATTENTIONS), "attention kernels of PyTorch / Hugging Face sources: "
           "sdpa (one fused scaled-dot-product kernel, default) or eager (separate GEMM + softmax kernels)", "model",
           "frontend", choices=ATTENTIONS),
    Option("activation_checkpointing", "--activation-checkpointing", boolean, "alias of --recompute full: every "
           "checkpointed block's forward re-run in backward", "model", "both"),
    Option("recompute", "--recompute", choice(*RECOMPUTES), "activation recompute (Korthikanti et al. 2022): none "
           "(default), selective (re-run only the attention core, QK^T / softmax / dropout / attention over V, in "
           "backward; its stored scores are dropped) or full (re-run each block's forward; keeps only the block "
           "inputs)", "model", "plan", choices=RECOMPUTES),
    Option("training_stack", "--training-stack", choice(*TRAINING_STACKS), "how the step runs: pytorch (default: "
           "the module as traced under autocast: fp32 parameters, per-matmul casts, unfused element-wise kernels) "
           "or megatron (Megatron-LM / DeepSpeed-style large-model training: bf16/fp16 parameters with an fp32 "
           "master copy, no autocast casts, fused LayerNorm/RMSNorm, SwiGLU/GeGLU, scale-mask-softmax, "
           "bias-dropout-add and multi-tensor Adam; "
           "needs --precision bf16, fp16 or fp8)", "model", "plan", choices=TRAINING_STACKS),
    Option("loss_impl", "--loss-impl", choice(*LOSS_IMPLS), "memory of the cross-entropy over the logits: torch "
           "(F.cross_entropy: fp32 log-probabilities kept, their gradient and the logits' gradient allocated at the "
           "start of backward; the default of the pytorch stack) or fused (one kernel that keeps only the logits "
           "and writes their gradient in their dtype: flash-attn's CrossEntropyLoss, llm-foundry's default, and "
           "Megatron's vocab-parallel loss; the default of the megatron stack)", "model", "plan",
           choices=LOSS_IMPLS),
    Option("capacity_factor", "--capacity-factor", number(0, 64, what="a capacity factor"), "mixture-of-experts: "
           "rows each expert computes, x its balanced share tokens x top-k / experts (default 1.0, dropless; Switch: "
           "the config's expert capacity)", "model", "frontend", "C"),
    # hardware
    Option("gpu", "--gpu", nonempty_str, f"GPU database key or alias (default from [tool.wattlint], else "
           f"{DEFAULT_GPU}); see 'wattlint gpus'", "hardware", "request", "G"),
    Option("compare", "--compare", gpu_list, "also estimate on these GPUs; one table side by side", "hardware",
           "request", "G1,G2", flag_only=True),
    Option("gpus", "--gpus", integer(1, 10**6), "GPUs in the job (default 1); data-parallel degree = gpus / "
           "(tensor-parallel x context-parallel x pipeline-parallel)", "hardware", "both", "N"),
    Option("tensor_parallel", "--tensor-parallel", integer(1, 4096), "Megatron tensor-parallel degree of the "
           "transformer layers: each layer's matmuls split over N GPUs (inside a node over NVLink), 2 all-reduces "
           "per layer forward and 2 backward (default 1)", "hardware", "plan", "N"),
    Option("pipeline_parallel", "--pipeline-parallel", integer(1, 4096), "pipeline-parallel stages, at most "
           "the repeated blocks; when they do not divide, the first and last stages take fewer (1F1B schedule; "
           "bubble (p-1)/(m+p-1) priced at idle power; default 1)", "hardware", "plan", "N"),
    Option("virtual_pipeline_stages", "--virtual-pipeline-stages", integer(1, 1024), "interleaved 1F1B "
           "(Megatron-LM --virtual-pipeline-model-parallel-size): model chunks per pipeline stage; the bubble / V, "
           "V x the stage-boundary sends, the first stage's activations x (1 + (P-1)/(P V)); needs "
           "--pipeline-parallel > 1 and micro-batches per step a multiple of it (default 1)", "hardware", "plan", "V"),
    Option("context_parallel", "--context-parallel", integer(1, 1024), "context parallelism (Megatron-Core "
           "--context-parallel-size): each sequence split over N GPUs, attention by ring exchange of keys and values "
           "overlapped with it; activations / N, weights not; data-parallel = gpus / (tp x N x pp); the sequence "
           "length must divide into 2N chunks (default 1)", "hardware", "plan", "N"),
    Option("expert_parallel", "--expert-parallel", integer(1, 10**6), "mixture-of-experts: spread each MoE "
           "layer's experts over N of the data-parallel ranks, tokens routed by all-to-all (default 1)",
           "hardware", "plan", "N"),
    Option("moe_token_dispatcher_type", "--moe-token-dispatcher-type", choice(*MOE_DISPATCHERS), "with "
           "--expert-parallel: how the all-to-all sends a token: alltoall (default: one copy per token-to-expert "
           "assignment, Megatron-Core's alltoall dispatcher, torchtitan) or flex (DeepEP: one copy per destination "
           "GPU inside a node; across nodes one per destination node, then NVLink inside it; a config's "
           "node-limited routing, n_group / topk_group, bounds the nodes)", "hardware", "plan", choices=MOE_DISPATCHERS),
    Option("overlap_moe_expert_parallel_comm", "--overlap-moe-expert-parallel-comm", boolean, "with "
           "--expert-parallel: each micro-batch's all-to-all runs behind another micro-batch's compute "
           "(Megatron-Core's combined 1F1B, DeepSeek's DualPipe): per step a2a + (m - 1) x [max(0, a2a/2 - 2c/3) + "
           "max(0, a2a/2 - c/3)] exposed over m micro-batches (the forward's half behind the partner's backward, "
           "2/3 of its compute c, and the other way round); needs bf16 / fp16 / fp8, no full recompute, and "
           "--virtual-pipeline-stages with --pipeline-parallel, as Megatron-Core (default: all exposed)", "hardware", "plan"),
    Option("sequence_parallel", "--sequence-parallel", boolean, "with --tensor-parallel: split norms, dropout "
           "and residual adds along the sequence too (all-gather + reduce-scatter instead of all-reduce)",
           "hardware", "plan"),
    Option("micro_batch_size", "--micro-batch-size", integer(1, 10**9), "samples per micro-batch per "
           "data-parallel replica; grad-accum (pipeline micro-batches per step) = batch / (data-parallel x N)",
           "work", "plan", "N"),
    Option("uneven_batch", "--uneven-batch", boolean, "a global batch that does not divide over the replicas is "
           "scattered unevenly (nn.DataParallel: 33 over 2 GPUs = 17 + 16) and each micro-step costed at the "
           "largest share; without it such a batch is refused (wattlint.track sets it for the GPUs it measures)",
           "work", "plan", config_only=True),
    Option("gpus_per_node", "--gpus-per-node", integer(1, 1024), f"GPUs per node, i.e. per NVLink domain (default "
           f"min(gpus, {DEFAULT_GPUS_PER_NODE}); min(gpus, 72) on a rack-scale NVLink part such as GB200 NVL72)",
           "hardware", "plan", "N"),
    Option("sharding", "--sharding", choice(*SHARDINGS), "ZeRO / FSDP sharding of optimizer state, grads, weights",
           "hardware", "plan", choices=SHARDINGS),
    Option("ddp_bucket_view", "--ddp-bucket-view", boolean, "DistributedDataParallel is built with "
           "gradient_as_bucket_view=True (Lightning DDPStrategy(gradient_as_bucket_view=True), accelerate "
           "DistributedDataParallelKwargs(gradient_as_bucket_view=True)): the gradients are views into DDP's "
           "all-reduce buckets, so no second copy of them is charged (default: torch's False, a bucket copy per "
           "data-parallel pytorch-stack run)", "hardware", "plan"),
    Option("internode_gbps", "--internode-gbps", number(0.1, 1e6, lo_open=False), "network bandwidth per node in Gbit/s (default "
           "stated)", "hardware", "plan", "GBIT"),
    Option("launch_overhead", "--launch-overhead", number(0, 1.0, lo_open=False, what="seconds"), "seconds "
           "per tensor/pipeline/expert-parallel communication call on the critical path (default: NCCL small-"
           "message latency, 20 us over NVLink, 40 us over the network, stated)", "hardware", "plan", "S"),
    Option("host_op_time", "--host-op-time", number(0, 0.01, lo_open=False, what="seconds"), "seconds of CPU time "
           "per op launched by eager PyTorch (Python, dispatcher, kernel launch); the GPU idles while launches lag "
           "its work (default 15 us, 58 us under --training-stack megatron: docs/ENERGY_MODEL.md; the assumptions state "
           "the value where launching leaves the GPU idle)",
           "hardware", "plan", "S"),
    Option("loader_sample_time", "--loader-sample-time", number(0, 1.0, what="seconds"), "CPU seconds one "
           "data-loader worker spends per sample (read, decode, augment): each epoch's first micro-batch is built by "
           "one worker before the GPU gets work (PyTorch DataLoader without persistent workers), so every epoch waits "
           "micro-batch x S at idle power (default: not modelled, stated)", "work", "plan", "S"),
    Option("goodput", "--goodput", number(0.1, 1, lo_open=False, what="a fraction"), "fraction of wall time spent in useful "
           "training steps, 0.1-1 (restarts, checkpoint saves, evaluation are the rest; default 0.90 from 512 GPUs up, "
           "else 1.0, stated)", "work", "plan", "G"),
    Option("utilization", "--utilization", number(0.01, 1, lo_open=False, what="a fraction"), "what-if: each op's "
           "compute efficiency (fraction of the dense peak while its FLOPs run; memory-bound ops keep their "
           "bandwidth, launch gaps and communication stay): not the end-to-end MFU (0.01 <= U <= 1)", "hardware",
           "plan", "U"),
    # work
    Option("epochs", "--epochs", number(0, 1e7), "epochs over --dataset", "work", "plan", "E"),
    Option("dataset", "--dataset", dataset, "dataset preset (imagenet-1k, cifar10, ...) or sample count", "work",
           "plan", "NAME|N"),
    Option("dataset_size", "--dataset-size", integer(1, MAX_SAMPLES), "samples per epoch (same as --dataset N)", "work",
           "plan", "N", config_only=True),
    Option("steps", "--steps", integer(1, 10**13), "optimizer steps (instead of --epochs/--tokens)", "work", "plan",
           "N"),
    Option("tokens", "--tokens", number(0, 1e17), "training tokens (language models; with --seq-len)", "work",
           "plan", "T"),
    Option("grad_accum", "--grad-accum", integer(1, 10**6), "gradient accumulation steps (default 1)", "work",
           "both", "N"),
    # site
    Option("pue", "--pue", number(1.0, 3.0, lo_open=False, what="a PUE"), f"data-centre PUE, 1.0-3.0 (default {DEFAULT_PUE}; 1.0 for a "
           "desktop / workstation card; the PUE listed for a cloud --region; stated)", "site", "plan", "X"),
    Option("region", "--region", nonempty_str, "ISO-2/ISO-3 country or cloud region (aws:us-east-1)", "site",
           "plan", "R"),
    Option("carbon_intensity", "--carbon-intensity", number(0, 5000, lo_open=False), "gCO2e/kWh (overrides "
           "--region)", "site", "plan", "G"),
    Option("price_per_kwh", "--price", number(0, 1e4, lo_open=False), "electricity price in USD per kWh", "site",
           "plan", "USD", aliases=("price",)),
    Option("gpu_hour_price", "--gpu-hour-price", gpu_hour_price, "USD per GPU-hour (rental; taken to include "
           "electricity unless --price is given too): one number, or one per GPU for --compare "
           "(a100=1.8,h100=3.9)", "site", "plan", "USD|GPU=USD,..."),
)}

FRONTEND_OPTIONS = tuple(n for n, o in OPTIONS.items() if o.scope in ("frontend", "both"))
PLAN_OPTIONS = tuple(n for n, o in OPTIONS.items() if o.scope in ("plan", "both"))
ALIASES: dict[str, str] = {a: o.name for o in OPTIONS.values() for a in o.aliases}
WORK_OPTIONS = ("epochs", "steps", "tokens")
# options of which a more specific layer (the command line over [tool.wattlint], a model's own table over the
# top-level defaults) names one: the layer's choice replaces the less specific layer's whole group
CHOICE_GROUPS: tuple[tuple[str, ...], ...] = (WORK_OPTIONS, ("micro_batch_size", "grad_accum"),
                                              ("recompute", "activation_checkpointing"))
# naming the key replaces these of a less specific layer (a region's own grid intensity over a default figure)
REPLACES: dict[str, tuple[str, ...]] = {"region": ("carbon_intensity",)}


def overlay(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` (the more specific layer) on top of ``base``: each of its choices replaces the base's whole choice
    group (``--steps`` replaces a configured ``epochs``; a model's ``region`` a top-level ``carbon-intensity``)."""
    out = dict(base)
    for group in CHOICE_GROUPS:
        if set(group) & set(over):
            for k in group:
                out.pop(k, None)
    for key, gone in REPLACES.items():
        if key in over:
            for k in gone:
                out.pop(k, None)
    out.update(over)
    return out


def canonical(name: str) -> str | None:
    """The option name for an API keyword / config key (snake or kebab case, aliases), or None."""
    n = name.replace("-", "_")
    n = ALIASES.get(n, n)
    return n if n in OPTIONS else None


def validate(values: Mapping[str, Any], *, label: Callable[[Option], str] | None = None,
             text: bool = False, error: type[Exception] = ValueError) -> dict[str, Any]:
    """Normalised options (``None`` values dropped). Unknown names and bad values raise ``error`` with one line that
    names the option as the caller spells it (``label``; default the API keyword ``name=``)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = canonical(key)
        if name is None:
            import difflib

            close = difflib.get_close_matches(str(key).replace("-", "_"), [*OPTIONS, *ALIASES], n=1)
            raise error(f"unknown option {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        if value is None:
            continue
        opt = OPTIONS[name]
        try:
            out[name] = opt.check(value, text=text)
        except ValueError as e:
            where = label(opt) if label else f"{name}="
            raise error(f"{where} {_show(value)}: {e}") from None
    return out


def _show(value: Any) -> str:
    text = re.sub(r"\s*\n\s*", " ", repr(value))  # one line: a small tensor's repr spans several
    if isinstance(value, bool):
        text = "true" if value else "false"
    return text if len(text) <= 60 else text[:57] + "..."


def recompute_mode(values: Mapping[str, Any], spell: Callable[[str], str]) -> str:
    """The recompute choice of validated ``values``: ``recompute`` (none | selective | full), with
    ``activation_checkpointing`` an alias of full. Raises ValueError (one line, names spelled by ``spell``) when
    the two disagree: checkpointing true with recompute none / selective, or false with recompute full."""
    rc, ck = values.get("recompute"), values.get("activation_checkpointing")
    if (ck is True and rc not in (None, "full")) or (ck is False and rc == "full"):
        said = "true" if ck else "false"
        raise ValueError(f"{spell('activation_checkpointing')} {said} (an alias of {spell('recompute')} full) "
                         f"conflicts with {spell('recompute')} {rc}: give one of them")
    return rc or ("full" if ck else "none")


def work_conflict(values: Mapping[str, Any], spell: Callable[[str], str]) -> str | None:
    """The error line when more than one of epochs / steps / tokens is given (None when at most one)."""
    given = [spell(n) for n in WORK_OPTIONS if values.get(n) is not None]
    if len(given) > 1:
        return f"{' and '.join(given)} conflict: give the amount of work one way (epochs, steps or tokens)"
    return None


def said_as(message: str, given: Mapping[str, tuple[str, str, Any]]) -> str:
    """``message`` (an assumption line or an error of the plan: they name each option by its command-line flag) with
    the flag of each option in ``given`` (name -> (its key as the user wrote it, where, its value)) written as what
    the user gave instead, so that a note never names a flag the user did not type: ``(--steps)`` as ``(steps in the
    run record)``, ``--tensor-parallel 2 x`` as ``tensor_parallel = 2 in the run record x``; a unit written right
    after the value stays beside it (``--launch-overhead 0.001 s has no effect`` as ``launch_overhead = 0.001 s in
    the run record has no effect``: it read '... = 0.001 in the run record s ...'). Only where the flag
    cites the value's source: followed by that value (``--steps 3000``, ``--steps=3000``), alone at the start of
    parentheses (``(--steps)``, ``(--pue, ...)``), or the subject the message opens with, bare (``--tokens: the
    model's inputs ...``, ``--tokens needs --seq-len``: ``tokens = 1000000.0 from [tool.wattlint] of
    pyproject.toml: ...``); advice that names a flag to pass (``pass --seq-len``, ``(--seq-len / --input)``) and a
    flag followed by another value than the one given are kept."""
    spelled = {OPTIONS[n].flag: (n, g) for n, g in given.items() if n in OPTIONS and OPTIONS[n].flag}

    def shown(value) -> set[str]:
        out = {str(value), repr(value)}
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out |= {f"{value:g}", f"{value:,}", f"{value:,g}"}
        return out

    def a_value(name: str, word: str) -> bool:
        """Whether ``word`` (what follows the flag) reads as a value of the option: then it is the subject's
        value, not a word of the message."""
        if word[:1] in "'\"{[":
            return True
        try:
            OPTIONS[name].check(word, text=True)
        except (ValueError, TypeError):
            return False
        return True

    def said(m: re.Match) -> str:
        hit = spelled.get(m.group(1))
        if hit is None:
            return m.group(0)
        name, (key, where, value) = hit
        if m.group(2) is not None and m.group(2) in shown(value):  # the flag and its value: ``key = value where``
            return f"{key} = {m.group(2)}" + (f" {m.group(3)}" if m.group(3) else "") + f" {where}"
        text, a, b = m.string, m.start(), m.start(1) + len(m.group(1))
        if a > 0 and text[a - 1] == "(" and (b == len(text) or text[b] in "),;"):  # the source: ``(--steps)``
            return f"{key} {where}" + m.group(0)[len(m.group(1)):]
        if a == 0 and (b == len(text) or text[b] in ":,;" or (text[b] == " " and not a_value(name, m.group(2) or ""))):
            # the message's subject, bare (``--tokens: ...``, ``--tokens needs ...``): the setting where it was given
            source = f"from {where[3:]}" if where.startswith("in ") else where
            return f"{key} = {_setting(value)} {source}" + m.group(0)[len(m.group(1)):]
        return m.group(0)

    units = "|".join(re.escape(u) for u in sorted(_VALUE_UNITS, key=len, reverse=True))
    return re.sub(rf"(?<![\w-])(--[a-z][\w-]*)(?:[ =]([^\s;:()]+)(?: ({units})(?=[\s,;:)]|$))?)?", said, message)


def _setting(value: Any) -> str:
    """A setting's value as the user wrote it (per-GPU prices as {a100 = 1.8, h100 = 3.9}, the rest as repr), as
    commands._common.shown_setting writes it."""
    if isinstance(value, tuple) and value and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        return "{" + ", ".join(f"{n} = {x:g}" for n, x in value) + "}"
    return repr(value)


#: units the plan's lines write right after an option's value ('--launch-overhead 0.001 s'), kept beside the value
#: by :func:`said_as`
_VALUE_UNITS = ("s", "ms", "h", "W", "kW", "Wh", "kWh", "MiB", "GiB", "GB", "TB", "%", "gCO2e/kWh", "g/kWh", "USD",
                "USD/kWh", "$/kWh", "USD/GPU-h", "$/GPU-h", "Gbit/s", "GB/s")


def as_config_keys(message: str) -> str:
    """``message`` with each option's command-line flag (``--steps``) written as its ``[tool.wattlint]`` key
    (``steps``): for errors about values that came from the configuration file (``wattlint check``)."""
    flags = {o.flag: o.config_key for o in OPTIONS.values() if o.flag and not o.flag_only}
    return re.sub(r"(?<![\w-])--[a-z][\w-]*", lambda m: flags.get(m.group(0), m.group(0)), message)
