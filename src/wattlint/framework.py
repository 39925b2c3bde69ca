"""What the PyTorch version of a run changes in the kernels it launches (``--torch-version``).

Tracing uses the torch installed here; the run being estimated may use another version, whose defaults and kernel
dispatch differ. Each rule below is a documented default of PyTorch, with the release that changed it:

* optimizers: ``foreach`` (multi-tensor) became the default on CUDA in 2.0 (PyTorch 2.0 release notes, "torch.optim:
  foreach implementations are the default"); before, single-tensor for-loops launched every element-wise op once
  per parameter tensor (``--optimizer-impl for-loop``);
* attention: ``torch.nn.functional.scaled_dot_product_attention`` exists from 2.0; before, attention ran as
  separate batched GEMMs + softmax (``--attention eager``);
* float16 depthwise convolutions go to cuDNN from 1.11 (``use_cudnn_depthwise``, pytorch/pytorch PR #58749, merged
  October 2021); before, PyTorch's own depthwise kernels ran them in every dtype;
* gradients: ``zero_grad()`` (``torch.optim.Optimizer`` and ``nn.Module``) defaults to ``set_to_none=True`` from
  2.0 (PyTorch 2.0 release notes, "set_to_none=True by default for zero_grad"); before, ``set_to_none=False``: the
  gradients stay allocated, every step fills each with zeros (one kernel per gradient tensor) and backward
  accumulates into them (torch's AccumulateGrad: one in-place add per parameter tensor instead of taking the new
  gradient over). PyTorch / Hugging Face sources trace that (``trace(grads_to_none=False)``); ONNX graphs do not;
* TF32 matmuls: ``torch.backends.cuda.matmul.allow_tf32`` defaulted to True from 1.7 to 1.11 and to False from 1.12
  (cuDNN convolutions kept TF32 throughout), so ``--precision default`` on an Ampere-or-newer GPU ran matmuls in
  TF32 on those versions;
* flash attention generation: SDPA's flash kernel is FlashAttention-2 from 2.2 (PyTorch 2.2 release notes:
  "FlashAttention-2 ... around 2x speedups compared to previous versions"); before, fused attention ran FlashAttention-1-generation
  kernels (SDPA in 2.0 / 2.1, and the ``flash-attn`` 1.x package that 1.x-era stacks such as llm-foundry v0.2 used):
  attention records are tagged ``fa1`` (wattlint.energy.prior prices them at FlashAttention-1 speed).

* fused optimizers: ``torch.optim.Adam(fused=True)`` exists from 1.13 and ``AdamW(fused=True)`` from 2.0; an
  earlier version with ``--optimizer-impl fused`` is priced as asked (apex's FusedAdam ran on older torch) and the
  assumption line says torch's own optimizer had no such path.

* Hopper GEMMs of the 2023 stack: tensor-core matmuls launched by PyTorch 2.1 or earlier are tagged ``gemm_2023``;
  on a Hopper GPU (GH100: H100, H200, GH200) wattlint.energy.prior prices them at ``HOPPER_GEMM_2023`` of today's
  rate. A **fitted** constant, not a documented default: llm-foundry's 2023 H100 tables (torch 2.1 nightly, CUDA
  12.1) sit ~10 MFU points below what current rates price, on one 8-GPU node as on 512 GPUs, while the A100 rows of
  the same sweep and modern-stack H100 runs (Llama 3 405B, torchtitan 2024) match; pytorch/pytorch#100850 measured
  PyTorch's H100 bf16 GEMMs of that era at 0.73-0.74 of the best single GEMM (cuBLAS 12.0.2). Releases from 2.2 are
  priced at current rates (no public H100 measurement of 2.2-2.3, whose CUDA 12.1 wheels ship the same cuBLAS 12.1).

Not a version rule: which CUDA toolkit PyTorch was compiled with. cuBLAS and cuDNN ship NVIDIA's own Hopper kernels
whatever toolkit PyTorch itself was built with: cuBLAS 11.11 (CUDA 11.8) ran a bf16 2048 x 8192 x 8192 GEMM at 720
TFLOPS on an H100 (pytorch/pytorch#100850).

A version older than the GPU generation's first official build (``MIN_TORCH_BY_CHIP``: Hopper needs 2.0, Blackwell
2.7) is stated as an assumption, not refused: a ``--compare`` across generations must still run.

No version given: the current behaviour (2.x).
"""

from __future__ import annotations

import re

from .types import InputError

_VERSION = re.compile(r"^\s*(\d{1,2})\.(\d{1,3})(?:\.\d+)?(?:[a-z+].*)?\s*$")
FOREACH_DEFAULT = (2, 0)
SDPA = (2, 0)
ZERO_GRAD_SET_TO_NONE = (2, 0)
CUDNN_FP16_DEPTHWISE = (1, 11)
TF32_MATMUL_DEFAULT = ((1, 7), (1, 12))  # [from, until)
FLASH_ATTENTION_2 = (2, 2)  # SDPA's flash kernel became FlashAttention-2
HOPPER_GEMM_CURRENT = (2, 2)  # the first release priced at current Hopper GEMM rates (see the module doc)
# The first release whose torch.optim optimizer takes fused=True: Adam 1.13 (pytorch/pytorch#90752 reports "the 1.13
# Adam(fused=true) implementation"), AdamW 2.0 (its fused kernel, pytorch/pytorch#88015, merged after the 1.13
# branch). SGD / Adadelta: not checked here, so not stated.
FUSED_OPTIMIZER = {"adam": (1, 13), "adamw": (2, 0)}
# The newest release whose defaults are modelled here (the version the test install pins: constraints.txt); a later
# version is priced with these defaults and says so
NEWEST_MODELLED = (2, 13)


# The first PyTorch release whose official CUDA builds run on a GPU generation (the CUDA toolkit that added its
# compute capability: 11.0 sm_80, which sm_86 / sm_89 boards also run (same major version); 11.8 sm_90; 12.8
# sm_100 / sm_120; PyTorch's first wheels built with it: 1.7 cu110, 2.0 cu118, 2.7 cu128).
MIN_TORCH_BY_CHIP: dict[str, tuple[tuple[int, int], str]] = {
    "GA100": ((1, 7), "sm_80, CUDA 11.0"), "GA10x": ((1, 7), "sm_86 runs sm_80 code, CUDA 11.0"),
    "AD10x": ((1, 7), "sm_89 runs sm_80 code, CUDA 11.0"), "GH100": ((2, 0), "sm_90, CUDA 11.8"),
    "GB100": ((2, 7), "sm_100, CUDA 12.8"), "GB20x": ((2, 7), "sm_120, CUDA 12.8"),
}


def predates_gpu(v: tuple[int, int] | None, chip: str) -> str | None:
    """An assumption line when PyTorch ``v`` predates official builds for a GPU of generation ``chip`` (the run
    as described cannot have used that version's stock wheels there); None otherwise."""
    need = MIN_TORCH_BY_CHIP.get(chip)
    if v is None or need is None or v >= need[0]:
        return None
    return (f"--torch-version {fmt(v)}: PyTorch's official CUDA builds reach this GPU ({chip}: {need[1]}) from "
            f"{fmt(need[0])}; the run's kernels are priced as a build that runs on it")


def parse(version: str | None) -> tuple[int, int] | None:
    """``"1.10"``, ``"1.10.0a0+ecc3718"``, ``"2.1"`` -> (major, minor); None -> None; anything else exits 2."""
    if version is None:
        return None
    m = _VERSION.match(str(version))
    if not m:
        raise InputError(f"torch version {version!r}: expected MAJOR.MINOR, e.g. 1.10 or 2.1")
    v = int(m.group(1)), int(m.group(2))
    if v < (1, 0):
        raise InputError(f"torch version {version!r}: versions before 1.0 are not modelled (1.0 or later, e.g. 1.10)")
    return v


def default_optimizer_impl(v: tuple[int, int] | None) -> str:
    return "for-loop" if v is not None and v < FOREACH_DEFAULT else "foreach"


def grads_to_none_by_default(v: tuple[int, int] | None) -> bool:
    """What ``zero_grad()`` does to the gradients on ``v``: True = freed (2.0 on, or no version), False = zeroed."""
    return v is None or v >= ZERO_GRAD_SET_TO_NONE


def default_attention(v: tuple[int, int] | None) -> str:
    return "eager" if v is not None and v < SDPA else "sdpa"


def cudnn_fp16_depthwise(v: tuple[int, int] | None) -> bool:
    return v is None or v >= CUDNN_FP16_DEPTHWISE


def tf32_matmuls_by_default(v: tuple[int, int] | None) -> bool:
    return v is not None and TF32_MATMUL_DEFAULT[0] <= v < TF32_MATMUL_DEFAULT[1]


def flash_attention_1(v: tuple[int, int] | None) -> bool:
    return v is not None and v < FLASH_ATTENTION_2


def gemm_2023(v: tuple[int, int] | None) -> bool:
    """Whether ``v``'s tensor-core matmuls are priced as the 2023 stack's on Hopper (records tagged ``gemm_2023``)."""
    return v is not None and v < HOPPER_GEMM_CURRENT


def hopper_gemm_note(v: tuple[int, int] | None, chip: str, factor: float) -> str | None:
    """The assumption line for a Hopper GPU when ``v`` prices its GEMMs at the 2023 stack's rate; None otherwise."""
    if chip != "GH100" or not gemm_2023(v):
        return None
    return (f"torch {fmt(v)} on Hopper: tensor-core matmuls priced at {factor:g} of today's rate (fitted on "
            "llm-foundry's 2023 H100 SXM BF16 tables, torch 2.1 / CUDA 12.1, and applied to every Hopper board and "
            "to FP8 GEMMs too; from 2.2 on, current rates)")


_OPT_CLASS = {"adam": "Adam", "adamw": "AdamW"}


def fmt(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def notes(v: tuple[int, int] | None, *, optimizer_impl_default: bool, attention_default: bool, onnx: bool = False,
          depthwise: bool = False, fused_attention: bool = False, optimizer: str | None = None,
          optimizer_impl: str | None = None) -> list[str]:
    """The assumption lines a version adds to an analysis (only the rules that changed something)."""
    if v is None:
        return []
    out = []
    first = FUSED_OPTIMIZER.get(optimizer or "")
    if optimizer_impl == "fused" and first and v < first:
        out.append(f"torch {fmt(v)}: torch.optim.{_OPT_CLASS[optimizer]} has no fused=True before {fmt(first)}; "
                   "priced as one fused kernel as asked (an outside implementation such as apex's FusedAdam; "
                   "--optimizer-impl foreach or for-loop for torch's own)")
    if optimizer_impl_default and v < FOREACH_DEFAULT:
        out.append(f"torch {fmt(v)}: single-tensor (for-loop) optimizer, the default before 2.0")
    if v < SDPA and onnx:
        out.append(f"torch {fmt(v)}: ONNX attention patterns are still costed as one fused kernel each (SDPA came "
                   "with 2.0; the ONNX frontend has no eager-attention mode)")
    elif attention_default and v < SDPA:
        out.append(f"torch {fmt(v)}: attention as separate GEMM + softmax kernels (no SDPA before 2.0)")
    if fused_attention and flash_attention_1(v):
        which = ("the flash-attn 1.x package: torch has no SDPA before 2.0" if v < SDPA else
                 "SDPA's flash kernel became FlashAttention-2 in 2.2")
        out.append(f"torch {fmt(v)}: fused attention priced as FlashAttention-1-generation kernels ({which}; "
                   "FlashAttention-2 is ~2x faster, Dao 2023)")
    if onnx and not grads_to_none_by_default(v):
        out.append(f"torch {fmt(v)}: zero_grad(set_to_none=False), the default before 2.0, is not priced for ONNX "
                   "graphs (no per-gradient zero fill, no gradient-accumulating add in backward): the estimate is "
                   "short by those memory-bound kernels and their launches")
    if depthwise and not cudnn_fp16_depthwise(v):
        out.append(f"torch {fmt(v)}: depthwise convolutions run PyTorch's own kernels in every dtype (cuDNN's fp16 "
                   "depthwise path arrived in 1.11)")
    return out


def apply(graph, version: str | None, *, optimizer_impl_default: bool = False, attention_default: bool = False,
          optimizer: str | None = None, optimizer_impl: str | None = None):
    """``graph`` as a run on ``version`` launches it: its depthwise convolution records tagged ``dw_native`` when
    fp16 depthwise convolutions did not go to cuDNN yet, its fused attention records ``fa1`` and its matmul records
    ``gemm_2023`` before 2.2,
    ``extra["torch_version"]`` set, and the assumption lines (``*_default``: the frontend chose the optimizer
    implementation / attention from the version)."""
    import dataclasses

    from .types import OpKind

    v = parse(version)
    if v is None:
        return graph
    records = graph.records
    grouped = any(r.kind is OpKind.CONV and r.dim("b", 1) > 1 for r in records)
    if grouped and not cudnn_fp16_depthwise(v):
        records = tuple(dataclasses.replace(r, dims=r.dims + (("dw_native", 1),))
                        if r.kind is OpKind.CONV and r.dim("b", 1) > 1 and not r.dim("dw_native", 0) else r
                        for r in records)
    fused_attention = any(r.kind is OpKind.ATTENTION for r in records)
    if fused_attention and flash_attention_1(v):
        records = tuple(dataclasses.replace(r, dims=r.dims + (("fa1", 1),))
                        if r.kind is OpKind.ATTENTION and not r.dim("fa1", 0) else r for r in records)
    if gemm_2023(v):
        records = tuple(dataclasses.replace(r, dims=r.dims + (("gemm_2023", 1),))
                        if r.kind is OpKind.MATMUL and not r.dim("gemm_2023", 0) else r for r in records)
    extra = {**dict(graph.extra), "torch_version": fmt(v)}
    lines = notes(v, optimizer_impl_default=optimizer_impl_default, attention_default=attention_default,
                  onnx=graph.model.format == "onnx", depthwise=grouped, fused_attention=fused_attention,
                  optimizer=optimizer, optimizer_impl=optimizer_impl)
    if v > NEWEST_MODELLED:
        lines = [f"--torch-version {fmt(v)} is newer than the releases whose defaults wattlint models (up to "
                 f"{fmt(NEWEST_MODELLED)}): priced with {fmt(NEWEST_MODELLED)}'s defaults", *lines]
    return dataclasses.replace(graph, records=records, extra=extra,
                               assumptions=tuple(graph.assumptions) + tuple(lines))
