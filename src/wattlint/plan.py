"""Training plan: how much work (dataset x epochs | steps | tokens), at which batch and precision, on how many
GPUs, where (PUE, grid carbon intensity, price). Every default that changes a number is an ``assumptions`` line.

Pure data logic: no torch, no printing. Bad values raise :class:`ConfigError` with one clear line.
"""

from __future__ import annotations

import difflib
import math
import re
try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 (tomli is a dependency there)
    import tomli as tomllib  # type: ignore[no-redef]
from functools import lru_cache
from importlib import resources
from typing import Any

from . import carbon, framework, options, parallel
from .energy import system
from .energy.host import platform_class
from .hardware import precision_fallback, precision_support
from .types import ConfigError, CostGraph, GpuSpec, Plan, TensorSpec

DEFAULT_PUE_SOURCE = (f"PUE {options.DEFAULT_PUE:g} (default: between hyperscale fleet averages of ~1.1 - Google 2024 Environmental "
                      "Report 1.10 - and the industry-wide 1.58 of the Uptime Institute Global Data Center Survey "
                      "2023; a desktop / workstation card in one machine outside a cloud region defaults to 1.0: "
                      "a desk-side machine)")
PRECISION_DEFAULT_TEXT = ("precision 'default' = PyTorch defaults: fp32 weights and activations, matmuls in FP32 "
                          "(torch.backends.cuda.matmul.allow_tf32=False), cuDNN convolutions in TF32 on Ampere and "
                          "newer (torch.backends.cudnn.allow_tf32=True); pass --precision bf16/fp16 for AMP")
DATASET_RULE = ("inference rule: 3xHxW with H,W >= 160 and a 1000-way output -> imagenet-1k; 3x32x32 with 10/100 "
                "outputs -> cifar10/cifar100; 1x28x28 with 10 outputs -> mnist")


# ---- datasets ----------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def load_datasets() -> dict[str, dict]:
    """Dataset presets (data/datasets.toml): name -> {samples | tokens, source, aliases}."""
    text = resources.files("wattlint").joinpath("data", "datasets.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9.]", "", name.lower())


def _dataset_lookup() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, row in load_datasets().items():
        for n in (name, *row.get("aliases", ())):
            out[_norm(n)] = name
    return out


def _parse_count(text: str) -> int | None:
    """A sample count written ``50000``, ``50_000``, ``50,000`` or ``1.2e6``; None when ``text`` is not a number (a
    preset name). Only ASCII digits: float() also reads '٣' (Arabic-Indic three) or a fullwidth '３'."""
    t = text.strip().replace("_", "").replace(",", "")
    if not t.isascii():
        if any(c.isdigit() for c in t):
            raise ConfigError(f"--dataset {text}: a sample count is written in ASCII digits (e.g. 50000, 50_000, 1e6)")
        return None
    try:
        v = float(t)
    except ValueError:
        return None
    if not math.isfinite(v) or v != int(v):
        raise ConfigError(f"--dataset {text}: a sample count must be a whole number")
    return int(v)


def resolve_dataset(spec: str | int, seq_len: int | None = None, *,
                    per_sample: str | None = None) -> tuple[str | None, int, str]:
    """``--dataset NAME|N`` -> (preset name or None, samples per epoch, assumption line). ``seq_len``: the tokens
    of one sample, which turn a preset measured in tokens into samples; ``per_sample``: how the line writes them
    (default 'seq-len N'; a multiple-choice model's '(choices C x seq-len S)')."""
    if isinstance(spec, bool):
        raise ConfigError(f"--dataset {spec!r}: expected a preset name or a sample count")
    if isinstance(spec, (int, float)):
        n = int(spec) if float(spec) == int(spec) else None
        if n is None:
            raise ConfigError(f"--dataset {spec}: a sample count must be a whole number")
    else:
        n = _parse_count(str(spec))
    if n is not None:
        if n <= 0:
            raise ConfigError(f"--dataset {spec}: the sample count must be positive")
        if n > options.MAX_SAMPLES:
            raise ConfigError(f"--dataset {spec}: expected at most {options.MAX_SAMPLES:.0e} samples per epoch")
        return None, n, f"dataset: {n:,} samples per epoch (--dataset {spec})"
    text = str(spec).strip()
    key = _dataset_lookup().get(_norm(text))
    if key is None:
        names = sorted(load_datasets())
        close = difflib.get_close_matches(text.lower(), [*names, *_dataset_lookup()], n=3, cutoff=0.5)
        close = list(dict.fromkeys(_dataset_lookup().get(_norm(c), c) for c in close))
        hint = ("did you mean " + " or ".join(repr(c) for c in close) + "?") if close else \
            "known: " + ", ".join(names)
        raise ConfigError(f"unknown dataset {text!r}; {hint} (or pass a sample count, e.g. --dataset 50000)")
    row = load_datasets()[key]
    if "samples" in row:
        n = int(row["samples"])
        return key, n, f"dataset {key}: {n:,} training samples per epoch ({row['source']})"
    tokens = int(row["tokens"])
    if not seq_len:
        raise ConfigError(f"dataset {key} is measured in tokens ({tokens:,}); pass --seq-len to turn it into samples")
    n = math.ceil(tokens / seq_len)
    return key, n, (f"dataset {key}: {tokens:,} training tokens / {per_sample or f'seq-len {seq_len}'} = {n:,} "
                    f"samples per epoch ({row['source']})")


def input_modality(graph: CostGraph) -> str | None:
    """'image' when a floating-point input is a batch of images (4 dims), 'text' when every input is an integer
    tensor of at most 2 dims (token ids), else None (audio features, tabular rows, mixed inputs: not judged)."""
    specs = graph.inputs
    if not specs:
        return None
    if any(len(s.shape) == 4 and s.dtype.startswith(("float", "bfloat")) for s in specs):
        return "image"
    if all(s.dtype.startswith(("int", "uint")) and len(s.shape) <= 2 for s in specs):
        return "text"
    return None


def _modality_mismatch(graph: CostGraph, name: str | None) -> list[str]:
    """The assumption line flagging an image preset on a token-id model or a text preset on an image model (the
    epoch's sample count is then another dataset's: review found --dataset imagenet-1k on GPT-2 taken silently)."""
    want = load_datasets().get(name, {}).get("modality") if name else None
    have = input_modality(graph)
    if not want or not have or want == have or want not in ("image", "text"):
        return []
    takes = "image batches" if have == "image" else "only integer token ids"
    article = "an" if want == "image" else "a"
    return [f"check --dataset: {name} is {article} {want} dataset, but the model takes {takes} "
            f"({_shape_text(graph.inputs)}); its sample count sets the steps all the same"]


def _shape_text(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(f"{s.name}={s.dtype}[{','.join(map(str, s.shape))}]" for s in specs) or "none"


def infer_dataset(graph: CostGraph) -> tuple[str, str]:
    """Dataset preset from the input signature by the stated rule; ConfigError asking for --dataset otherwise."""
    image = next((s for s in graph.inputs if len(s.shape) == 4), None)
    out = next((s for s in graph.outputs if len(s.shape) >= 2), None)
    name = None
    if image is not None and out is not None:
        _, c, h, w = image.shape
        if c not in (1, 3) and w in (1, 3):  # channels-last (N,H,W,C), e.g. Keras/TF exports
            h, w, c = c, h, w
        classes = out.shape[-1]
        if c == 3 and h >= 160 and w >= 160 and classes == 1000:
            name = "imagenet-1k"
        elif c == 3 and h == 32 and w == 32 and classes in (10, 100):
            name = f"cifar{classes}"
        elif c == 1 and h == 28 and w == 28 and classes == 10:
            name = "mnist"
    if name is None:
        raise ConfigError(
            f"cannot infer the dataset from inputs {_shape_text(graph.inputs)} and outputs "
            f"{_shape_text(graph.outputs)}; pass --dataset NAME|N (e.g. imagenet-1k, cifar10, 50000), "
            f"--steps N or --tokens N")
    return name, (f"dataset {name} inferred from the input signature ({_shape_text(graph.inputs)} -> "
                  f"{out.shape[-1]} outputs; {DATASET_RULE}); pass --dataset to override")


# ---- the plan ----------------------------------------------------------------------------------------------

def _validated(values: dict[str, Any]) -> dict[str, Any]:
    """Plan options checked by the one option table (errors name the command-line flag)."""
    return options.validate(values, label=lambda o: o.flag, error=ConfigError)


def build_plan(graph: CostGraph, *, gpu: GpuSpec, strict_precision: bool = True, **values: Any) -> Plan:
    """A validated :class:`Plan` for ``graph`` on ``gpu`` with every default stated in ``assumptions``.

    ``values`` are plan options of :data:`wattlint.options.OPTIONS` (``epochs``, ``steps``, ``tokens``,
    ``dataset``, ``batch_size``, ``precision``, ``gpus``, ``pue``, ``region``, ...); None means "not given".
    A precision the GPU has no hardware path for (hardware.precision_support) is a ConfigError when
    ``strict_precision`` (the user asked for it on this GPU); otherwise (a --compare candidate) it is costed as the
    closest precision the GPU has, stated as an assumption (hardware.precision_fallback)."""
    unknown = [k for k in values if options.canonical(k) not in options.PLAN_OPTIONS]
    if unknown:
        raise ConfigError(f"not a plan option: {', '.join(sorted(unknown))}")
    v = _validated(values)
    conflict = options.work_conflict(v, lambda n: options.OPTIONS[n].flag)
    if conflict:
        raise ConfigError(conflict)
    try:
        v["recompute"] = options.recompute_mode(v, lambda n: options.OPTIONS[n].flag)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    v["activation_checkpointing"] = v["recompute"] == "full"
    notes: list[str] = []
    plan: dict[str, Any] = {}
    _parallel(graph, gpu, v, plan, notes)
    _work(graph, v, plan, notes)
    _precision(graph, gpu, v, plan, notes, strict_precision)
    _moe_overlap(v, plan, notes)
    _site(v, plan, notes, gpu)
    return Plan(**plan, assumptions=tuple(notes))


def _parallel(graph: CostGraph, gpu: GpuSpec, v: dict, plan: dict, notes: list[str]) -> None:
    """Batch, micro-batch, GPUs, nodes, the parallel layout (wattlint.parallel), sharding, network, goodput."""
    gpus = v.get("gpus", 1)
    grad_accum = v.get("grad_accum", 1)
    micro_traced = max(1, int(graph.micro_batch or 1))
    layout_given = any(v.get(k) is not None for k in parallel.LAYOUT_OPTIONS)
    batch = v.get("batch_size")
    if layout_given:
        from_trace = batch is None and v.get("micro_batch_size") is None
        if from_trace:
            v = {**v, "micro_batch_size": micro_traced}
        # gpus as given (absent: the default 1, which resolve() takes and its errors say is the default)
        layout, lines = parallel.resolve(v, micro_from_trace=from_trace)
        grad_accum = layout.grad_accum
        if batch is None:
            batch = layout.micro_batch * layout.dp * grad_accum
            notes.append(f"global batch {batch} = micro-batch {layout.micro_batch} x data-parallel {layout.dp} x "
                         f"grad-accum {grad_accum} (no --batch-size)")
        notes.extend(lines)
        dp = layout.dp
    else:
        layout = parallel.Layout(gpus=gpus)
        dp = gpus
        if v.get("sequence_parallel"):  # resolve() states this when a layout option is given; here it is alone
            notes.append("--sequence-parallel has no effect without --tensor-parallel > 1")
        if batch is None:
            batch = micro_traced * gpus * grad_accum
            notes.append(f"global batch {batch} = traced micro-batch {micro_traced} x {gpus} GPU(s) x grad-accum "
                         f"{grad_accum} (no --batch-size)")
        if batch < gpus * grad_accum:
            raise ConfigError(f"--batch-size {batch} is smaller than gpus x grad-accum = {gpus * grad_accum}: each "
                              f"GPU needs at least one sample per micro-step")
    micro = batch // (dp * grad_accum)
    uneven = micro * dp * grad_accum != batch
    if uneven and v.get("uneven_batch"):
        notes.append(f"global batch {batch} scattered unevenly over {dp * grad_accum} replica micro-steps "
                     f"(nn.DataParallel-style): each costed at the largest share, {micro + 1} samples (uneven batch)")
    elif uneven:
        # every replica runs the same micro-batch per micro-step: costing batch // (dp x ga) of them would drop the
        # remainder while the step count still covers the whole batch (an epoch at batch 3 on 2 GPUs came out a
        # third cheaper than at batch 2), and rounding up would cost samples the user did not ask for
        what = f"data-parallel {dp} x grad-accum {grad_accum}" if layout.model_parallel else \
            f"{gpus} GPU(s) x grad-accum {grad_accum}"
        raise ConfigError(f"--batch-size {batch} is not divisible by {what} = {dp * grad_accum}: every replica "
                          f"runs the same micro-batch; give a multiple of {dp * grad_accum}")
    per_node = v.get("gpus_per_node")
    if per_node is None:
        domain = gpu.nvlink_domain or options.DEFAULT_GPUS_PER_NODE
        per_node = min(gpus, domain)
        if gpus > 1:
            why = (f"{gpu.name}: one NVLink domain of {domain} GPUs" if gpu.nvlink_domain else "")
            notes.append(f"gpus-per-node {per_node} (default min(gpus, {domain})" + (f"; {why})" if why else ")"))
    elif per_node > gpus:
        notes.append(f"--gpus-per-node {per_node} > --gpus {gpus}: one node of {gpus} GPUs")
        per_node = gpus
    if layout.tp > 1 and (per_node % layout.tp if layout.tp < per_node else layout.tp % per_node):
        # Megatron places a TP group on adjacent ranks: then some group straddles two nodes, and the step waits for
        # its network collectives while the report would price NVLink
        fit = ("divides" if layout.tp < per_node else "is a multiple of")
        raise ConfigError(f"--tensor-parallel {layout.tp} does not fit nodes of {per_node} GPUs (--gpus-per-node "
                          f"{'' if v.get('gpus_per_node') is not None else 'default '}{per_node}): a tensor-parallel "
                          f"group of adjacent ranks would straddle two nodes; give a degree that {fit} {per_node}")
    if layout.tp > per_node:
        notes.append(f"--tensor-parallel {layout.tp} spans more than one node of {per_node} GPUs: its collectives "
                     f"run over the network")
    sharding = v.get("sharding", "none")
    if sharding in ("zero2", "zero3") and layout.pp > 1:
        # DeepSpeed's pipeline engine asserts "ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism"
        # (deepspeed/runtime/pipe/engine.py); sharded gradients would have to be reduced per micro-batch per stage
        raise ConfigError(f"--sharding {sharding} with --pipeline-parallel {layout.pp}: DeepSpeed's pipeline engine "
                          f"runs ZeRO stage 0 or 1 only; use --sharding zero1 (or fsdp, as torchtitan runs FSDP2 "
                          f"with pipeline stages)")
    if dp > 1:
        nodes = math.ceil(gpus / per_node)
        where = (f"{nodes} node(s) x {per_node}" if not gpus % per_node else
                 f"{nodes} nodes: {nodes - 1} x {per_node} + {gpus % per_node}")
        notes.append(f"data parallel over {dp} replicas ({gpus} GPUs, {where}), sharding {sharding}"
                     if layout.model_parallel else f"data parallel over {gpus} GPUs ({where}), sharding {sharding}")
        if gpus % per_node:
            notes.append(f"{gpus} GPUs do not fill whole nodes of {per_node}: the last node is partial")
    elif sharding != "none":
        notes.append(f"sharding {sharding} has no effect " + ("on a single GPU" if gpus == 1 else
                                                                 "without data parallelism"))
    internode = v.get("internode_gbps")
    if internode is None:
        internode, why = system.default_internode_gbps(gpu, per_node)
        if gpus > per_node:
            notes.append(f"inter-node bandwidth {internode:g} Gbit/s per node (default: {why}; --internode-gbps to "
                         f"change)")
    elif gpus <= per_node:
        notes.append(f"--internode-gbps {internode:g} has no effect: the {gpus} GPU(s) are in one node (no network "
                     f"between nodes)")
    if v.get("launch_overhead") is not None and not layout.model_parallel:
        notes.append(f"--launch-overhead {v['launch_overhead']:g} s has no effect: it prices each tensor / pipeline / "
                     f"context / expert-parallel communication call, and this plan has none (data-parallel "
                     f"collectives keep NCCL's latency)")
    if v.get("recompute") == "full":
        notes.append("recompute full (--recompute full / --activation-checkpointing): each block's forward "
                     "recomputed in backward (more time, less memory)")
    elif v.get("recompute") == "selective":
        notes.append("recompute selective (Korthikanti et al. 2022; Megatron --recompute-granularity selective): "
                     "the attention core (QK^T, softmax, dropout, attention over V) re-run in backward; its "
                     "FLOPs count in HFU, not in MFU")
    if v.get("utilization") is not None:
        notes.append(f"utilization override {v['utilization']:g}: predicted compute efficiency replaced (what-if)")
    goodput = v.get("goodput")
    if goodput is None:
        goodput, line = system.default_goodput(gpus)
        if line:
            notes.append(line)
    else:
        notes.append(f"goodput {goodput:g} (--goodput): wall time = productive step time / {goodput:g}")
    plan.update(batch_size=batch, grad_accum=grad_accum, gpus=gpus, gpus_per_node=per_node, sharding=sharding,
                host_node_gpus=v.get("gpus_per_node"),
                internode_gbps=float(internode), utilization=v.get("utilization"),
                activation_checkpointing=bool(v.get("activation_checkpointing", False)),
                recompute=v.get("recompute", "none"),
                tensor_parallel=layout.tp, pipeline_parallel=layout.pp, expert_parallel=layout.ep,
                virtual_pipeline_stages=layout.vpp, context_parallel=layout.cp,
                sequence_parallel=layout.sequence_parallel, launch_overhead_s=v.get("launch_overhead"),
                moe_token_dispatcher_type=v.get("moe_token_dispatcher_type") or "alltoall",
                overlap_moe_expert_parallel_comm=bool(v.get("overlap_moe_expert_parallel_comm", False)),
                host_op_s=v.get("host_op_time"), goodput=float(goodput), uneven_batch=uneven,
                loader_sample_time_s=v.get("loader_sample_time"))


def _moe_overlap(v: dict, plan: dict, notes: list[str]) -> None:
    """The MoE all-to-all options against the resolved layout, recompute and precision. Without expert parallelism
    both have no effect (stated, and the plan keeps the defaults, as --sequence-parallel without tensor parallelism);
    --overlap-moe-expert-parallel-comm is refused where Megatron-Core refuses it. TransformerConfig.__post_init__
    (megatron/core/transformer/transformer_config.py, NVIDIA/Megatron-LM) asserts, when overlap_moe_expert_parallel_comm
    is set: expert_model_parallel_size > 1; recompute_granularity != 'full' (and no recompute_method /
    recompute_num_layers, which only full recompute uses); bf16 or fp16 ('only supported with bf16 or fp16 model':
    FP8 training runs on a bf16 model, --bf16 --fp8-format, so fp8 passes); and, when
    pipeline_model_parallel_size > 1, virtual_pipeline_model_parallel_size set ('If enabling EP A2A overlap,
    virtual_pipeline_model_parallel_size must be specified when pipeline_model_parallel_size > 1')."""
    overlap = bool(plan.get("overlap_moe_expert_parallel_comm"))
    given = v.get("moe_token_dispatcher_type")
    if plan.get("expert_parallel", 1) <= 1:
        flags = ([f"--moe-token-dispatcher-type {given}"] if given is not None else []) + \
            (["--overlap-moe-expert-parallel-comm"] if overlap else [])
        if flags:
            notes.append(f"{' and '.join(flags)} {'have' if len(flags) > 1 else 'has'} no effect without "
                         f"--expert-parallel > 1 (no expert all-to-all)")
        plan.update(moe_token_dispatcher_type="alltoall", overlap_moe_expert_parallel_comm=False)
        return
    if not overlap:
        return
    flag = "--overlap-moe-expert-parallel-comm"
    if plan.get("recompute") == "full":
        raise ConfigError(f"{flag} with --recompute full (--activation-checkpointing): Megatron-Core refuses full "
                          f"recompute under the all-to-all overlap; use --recompute selective or none")
    if plan.get("precision") not in ("bf16", "fp16", "fp8"):
        raise ConfigError(f"{flag} needs --precision bf16 or fp16 (or fp8 on a bf16 model), as Megatron-Core "
                          f"requires; got {plan.get('precision')}")
    if plan.get("pipeline_parallel", 1) > 1 and plan.get("virtual_pipeline_stages", 1) <= 1:
        raise ConfigError(f"{flag} with --pipeline-parallel {plan['pipeline_parallel']} needs "
                          f"--virtual-pipeline-stages > 1 (Megatron-Core runs the overlap only in the interleaved "
                          f"schedule when pipeline-parallel > 1)")


def _inputs_without_sequence(graph: CostGraph, seq_len) -> str:
    """The traced inputs (``name=dtype[shape]``, comma-separated) when ``seq_len`` was given to a graph without a
    sequence dimension (a CNN), else ''."""
    if not seq_len or graph.seq_len or not graph.inputs:
        return ""
    return ", ".join(f"{t.name}={t.dtype}{list(t.shape)}" for t in graph.inputs)


def seq_len_unused_note(graph: CostGraph, seq_len) -> str | None:
    """The line saying a --seq-len was not used (the graph has no sequence dimension), else None."""
    no_seq = _inputs_without_sequence(graph, seq_len)
    return f"--seq-len {seq_len}: the model's inputs have no sequence dimension ({no_seq}); not used" if no_seq else None


def _sequences_per_sample(graph: CostGraph, seq_len) -> tuple[int, int, TensorSpec] | None:
    """(sequences per sample, one sequence's length, the input) of a torch graph whose token input is [batch,
    choices, ..., seq] (a multiple-choice model: BertForMultipleChoice), else None.

    The torch and ONNX frontends' ``graph.seq_len`` is the tokens per sample: the product of the non-batch dims of
    the first integer input of 2 or more dims (wattlint.frontends.torch.trace_with_inputs,
    wattlint.frontends.onnx: choices x seq for [batch, choices, seq]), while --seq-len is one sequence's length (the
    last dim it rebinds). ``seq_len`` (--seq-len, or None): the last dim must be it."""
    if graph.model.format not in ("torch", "hf", "onnx") or not graph.seq_len:
        return None
    # the input the frontend counted: its first non-floating-point input of 2 or more dims (ONNX: int64 / int32)
    if graph.model.format == "onnx":
        tok = next((t for t in graph.inputs if t.dtype in ("int64", "int32") and len(t.shape) >= 2), None)
    else:
        tok = next((t for t in graph.inputs if not t.dtype.startswith(("float", "bfloat")) and len(t.shape) >= 2),
                   None)
    if tok is None or len(tok.shape) < 3:
        return None
    seq = int(tok.shape[-1])
    per_sample = math.prod(int(d) for d in tok.shape[1:])
    if seq <= 0 or per_sample != graph.seq_len or per_sample == seq or (seq_len and seq != seq_len):
        return None
    return per_sample // seq, seq, tok


def _work(graph: CostGraph, v: dict, plan: dict, notes: list[str]) -> None:
    """Steps from tokens, steps or epochs x dataset."""
    batch = plan["batch_size"]
    epochs, steps, tokens, dataset = v.get("epochs"), v.get("steps"), v.get("tokens"), v.get("dataset")
    if dataset is None and v.get("dataset_size") is not None:
        dataset = str(v["dataset_size"])
    seq = v.get("seq_len") or (graph.seq_len or None)
    no_seq = _inputs_without_sequence(graph, v.get("seq_len"))
    if no_seq:  # e.g. a CNN: the flag has nothing to apply to
        notes.append(seq_len_unused_note(graph, v["seq_len"]))
        seq = None
    # a sample of [batch, choices, seq] inputs holds choices x seq tokens (--seq-len: one sequence's length; it gave
    # 4x the steps of a 4-choice model)
    choices = None if no_seq else _sequences_per_sample(graph, v.get("seq_len"))
    per_sample = sample_text = why = None  # how the notes write the tokens of one sample, and where they come from
    if choices:
        count, one, tok = choices
        seq = int(graph.seq_len)
        per_sample = f"choices {count:,} x seq-len {one:,}"
        sample_text = f"({per_sample})"
        why = (f" ({tok.name} {list(tok.shape)}: [batch, choices, seq], tokens per sample = {count:,} x {one:,} = "
               f"{seq:,})")
    name = size = None
    if tokens is not None:
        if no_seq:
            raise ConfigError(f"--tokens: the model's inputs have no sequence dimension ({no_seq}), so tokens do not "
                              "give its steps; use --steps or --epochs")
        if not seq and graph.inputs and not any(t.dtype.startswith(("int", "uint")) for t in graph.inputs):
            # no token input at all (a ViT's pixels): a --seq-len would not help (review: it was asked for first)
            listed = ", ".join(f"{t.name}={t.dtype}{list(t.shape)}" for t in graph.inputs)
            raise ConfigError(f"--tokens: the model's inputs have no sequence dimension ({listed}), so tokens do not "
                              "give its steps; use --steps or --epochs")
        if not seq:
            raise ConfigError("--tokens needs --seq-len (the model's sequence length is unknown)")
        steps = math.ceil(tokens / (batch * seq))
        notes.append(f"steps {steps:,} = ceil(tokens {tokens:,.0f} / (batch {batch} x {per_sample or f'seq-len {seq}'}))"
                     + (why or ""))
        if dataset is not None:
            notes.append(f"--dataset {dataset} ignored: --tokens sets the amount of work")
    elif steps is not None:
        notes.append(f"steps {steps:,} (--steps); no epochs/dataset needed")
        if dataset is not None:
            name, size, line = resolve_dataset(dataset, seq, per_sample=sample_text)
            epochs = steps * batch / size
            notes.append(line)
            notes.extend(_modality_mismatch(graph, name))
    else:
        if epochs is None:
            epochs = 1
            notes.append("epochs 1 (no --epochs, --steps or --tokens given)")
        if dataset is None:
            name, line = infer_dataset(graph)
            notes.append(line)
            _, size, line = resolve_dataset(name, seq, per_sample=sample_text)
        else:
            name, size, line = resolve_dataset(dataset, seq, per_sample=sample_text)
            notes.extend(_modality_mismatch(graph, name))
        notes.append(line)
        per_epoch = math.ceil(size / batch)
        steps = math.ceil(per_epoch * epochs)
        notes.append(f"steps {steps:,} = ceil({size:,} samples / batch {batch}) = {per_epoch:,} per epoch x "
                     f"{epochs:g} epoch{'' if epochs == 1 else 's'} (last partial batch kept, drop_last=False)")
    plan.update(steps=steps, epochs=epochs, dataset=name, dataset_size=size, tokens=tokens, seq_len=seq)


# fp8 is traced as bf16 and chosen at estimate time (wattlint.fp8): either plan applies to a graph traced at either
FP8_FROM_BF16 = {"bf16", "fp8"}


def _graph_precision(graph: CostGraph, asked: str | None, notes: list[str]) -> str | None:
    """The precision of a graph traced / exported in half precision, which the plan must take (None for an fp32
    graph: the plan's precision applies). States it, and a different ``asked`` precision as not applied."""
    # a half-precision graph's ops already hold half dtypes: pricing casts fp32 graphs down, never half ones up
    from .energy.pricing import HALF_PRECISIONS

    traced = graph.precision if graph.precision in HALF_PRECISIONS else None
    if traced is None or asked == traced or {traced, asked} <= FP8_FROM_BF16:
        return None
    if asked is None:
        notes.append(f"precision {traced}: as the graph was traced / exported " + (
            "(in bf16; the GEMMs that run in FP8 are chosen at estimate time)" if traced == "fp8" else
            f"(its matmuls and convolutions hold {traced} tensors)"))
    else:
        notes.append(f"--precision {asked} not applied: the graph was traced / exported in {traced} and its ops are "
                     f"costed in the dtypes they hold (trace or export it in {asked} to cost {asked})")
    return traced


def _default_precision_text(graph: CostGraph) -> str:
    """PRECISION_DEFAULT_TEXT, or for a model whose traced matmuls run in half precision without autocast (weights
    held in bf16 / fp16: a bf16 base under fp32 LoRA adapters) what PyTorch's defaults do with it (review s54: such
    a model was said to run 'fp32 weights and activations, matmuls in FP32')."""
    from .aggregate import matmul_flops_by_dtype

    mix = matmul_flops_by_dtype(graph)
    total = sum(mix.values())
    if total <= 0 or set(mix) <= {"float32"}:
        return PRECISION_DEFAULT_TEXT
    parts = ", ".join(f"{100.0 * f / total:.1f} % {dt}" for dt, f in sorted(mix.items(), key=lambda kv: -kv[1]))
    return (f"precision 'default' = PyTorch defaults, no autocast: each op runs in its operands' dtype; this model "
            f"holds half-precision weights, so its traced matmul / convolution / attention FLOPs run {parts} (fp32 "
            f"ones in FP32, torch.backends.cuda.matmul.allow_tf32=False), each priced and MFU's peak taken in that "
            f"dtype; pass --precision bf16/fp16 for AMP")


def _precision(graph: CostGraph, gpu: GpuSpec, v: dict, plan: dict, notes: list[str], strict: bool) -> None:
    precision = v.get("precision")
    version = framework.parse(graph.extra.get("torch_version"))
    from_graph = _graph_precision(graph, precision, notes)
    if from_graph == "fp8" and not precision_support(gpu, "fp8")[0] and precision_support(gpu, "bf16")[0]:
        # traced as bf16 (the GEMMs that run in FP8 are chosen at estimate time): a GPU without FP8 runs it in bf16
        notes.append(f"the graph was traced for fp8 (in bf16, FP8 GEMMs chosen at estimate time); {gpu.key} has no "
                     f"fp8: costed in bf16")
        from_graph = "bf16"
    if from_graph is not None:
        precision = from_graph
    elif precision is None and framework.tf32_matmuls_by_default(version) and precision_support(gpu, "tf32")[0]:
        precision = "tf32"
        notes.append(f"precision: torch {framework.fmt(version)} ran matmuls and convolutions in TF32 by default "
                     "on this GPU (torch.backends.cuda.matmul.allow_tf32 defaulted to True from 1.7 to 1.11)")
    elif precision is None:
        precision = options.DEFAULT_PRECISION
        notes.append(_default_precision_text(graph))
    if gpu.vendor == "NVIDIA":
        from .energy.prior import HOPPER_GEMM_2023, chip_group

        line = framework.predates_gpu(version, chip_group(gpu))
        if line:
            notes.append(line)
        line = framework.hopper_gemm_note(version, chip_group(gpu), HOPPER_GEMM_2023)
        if (line and precision not in ("default", "fp32") and v.get("utilization") is None
                and any(r.dim("gemm_2023", 0) for r in graph.records)):  # --utilization replaces every rate
            notes.append(line)
    ok, why = precision_support(gpu, precision)
    if not ok:
        if from_graph is not None:  # not the user's --precision: the graph's own dtypes
            why = (f"the graph is {from_graph} (traced / exported in it): "
                   f"{why.split(': ', 1)[1].replace('; use ', '; trace / export it in ')}")
        if strict:
            raise ConfigError(why)
        asked, (precision, line) = precision, precision_fallback(gpu, precision)
        notes.append(line.replace(f"--precision {asked} ", f"the graph's {asked} ") if from_graph else line)
    elif precision not in ("default", "fp32") and precision not in gpu.peak_tflops:
        notes.append(f"{gpu.key} has no {precision} tensor-core rate in the database; costed at its "
                     f"{_fallback_dtype(gpu, precision)} rate")
    optimizer = v.get("optimizer")
    if optimizer is None:
        optimizer = graph.optimizer or options.DEFAULT_OPTIMIZER
        notes.append(f"optimizer {optimizer} (as traced; pass --optimizer to change)")
    stack = v.get("training_stack", "pytorch")
    if stack == "megatron":
        if precision not in ("bf16", "fp16", "fp8"):
            asked = v.get("precision")
            if asked in ("bf16", "fp16", "fp8") and asked != precision:  # a --compare candidate's fallback
                raise ConfigError(f"--compare {gpu.key}: no half-precision rate for --training-stack megatron "
                                  f"(--precision {asked} would be costed as {precision} on it); drop it from "
                                  f"--compare or use --training-stack pytorch")
            raise ConfigError(f"--training-stack megatron needs --precision bf16, fp16 or fp8 (half-precision "
                              f"parameters with an fp32 master copy); got {precision}")
        hp = "fp16" if precision == "fp16" else "bf16"
        notes.append(f"training stack megatron (--training-stack): the traced step rewritten as Megatron-LM / "
                     f"DeepSpeed-style training runs it: {hp} parameters with an fp32 master copy and fp32 "
                     f"{'gradients' if hp == 'bf16' else 'optimizer state'}, no autocast casts, {hp} element-wise "
                     f"work, fused LayerNorm / RMSNorm, gated activation, scale-mask-softmax, bias-dropout-add and "
                     f"multi-tensor optimizer "
                     f"(docs/PARALLEL.md, 'Training stack')")
    plan.update(precision=precision, optimizer=optimizer, training_stack=stack, loss_impl=v.get("loss_impl"),
                ddp_bucket_view=bool(v.get("ddp_bucket_view", False)))


def on_gpu(plan: Plan, gpu: GpuSpec) -> Plan | None:
    """``plan`` as it resolves on another GPU: the node size and the network between nodes that were defaults for
    the planned GPU (its NVLink domain, its class's NICs; the plan's notes say which were) are that GPU's own, those
    the user gave are kept. None when the plan's tensor-parallel groups would straddle that GPU's nodes."""
    import dataclasses

    notes = plan.assumptions
    per_node = plan.gpus_per_node
    if any(a.startswith(f"gpus-per-node {per_node} (default") for a in notes) or plan.gpus <= 1:
        per_node = min(plan.gpus, gpu.nvlink_domain or options.DEFAULT_GPUS_PER_NODE)
    tp = plan.tensor_parallel
    if tp > 1 and (per_node % tp if tp < per_node else tp % per_node):
        return None
    internode = plan.internode_gbps
    if internode is None or plan.gpus <= plan.gpus_per_node or any(
            a.startswith("inter-node bandwidth") and "(default:" in a for a in notes):
        internode = system.default_internode_gbps(gpu, per_node)[0]
    pue = plan.pue
    if any(a.startswith(DEFAULT_PUE_PREFIXES) for a in notes):  # a default PUE is that GPU's machine's own (review:
        # WL203's 'in its own platform class' figure for an L20 kept a desktop plan's 1.0, unlike an L20 estimate)
        pue, line = default_pue(gpu, plan.region, plan.gpus, per_node)
        notes = tuple(line if a.startswith(DEFAULT_PUE_PREFIXES) else a for a in notes)
    return dataclasses.replace(plan, gpus_per_node=per_node, internode_gbps=float(internode), pue=pue,
                               assumptions=notes)


def gpu_hour_price_for(given, gpu: GpuSpec) -> tuple[float | None, str]:
    """The GPU-hour price of ``gpu`` from --gpu-hour-price (one number, or (GPU name, price) pairs: options.
    gpu_hour_price) and what it is the price of; ConfigError when pairs name no price for this GPU, or an unknown GPU."""
    if given is None or isinstance(given, (int, float)):
        return given, ""
    from .hardware import resolve_gpu

    keys = {}
    for name, price in given:
        try:
            key = gpu.key if name == gpu.key else resolve_gpu(name)[0].key
        except ConfigError as e:
            raise ConfigError(f"--gpu-hour-price: {e}") from None
        if key in keys and keys[key][1] != price:
            raise ConfigError(f"--gpu-hour-price: {keys[key][0]} and {name} are both {key}, at different prices")
        keys[key] = (name, price)
    if gpu.key not in keys:
        raise ConfigError(f"--gpu-hour-price names no price for {gpu.key} (given for {', '.join(sorted(keys))}): "
                          f"add {gpu.key}=USD, or give one number for every GPU")
    return keys[gpu.key][1], f" for {gpu.key}"


DEFAULT_PUE_PREFIXES = (f"PUE {options.DEFAULT_PUE:g} (default", "PUE 1 (default")  # the notes default_pue writes


def default_pue(gpu: GpuSpec, region: str | None, gpus: int, gpus_per_node: int) -> tuple[float, str]:
    """The PUE of a plan that gives none and whose region lists none, and its assumption line: 1.0 for a desktop /
    workstation card in one machine outside a cloud region (its host is priced as a desk-side tower, energy.host: a
    data centre's overhead on top priced one machine in two places, +20 % on an RTX 3090 plan), else the data-centre
    default (a cloud region, several nodes: review, an RTX A6000 in coreweave:lga1 and 64 RTX 4090s were priced as
    desk-side)."""
    cloud = bool(region) and ":" in str(region)
    if platform_class(gpu) == "desktop" and not cloud and gpus <= max(1, gpus_per_node):
        return 1.0, (f"PUE 1 (default for a desk-side machine: the {gpu.name} is a desktop / workstation card in one "
                     f"machine, its host priced as a desktop tower; give --pue, e.g. {options.DEFAULT_PUE:g}, for one "
                     f"in a data centre)")
    return options.DEFAULT_PUE, DEFAULT_PUE_SOURCE


def _site(v: dict, plan: dict, notes: list[str], gpu: GpuSpec) -> None:
    """PUE, grid carbon intensity, electricity and GPU-hour prices."""
    region = v.get("region")
    pue = v.get("pue")
    if pue is not None:
        notes.append(f"PUE {pue:g} (given: facility energy = (GPU + host) x {pue:g})")
    else:
        cloud = carbon.cloud_pue(region) if region else None
        if cloud:
            pue = cloud
            notes.append(f"PUE {pue:g} ({carbon.cloud_pue_source(region)})")
        else:
            pue, line = default_pue(gpu, region, plan["gpus"], plan["gpus_per_node"])
            notes.append(line)
    region_key = carbon.normalize_region(region) if region else None  # validates even when overridden
    intensity = v.get("carbon_intensity")
    if intensity is not None:
        notes.append(f"carbon intensity {intensity:g} gCO2e/kWh (--carbon-intensity"
                     + (f", overrides region {region})" if region else ")") + carbon.RANGE_CLAUSE)
    else:
        intensity, line = carbon.grid_intensity(region)
        notes.append(line)
    hour_price, of = gpu_hour_price_for(v.get("gpu_hour_price"), gpu)
    price = v.get("price_per_kwh")
    if hour_price is not None:
        notes.append(f"GPU-hour price ${hour_price:g}{of} (rental" + ("; electricity charged on top)"
                                                                 if price is not None else "; includes electricity)"))
    if price is not None:
        notes.append(f"electricity price ${price:g}/kWh (given)" + (
            ", charged on top of the GPU-hour price" if hour_price is not None else ""))
    elif hour_price is not None:
        # the rental price already pays for the electricity: charging the default tariff on top double-counts it
        price = 0.0
        notes.append("electricity not charged separately: included in the GPU-hour price (pass --price to add it)")
    else:
        price, line = carbon.price_per_kwh(region_key)
        notes.append(line)
    plan.update(pue=pue, region=region_key, carbon_intensity_g_per_kwh=float(intensity), price_per_kwh=price,
                gpu_hour_price=hour_price, carbon_intensity_given=v.get("carbon_intensity") is not None)


def _fallback_dtype(gpu: GpuSpec, dtype: str) -> str:
    from .types import _PEAK_FALLBACK

    for k in _PEAK_FALLBACK.get(dtype, (dtype, "fp32")):
        if gpu.peak_tflops.get(k):
            return k
    return "fp32"
