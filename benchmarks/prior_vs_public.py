"""The physics prior (no calibration) against public measurements, beside the naive "FLOPs / peak x TDP" baseline.

    python benchmarks/prior_vs_public.py                  # all sections -> benchmarks/results/prior_vs_public.json
    python benchmarks/prior_vs_public.py --label old --out benchmarks/results/prior_vs_public_old.json
    python benchmarks/prior_vs_public.py --sections zeus,mc --quick      # a smoke run
    python benchmarks/prior_vs_public.py --report         # old vs new vs naive tables -> docs/accuracy/prior.md

The evaluation rows are fixed in ``benchmarks/splits/prior_rows.json`` (committed before the prior was changed for
issue 13); this script only reads them. Data (read-only, ../shared/data, see its README; licences beside each
folder):

* Zeus (NSDI'23, Apache-2.0) power traces: per-epoch time and average GPU power (NVML, GPU only) on V100 (250 W: the
  PCIe card), A40, P100 and Quadro RTX 6000. Named rows: ShuffleNetV2/CIFAR-100 and BERT-base/SQuAD at each GPU's
  maximum power limit; ImageNet/ResNet-50 and MovieLens/NCF (input-pipeline / host bound) reported separately; the
  same named workloads below the maximum limit test the power-limited throttling rule. Measured energy per epoch =
  time_per_epoch x average_power.
* Mayaki & Charpenay (ECAI 2025, MIT), A100 80GB PCIe rows: ``duration`` of one training step of a custom
  Transformer (time only is a target; their energies are CodeCarbon GPU + CPU + RAM over short windows).
* ResNet-50 mixed-precision (and TF32/FP32) training throughput on one GPU from Lambda's public PyTorch benchmark
  (lambdal/deeplearning-benchmark, NVIDIA DeepLearningExamples ResNet-50 v1.5 in NGC 22.10) and NVIDIA's DLE tables:
  the predicted images/s must order A10 < V100 < RTX 3090 < RTX 4090 < A100 < H100.
* MosaicML llm-foundry MFU tables (Apache-2.0): MPT decoders 125M-70B at sequence 2048, BF16, FSDP; MFU computed from
  the predicted step time with MosaicML's own formula.

Models are rebuilt here with torch (meta tensors, no weights) and traced by wattlint's own torch frontend; their
reconstruction choices are listed in the results file. Every number is read from the public JSON contract
(``wattlint.report.json_out.to_dict``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gzip
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from shared_data import DATA as SHARED  # noqa: E402 - the public data folder (one home)
DATA = SHARED
SPLIT = ROOT / "benchmarks" / "splits" / "prior_rows.json"
OUT = ROOT / "benchmarks" / "results" / "prior_vs_public.json"
OLD = ROOT / "benchmarks" / "results" / "prior_vs_public_old.json"
REPORT = ROOT / "docs" / "accuracy" / "prior.md"
sys.path.insert(0, str(ROOT / "examples"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from wattlint.energy.predictor import PriorPredictor  # noqa: E402
from wattlint.api import estimate_graph  # noqa: E402
from wattlint.frontends.torch import trace  # noqa: E402
from wattlint.energy.prior import memory_kind  # noqa: E402
from wattlint.hardware import IDLE_FRACTION_GDDR, gddr_idle_w, resolve_gpu  # noqa: E402
from wattlint.plan import build_plan  # noqa: E402
from wattlint.report.json_out import to_dict  # noqa: E402
from wattlint.types import TensorSpec  # noqa: E402


# ---- models -----------------------------------------------------------------------------------------------------

def _channel_shuffle(x, groups: int):
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit (Ma et al. 2018), torchvision's InvertedResidual structure."""

    def __init__(self, inp: int, oup: int, stride: int):
        super().__init__()
        self.stride = stride
        bf = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
                nn.Conv2d(inp, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        cin = inp if stride > 1 else bf
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True),
            nn.Conv2d(bf, bf, 3, stride, 1, groups=bf, bias=False), nn.BatchNorm2d(bf),
            nn.Conv2d(bf, bf, 1, bias=False), nn.BatchNorm2d(bf), nn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return _channel_shuffle(out, 2)


class ShuffleNetV2Cifar(nn.Module):
    """ShuffleNetV2 x1.0 for 32x32 inputs: stride-1 3x3 stem, no max-pool (the usual CIFAR adaptation)."""

    def __init__(self, num_classes: int = 100):
        super().__init__()
        ch = [24, 116, 232, 464, 1024]
        self.conv1 = nn.Sequential(nn.Conv2d(3, ch[0], 3, 1, 1, bias=False), nn.BatchNorm2d(ch[0]), nn.ReLU(True))
        stages = []
        inp = ch[0]
        for reps, out in zip((4, 8, 4), ch[1:4]):
            units = [ShuffleUnit(inp, out, 2)] + [ShuffleUnit(out, out, 1) for _ in range(reps - 1)]
            stages.append(nn.Sequential(*units))
            inp = out
        self.stage2, self.stage3, self.stage4 = stages
        self.conv5 = nn.Sequential(nn.Conv2d(inp, ch[4], 1, bias=False), nn.BatchNorm2d(ch[4]), nn.ReLU(True))
        self.fc = nn.Linear(ch[4], num_classes)

    def forward(self, x):
        x = self.conv5(self.stage4(self.stage3(self.stage2(self.conv1(x)))))
        return self.fc(x.mean([2, 3]))


class Bert(nn.Module):
    """BERT-base encoder (12 x 768, 12 heads, FFN 3072, GELU, post-LN) with a span-prediction (SQuAD) head."""

    def __init__(self, vocab=30522, dim=768, heads=12, depth=12, ffn=3072, max_pos=512, out=2):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_pos, dim)
        self.typ = nn.Embedding(2, dim)
        self.ln = nn.LayerNorm(dim)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn, dropout=0.1, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.qa = nn.Linear(dim, out)

    def forward(self, ids):
        s = ids.shape[1]
        pos = torch.arange(s, device=ids.device)
        x = self.ln(self.tok(ids) + self.pos(pos) + self.typ(torch.zeros_like(ids)))
        x = self.encoder(x)
        return {"logits": self.qa(x)}


class NeuMF(nn.Module):
    """NCF NeuMF (He et al. 2017) on MovieLens-1M: GMF + MLP towers, 32 factors, MLP 256-128-64-32."""

    def __init__(self, users=6040, items=3706, factors=32, layers=3):
        super().__init__()
        mlp_dim = factors * 2 ** (layers - 1)
        self.gmf_u = nn.Embedding(users, factors)
        self.gmf_i = nn.Embedding(items, factors)
        self.mlp_u = nn.Embedding(users, mlp_dim)
        self.mlp_i = nn.Embedding(items, mlp_dim)
        mods = []
        d = mlp_dim * 2
        for _ in range(layers):
            mods += [nn.Dropout(0.0), nn.Linear(d, d // 2), nn.ReLU()]
            d //= 2
        self.mlp = nn.Sequential(*mods)
        self.predict = nn.Linear(factors * 2, 1)

    def forward(self, pair):
        u, i = pair[:, 0], pair[:, 1]
        g = self.gmf_u(u) * self.gmf_i(i)
        m = self.mlp(torch.cat([self.mlp_u(u), self.mlp_i(i)], dim=-1))
        logit = self.predict(torch.cat([g, m], dim=-1)).squeeze(-1)
        return F.binary_cross_entropy_with_logits(logit, torch.zeros_like(logit))


class MCTransformer(nn.Module):
    """Mayaki & Charpenay's custom Transformer, as reconstructed from their parameter counts: token embedding of
    2,000, learned positions of seq_len, nn.TransformerEncoderLayer (FFN 2048 = PyTorch's default) x L, and a
    2,000-way token head (params match the published counts to within 0.003 %). 'gpt' rows use a causal mask."""

    def __init__(self, d, heads, layers, seq, causal, vocab=2000):
        super().__init__()
        self.causal = causal
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        layer = nn.TransformerEncoderLayer(d, heads, 2048, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, ids):
        s = ids.shape[1]
        x = self.tok(ids) + self.pos(torch.arange(s, device=ids.device))
        if self.causal:
            x = self.encoder(x, mask=nn.Transformer.generate_square_subsequent_mask(s, device=ids.device),
                             is_causal=True)
        else:
            x = self.encoder(x)
        return {"logits": self.head(x)}


class MptBlock(nn.Module):
    """One MPT block (llm-foundry): pre-LayerNorm without bias, fused QKV, causal flash attention, GELU MLP x4,
    no biases (``no_bias: true``)."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm_1 = nn.LayerNorm(d, bias=False)
        self.Wqkv = nn.Linear(d, 3 * d, bias=False)
        self.out_proj = nn.Linear(d, d, bias=False)
        self.norm_2 = nn.LayerNorm(d, bias=False)
        self.up_proj = nn.Linear(d, 4 * d, bias=False)
        self.down_proj = nn.Linear(4 * d, d, bias=False)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.Wqkv(self.norm_1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, s, d)
        x = x + self.out_proj(a)
        return x + self.down_proj(F.gelu(self.up_proj(self.norm_2(x))))


class Mpt(nn.Module):
    """MPT decoder (llm-foundry model_yamls/mpt-<size>.yaml): vocab 50368, learned positions, tied LM head."""

    def __init__(self, d: int, heads: int, layers: int, seq: int = 2048, vocab: int = 50368):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(seq, d)
        self.blocks = nn.ModuleList(MptBlock(d, heads) for _ in range(layers))
        self.norm_f = nn.LayerNorm(d, bias=False)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))
        for blk in self.blocks:
            x = blk(x)
        return {"logits": F.linear(self.norm_f(x), self.wte.weight)}


MPT_SIZES = {"125m": (768, 12, 12), "350m": (1024, 16, 24), "760m": (1536, 12, 24), "1b": (2048, 16, 24),
             "3b": (2560, 20, 32), "7b": (4096, 32, 32), "13b": (5120, 40, 40), "30b": (7168, 56, 48),
             "70b": (8192, 64, 80)}


def _resnet50():
    from make_examples import resnet50  # torchvision's ResNet-50 architecture and names, no torchvision needed

    return resnet50(1000)


# Zeus (traces recorded 2021-22) ran PyTorch 1.x, whose defaults were torch.backends.cuda.matmul.allow_tf32 = True
# (1.7 - 1.11) and cudnn.allow_tf32 = True: FP32 matmuls AND convolutions in TF32 on Ampere (the A40); V100, P100
# and Quadro RTX 6000 have no TF32 (FP32 as before). Evidence in the data: the A40's BERT epoch (909 s at batch 32,
# 6.9 TFLOP per step) would need FP32 SGEMM at >= 0.85 of the A40's dual-issue FP32 peak with every memory-bound
# op at the achievable bandwidth. Decided after the first new-prior run showed the A40 BERT rows 50-80 % slow; the
# old prior is recomputed with the same reconstruction (benchmarks/results/prior_vs_public_old.json).
ZEUS_PRECISION = "tf32"


def run_precision(precision: str, gpu) -> str:
    """The precision a PyTorch 1.x run had on ``gpu``: TF32 where the GPU has it, FP32 otherwise (wattlint refuses
    --precision tf32 on a GPU without TF32 tensor cores, as it should for a user; the reconstruction is per GPU)."""
    from wattlint.hardware import precision_support

    return precision if precision_support(gpu, precision)[0] else "fp32"

# workload -> (builder, input maker(batch) -> (args, specs), samples per epoch, precision, notes)
WORKLOADS = {
    ("cifar100", "shufflenetv2"): dict(
        build=lambda: ShuffleNetV2Cifar(100), input=lambda b: torch.randn(b, 3, 32, 32), dtype="float32",
        samples=50_000, precision=ZEUS_PRECISION, loader=True,
        note="ShuffleNetV2 x1.0, CIFAR stem (3x3 stride 1, no max-pool); 50,000 training images; fp32 (TF32 on "
             "Ampere: PyTorch 1.x defaults); DataLoader(num_workers=4), PIL transforms, new workers every epoch"),
    ("imagenet", "resnet50"): dict(
        build=_resnet50, input=lambda b: torch.randn(b, 3, 224, 224), dtype="float32",
        samples=1_281_167, precision=ZEUS_PRECISION,
        note="torchvision ResNet-50 at 224x224; 1,281,167 images; fp32 (TF32 on Ampere: PyTorch 1.x defaults)"),
    ("squad", "bert_base_uncased"): dict(
        build=lambda: Bert(), input=lambda b, n=384: torch.zeros(b, n, dtype=torch.long), dtype="int64",
        samples=88_524, precision=ZEUS_PRECISION, padding="dynamic",
        note=("BERT-base, SQuAD v1.1 features at max_seq_length 384 / doc_stride 128 (HF prepare_train_features: "
              "88,524 features, mean 170.8 tokens); each batch padded to its longest feature (dynamic padding, as "
              "the Zeus authors' HF-based BERT script and run_qa_no_trainer do by default: "
              "benchmarks/public/squad/SOURCE.md), priced as the expected step over the batch's longest length; "
              "fp32 (no --fp16; TF32 on Ampere: PyTorch 1.x defaults)")),
    ("movielens-1m", "ncf"): dict(
        build=lambda: NeuMF(), input=lambda b: torch.zeros(b, 2, dtype=torch.long), dtype="int64",
        samples=994_169 * 5, precision=ZEUS_PRECISION,
        note="NeuMF (32 factors, MLP 3 layers); 994,169 training ratings x (1 positive + 4 sampled negatives)"),
}
SKIPPED = {
    "librispeech/deepspeech2": "variable-length audio (sorted by duration) and the exact DeepSpeech2 variant are not "
                               "recoverable from the trace; not rebuilt",
    "sentiment140/bert_base_uncased": "sequence length and training-subset size of the Zeus run are not published "
                                      "with the trace; not rebuilt",
}
# Dynamic padding (SQuAD): the token length of every training feature (benchmarks/public/squad/, CC BY-SA 4.0) and
# the sequence lengths traced; a step's cost at the batch's longest feature is interpolated linearly between them.
SQUAD_LENGTHS = ROOT / "benchmarks" / "public" / "squad" / "feature_length_histogram.json"
PAD_GRID = tuple(range(64, 385, 32))

from padding import batch_max_weights  # noqa: E402 - the expected step over a batch's longest feature


def padded_lengths(w: dict, batch: int) -> list[tuple[int | None, float]]:
    """The (traced length, weight) pairs a workload's step is priced over: one trace at the workload's own input
    (None) unless its batches are padded dynamically."""
    if w.get("padding") != "dynamic":
        return [(None, 1.0)]
    doc = json.loads(SQUAD_LENGTHS.read_text())
    return batch_max_weights({int(k): int(v) for k, v in doc["histogram"].items()}, batch, PAD_GRID)


def mixed_step(wk, w: dict, b: int, opt: str, price) -> tuple[dict, dict, float]:
    """The per-step cost of workload ``wk`` at batch ``b``: ``price(graph)`` (a wattlint.estimate/1 document) at each
    traced length of :func:`padded_lengths`, weighted. Returns (per_step time_s / gpu_energy_j / flops, the last
    document, the weighted FLOPs of the traced graphs)."""
    per = {"time_s": 0.0, "gpu_energy_j": 0.0, "flops": 0.0, "launch_gap_s": 0.0}
    graph_flops, doc = 0.0, {}
    for n, weight in padded_lengths(w, b):
        x = w["input"](b) if n is None else w["input"](b, n)
        g = _trace((wk, b, opt) if n is None else (wk, b, opt, n), w["build"], x, b, w["precision"], opt,
                   impl=ZEUS_OPTIMIZER_IMPL, grads_to_none=ZEUS_GRADS_TO_NONE)
        doc = price(g)
        for k in per:  # launch_gap_s: the host-bound idle gaps between kernels (the 'idle_gaps' phase)
            per[k] += weight * ((doc.get("phases") or {}).get("idle_gaps", {}).get("time_s", 0.0)
                                if k == "launch_gap_s" else doc["per_step"][k])
        graph_flops += weight * sum(r.flops for r in g.records)
    return per, doc, graph_flops


# TF32: their measured step times are shorter than FP32-peak time for the model's FLOPs (impossible in strict FP32),
# and their own data carries the A100's TF32 peak (156 TFLOP/s) as 'peak'.
MC_PRECISION = "tf32"
# Eager attention (score matrices materialised, separate GEMM + softmax + dropout kernels): their data decomposes each
# layer into "Attention Scores" and "Attention Output" components with their own FLOPs and durations (explicit
# Q K^T, then softmax(.) V), and in fp32/TF32 with a float mask or head dims above 128 PyTorch's SDPA falls back to
# its math kernel. Chosen AFTER a first result with one fused SDPA kernel (35.0 % MAPE), which is kept beside it.
MC_ATTENTION = "eager"
OPTIMIZER_MAP = {"adadelta": "adadelta", "adam": "adam", "adamw": "adamw"}
# Zeus ran PyTorch 1.x, whose optimizers default to the single-tensor (for-loop) implementation (foreach became the
# CUDA default in 2.0), and HF run_qa of the time used transformers.AdamW, a Python loop over the parameters.
ZEUS_OPTIMIZER_IMPL = "for-loop"
# ... and zeroed gradients in place: zero_grad()'s set_to_none defaulted to False before 2.0 (optimizer.zero_grad() in
# Zeus's CIFAR-100 loop, model.zero_grad() in HF's Trainer), so backward accumulates into allocated gradients (one add
# per parameter tensor) and every step fills each gradient with zeros (one kernel per tensor): trace(grads_to_none=).
ZEUS_GRADS_TO_NONE = False
# The eager per-op host cost is fitted on the Zeus named rows, leave-one-GPU-out, on this grid (us); the fit on all
# four GPUs is the shipped default (energy.system.HOST_OP_S).
HOST_GRID_US = tuple(range(4, 81, 1))  # widened from 4-40 us (a capped grid can flatter a variant)
# The in-job idle power of GDDR boards (A40, Quadro RTX 6000 here) as a fraction of TDP (hardware.IDLE_FRACTION_GDDR,
# the gpus.toml rule @idle-rule-gddr) is fitted on the Zeus named rows by average-power MAPE, leave-one-GPU-out, on this
# grid, each fold at its own held-out host cost; HBM boards keep their idle power.
IDLE_GDDR_GRID = (0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40)
# One DataLoader worker's samples per second for the CIFAR-100 rows, fitted leave-one-GPU-out on the named rows on top
# of the host and idle fits (loader_fit); the named rows before it are kept as ``zeus_named_without_loader``.
LOADER_GRID = tuple(range(500, 20001, 250))


# ---- helpers ----------------------------------------------------------------------------------------------------

_TRACES: dict = {}


def _trace(key, build, x, b, precision, optimizer, seq=0, ckpt=False, impl="foreach", attention="sdpa",
           grads_to_none=True):
    key = (key, impl, attention, grads_to_none)
    if key in _TRACES:
        return _TRACES[key]
    torch.manual_seed(0)
    with torch.device("meta"):  # no weight memory (a 70B model would not fit in host RAM)
        model = build()
    spec = TensorSpec("x", str(x.dtype).rsplit(".", 1)[-1], tuple(x.shape))
    g = trace(model, (x,), precision=precision, optimizer=optimizer, micro_batch=b, seq_len=seq, inputs=(spec,),
              source=type(model).__name__, activation_checkpointing=ckpt, optimizer_impl=impl,
              attention=attention, grads_to_none=grads_to_none)
    _TRACES[key] = g
    return g


def _estimate(graph, gpu, b, precision, optimizer, **plan):
    p = build_plan(graph, gpu=gpu, steps=plan.pop("steps", 1), batch_size=b, precision=precision,
                   optimizer=optimizer, pue=1.0, carbon_intensity=100.0, **plan)
    return to_dict(estimate_graph(graph, gpu, p, PriorPredictor()))


def _naive(flops, gpu, precision):
    key = "fp16" if precision in ("fp16", "bf16") else "tf32" if precision == "tf32" else "fp32"
    t = flops / gpu.peak(key)
    return t, t * gpu.tdp_w


def _err(pred, meas):
    return (pred - meas) / meas


def _summary(errs):
    a = [abs(e) for e in errs]
    if not a:
        return {}
    ratios = sorted(1 + e for e in errs)
    return {"n": len(a), "mape_pct": round(100 * statistics.fmean(a), 1),
            "median_ape_pct": round(100 * statistics.median(a), 1), "worst_ape_pct": round(100 * max(a), 1),
            "median_ratio_pred_over_meas": round(statistics.median(ratios), 3),
            "p5_ratio": round(ratios[max(0, int(0.05 * len(ratios)))], 3),
            "p95_ratio": round(ratios[min(len(ratios) - 1, int(0.95 * len(ratios)))], 3)}


ERR_KEYS = ("time_err", "energy_err", "power_err", "naive_time_err", "naive_energy_err", "naive_power_err",
            "power_at_measured_time_err")


def summarize(rows, by=None):
    def block(rs):
        return {k[:-4]: _summary([r[k] for r in rs if r.get(k) is not None]) for k in ERR_KEYS
                if any(r.get(k) is not None for r in rs)}
    out = {"all": block(rows)}
    if by:
        groups: dict = {}
        for r in rows:
            groups.setdefault(" / ".join(str(r[k]) for k in by), []).append(r)
        for g, rs in sorted(groups.items()):
            out[g] = block(rs)
    return out


# ---- Zeus -------------------------------------------------------------------------------------------------------

def _zeus_measured():
    out = {}
    for tag in ("v100", "a40", "p100", "rtx6000"):
        for r in csv.DictReader((DATA / "zeus-nsdi23" / f"summary_power_{tag}.csv").open()):
            k = (tag, f"{r['dataset']}/{r['network']}", int(r["batch_size"]), r["optimizer"], float(r["power_limit"]))
            out[k] = (float(r["time_per_epoch"]), float(r["average_power"]))
    return out


def zeus_rows(split_rows, quick: bool, measured, host_op_s=None, gddr_idle=None, loader_rate=None):
    """One row per split row; ``host_op_s``: the eager per-op host cost (None: the shipped default); ``gddr_idle``:
    the in-job idle power of GDDR boards as a fraction of TDP (None: the GPU database's values); ``loader_rate``:
    samples per second of one DataLoader worker for the CIFAR-100 rows (--loader-sample-time = 1 / it; None: data
    loading not priced), a mapping GPU key -> rate or one rate for all."""
    rows = []
    for s in split_rows:
        wk = tuple(s["workload"].split("/"))
        if wk not in WORKLOADS:
            continue
        b = s["batch_size"]
        if quick and b not in (32, 256, 1024, 8, 24):
            continue
        w = WORKLOADS[wk]
        opt = OPTIMIZER_MAP.get(s["optimizer"], "adam")
        base, _ = resolve_gpu(s["gpu"])
        if gddr_idle is not None and memory_kind(base) != "hbm":
            base = dataclasses.replace(base, idle_w=float(gddr_idle_w(base.tdp_w, gddr_idle)))
        gpu = dataclasses.replace(base, tdp_w=float(s["power_limit_w"])) if s["power_limit_w"] != base.tdp_w \
            else base
        rate = loader_rate.get(base.key) if isinstance(loader_rate, dict) else loader_rate
        rate = rate if w.get("loader") else None
        def price(graph, gpu=gpu, rate=rate, b=b, w=w, opt=opt):
            return _estimate(graph, gpu, b, run_precision(w["precision"], gpu), opt,
                             **({} if host_op_s is None else {"host_op_time": host_op_s}),
                             **({} if rate is None else {"steps": None, "dataset": w["samples"], "epochs": 1,
                                                         "loader_sample_time": 1.0 / rate}))
        per, d, _ = mixed_step(wk, w, b, opt, price)
        steps = math.ceil(w["samples"] / b)
        wait_s = d["total"]["loader_wait_h"] * 3600.0  # the epoch's first DataLoader batch, at idle power
        t_pred = steps * per["time_s"] + wait_s
        e_pred = steps * per["gpu_energy_j"] + wait_s * d["hardware"]["idle_w"]
        p_pred = e_pred / t_pred
        t_meas, p_meas = measured[(s["gpu_file"], s["workload"], b, s["optimizer"], float(s["power_limit_w"]))]
        e_meas = t_meas * p_meas
        t_naive, e_naive = _naive(steps * per["flops"], gpu, run_precision(w["precision"], gpu))
        # issue 13's power decomposition: the predicted energy above idle (kernels' dynamic energy) and the power it
        # would give over the MEASURED epoch time (does fixing the time alone fix the power?)
        idle = d["hardware"]["idle_w"]
        dyn_j = e_pred - idle * t_pred
        rows.append({
            "gpu": base.key, "workload": s["workload"], "batch_size": b, "optimizer": s["optimizer"],
            "power_limit_w": s["power_limit_w"], "measured_epoch_s": round(t_meas, 2),
            "measured_epoch_j": round(e_meas, 1), "measured_avg_power_w": round(p_meas, 1),
            "prior_epoch_s": round(t_pred, 2), "prior_epoch_j": round(e_pred, 1), "prior_avg_power_w": round(p_pred, 1),
            "naive_epoch_s": round(t_naive, 2), "naive_epoch_j": round(e_naive, 1), "naive_avg_power_w": gpu.tdp_w,
            "time_err": _err(t_pred, t_meas), "energy_err": _err(e_pred, e_meas), "power_err": _err(p_pred, p_meas),
            "naive_time_err": _err(t_naive, t_meas), "naive_energy_err": _err(e_naive, e_meas),
            "naive_power_err": _err(gpu.tdp_w, p_meas),
            "prior_gpu_kernel_s": round(steps * (per["time_s"] - per["launch_gap_s"]), 2),
            "prior_launch_gap_s": round(steps * per["launch_gap_s"], 2), "prior_dynamic_j": round(dyn_j, 1),
            "power_at_measured_time_err": _err((dyn_j + idle * t_meas) / t_meas, p_meas),
        })
    return rows


def _time_mape(rows):
    return statistics.fmean(abs(r["time_err"]) for r in rows)


def host_fit(split_rows, quick: bool, measured):
    """The eager per-op host cost fitted on the Zeus named rows (time MAPE over a grid), leave-one-GPU-out.

    Returns the named rows, each predicted with the value fitted on the OTHER three GPUs; the per-GPU fits with
    their training and held-out MAPE; and the fit on all four GPUs (the shipped default). Power and energy use
    the shipped power constant ``A_BUSY`` (its own leave-one-GPU-out figures: benchmarks/prior_fit.py)."""
    grid = {h: zeus_rows(split_rows, quick, measured, host_op_s=h * 1e-6) for h in HOST_GRID_US}
    ref = grid[HOST_GRID_US[0]]
    gpus = sorted({r["gpu"] for r in ref})
    fits, held = {}, {}
    for g in gpus:
        train = {h: [r for r in rows if r["gpu"] != g] for h, rows in grid.items()}
        best = min(HOST_GRID_US, key=lambda h: _time_mape(train[h]))
        test = [(i, r) for i, r in enumerate(grid[best]) if r["gpu"] == g]
        fits[g] = {"host_op_us": best, "train_time_mape_pct": round(100 * _time_mape(train[best]), 1),
                   "held_out_time_mape_pct": round(100 * _time_mape([r for _, r in test]), 1)}
        held.update({i: dict(r, host_op_us=best) for i, r in test})
    all_fit = min(HOST_GRID_US, key=lambda h: _time_mape(grid[h]))
    curve = {h: round(100 * _time_mape(rows), 1) for h, rows in grid.items()}
    return [held[i] for i in range(len(ref))], {"per_held_out_gpu": fits, "all_gpus_us": all_fit,
                                                "time_mape_by_host_op_us": curve}


def _power_mape(rows):
    return statistics.fmean(abs(r["power_err"]) for r in rows)


def idle_fit(split_rows, quick: bool, measured, host):
    """The in-job idle fraction of GDDR boards fitted on the Zeus named rows (average-power MAPE over
    IDLE_GDDR_GRID), leave-one-GPU-out: each GPU's rows are predicted at its held-out host cost (``host``: host_fit's
    per-GPU fits) with the fraction fitted on the OTHER three GPUs' rows at that host cost. Returns those rows and the
    fits (with the fit on all four GPUs at the all-GPU host cost, which the shipped database follows)."""
    cache = {}

    def rows_at(h, f):
        if (h, f) not in cache:
            cache[h, f] = zeus_rows(split_rows, quick, measured, host_op_s=h * 1e-6, gddr_idle=f)
        return cache[h, f]

    ref = rows_at(host["all_gpus_us"], IDLE_GDDR_GRID[0])
    gpus = sorted({r["gpu"] for r in ref})
    fits, held = {}, {}
    for g in gpus:
        h = host["per_held_out_gpu"][g]["host_op_us"]
        best = min(IDLE_GDDR_GRID, key=lambda f: _power_mape([r for r in rows_at(h, f) if r["gpu"] != g]))
        test = [(i, r) for i, r in enumerate(rows_at(h, best)) if r["gpu"] == g]
        fits[g] = {"gddr_idle_fraction": best, "host_op_us": h,
                   "train_power_mape_pct": round(100 * _power_mape([r for r in rows_at(h, best) if r["gpu"] != g]), 1),
                   "held_out_power_mape_pct": round(100 * _power_mape([r for _, r in test]), 1)}
        held.update({i: dict(r, gddr_idle_fraction=best) for i, r in test})
    h_all = host["all_gpus_us"]
    all_fit = min(IDLE_GDDR_GRID, key=lambda f: _power_mape(rows_at(h_all, f)))
    curve = {f: round(100 * _power_mape(rows_at(h_all, f)), 1) for f in IDLE_GDDR_GRID}
    return [held[i] for i in range(len(ref))], {"per_held_out_gpu": fits, "all_gpus": all_fit,
                                                "shipped": IDLE_FRACTION_GDDR,
                                                "power_mape_by_fraction_at_all_gpus_host": curve}


def loader_fit(split_rows, quick: bool, measured, held: list[dict], host: dict, idle: dict):
    """One DataLoader worker's rate (samples / s; --loader-sample-time = 1 / it) fitted on the Zeus named rows by time
    MAPE over LOADER_GRID, leave-one-GPU-out, on top of the host and idle fits: each epoch's first batch is built by
    one worker before the GPU has work (Zeus's CIFAR-100 loop: DataLoader(num_workers=4), no persistent workers), so
    a CIFAR-100 row's epoch gains batch / rate seconds at idle power (docs/ENERGY_MODEL.md, "Data loading"). The
    rate for GPU g is fitted on the OTHER GPUs' rows priced at g's held-out host cost and idle fraction (as idle_fit
    does: those two were fitted without g's rows, so nothing of g reaches its rate), the term added by hand (it is
    additive); g's own rows are then estimated through the product (``--loader-sample-time``) at its held-out host
    cost, idle fraction and rate. ``held``: the rows without the term (their order is kept)."""
    gpus = sorted({r["gpu"] for r in held})

    def extra(r, rate):
        return r["batch_size"] / rate if WORKLOADS[tuple(r["workload"].split("/"))].get("loader") else 0.0

    def mape(rows, rate):
        return statistics.fmean(abs((r["prior_epoch_s"] + extra(r, rate)) / r["measured_epoch_s"] - 1) for r in rows)

    fits, out = {}, {}
    for g in gpus:
        h = host["per_held_out_gpu"][g]["host_op_us"]
        f = idle["per_held_out_gpu"][g]["gddr_idle_fraction"]
        train = zeus_rows([s for s in split_rows if s["gpu"] != g], quick, measured, host_op_s=h * 1e-6, gddr_idle=f)
        rate = min(LOADER_GRID, key=lambda x: mape(train, x))
        mine = [s for s in split_rows if s["gpu"] == g]
        rows = zeus_rows(mine, quick, measured, host_op_s=h * 1e-6, gddr_idle=f, loader_rate=rate)
        fits[g] = {"samples_per_s": rate, "train_time_mape_pct": round(100 * mape(train, rate), 1),
                   "held_out_time_mape_pct": round(100 * _time_mape(rows), 1)}
        out[g] = [dict(r, host_op_us=h, gddr_idle_fraction=f, loader_samples_per_s=rate) for r in rows]
    order = [(r["gpu"], r["workload"], r["batch_size"], r["optimizer"]) for r in held]
    by_key = {(r["gpu"], r["workload"], r["batch_size"], r["optimizer"]): r for rs in out.values() for r in rs}
    all_fit = min(LOADER_GRID, key=lambda x: mape(held, x))
    return [by_key[k] for k in order], {"per_held_out_gpu": fits, "all_gpus_samples_per_s": all_fit}


def sweep_slowdowns(sweep_rows, named_rows):
    """Throttling check: time at a lowered power limit / time at the maximum limit, measured vs predicted."""
    top = {(r["gpu"], r["workload"], r["batch_size"], r["optimizer"]): r for r in named_rows}
    out = []
    for r in sweep_rows:
        t = top.get((r["gpu"], r["workload"], r["batch_size"], r["optimizer"]))
        if t is None:
            continue
        meas = r["measured_epoch_s"] / t["measured_epoch_s"]
        pred = r["prior_epoch_s"] / t["prior_epoch_s"]
        out.append({"gpu": r["gpu"], "workload": r["workload"], "batch_size": r["batch_size"],
                    "power_limit_w": r["power_limit_w"], "max_limit_w": t["power_limit_w"],
                    "limit_fraction": round(r["power_limit_w"] / t["power_limit_w"], 3),
                    "measured_slowdown": round(meas, 3), "prior_slowdown": round(pred, 3),
                    "slowdown_err": _err(pred, meas)})
    return out


# ---- Mayaki & Charpenay -----------------------------------------------------------------------------------------

def mc_rows(ids, quick: bool, attention: str = MC_ATTENTION):
    path = DATA / "mayaki-charpenay-ecai2025" / "processed" / "SubsetDataForTransformer_energyModel.csv.gz"
    data = {int(r[""]): r for r in csv.DictReader(gzip.open(path, "rt")) if r["source"] == "a100"}
    picked = [data[i] for i in ids]
    if quick:
        picked = picked[::10]
    gpu, _ = resolve_gpu("a100-pcie-80gb")
    rows = []
    for r in picked:
        d, h, L = int(r["d_model"]), int(r["num_attention_heads"]), int(r["num_layers"])
        s, b = int(r["seq_length"]), int(r["batch_size"])
        causal = r["model"] == "gpt"
        graph = _trace(("mc", d, h, L, s, b, causal), lambda d=d, h=h, L=L, s=s, causal=causal: MCTransformer(d, h, L, s, causal),
                       torch.zeros(b, s, dtype=torch.long), b, MC_PRECISION, "adam", seq=s, attention=attention)
        est = _estimate(graph, gpu, b, MC_PRECISION, "adam")
        t_meas = float(r["duration"])
        e_meas = float(r["energy_joules"])
        t_pred = est["per_step"]["time_s"]
        e_pred = est["per_step"]["gpu_energy_j"] + est["per_step"]["host_energy_j"]  # CodeCarbon: GPU + CPU + RAM
        t_naive, e_naive = _naive(est["per_step"]["flops"], gpu, MC_PRECISION)
        rows.append({
            "gpu": gpu.key, "workload": f"mc-{r['model']}", "row_id": int(r[""]), "d_model": d, "heads": h,
            "layers": L, "seq_len": s, "batch_size": b, "params": int(r["params"]),
            "measured_step_s": t_meas, "measured_step_j": e_meas, "prior_step_s": t_pred, "prior_step_j": e_pred,
            "prior_avg_gpu_power_w": round(est["per_step"]["avg_gpu_power_w"], 1),
            "naive_step_s": t_naive, "naive_step_j": e_naive,
            "time_err": _err(t_pred, t_meas), "energy_err": _err(e_pred, e_meas),
            "naive_time_err": _err(t_naive, t_meas), "naive_energy_err": _err(e_naive, e_meas),
        })
    return rows


# ---- ResNet-50 throughput across GPUs -----------------------------------------------------------------------------

# Lambda PyTorch training benchmark, 1 GPU, ResNet-50 (images/s): fp16 = AMP, fp32 = TF32 on Ampere+ (NGC default)
LAMBDA_FP32 = {"a10-24gb": 349.0, "v100-sxm2-16gb": 369.0, "rtx3090-24gb": 513.0, "rtx4090-24gb": 721.0,
               "a100-sxm4-80gb": 1066.0, "h100-sxm5-80gb": 1753.0, "a100-pcie-80gb": 1014.0,
               "h100-pcie-80gb": 1197.0, "rtx-a6000-48gb": 514.0}
LAMBDA_FP32_SOURCE = ("lambdal/deeplearning-benchmark pytorch/pytorch-train-throughput-fp32.csv "
                      "(commit 0551cb70ffdc155dc4cb2c10dddebb65651c3883)")


def resnet_rows(order):
    rows = []
    extra = {"a100-pcie-80gb": order["also"]["a100-pcie-80gb"], "h100-pcie-80gb": order["also"]["h100-pcie-80gb"],
             "rtx-a6000-48gb": order["also"]["rtx-a6000-48gb"]}
    todo = [(r["gpu"], r["images_per_s"], r["batch_size"] or 256, True) for r in order["rows"]]
    todo += [(k, v, 256, False) for k, v in extra.items()]
    for key, meas, b, ranked in todo:
        gpu, _ = resolve_gpu(key)
        row = {"gpu": key, "ranked": ranked, "batch_size": b}
        for prec, meas_v, tag in (("fp16", meas, "amp"), ("tf32", LAMBDA_FP32.get(key), "tf32")):
            graph = _trace(("resnet50", b, prec), _resnet50, torch.randn(b, 3, 224, 224), b, prec, "sgd")
            d = _estimate(graph, gpu, b, run_precision(prec, gpu), "sgd")  # Lambda's "fp32" column: TF32 if any
            ips = b / d["per_step"]["time_s"]
            t_naive, _ = _naive(d["per_step"]["flops"], gpu, "fp16" if prec == "fp16" else "tf32")
            row[f"{tag}_measured_images_per_s"] = meas_v
            row[f"{tag}_prior_images_per_s"] = round(ips, 1)
            row[f"{tag}_naive_images_per_s"] = round(b / t_naive, 1)
            row[f"{tag}_prior_avg_power_w"] = round(d["per_step"]["avg_gpu_power_w"], 1)
            if meas_v:
                row[f"{tag}_ratio_pred_over_meas"] = round(ips / meas_v, 3)
                row[f"{tag}_naive_ratio"] = round(b / t_naive / meas_v, 3)
        rows.append(row)
    ranked = [r for r in rows if r["ranked"]]
    pred_order = [r["gpu"] for r in sorted(ranked, key=lambda r: r["amp_prior_images_per_s"])]
    meas_order = [r["gpu"] for r in sorted(ranked, key=lambda r: r["amp_measured_images_per_s"])]
    naive_order = [r["gpu"] for r in sorted(ranked, key=lambda r: r["amp_naive_images_per_s"])]
    return {"rows": rows, "measured_order": meas_order, "prior_order": pred_order, "naive_order": naive_order,
            "order_ok": pred_order == meas_order, "naive_order_ok": naive_order == meas_order,
            "amp_mape_pct": round(100 * statistics.fmean(abs(r["amp_ratio_pred_over_meas"] - 1) for r in rows), 1),
            "tf32_mape_pct": round(100 * statistics.fmean(abs(r["tf32_ratio_pred_over_meas"] - 1) for r in rows
                                                          if "tf32_ratio_pred_over_meas" in r), 1)}


# ---- LLM MFU (MosaicML llm-foundry) -------------------------------------------------------------------------------

PEAK_TFLOPS = {"a100_40gb": 312.0, "a100_80gb": 312.0, "h100_80gb": 989.0}
GPU_KEYS = {"a100_40gb": "a100-sxm4-40gb", "a100_80gb": "a100-sxm4-80gb", "h100_80gb": "h100-sxm5-80gb"}
INTERNODE = {"a100_40gb": 1600.0, "a100_80gb": 1600.0, "h100_80gb": 3200.0}


def llm_rows(quick: bool):
    rows = []
    data = list(csv.DictReader((DATA / "llm-foundry-mfu" / "llmfoundry_benchmark_mfu.csv").open()))
    for r in data:
        if r["SeqLen (T)"] != "2048" or r["Precision"] not in ("amp_bf16", "bf16") or int(r["# GPUs"]) > 64:
            continue
        size = r["Model"]
        if quick and size not in ("125m", "1b", "7b"):
            continue
        n_gpu, mb, ga = int(r["# GPUs"]), int(r["MicroBatchSize"]), int(r["GradAccum"])
        ckpt = r["Activation Checkpointing"] == "True"
        d, h, L = MPT_SIZES[size]
        seq = 2048
        graph = _trace(("mpt", size, mb, ckpt), lambda d=d, h=h, L=L, seq=seq: Mpt(d, h, L, seq), torch.zeros(mb, seq, dtype=torch.long),
                       mb, "bf16", "adamw", seq=seq, ckpt=ckpt)
        gpu, _ = resolve_gpu(GPU_KEYS[r["GPU"]])
        est = _estimate(graph, gpu, mb * ga * n_gpu, "bf16", "adamw", gpus=n_gpu, gpus_per_node=8, grad_accum=ga,
                        sharding="fsdp", internode_gbps=INTERNODE[r["GPU"]], activation_checkpointing=ckpt)
        n_params = int(r["NumParams"])
        seq_per_s = mb * ga * n_gpu / est["per_step"]["time_s"]
        flops_per_seq = 2 * n_params * seq
        attn_per_seq = L * 2 * 2 * d * seq * seq
        mfu = (3 * flops_per_seq + 3 * attn_per_seq) * seq_per_s / (n_gpu * PEAK_TFLOPS[r["GPU"]] * 1e12)
        meas = float(r["MFU"]) / 100
        rows.append({"gpu": gpu.key, "model": f"mpt-{size}", "gpus": n_gpu, "micro_batch": mb, "grad_accum": ga,
                     "activation_checkpointing": ckpt, "measured_mfu": meas, "prior_mfu": round(mfu, 4),
                     "prior_avg_gpu_power_w": round(est["per_step"]["avg_gpu_power_w"], 1),
                     "held_out_if_calibrating": size in ("13b", "70b"),
                     "time_err": _err(meas, mfu),  # step time error = measured MFU / predicted MFU - 1
                     "naive_time_err": _err(meas, 0.40)})
    return rows


# ---- main ---------------------------------------------------------------------------------------------------------

def run(args):
    split = json.loads(SPLIT.read_text())
    sections = set(args.sections.split(","))
    t0 = time.time()
    result = {"benchmark": "prior_vs_public/2", "label": args.label, "split": str(SPLIT.relative_to(ROOT)),
              "torch": torch.__version__, "quick": args.quick, "summary": {}, "rows": {}}
    if "zeus" in sections:
        measured = _zeus_measured()
        z = split["zeus"]
        _, fit = host_fit(z["named"]["rows"], args.quick, measured)
        result["host_op_fit"] = fit
        named_no_loader, ifit = idle_fit(z["named"]["rows"], args.quick, measured, fit)
        result["idle_fit"] = ifit
        named, lfit = loader_fit(z["named"]["rows"], args.quick, measured, named_no_loader, fit, ifit)
        result["loader_fit"] = lfit
        gb_keys = {(r["gpu"], r["workload"], r["batch_size"], r["optimizer"]) for r in z["named_gpu_bound"]["rows"]}
        gpu_bound = [r for r in named if (r["gpu"], r["workload"], r["batch_size"], r["optimizer"]) in gb_keys]
        separate = zeus_rows(z["separate"]["rows"], args.quick, measured)
        sweep = zeus_rows(z["power_limit_sweep"]["rows"], args.quick, measured) if not args.no_sweep else []
        slow = sweep_slowdowns(sweep, named_no_loader)  # like for like: the sweep rows are not priced with a loader
        result["rows"].update({"zeus_named": named, "zeus_named_without_loader": named_no_loader,
                               "zeus_separate": separate, "zeus_power_limit_sweep": sweep,
                               "zeus_throttle_slowdowns": slow})
        result["summary"].update({
            "zeus_named": summarize(named, ("workload",)), "zeus_named_by_gpu": summarize(named, ("gpu",)),
            "zeus_named_without_loader": summarize(named_no_loader, ("workload",)),
            "zeus_named_gpu_bound": summarize(gpu_bound, ("workload",)),
            "zeus_named_gpu_bound_by_gpu": summarize(gpu_bound, ("gpu",)),
            "zeus_separate": summarize(separate, ("workload",)),
            "zeus_power_limit_sweep": summarize(sweep, ("gpu",)),
            "zeus_throttle_slowdown": {
                "n": len(slow),
                "mape_pct": round(100 * statistics.fmean(abs(r["slowdown_err"]) for r in slow), 1) if slow else None,
                "by_limit_fraction": {
                    band: _summary([r["slowdown_err"] for r in slow if lo <= r["limit_fraction"] < hi])
                    for band, lo, hi in (("0.75-1.0", 0.75, 1.0), ("0.6-0.75", 0.6, 0.75), ("<0.6", 0.0, 0.6))}},
        })
    if "mc" in sections:
        m = mc_rows(split["mayaki_charpenay_a100"]["row_ids"], args.quick)
        result["rows"]["mayaki_charpenay_a100"] = m
        result["summary"]["mayaki_charpenay_a100"] = summarize(m, ("workload",))
        m_sdpa = mc_rows(split["mayaki_charpenay_a100"]["row_ids"], args.quick, "sdpa")
        result["summary"]["mayaki_charpenay_a100_fused_attention"] = summarize(m_sdpa, ("workload",))
    if "resnet" in sections:
        result["resnet50_throughput"] = resnet_rows(split["resnet50_amp_order"])
    if "llm" in sections:
        lr = llm_rows(args.quick)
        result["rows"]["llm_mfu"] = lr
        result["summary"]["llm_mfu"] = summarize(lr, ("gpu",))
    for rs in result["rows"].values():
        for r in rs:
            for k in ERR_KEYS + ("slowdown_err",):
                if isinstance(r.get(k), float):
                    r[k] = round(r[k], 4)
    result["method"] = {
        "zeus": "predicted epoch = ceil(samples / batch) x the prior's per-step time and GPU energy (pue 1, no host); "
                "average power = per-step GPU energy / step time; rows below a GPU's maximum limit are priced on a "
                "GpuSpec whose tdp_w is that limit",
        "mayaki_charpenay": "per training step: measured 'duration' vs predicted step time (TF32 matmuls, Adam, "
                            "eager attention; the fused-SDPA reconstruction of the first result is summarised as "
                            "mayaki_charpenay_a100_fused_attention); "
                            "energy = GPU + host (CodeCarbon scope)",
        "resnet50": "torchvision ResNet-50 traced at the benchmark's batch (fp16 = AMP; tf32), SGD; images/s = "
                    "batch / predicted step time; measured: " + split["resnet50_amp_order"]["source"] + "; " +
                    LAMBDA_FP32_SOURCE,
        "llm_mfu": "MPT decoder traced at the row's micro-batch (bf16 autocast, activation checkpointing as the row), "
                   "8-64 GPUs, FSDP full shard, grad accumulation as the row; MFU from the predicted step time with "
                   "MosaicML's formula and their NumParams; time_err = measured MFU / predicted MFU - 1; naive = 40 % "
                   "MFU (6 N D at 40 %)",
        "naive": "time = FLOPs / dense peak of the run's precision (fp32, tf32, fp16 tensor); energy = time x TDP "
                 "(x the run's power limit); average power = that limit",
        "errors": "APE = |pred - meas| / meas; ratio = pred / meas",
        "workloads": {f"{a}/{b}": w["note"] for (a, b), w in WORKLOADS.items()},
        "skipped": SKIPPED,
        "zeus_optimizer": "Zeus optimizers (Adadelta, Adam, AdamW) traced as torch's single-tensor for-loop "
                          "implementation (PyTorch 1.x's default; HF transformers.AdamW of the time loops in Python), "
                          "with zero_grad(set_to_none=False) (the default before 2.0): one gradient-accumulating add "
                          "per parameter tensor in backward and one zero fill per gradient tensor each step",
        "host_op_fit": "eager per-op host cost (--host-op-time) fitted on the Zeus named rows by time MAPE over "
                       f"a {HOST_GRID_US[0]}-{HOST_GRID_US[-1]} us grid: each GPU's named rows are predicted with the "
                       "value fitted on the other three GPUs (leave-one-GPU-out); the power-limit sweep and the other "
                       "datasets use the shipped default (the fit on all four GPUs)",
        "idle_fit": "in-job idle power of the GDDR boards (A40, Quadro RTX 6000) as a fraction of TDP fitted on the "
                    f"Zeus named rows by average-power MAPE over {list(IDLE_GDDR_GRID)}: each GPU's named rows (the "
                    "zeus_named rows) are predicted at its held-out host cost with the fraction fitted on the other "
                    "three GPUs at that host cost (leave-one-GPU-out; only GDDR rows move with it); the host-cost "
                    "grid runs on the GPU database's idle values; the sweep and other datasets use the database",
        "loader_fit": "data loading (--loader-sample-time) for the CIFAR-100 rows: each epoch's first batch is built "
                      "by one DataLoader worker before the GPU has work (Zeus's loop: num_workers=4, no persistent "
                      "workers, PIL transforms); one worker's rate fitted by time MAPE over "
                      f"{LOADER_GRID[0]}-{LOADER_GRID[-1]} samples/s on the other three GPUs' named rows (each at its "
                      "held-out host cost and idle fraction), leave-one-GPU-out; BERT rows (HF Trainer, tokenized "
                      "features) get none; zeus_named_without_loader are the rows before it; the sweep and separate "
                      "rows are not priced with it",
        "mc_model": MCTransformer.__doc__.replace("\n    ", " "),
        "mpt_model": Mpt.__doc__ + " " + MptBlock.__doc__.replace("\n    ", " "),
    }
    result["runtime_s"] = round(time.time() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    _print(result)
    print(f"wrote {args.out} in {result['runtime_s']} s")


def _print(result):
    for name, s in result["summary"].items():
        if name.endswith("throttle_slowdown"):
            print(f"== {name}: {s}")
            continue
        print(f"== {name}")
        for g, v in s.items():
            parts = []
            for k in ("time", "energy", "power"):
                if k in v:
                    parts.append(f"{k} {v[k]['mape_pct']:6.1f}% (naive {v.get('naive_' + k, {}).get('mape_pct', '-')})")
            n = next(iter(v.values()))["n"] if v else 0
            print(f"  {g:34s} n={n:3d}  " + " | ".join(parts))
    if "resnet50_throughput" in result:
        r = result["resnet50_throughput"]
        print("== resnet50 AMP order ok:", r["order_ok"], r["prior_order"], "AMP MAPE", r["amp_mape_pct"],
              "TF32 MAPE", r["tf32_mape_pct"])
        for row in r["rows"]:
            print(f"  {row['gpu']:18s} amp meas {row['amp_measured_images_per_s']:7.0f} prior "
                  f"{row['amp_prior_images_per_s']:7.0f} | tf32 meas {row.get('tf32_measured_images_per_s') or 0:6.0f}"
                  f" prior {row['tf32_prior_images_per_s']:6.0f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sections", default="zeus,mc,resnet,llm")
    ap.add_argument("--no-sweep", action="store_true", help="skip the Zeus power-limit sweep rows")
    ap.add_argument("--label", default="new")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--report", action="store_true", help="write docs/accuracy/prior.md from the results files")
    args = ap.parse_args(argv)
    if args.report:
        from prior_report import write_report  # benchmarks/prior_report.py

        write_report(OLD, OUT, REPORT)
        return
    run(args)


if __name__ == "__main__":
    main()
