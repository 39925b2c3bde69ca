"""How much the public-fit price moves where an op crosses the edge of the model's training box.

    python benchmarks/edge_continuity.py [--seed 7] [--per-kind 30]   # -> benchmarks/results/edge_continuity.json

Method
------
Outside the box of sizes each op family was fitted on (card ``domain``), the prior prices an op, and a GEMM-like
record (matmul, convolution in its implicit-GEMM view) also carries the model's excess over the prior on the nearest
GEMM inside the box (``wattlint.energy.public_fit.edge_gemm``). This script checks that hand-over the way an estimate
meets it: records are built by ``wattlint.costs`` as the frontends build them (mm, addmm with its bias, the ONNX
frontend's matmul input / weight gradients, bmm, 1x1 and 3x3 'same' convolutions forward and both gradients, with
and without a bias), with random sizes (log-uniform). For each record one size parameter is walked geometrically
until the record changes side of the box, then bisected to two adjacent integers, one inside and one outside. Both
are priced by the shipped public-fit predictor on a V100 (FP32) and by the prior.

Per crossing: the price change, the work change (max of the FLOPs and bytes ratios), and the change of the model's
excess over the prior relative to the price (``d_excess``: the hand-over's own jump, without the prior's own wave and
tile steps). Reported per record kind and exit: "fine" crossings (work changes < 1 %) whose d_excess exceeds 1 %,
and crossings where more work gets a lower price (by > 0.1 %). Deterministic for a seed; no fitted constant.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from wattlint import costs as C  # noqa: E402
from wattlint.energy import public_fit as pf  # noqa: E402
from wattlint.energy.predictor import PriorPredictor  # noqa: E402
from wattlint.hardware import resolve_gpu  # noqa: E402
from wattlint.types import OpKind, OpRecord, Phase  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "edge_continuity.json"
GPU = "v100-sxm2-16gb"


def _rec(c, op, shapes, phase=Phase.FORWARD, tags=()):
    return OpRecord(op=op, kind=c.kind, module="l", phase=phase, dtype="float32", shapes=tuple(map(tuple, shapes)),
                    flops=int(c.flops), bytes_read=int(c.bytes_read), bytes_written=int(c.bytes_written),
                    dims=tuple(sorted(tuple(c.dims) + tuple(tags))))


def mm(m, n, k):
    return _rec(C.matmul((m, k), (k, n), "float32"), "aten.mm.default", ((m, k), (k, n)))


def addmm(m, n, k):
    c = C.matmul((m, k), (k, n), "float32")  # the torch frontend's addmm: + m x n adds, + the bias read
    c = C.Cost(c.flops + m * n, c.bytes_read + n * 4, c.bytes_written, OpKind.MATMUL, c.dims)
    return _rec(c, "aten.addmm.default", ((n,), (m, k), (k, n)))


def mm_grad(m, n, k, which):
    cs = C.matmul_backward((m, k), (k, n), "float32", grad_a=which == "a", grad_b=which == "b")
    return _rec(cs[0], "MatMul", ((m, k), (k, n)), phase=Phase.BACKWARD)


def bmm(b, m, n, k):
    return _rec(C.matmul((b, m, k), (b, k, n), "float32"), "aten.bmm.default", ((b, m, k), (b, k, n)))


def conv(n, cin, h, cout, ks, bias=False):
    x, w = (n, cin, h, h), (cout, cin, ks, ks)
    c = C.conv(x, w, "float32", bias=bias, stride=1, padding=ks // 2)
    return _rec(c, "aten.convolution.default", (x, w) + (((cout,),) if bias else ()))


def conv_grad(n, cin, h, cout, ks, grad):
    x, w = (n, cin, h, h), (cout, cin, ks, ks)
    cs = C.conv_backward(x, w, "float32", input_grad=grad == 1, weight_grad=grad == 2, stride=1, padding=ks // 2)
    return _rec(cs[0], "aten.convolution_backward.default", ((n, cout, h, h), x, w), phase=Phase.BACKWARD,
                tags=(("grad", grad),))


def _lu(rng, lo, hi):
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


GEMM_SIZES = dict(m=(1, 40000), n=(1, 200000), k=(1, 200000))
CONV_SIZES = {3: dict(N=(1, 256), Cin=(1, 4096), H=(2, 512), Cout=(1, 4096)),
              1: dict(N=(1, 256), Cin=(1, 8192), H=(1, 256), Cout=(1, 8192))}
KINDS = {
    "mm": (lambda p: mm(p["m"], p["n"], p["k"]), GEMM_SIZES),
    "addmm": (lambda p: addmm(p["m"], p["n"], p["k"]), GEMM_SIZES),
    "matmul_grad_a": (lambda p: mm_grad(p["m"], p["n"], p["k"], "a"), GEMM_SIZES),
    "matmul_grad_b": (lambda p: mm_grad(p["m"], p["n"], p["k"], "b"), GEMM_SIZES),
    "bmm": (lambda p: bmm(p["b"], p["m"], p["n"], p["k"]), dict(b=(2, 5000), m=(1, 5000), n=(1, 5000), k=(1, 5000))),
    **{f"conv{ks}{'_bias' if b else ''}": ((lambda p, ks=ks, b=b: conv(p["N"], p["Cin"], p["H"], p["Cout"], ks, b)),
                                          CONV_SIZES[ks]) for ks in (1, 3) for b in (False, True)},
    **{f"conv{ks}_grad{g}": ((lambda p, ks=ks, g=g: conv_grad(p["N"], p["Cin"], p["H"], p["Cout"], ks, g)),
                             CONV_SIZES[ks]) for ks in (1, 3) for g in (1, 2)},
}


class Checker:
    def __init__(self):
        self.gpu = resolve_gpu(GPU)[0]
        self.pred = pf.load_public_fit()
        self.prior = PriorPredictor()

    def side(self, r):
        fam = pf.family(r, self.gpu, "fp32")
        if fam is None or fam not in self.pred.model.card["families"]:
            return None
        return self.pred.model.in_domain(fam, pf.features(r, self.gpu))

    def exits(self, r):
        fam = pf.family(r, self.gpu, "fp32")
        row = pf.features(r, self.gpu)
        out = []
        for name, (lo, hi) in self.pred.model.box(fam).items():
            v = row[pf.FEATURE_NAMES.index(name)]
            out += [name[6:] + "^"] if v > hi + pf.DOMAIN_TOLERANCE else []
            out += [name[6:] + "_"] if v < lo - pf.DOMAIN_TOLERANCE else []
        return "+".join(out)


def crossing(chk: Checker, make, p: dict, key: str, rng) -> tuple[int, int] | None:
    """Adjacent values (lo, lo + 1) of ``key`` on the two sides of the box, from ``p`` walked geometrically."""
    s0 = chk.side(make(p))
    if s0 is None:
        return None
    up = rng.random() < 0.5
    v = p[key]
    for _ in range(60):
        nv = int(v * 1.25) + 1 if up else max(1, int(v / 1.25))
        if nv == v:
            return None
        s = chk.side(make({**p, key: nv}))
        if s is None:
            return None
        if s != s0:
            lo, hi = (v, nv) if up else (nv, v)
            s_lo = chk.side(make({**p, key: lo}))
            while hi - lo > 1:
                mid = (lo + hi) // 2
                sm = chk.side(make({**p, key: mid}))
                if sm is None:
                    return None
                lo, hi = (mid, hi) if sm == s_lo else (lo, mid)
            return lo, hi
        v = nv
    return None


def run(seed: int, per_kind: int) -> dict:
    rng = random.Random(seed)
    chk = Checker()
    rows = []
    for kind, (make, sizes) in KINDS.items():
        n = tries = 0
        while n < per_kind and tries < 30 * per_kind:
            tries += 1
            p = {k: _lu(rng, *b) for k, b in sizes.items()}
            key = rng.choice(list(p))
            c = crossing(chk, make, p, key, rng)
            if c is None:
                continue
            ra, rb = make({**p, key: c[0]}), make({**p, key: c[1]})
            if pf.family(ra, chk.gpu, "fp32") != pf.family(rb, chk.gpu, "fp32"):
                continue
            n += 1
            (pa, pb), _ = chk.pred.predict([ra, rb], chk.gpu, "fp32")
            (qa, qb), _ = chk.prior.predict([ra, rb], chk.gpu, "fp32")
            out = rb if not chk.side(rb) else ra
            rows.append({"kind": kind, "key": key, "sizes": {**p, key: c[0]}, "to": c[1], "exit": chk.exits(out),
                         "price_us": [round(pa * 1e6, 3), round(pb * 1e6, 3)],
                         "prior_us": [round(qa * 1e6, 3), round(qb * 1e6, 3)],
                         "jump": pb / pa - 1, "work": max(rb.flops / max(1, ra.flops), rb.bytes / ra.bytes) - 1,
                         "d_excess": ((pb - qb) - (pa - qa)) / min(pa, pb),
                         "stand_in": pf.edge_gemm(out, chk.gpu, chk.pred.model, pf.family(out, chk.gpu, "fp32"))
                         is not None})
    return summarize(rows)


def summarize(rows: list[dict]) -> dict:
    fine = [r for r in rows if r["work"] < 0.01]
    jumps = [r for r in fine if abs(r["d_excess"]) > 0.01]
    falls = [r for r in rows if r["jump"] < -0.001]
    by = collections.defaultdict(list)
    for r in rows:
        by[r["kind"]].append(r)
    per_kind = {k: {"crossings": len(rr), "fine": sum(r["work"] < 0.01 for r in rr),
                    "fine_over_1pct": sum(r["work"] < 0.01 and abs(r["d_excess"]) > 0.01 for r in rr),
                    "max_fine_abs_d_excess_pct": round(100 * max((abs(r["d_excess"]) for r in rr
                                                                  if r["work"] < 0.01), default=0.0), 2),
                    "falls": sum(r["jump"] < -0.001 for r in rr),
                    "worst_fall_pct": round(100 * min((r["jump"] for r in rr), default=0.0), 2),
                    "no_stand_in": sum(not r["stand_in"] for r in rr)} for k, rr in sorted(by.items())}
    return {"crossings": len(rows), "fine": len(fine), "fine_over_1pct": len(jumps),
            "max_fine_abs_d_excess_pct": round(100 * max((abs(r["d_excess"]) for r in fine), default=0.0), 2),
            "falls_over_0.1pct": len(falls),
            "worst_fall_pct": round(100 * min((r["jump"] for r in rows), default=0.0), 2),
            "per_kind": per_kind,
            "worst": sorted(jumps, key=lambda r: -abs(r["d_excess"]))[:5] + sorted(falls, key=lambda r: r["jump"])[:5]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--per-kind", type=int, default=30, help="crossings per record kind (default 30)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = run(args.seed, args.per_kind)
    res = {"benchmark": "edge_continuity", "gpu": GPU, "seed": args.seed, "per_kind": args.per_kind,
           "method": __doc__.split("Method\n------\n", 1)[1].strip(), **res,
           "wall_s": round(time.perf_counter() - t0, 1)}
    OUT.write_text(json.dumps(res, indent=1, default=float) + "\n")
    print(f"{res['crossings']} crossings; {res['fine']} with < 1 % more work, of which {res['fine_over_1pct']} move the "
          f"model's excess by > 1 % (max {res['max_fine_abs_d_excess_pct']} %); {res['falls_over_0.1pct']} where more "
          f"work gets a lower price (worst {res['worst_fall_pct']} %)")
    for k, v in res["per_kind"].items():
        print(f"  {k:14s} {v}")
    print(f"wrote {OUT.relative_to(ROOT)} in {res['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
