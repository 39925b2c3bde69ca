"""NeuSight (ASPLOS'25) per-kernel measurements as wattlint OpRecords on wattlint GpuSpecs.

Shared by benchmarks/fit_public.py (fit) and benchmarks/public_accuracy.py (held-out errors): each kernel row becomes
the OpRecord the torch frontend would record for that op (FLOPs and bytes from wattlint.costs, GEMM dims b/m/n/k),
so the public-fit features are computed by the same code at fit and at prediction time.

Data: ../shared/data/neusight-asplos25 (MIT; see its SOURCE.md / LICENSE). GPU names -> database keys:
benchmarks/public/neusight_gpus.csv. Latencies are in ms in the files, seconds here.
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from wattlint import costs as C
from wattlint.hardware import resolve_gpu
from wattlint.types import GpuSpec, OpKind, OpRecord, Phase

ROOT = Path(__file__).resolve().parents[1]
from shared_data import DATA as SHARED  # noqa: E402 - the public data folder (one home)
DATA = SHARED / "neusight-asplos25"
PUBLIC = ROOT / "benchmarks" / "public"

# elementwise file op name -> (wattlint elementwise name, number of tensor inputs)
ELEMENTWISE = {"add": ("add", 2), "addu": ("add", 1), "mul": ("mul", 2), "mulu": ("mul", 1), "div": ("div", 2),
               "divu": ("div", 1), "pow": ("pow", 2), "powu": ("pow", 1), "relu": ("relu", 1),
               "gelu": ("gelu", 1), "tanh": ("tanh", 1)}
FILE_FAMILY = {"linear": "mm", "bmm": "bmm", "conv": "conv", "softmax": "softmax", "ln": "layernorm",
               **{k: "elementwise" for k in ELEMENTWISE}}


@dataclass(frozen=True)
class Kernel:
    record: OpRecord
    family: str
    op: str  # NeuSight op name (linear, bmm, addu, ...)
    device: str  # NeuSight device string ("Tesla T4")
    latency_s: float
    floor_s: float = 0.0  # the host-dispatch floor of this (file, GPU): 5th percentile latency

    @property
    def gpu_bound(self) -> bool:
        """Measured clearly above the host-dispatch floor: the latency is the GPU's, not the launching CPU's."""
        return self.latency_s >= GPU_BOUND_FACTOR * self.floor_s


# NeuSight times each op in a loop: tiny kernels all read the same ~25-90 us (e.g. every add below ~22 MB on the
# A100 40GB reads 26.5 us), the CPU-side dispatch of one eager op, not GPU time. Kernels measured below
# GPU_BOUND_FACTOR x that floor carry no information on the GPU and are left out of the fit and of the GPU-bound
# error figures (reported beside the all-kernel figures).
GPU_BOUND_FACTOR = 1.5
FLOOR_QUANTILE = 0.05


def gpu_table() -> list[dict]:
    return list(csv.DictReader((PUBLIC / "neusight_gpus.csv").open()))


def _p4_spec() -> GpuSpec:
    d = json.loads((DATA / "device_configs" / "Tesla_P4.json").read_text())
    return GpuSpec(key="tesla-p4-8gb (neusight device_configs)", name=d["Device"], vendor="NVIDIA",
                   arch="Pascal (GP104)",
                   peak_tflops={"fp32": d["SingleFLOPs"] / 1000.0}, memory_gb=float(d["Dev_Mem"]),
                   memory_bw_gbs=float(d["Mem_Bw"]), sm_count=int(d["Num_Sm"]), boost_mhz=float(d["Freq"]),
                   tdp_w=75.0, idle_w=10.0, tensor_cores=False, l2_mb=float(d["L2Cache"]),
                   sources={"*": "NeuSight device_configs/Tesla_P4.json (not in the wattlint database)"})


def gpu_specs() -> dict[str, GpuSpec]:
    """NeuSight kernel device string -> GpuSpec (database spec, or NeuSight's device config for the P4)."""
    out = {}
    for row in gpu_table():
        if row["kernel_device_string"] == "Tesla P4":
            out["Tesla P4"] = _p4_spec()
        elif row["wattlint_key"]:
            out[row["kernel_device_string"]] = resolve_gpu(row["wattlint_key"])[0]
    return out


def _rec(op: str, kind: OpKind, cost: C.Cost, shapes) -> OpRecord:
    return OpRecord(op=op, kind=kind, module="", phase=Phase.FORWARD, dtype="float32", shapes=tuple(shapes),
                    flops=int(cost.flops), bytes_read=int(cost.bytes_read), bytes_written=int(cost.bytes_written),
                    dims=tuple(cost.dims))


def record(op: str, row: dict) -> OpRecord:
    """The OpRecord wattlint's torch frontend records for this NeuSight kernel (FP32 forward)."""
    f = "float32"
    if op == "linear":  # nn.Linear(K, N) on [B*M, K] rows: aten.addmm (bias added in the GEMM epilogue)
        b, m, n, k = (int(row[x]) for x in ("B", "M", "N", "K"))
        rows = b * m
        c = C.gemm(1, rows, n, k, f, bias_elems=n)
        return _rec("aten.addmm.default", OpKind.MATMUL, c, ((rows, k), (k, n)))
    if op == "bmm":
        b, m, n, k = (int(row[x]) for x in ("B", "M", "N", "K"))
        c = C.matmul((b, m, k), (b, k, n), f)
        return _rec("aten.bmm.default", OpKind.MATMUL, c, ((b, m, k), (b, k, n)))
    if op == "conv":
        b, cin, cout = int(row["B"]), int(row["Input_Channel"]), int(row["Output_Channel"])
        ks, size = int(row["Kernel_Szie"]), int(row["Input_Size"])
        st, pad = int(row["Stride"]), int(row["Padding"])
        x, w = (b, cin, size, size), (cout, cin, ks, ks)
        c = C.conv(x, w, f, stride=st, padding=pad)
        return _rec("aten.convolution.default", OpKind.CONV, c, (x, w))
    b, h = int(row["B"]), int(row["H"])
    if op == "softmax":
        return _rec("aten._softmax.default", OpKind.SOFTMAX, C.softmax((b, h), f), ((b, h),))
    if op == "ln":
        return _rec("aten.native_layer_norm.default", OpKind.NORM, C.norm((b, h), f, "layer"), ((b, h), (h,), (h,)))
    name, n_in = ELEMENTWISE[op]
    c = C.elementwise(name, [(b, h)] * n_in, (b, h), f)
    suffix = "Tensor" if n_in == 2 else "default" if name in ("relu", "gelu", "tanh") else "Scalar"
    return _rec(f"aten.{name}.{suffix}", OpKind.ELEMENTWISE, c, [(b, h)] * n_in)


def _rows(path: Path):
    with gzip.open(path, "rt") as fh:
        yield from csv.DictReader(fh)


def _with_floors(ks: list[Kernel]) -> list[Kernel]:
    by: dict[tuple[str, str], list[float]] = {}
    for k in ks:
        by.setdefault((k.op, k.device), []).append(k.latency_s)
    floors = {key: sorted(v)[int(FLOOR_QUANTILE * (len(v) - 1))] for key, v in by.items()}
    return [Kernel(k.record, k.family, k.op, k.device, k.latency_s, floors[(k.op, k.device)]) for k in ks]


def load_train(specs: dict[str, GpuSpec] | None = None) -> list[Kernel]:
    """Every kernel of the training files listed in benchmarks/public/splits.json (floor per file and GPU)."""
    specs = specs or gpu_specs()
    split = json.loads((PUBLIC / "splits.json").read_text())["neusight"]["train"]
    out = []
    for fname in split["files"]:
        op = fname.split("__")[0]
        for row in _rows(DATA / "kernels-train" / fname):
            dev = row["Device"]
            if dev not in specs:
                continue
            out.append(Kernel(record(op, row), FILE_FAMILY[op], op, dev, float(row["Latency"]) / 1000.0))
    return _with_floors(out)


def train_floors(train: list[Kernel]) -> dict[tuple[str, str], float]:
    return {(k.op, k.device): k.floor_s for k in train}


def load_test(specs: dict[str, GpuSpec] | None = None, floors: dict[tuple[str, str], float] | None = None
              ) -> list[Kernel]:
    """The held-out kernels (kernels-test, 8 GPUs) of the split. ``floors`` (from the training files): a training
    GPU keeps its own floor per op; a GPU without training files gets the lowest training floor of that op (the
    test files hold mostly large kernels, so their own low quantiles are not the host floor)."""
    specs = specs or gpu_specs()
    split = json.loads((PUBLIC / "splits.json").read_text())["neusight"]["test_kernels"]
    out = []
    for rel in split["files"]:
        for row in _rows(DATA / rel):
            op, dev = row["OPName"], row["Device"]
            if dev not in specs or op not in FILE_FAMILY:
                continue
            out.append(Kernel(record(op, row), FILE_FAMILY[op], op, dev, float(row["Latency"]) / 1000.0))
    if floors is None:
        return _with_floors(out)
    lowest: dict[str, float] = {}
    for (op, _), f in floors.items():
        lowest[op] = min(f, lowest.get(op, f))
    return [Kernel(k.record, k.family, k.op, k.device, k.latency_s,
                   floors.get((k.op, k.device), lowest.get(k.op, 0.0))) for k in out]
