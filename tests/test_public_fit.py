"""The public-fit model: features by hand, family routing, the predictor's time/power rule, the shipped card, the
light import path and the selection rule."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from wattlint.energy import public_fit as pf
from wattlint.energy.predictor import PriorPredictor
from wattlint.hardware import resolve_gpu
from wattlint.types import OpKind, OpRecord, Phase

SHIPPED = Path(pf.__file__).resolve().parents[1] / "models" / pf.MODEL_DIRNAME


def _gemm(b, m, n, k, dtype="float32", phase=Phase.FORWARD):
    e = 2 if dtype in ("float16", "bfloat16") else 4
    return OpRecord(op="aten.bmm.default" if b > 1 else "aten.mm.default", kind=OpKind.MATMUL, module="l",
                    phase=phase, dtype=dtype, shapes=((b, m, k), (b, k, n)), flops=2 * b * m * n * k,
                    bytes_read=(b * m * k + b * k * n) * e, bytes_written=b * m * n * e,
                    dims=(("b", b), ("k", k), ("m", m), ("n", n)))


def _ew(n, dtype="float32", kind=OpKind.ELEMENTWISE, op="aten.add.Tensor", rows=1):
    e = 2 if dtype in ("float16", "bfloat16") else 4
    return OpRecord(op=op, kind=kind, module="", phase=Phase.FORWARD, dtype=dtype, shapes=((rows, n // rows),),
                    flops=n, bytes_read=2 * n * e, bytes_written=n * e)


def _conv(groups=1, k=3, stride=1, phase=Phase.FORWARD):
    # x [8, 64, 28, 28], w [128, 64/g, k, k]
    out = 28 // stride
    x, w = (8, 64, 28, 28), (128, 64 // groups, k, k)
    m, n, kk = 8 * out * out, 128 // groups, (64 // groups) * k * k
    shapes = ((8, 128, out, out), x, w) if phase is Phase.BACKWARD else (x, w)
    return OpRecord(op="aten.convolution_backward.default" if phase is Phase.BACKWARD else "aten.convolution.default",
                    kind=OpKind.CONV, module="c", phase=phase, dtype="float32", shapes=shapes,
                    flops=2 * groups * m * n * kk, bytes_read=4 * (8 * 64 * 28 * 28 + 128 * kk),
                    bytes_written=4 * 8 * 128 * out * out, dims=(("b", groups), ("k", kk), ("m", m), ("n", n)))


def _same_conv(batch, ch, hw, ks):
    """A forward ch -> ch ks x ks stride-1 'same' convolution at hw x hw, no bias (costs.conv's implicit GEMM: m = batch
    x hw^2, n = ch, k = ch x ks^2)."""
    m, k = batch * hw * hw, ch * ks * ks
    return OpRecord(op="aten.convolution.default", kind=OpKind.CONV, module="c", phase=Phase.FORWARD, dtype="float32",
                    shapes=((batch, ch, hw, hw), (ch, ch, ks, ks)), flops=2 * m * ch * k,
                    bytes_read=(m * ch + ch * k) * 4, bytes_written=m * ch * 4,
                    dims=(("b", 1), ("k", k), ("m", m), ("n", ch)))


def test_roofline_and_features_by_hand():
    a100 = resolve_gpu("a100-pcie-40gb")[0]  # 108 SMs, 19.5 TFLOP/s fp32, 1555 GB/s, 40 MB L2
    r = _gemm(1, 1024, 1024, 1024)
    # 2 * 1024^3 FLOPs / 19.5e12 = 110.1 us; bytes 3 * 4 MiB / 1555e9 = 8.09 us -> compute bound
    assert pf.roofline_s(r, a100) == pytest.approx(2 * 1024 ** 3 / 19.5e12)
    f = dict(zip(pf.FEATURE_NAMES, pf.features(r, a100)))
    assert len(pf.features(r, a100)) == len(pf.FEATURE_NAMES)
    assert f["hw_sm_count"] == 108 and f["hw_peak_fp32_tflops"] == pytest.approx(19.5)
    assert f["log10_roofline_us"] == pytest.approx(math.log10(2 * 1024 ** 3 / 19.5e12 * 1e6))
    # 128x128 tiles: 8 x 8 = 64 tiles on 108 SMs -> 0.593 waves, one partial wave (efficiency = 0.593); 32x32: 1024
    # tiles -> 9.48 waves, wave efficiency 9.48 / 10
    assert f["log10_waves_128x128"] == pytest.approx(math.log10(64 / 108))
    assert f["wave_eff_128x128"] == pytest.approx(64 / 108)
    assert f["wave_eff_32x32"] == pytest.approx((1024 / 108) / 10)
    assert f["tile_fill_128x128"] == 1.0 and f["log10_k"] == pytest.approx(math.log10(1024))
    # intensity 2*1024^3 / (12 MiB) = 170.7 FLOP/B; ridge 19.5e12 / 1555e9 = 12.54 FLOP/B
    assert f["log10_intensity_over_ridge"] == pytest.approx(math.log10((2 * 1024 ** 3 / (12 * 2 ** 20)) /
                                                                       (19.5e12 / 1555e9)))
    g = dict(zip(pf.FEATURE_NAMES, pf.features(_ew(2 ** 20), a100)))
    # 1 Mi elements on 108 SMs x 2048 threads = 4.74 waves; 1 FLOP and 12 bytes per element: read/write 2
    assert g["log10_elem_waves"] == pytest.approx(math.log10(2 ** 20 / (108 * 2048)))
    assert g["flops_per_elem"] == 1.0 and g["read_over_write"] == 2.0 and g["wave_eff_128x128"] == 0.0


def test_family_routing_follows_what_the_data_measured():
    a100, v100 = resolve_gpu("a100-pcie-40gb")[0], resolve_gpu("v100-pcie-32gb")[0]
    assert pf.family(_gemm(1, 64, 64, 64), a100, "default") == "mm"  # PyTorch default: no TF32 matmuls
    assert pf.family(_gemm(8, 64, 64, 64), a100, "fp32") == "bmm"
    assert pf.family(_gemm(1, 64, 64, 64), a100, "tf32") is None  # TF32 tensor cores: prior
    assert pf.family(_gemm(1, 64, 64, 64), v100, "tf32") == "mm"  # no TF32 on Volta: still FP32 SIMT
    assert pf.family(_gemm(1, 64, 64, 64, "bfloat16"), a100, "bf16") is None
    assert pf.family(_conv(), v100, "default") == "conv"
    assert pf.family(_conv(phase=Phase.BACKWARD), v100, "default") == "conv"
    assert pf.family(_conv(), a100, "default") is None  # cuDNN TF32 by default on Ampere
    assert pf.family(_conv(), a100, "fp32") == "conv"
    assert pf.family(_conv(groups=4), v100, "fp32") is None  # grouped / depthwise: not measured
    # only 3x3 stride-1 convolutions were measured; a 1x1 stride-1 convolution is a GEMM (pixels x Cout x Cin)
    assert pf.family(_conv(k=1), v100, "fp32") == "mm"
    assert pf.family(_conv(k=1, phase=Phase.BACKWARD), v100, "fp32") == "mm"
    assert pf.family(_conv(k=1), a100, "default") is None  # TF32 on Ampere by default: prior
    assert pf.family(_conv(k=1, stride=2), v100, "fp32") is None  # strided 1x1: a gather, not a plain GEMM
    assert pf.family(_conv(k=5), v100, "fp32") is None
    assert pf.family(_conv(stride=2), v100, "fp32") is None
    assert pf.family(_ew(1024, "bfloat16"), a100, "bf16") == "elementwise"  # memory-bound: any dtype
    assert pf.family(_ew(1024, kind=OpKind.SOFTMAX, op="aten._softmax.default"), a100, "fp32") == "softmax"
    assert pf.family(_ew(1024, kind=OpKind.NORM, op="aten.native_layer_norm.default"), a100, "fp32") == "layernorm"
    assert pf.family(_ew(1024, kind=OpKind.NORM, op="aten.native_batch_norm.default"), a100, "fp32") is None
    att = OpRecord(op="aten._scaled_dot_product_efficient_attention.default", kind=OpKind.ATTENTION, module="",
                   phase=Phase.FORWARD, dtype="float32", flops=10, bytes_read=10, bytes_written=10)
    assert pf.family(att, a100, "fp32") is None


def test_shipped_card_is_complete_and_small():
    card = json.loads((SHIPPED / "card.json").read_text())
    assert card["schema"] == pf.SCHEMA and card["features"]["names"] == list(pf.FEATURE_NAMES)
    assert set(card["families"]) == set(pf.FAMILIES)
    assert any("MIT" in s["licence"] for s in card["data_sources"])
    assert set(card["train_gpus"]) == {"Tesla P4", "Tesla P100-PCIE-16GB", "Tesla T4", "Tesla V100-PCIE-32GB",
                                       "NVIDIA A100-PCIE-40GB", "NVIDIA A100 80GB PCIe"}  # the conv file's GPU
    import hashlib

    total = 0
    for info in card["families"].values():
        p = SHIPPED / info["file"]
        assert hashlib.sha256(p.read_bytes()).hexdigest() == info["sha256"]
        total += p.stat().st_size
    assert total < 6e6
    t = card["residuals"]["time"]
    assert t["p5"] < 0 < t["p95"]
    assert card["held_out"]["selection_time_mape"] < card["held_out"]["selection_prior_time_mape"]


def test_predictor_time_is_roofline_over_efficiency_and_keeps_the_prior_dynamic_energy():
    pred = pf.load_public_fit()
    assert pred is not None and pred.calibration == "public-fit"
    h100 = resolve_gpu("h100-sxm5-80gb")[0]
    recs = [_gemm(1, 2048, 5120, 1280), _gemm(40, 1024, 1024, 64), _ew(2 ** 22),
            _gemm(1, 2048, 5120, 1280, "bfloat16")]  # the last: tensor cores -> the prior
    times, powers = pred.predict(recs, h100, "fp32")
    pt, pp = PriorPredictor().predict(recs, h100, "fp32")
    for r, t, p, t0, p0 in zip(recs[:3], times, powers, pt, pp):
        roof = pf.roofline_s(r, h100)
        assert roof <= t < 50 * roof  # efficiency in (0, 1]
        # dynamic (above idle) energy of the op as the prior prices it, spread over the public-fit time
        if p < h100.tdp_w:
            assert (p - h100.idle_w) * t == pytest.approx((p0 - h100.idle_w) * t0, rel=1e-9)
    assert (times[3], powers[3]) == (pt[3], pp[3])
    assert pred.range_factors("time")[0] < 1 < pred.range_factors("time")[1]
    # identical records are evaluated once and priced identically
    t2, _ = pred.predict([recs[0], recs[0]], h100, "fp32")
    assert t2[0] == t2[1] == times[0]
    # a what-if utilisation keeps the prior
    assert pred.predict(recs, h100, "fp32", utilization=0.5)[0] == PriorPredictor().predict(recs, h100, "fp32",
                                                                                          utilization=0.5)[0]


def test_own_prices_and_the_band_that_follows_the_covered_share():
    """Per record, whether public-fit's own model priced it: an FP32 CUDA-core GEMM inside the box yes, the same GEMM
    in bf16 (tensor cores) no, anything under a what-if utilization no (the prior's time is kept). The 5-95 % band of
    a step the model prices 75 % of mixes the card's band and the prior's in log space: lo = exp(0.75 ln lo_card +
    0.25 ln lo_prior)."""
    import math

    from wattlint.aggregate import EnergyModelInfo, covered
    from wattlint.energy.predictor import PRIOR_RANGES
    from wattlint.energy.pricing import own_prices

    pred = pf.load_public_fit()
    h100 = resolve_gpu("h100-sxm5-80gb")[0]
    fp32, bf16 = _gemm(1, 2048, 5120, 1280), _gemm(1, 2048, 5120, 1280, "bfloat16")
    times = pred.predict([fp32, bf16], h100, "fp32")[0]
    assert own_prices(pred, [fp32, bf16], times, h100, "fp32", None) == (True, False)
    assert own_prices(pred, [fp32, bf16], times, h100, "fp32", 0.5) == (False, False)
    assert own_prices(PriorPredictor(), [fp32, bf16], times, h100, "fp32", None) is None
    lo, hi = pred.range_factors("time")
    info = EnergyModelInfo("public-fit", "card", pred.range_factors("energy"), (lo, hi))
    plo, phi = PRIOR_RANGES["time"]
    mixed = covered(info, 0.75)
    assert mixed.coverage == 0.75
    assert mixed.time_range[0] == pytest.approx(math.exp(0.75 * math.log(lo) + 0.25 * math.log(plo)), rel=1e-12)
    assert mixed.time_range[1] == pytest.approx(math.exp(0.75 * math.log(hi) + 0.25 * math.log(phi)), rel=1e-12)
    assert covered(info, 1.0).time_range == info.time_range


def test_reports_say_how_much_of_the_step_public_fit_priced():
    """gpt2-tiny (ONNX, 4 blocks) on a V100 in FP32: public-fit prices the FP32 GEMMs and the memory-bound kernels in
    its box, the prior the rest. The share is op time per step, as the step adds it up: doubled recompute and 8
    accumulated micro-batches must give the share computed by hand from the per-record flags with those weights
    (forward records x 8 x 2, backward x 8, optimizer x 1). Under --utilization public-fit prices nothing."""
    import wattlint
    from wattlint.report import json_out, text

    from tests.conftest import EXAMPLES

    src = str(EXAMPLES / "gpt2-tiny.onnx")
    kw = dict(gpu="v100-sxm2-16gb", steps=10, precision="fp32", batch_size=64, grad_accum=8, lint=False)
    est = wattlint.estimate(src, activation_checkpointing=True, **kw)
    pred = pf.load_public_fit()
    g = est.graph
    own = [pred.covers(r, est.gpu, "fp32") for r in g.records]
    w = {Phase.FORWARD: 8 * 2, Phase.BACKWARD: 8, Phase.OPTIMIZER: 1}
    num = sum(t * w.get(r.phase, 0) for r, t, o in zip(g.records, est.op_times_s, own) if o and t > 0)
    den = sum(t * w.get(r.phase, 0) for r, t in zip(g.records, est.op_times_s) if t > 0)
    assert est.calibration_coverage == pytest.approx(num / den, rel=1e-9) and 0.1 < num / den < 0.99
    doc = json_out.to_dict(est)
    assert doc["hardware"]["calibration_coverage"] == pytest.approx(num / den, rel=1e-3)
    assert f"it priced {num / den:.0%} of this step's op time, the spec-sheet prior the rest" in \
        " ".join(text.render([est], width=200).split())
    what_if = wattlint.estimate(src, utilization=0.5, **kw)
    # public-fit priced none of it: the prior made every number, and the label says so
    assert what_if.calibration == "prior" and "public-fit model" in what_if.calibration_source \
        and "prices none of this step's ops" in what_if.calibration_source


def test_a_tf32_op_that_took_its_fp32_price_counts_as_public_fit():
    """On an RTX 3090 (GA102: TF32 tensor peak no higher than the FP32 CUDA-core peak) ResNet-50's convolutions at
    the default precision often take their FP32 kernel's price, which public-fit gives: those count as public-fit's.
    By hand: a record is the model's when its price equals the FP32 price and public-fit covers it under fp32."""
    import wattlint

    from tests.conftest import EXAMPLES

    est = wattlint.estimate(str(EXAMPLES / "resnet50.onnx"), gpu="rtx3090", steps=10, lint=False)
    pred = pf.load_public_fit()
    g = est.graph
    took_fp32 = [i for i, (r, t) in enumerate(zip(g.records, est.op_times_s))
                 if r.kind is OpKind.CONV and t > 0 and pred.predict([r], est.gpu, "fp32")[0][0] == t
                 and pred.covers(r, est.gpu, "fp32")]
    assert len(took_fp32) > 20
    # one micro-batch, no recompute, no sharding: the step weights forward / backward / optimizer records alike,
    # so those records' share of the op time is a lower bound of the covered share (other ops count too)
    fp32_share = sum(est.op_times_s[i] for i in took_fp32) / sum(t for t in est.op_times_s if t > 0)
    assert est.calibration_coverage >= fp32_share > 0.3  # 0.18 when the plan's precision alone decided


def test_large_sgemm_efficiency_is_plausible_on_a_training_gpu():
    """A large FP32 GEMM on a V100 (a training GPU) reaches most of the FP32 peak: NeuSight's V100 linear kernels
    top out at 0.96 of the 14 TFLOP/s roofline (kernels-train/linear__Tesla_V100-PCIE-32GB: max efficiency 0.958,
    median 0.72); an 8192^3 GEMM must land between the median and that maximum."""
    pred = pf.load_public_fit()
    v100 = resolve_gpu("v100-pcie-32gb")[0]
    r = _gemm(1, 8192, 8192, 8192)
    (t,), _ = pred.predict([r], v100, "fp32")
    eff = pf.roofline_s(r, v100) / t
    assert 0.72 <= eff <= 0.96


def test_loading_imports_neither_torch_nor_lightgbm():
    code = ("import sys, wattlint\n"
            "from wattlint.energy.public_fit import load_public_fit, choose_predictor\n"
            "from wattlint.hardware import resolve_gpu\n"
            "p = load_public_fit()\n"
            "assert p is not None and p.calibration == 'public-fit'\n"
            "assert choose_predictor(resolve_gpu('h100')[0], public_fit=p) is p\n"
            "bad = [m for m in ('torch', 'lightgbm') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def _fake(card_extra):
    card = {"families": {"mm": {"file": "mm.txt"}}, "residuals": {"time": {"p5": -0.2, "p95": 0.2}}}
    card.update(card_extra)
    return pf.PublicFitPredictor(pf.PublicFitModel(Path("."), card))


def test_selection_rule_measured_public_fit_transferred_prior():
    h100, mi300 = resolve_gpu("h100-sxm5-80gb")[0], resolve_gpu("mi300x-192gb")[0]
    good = _fake({"held_out": {"selection_time_mape": 0.08, "selection_prior_time_mape": 0.30}})
    worse = _fake({"held_out": {"selection_time_mape": 0.35, "selection_prior_time_mape": 0.30}})
    unmeasured = _fake({})
    measured, prior = PriorPredictor(), PriorPredictor()

    class Transferred(PriorPredictor):
        calibration = "transferred"

        def __init__(self, wape):
            self.model = type("M", (), {"card": {"cv": {"leave_shape_out": {"time_wape": wape}}}})()

    assert pf.choose_predictor(h100, measured=measured, public_fit=good) is measured
    assert pf.choose_predictor(h100, public_fit=good, prior=prior) is good
    assert pf.choose_predictor(h100, public_fit=worse, prior=prior) is prior  # held-out errors say otherwise
    assert pf.choose_predictor(h100, public_fit=unmeasured, prior=prior) is prior
    assert pf.choose_predictor(mi300, public_fit=good, prior=prior) is prior  # NVIDIA data only
    tr_good, tr_bad = Transferred(0.03), Transferred(0.2)  # widened x1.5: 0.045 < 0.08, 0.3 > 0.08
    assert pf.choose_predictor(h100, public_fit=good, transferred=tr_good) is tr_good
    assert pf.choose_predictor(h100, public_fit=good, transferred=tr_bad) is good
    assert pf.choose_predictor(mi300, public_fit=good, transferred=tr_bad) is tr_bad
    assert pf.choose_predictor(mi300).calibration == "prior"


def test_broken_model_folder_is_none_not_an_error(tmp_path):
    assert pf.load_public_fit(tmp_path) is None
    (tmp_path / pf.MODEL_DIRNAME).mkdir()
    (tmp_path / pf.MODEL_DIRNAME / "card.json").write_text("{not json")
    assert pf.load_public_fit(tmp_path) is None
    (tmp_path / pf.MODEL_DIRNAME / "card.json").write_text(json.dumps({"schema": pf.SCHEMA, "features": {
        "version": "old", "names": []}}))
    with pytest.raises(pf.PublicFitError, match="feature version"):
        pf.load_model(tmp_path / pf.MODEL_DIRNAME)


@pytest.mark.parametrize("damage", ["truncated", "edited", "family-not-a-table", "headless"])
def test_a_damaged_user_public_fit_is_skipped_named_and_never_reaches_lightgbm(tmp_path, damage):
    """A truncated family file aborted the process inside LightGBM (SIGABRT, exit 134) although the card lists its
    sha256; a family entry written as a bare file name was an internal error (AttributeError, exit 3); and a broken
    public-fit in a --models-dir was dropped for the shipped one without a word. Each is refused at load, the next
    folder's model used, and the searched line names the folder and why."""
    import shutil

    from wattlint.energy.predictor import MODELS_DIR, ModelsDir, get_predictor
    from wattlint.hardware import resolve_gpu

    mine = tmp_path / pf.MODEL_DIRNAME
    shutil.copytree(MODELS_DIR / pf.MODEL_DIRNAME, mine)
    conv = mine / "conv.txt"
    card = json.loads((mine / "card.json").read_text())
    if damage == "truncated":
        conv.write_bytes(conv.read_bytes()[: conv.stat().st_size // 2])
        card["families"]["conv"].pop("sha256")  # the text check alone must catch it
        (mine / "card.json").write_text(json.dumps(card))
        why = "not a whole LightGBM text model"
    elif damage == "edited":
        conv.write_bytes(conv.read_bytes().replace(b"tree\n", b"tree \n", 1))
        why = "sha256 differs from the card"
    elif damage == "family-not-a-table":
        card["families"]["mm"] = "mm.txt"
        (mine / "card.json").write_text(json.dumps(card))
        why = "family 'mm' unknown, not a {file, sha256, ...} table"
    else:
        conv.write_bytes(b"version=v4\n" + conv.read_bytes()[5:])
        card["families"]["conv"].pop("sha256")
        (mine / "card.json").write_text(json.dumps(card))
        why = "not a whole LightGBM text model"
    with pytest.raises(pf.PublicFitError, match=why.replace("{", r"\{").replace("}", r"\}")):
        pf._read_model(mine)
    p = get_predictor(resolve_gpu("h100")[0], (ModelsDir(tmp_path, "--models-dir"), ModelsDir(MODELS_DIR, "shipped")))
    assert p.calibration == "public-fit" and f"(--models-dir {tmp_path})" not in p.source  # the shipped one
    assert f"public-fit model in --models-dir {tmp_path} not usable: " in p.searched and why in p.searched


def test_a_users_public_fit_is_named_by_its_folder(tmp_path):
    import shutil

    from wattlint.energy.predictor import MODELS_DIR, ModelsDir, get_predictor
    from wattlint.hardware import resolve_gpu

    shutil.copytree(MODELS_DIR / pf.MODEL_DIRNAME, tmp_path / pf.MODEL_DIRNAME)
    p = get_predictor(resolve_gpu("h100")[0], (ModelsDir(tmp_path, "--models-dir"), ModelsDir(MODELS_DIR, "shipped")))
    assert p.calibration == "public-fit" and p.source.endswith(f"(--models-dir {tmp_path})")
    shipped = get_predictor(resolve_gpu("h100")[0], (ModelsDir(MODELS_DIR, "shipped"),))
    assert shipped.source == p.source.rsplit(" (--models-dir", 1)[0]


def test_shipped_domain_is_the_training_kernels_box():
    """The card's box for mm comes from NeuSight's linear kernels: the largest B x M of
    kernels-train/linear__*.csv.gz is 8192 rows (read off the files), so log10_m tops out at log10(8192) = 3.9134."""
    card = json.loads((SHIPPED / "card.json").read_text())
    assert set(card["domain"]) == set(pf.FAMILIES)
    lo, hi = card["domain"]["mm"]["log10_m"]
    assert hi == pytest.approx(math.log10(8192), abs=1e-5) and lo <= hi
    for fam, box in card["domain"].items():
        assert set(box) == set(pf.DOMAIN_FEATURES[fam])
    # a GEMM is bounded by its dims, an elementwise kernel by its element count, not by its tensor's shape
    assert "log10_rows" not in card["domain"]["mm"] and "log10_rows" not in card["domain"]["elementwise"]
    assert "log10_rows" in card["domain"]["softmax"]


def test_ops_outside_the_training_box_are_priced_by_the_prior():
    """NCF's MLP on a V100: a 1,048,576-row FP32 GEMM is 128x taller than any measured GEMM (at most 8,192 rows), so
    the prior (whose tile and wave physics extrapolate) prices it, plus the model's absolute excess over the prior at
    the box's edge (the 8,192-row GEMM of the same width, which NeuSight measured): no jump at the edge, and the
    excess fades relative to larger GEMMs. A 4,096-row GEMM is inside and the model prices it. A card without a box
    keeps the old behaviour (everything its families route is covered)."""
    pred = pf.load_public_fit()
    v100 = resolve_gpu("v100-sxm2-16gb")[0]
    tall, inside, edge = _gemm(1, 1_048_576, 256, 256), _gemm(1, 4096, 256, 256), _gemm(1, 8192, 256, 256)
    assert pf.family(tall, v100, "fp32") == pf.family(inside, v100, "fp32") == "mm"
    inside_box = lambda r: pred.model.in_domain("mm", pf.features(r, v100))  # noqa: E731
    assert not inside_box(tall) and inside_box(inside) and inside_box(edge)
    assert pred.covers(tall, v100, "fp32")  # priced with the model's excess at the edge
    (t_tall, t_in, t_edge), _ = pred.predict([tall, inside, edge], v100, "fp32")
    (q_tall, q_in, q_edge), _ = PriorPredictor().predict([tall, inside, edge], v100, "fp32")
    assert t_in != q_in
    # the stand-in at the edge is the same GEMM with m clamped to the box's 8,192 rows
    c = pf.edge_gemm(tall, v100, pred.model, "mm")
    assert (c.dim("b"), c.dim("m"), c.dim("n"), c.dim("k")) == (1, 8192, 256, 256)
    assert c.flops == 2 * 8192 * 256 * 256 and c.bytes == (8192 * 256 + 256 * 256 + 8192 * 256) * 4
    assert t_tall == pytest.approx(q_tall + (t_edge - q_edge), rel=1e-12)
    assert t_edge > 1.3 * q_edge  # the model is well above the prior at the edge (measured small-K SGEMMs) ...
    assert t_tall < 1.02 * q_tall  # ... and that excess is < 2 % of a GEMM 128x taller
    # no jump at the edge, and a bigger GEMM is never priced faster
    (t_8193, t_16k), _ = pred.predict([_gemm(1, 8193, 256, 256), _gemm(1, 16384, 256, 256)], v100, "fp32")
    assert t_8193 == pytest.approx(t_edge, rel=0.005)
    assert t_edge <= t_8193 < t_16k < t_tall
    boxless = pf.PublicFitPredictor(pf.PublicFitModel(pred.model.path,
                                                      {k: v for k, v in pred.model.card.items() if k != "domain"}))
    assert boxless.covers(tall, v100, "fp32")
    assert boxless.predict([tall], v100, "fp32")[0][0] != t_tall


def test_edge_gemm_shrinks_into_the_box():
    """A GEMM too large in several ways: each dim is clamped into its range first (b, m, n, k); then the FLOPs, still
    above the box, are brought inside by scaling m, n and k by one common factor, the largest that fits (dims
    rounded). Here m 100,000 -> 8,192 and n 70,000 -> 8,192 by clamping, k 1,024 stays; FLOPs 2 x 8192 x 8192 x 1024
    are over the box's 2 x 8192 x 5000 x 1024 by 8192 / 5000, so the factor is (5000 / 8192)^(1/3) = 0.8482: m = n =
    8192 x 0.8482 = 6,948.3 -> 6,948, and k = 1024 x 0.8482 = 868.6 would round to 869, which is over the top
    (2 x 6948^2 x 869 > 2 x 8192 x 5000 x 1024), so the factor drops just below 868.5 / 1024 (m, n still 6,948) and
    k = 868. A record that is not GEMM-like has no stand-in."""
    card = {"families": {"mm": {"file": "mm.txt"}},
            "domain": {"mm": {"log10_b": [0.0, 0.0], "log10_m": [0.0, math.log10(8192)],
                              "log10_n": [0.0, math.log10(8192)], "log10_k": [0.0, math.log10(8192)],
                              "log10_flops": [0.0, math.log10(2 * 8192 * 5000 * 1024)]}}}
    model = pf.PublicFitModel(Path("."), card)
    v100 = resolve_gpu("v100-sxm2-16gb")[0]
    c = pf.edge_gemm(_gemm(1, 100_000, 70_000, 1024), v100, model, "mm")
    assert (c.dim("m"), c.dim("n"), c.dim("k")) == (6948, 6948, 868)
    assert c.flops == 2 * 6948 * 6948 * 868 and c.op == "aten.mm.default"
    assert c.bytes == (6948 * 868 + 868 * 6948 + 6948 * 6948) * 4
    assert pf.edge_gemm(_ew(2 ** 22), v100, model, "mm") is None
    # below the box: 64 x 64 x 1,024 is under a 2 x 64 x 64 x 1,500 FLOPs floor; the smallest common factor with
    # round(64 f)^2 x round(1024 f) >= 64 x 64 x 1500 = 6,144,000: f = 72.5 / 64 gives 73 x 73 x 1,160 = 6,181,640
    # (just below it m = n = 72: 72^2 x 1,160 = 6,013,440, too small)
    low = pf.PublicFitModel(Path("."), {"families": {"mm": {"file": "mm.txt"}}, "domain": {"mm": {
        "log10_b": [0.0, 0.0], "log10_m": [0.0, 4.0], "log10_n": [0.0, 4.0], "log10_k": [0.0, 4.0],
        "log10_flops": [math.log10(2 * 64 * 64 * 1500), 13.0]}}})
    c = pf.edge_gemm(_gemm(1, 64, 64, 1024), v100, low, "mm")
    assert (c.dim("m"), c.dim("n"), c.dim("k")) == (73, 73, 1160)
    # a box that also bounds a size no GEMM dim can move (here the row length, k = 1,024 > 10^2): no stand-in
    rowbox = pf.PublicFitModel(Path("."), {"families": {"mm": {"file": "mm.txt"}}, "domain": {"mm": {
        **low.box("mm"), "log10_row": [0.0, 2.0]}}})
    assert pf.edge_gemm(_gemm(1, 64, 64, 1024), v100, rowbox, "mm") is None
    # above the box in one size and below it in another: a 1,000 x 1,000 x 1 outer product moves 4.0 MB (over a
    # 1 MB top) for 2 MFLOP (under a 10 MFLOP floor): no stand-in
    both = pf.PublicFitModel(Path("."), {"families": {"mm": {"file": "mm.txt"}}, "domain": {"mm": {
        "log10_b": [0.0, 0.0], "log10_m": [0.0, 4.0], "log10_n": [0.0, 4.0], "log10_k": [0.0, 4.0],
        "log10_flops": [7.0, 13.0], "log10_bytes": [0.0, 6.0]}}})
    assert pf.edge_gemm(_gemm(1, 1000, 1000, 1), v100, both, "mm") is None


def test_edge_gemm_convolution_keeps_its_operand_roles():
    """A convolution's stand-in is the same convolution with smaller implicit-GEMM dims: the weight-gradient record
    of a 3x3 conv (x [8, 64, 28, 28], w [128, 64, 3, 3]; m = 8 x 28 x 28 = 6,272, n = 128, k = 64 x 9 = 576) writes
    the weight (k x n) and reads the output gradient (m x n) and the input (m x k / 9). With m capped at 3,136 rows it
    is the conv of half the batch: writes 576 x 128, reads 3,136 x 128 + 3,136 x 64 elements, half the FLOPs."""
    model = pf.PublicFitModel(Path("."), {"families": {"conv": {"file": "conv.txt"}}, "domain": {"conv": {
        "log10_b": [0.0, 0.0], "log10_m": [0.0, math.log10(3136)], "log10_n": [0.0, 4.0], "log10_k": [0.0, 5.0]}}})
    v100 = resolve_gpu("v100-sxm2-16gb")[0]
    bw = _conv(phase=Phase.BACKWARD)
    bw = dataclasses.replace(bw, bytes_read=4 * (8 * 128 * 28 * 28 + 8 * 64 * 28 * 28), bytes_written=4 * 128 * 64 * 9,
                             dims=tuple(sorted(bw.dims + (("grad", 2),))))
    c = pf.edge_gemm(bw, v100, model, "conv")
    assert (c.dim("m"), c.dim("n"), c.dim("k"), c.dim("grad")) == (3136, 128, 576, 2)
    assert c.bytes_written == 576 * 128 * 4 and c.bytes_read == (3136 * 128 + 3136 * 64) * 4
    assert c.flops == bw.flops // 2 and c.kind is OpKind.CONV and c.shapes == bw.shapes


def test_edge_hand_over_is_continuous_on_the_shipped_box():
    """The shipped card, V100 FP32: crossing the box through its FLOPs top (8,192 x 28,672 x k: k 12,360 inside,
    12,364 outside), through its FLOPs floor (a 4,096 x 1 GEMV: k 1,136 inside, 1,135 outside) and through its row
    top for a 1x1 convolution (256 -> 256 channels at 64 x 64: batch 2 = 8,192 rows inside, 3 outside), the price
    moves by well under 1 % (the hard switch jumped -11 %, 1.87x and -17 % per row). Below the box the model's excess
    shrinks with the FLOPs, so a smaller GEMV is cheaper and a tiny GEMM tends to the prior."""
    pred = pf.load_public_fit()
    v100 = resolve_gpu("v100-sxm2-16gb")[0]
    model = pred.model
    t = lambda rs: pred.predict(rs, v100, "fp32")[0]  # noqa: E731
    q = lambda rs: PriorPredictor().predict(rs, v100, "fp32")[0]  # noqa: E731
    ins, out = _gemm(1, 8192, 28672, 12360), _gemm(1, 8192, 28672, 12364)
    assert model.in_domain("mm", pf.features(ins, v100)) and not model.in_domain("mm", pf.features(out, v100))
    t_in, t_out = t([ins, out])
    assert t_in <= t_out < t_in * 1.001
    ins, out, small = _gemm(1, 4096, 1, 1136), _gemm(1, 4096, 1, 1135), _gemm(1, 4096, 1, 100)
    assert model.in_domain("mm", pf.features(ins, v100)) and not model.in_domain("mm", pf.features(out, v100))
    t_in, t_out, t_small = t([ins, out, small])
    assert t_in * 0.99 < t_out <= t_in
    assert q([small])[0] < t_small < t_out  # below the box the excess shrinks with the op's roofline time
    # a Linear on a 4,096 x 4,096 weight: batch 1 and 2 are below the box (memory bound, the same 64 MB of weight),
    # batch 3 inside; a larger batch is not priced lower (beyond float noise: the three move the same bytes within
    # 0.02 %; the FLOPs scaling of the first version gave 218, 216, 214 us)
    gemvs = t([_gemm(1, m, 4096, 4096) for m in (1, 2, 3)])
    assert not model.in_domain("mm", pf.features(_gemm(1, 2, 4096, 4096), v100))
    assert gemvs[1] >= gemvs[0] * 0.9999 and gemvs[2] >= gemvs[1] * 0.9999 and gemvs[2] < gemvs[0] * 1.01
    # below the box where the model is above the prior, the excess shrinks with the roofline time, which for a
    # memory-bound GEMV is its bytes (the 4 MB weight): batch 1 and 3 on a 1,024 x 1,024 weight cost nearly the same
    # (scaling by FLOPs priced batch 1 at 30 us against 55 us)
    g1, g3 = t([_gemm(1, 1, 1024, 1024), _gemm(1, 3, 1024, 1024)])
    assert g1 <= g3 * 1.0001 and g1 > 0.95 * g3

    c2, c3 = _same_conv(2, 256, 64, 1), _same_conv(3, 256, 64, 1)
    assert pf.family(c3, v100, "fp32") == "mm" and not model.in_domain("mm", pf.features(c3, v100))
    assert pred.covers(c3, v100, "fp32")  # outside the box but priced with the model's excess
    t2, t3 = t([c2, c3])
    q2, q3 = q([c2, c3])
    assert t3 == pytest.approx(q3 + (t2 - q2), rel=1e-9)  # the stand-in is the in-box batch-2 convolution
    assert t3 > t2

    # a 3x3 convolution (ResNet-50's 512 -> 512 channels at 7 x 7) across the conv box's FLOPs top: 2 x 7 x 7 x 512
    # x 512 x 9 = 231 MFLOP per image, so batch 276 is inside and 277 outside; the price per image must not jump.
    # The model prices this conv's Winograd kernels above the direct-conv roofline, so flooring the edge price at that
    # roofline (the first version) lifted batch 277 by +79 %
    c276, c277 = _same_conv(276, 512, 7, 3), _same_conv(277, 512, 7, 3)
    assert pf.family(c277, v100, "fp32") == "conv"
    assert model.in_domain("conv", pf.features(c276, v100)) and not model.in_domain("conv", pf.features(c277, v100))
    t276, t277 = t([c276, c277])
    assert t276 < t277 < t276 * 277 / 276 * 1.01

    # the ONNX frontend's matmul input gradient (costs.matmul_backward): the forward dims (m 113, k 12, n) but it
    # writes dA (m x k) and reads dC and B; crossing n's top (65,371 -> 65,372 columns) moves the price by < 1 %
    def dgrad(n):
        m, k = 113, 12
        return OpRecord(op="MatMul", kind=OpKind.MATMUL, module="l", phase=Phase.BACKWARD, dtype="float32",
                        shapes=((m, k), (k, n)), flops=2 * m * n * k, bytes_read=(m * n + k * n) * 4,
                        bytes_written=m * k * 4, dims=(("b", 1), ("k", k), ("m", m), ("n", n)))
    # a baddbmm with a full self (Megatron's attention-score buffer, b x 256 x 256 read besides the operands) across
    # the bmm box's b top (1,025 -> 1,026): the stand-in keeps reading self (bytes per output element)
    def baddbmm(b):
        e = 4
        return OpRecord(op="aten.baddbmm.default", kind=OpKind.MATMUL, module="l", phase=Phase.FORWARD,
                        dtype="float32", shapes=((b, 256, 256), (b, 256, 64), (b, 64, 256)),
                        flops=2 * b * 256 * 256 * 64 + 2 * b * 256 * 256,
                        bytes_read=(b * 256 * 64 * 2 + b * 256 * 256) * e, bytes_written=b * 256 * 256 * e,
                        dims=(("b", b), ("k", 64), ("m", 256), ("n", 256)))
    bb_in, bb_out = baddbmm(1025), baddbmm(1026)
    assert model.in_domain("bmm", pf.features(bb_in, v100)) and not model.in_domain("bmm", pf.features(bb_out, v100))
    c = pf.edge_gemm(bb_out, v100, model, "bmm")
    assert c.dim("b") == 1025 and c.bytes_read == bb_in.bytes_read
    # ... and its shapes, self first (the row length the model reads is self's 256, not the operand's 64)
    assert c.shapes == bb_in.shapes and pf.features(c, v100) == pf.features(bb_in, v100)
    t_in, t_out = t([bb_in, bb_out])
    assert t_in < t_out < t_in * 1.01

    d_in, d_out = dgrad(65371), dgrad(65372)
    assert model.in_domain("mm", pf.features(d_in, v100)) and not model.in_domain("mm", pf.features(d_out, v100))
    c = pf.edge_gemm(d_out, v100, model, "mm")
    assert c.bytes_written == d_out.bytes_written  # the stand-in still writes dA
    t_a, t_b = t([d_in, d_out])
    assert abs(t_b / t_a - 1) < 0.01


def test_onnx_gemm_stand_in_keeps_its_operand_order():
    """An ONNX Gemm lists A, B, C (torch's addmm lists C first). ResNet-50's fc at 8,193 rows (above the mm box's
    8,192): its stand-in is the 8,192-row Gemm with A still first, so the model reads the same row length (K = 2,048,
    not the bias's 1,000) and every feature equals the in-box record's."""
    from wattlint import costs as C

    v100 = resolve_gpu("v100-sxm2-16gb")[0]
    model = pf.load_public_fit().model

    def fc(m):
        c = C.gemm(1, m, 1000, 2048, "float32", bias_elems=1000)
        return OpRecord(op="onnx::Gemm", kind=OpKind.MATMUL, module="fc", phase=Phase.FORWARD, dtype="float32",
                        shapes=((m, 2048), (1000, 2048), (1000,)), flops=c.flops, bytes_read=c.bytes_read,
                        bytes_written=c.bytes_written, dims=c.dims)

    ins, out = fc(8192), fc(8193)
    assert model.in_domain("mm", pf.features(ins, v100)) and not model.in_domain("mm", pf.features(out, v100))
    stand = pf.edge_gemm(out, v100, model, "mm")
    assert stand.shapes == ((1, 8192, 2048), (1, 2048, 1000), (1000,))
    assert pf.features(stand, v100) == pf.features(ins, v100)


def test_card_domain_is_checked_at_load(tmp_path):
    """A malformed box is the model folder's fault, reported when it is read, not when an op is priced."""
    d = tmp_path / pf.MODEL_DIRNAME
    d.mkdir()
    card = json.loads((SHIPPED / "card.json").read_text())
    for fam in card["families"]:  # the family files as shipped (their sha256 and text are checked at load too)
        (d / card["families"][fam]["file"]).write_bytes((SHIPPED / card["families"][fam]["file"]).read_bytes())
    for bad in ({"mm": {"log10_nope": [0, 1]}}, {"mm": {"log10_m": [2, 1]}}, {"mm": {"log10_m": [1]}},
                {"mlp": {"log10_m": [0, 1]}}, [1, 2]):
        (d / "card.json").write_text(json.dumps({**card, "domain": bad}))
        with pytest.raises(pf.PublicFitError, match="domain"):
            pf.load_model(d)
    (d / "card.json").write_text(json.dumps(card))
    assert pf.load_model(d).box("mm") == card["domain"]["mm"]


def test_domain_box_edges_are_inclusive():
    card = {"families": {"mm": {"file": "mm.txt"}},
            "domain": {"mm": {"log10_m": [math.log10(64), math.log10(8192)]}}}
    model = pf.PublicFitModel(Path("."), card)
    v100 = resolve_gpu("v100-sxm2-16gb")[0]
    row = lambda m: pf.features(_gemm(1, m, 256, 256), v100)  # noqa: E731
    assert model.in_domain("mm", row(8192)) and model.in_domain("mm", row(64))
    assert not model.in_domain("mm", row(8193)) and not model.in_domain("mm", row(63))
    assert model.in_domain("bmm", row(10 ** 6))  # no box for the family: inside


def test_transposed_convolutions_are_not_priced_as_measured_convolutions():
    """A ConvTranspose2d 128 -> 64 channels, 3x3, stride 1 at 28 x 28 (costs.conv's transposed view: m = N x H_in x
    W_in, n = Cout x 9, k = Cin; weight [Cin, Cout, 3, 3]) matches the 'same' pixel count of a measured 3x3 convolution,
    but its GEMM roles are swapped (n = 576 is not the weight's first dim 128): the prior prices it. The ordinary
    convolution with the same input keeps the conv family."""
    v100 = resolve_gpu("v100-sxm2-16gb")[0]
    m = 8 * 28 * 28
    convt = OpRecord(op="aten.convolution.default", kind=OpKind.CONV, module="c", phase=Phase.FORWARD,
                     dtype="float32", shapes=((8, 128, 28, 28), (128, 64, 3, 3)), flops=2 * m * 576 * 128,
                     bytes_read=(8 * 128 * 28 * 28 + 128 * 576) * 4, bytes_written=8 * 64 * 28 * 28 * 4,
                     dims=(("b", 1), ("k", 128), ("m", m), ("n", 576)))
    assert pf.family(convt, v100, "fp32") is None
    assert pf.family(_conv(), v100, "fp32") == "conv"


def test_transposed_convolution_whose_gemm_view_looks_like_a_same_conv_is_tagged():
    """ConvTranspose2d 576 -> 64 channels, 3x3, stride 1, padding 1 at 14 x 14 (weight [576, 64, 3, 3]): its GEMM view
    is n = Cout x 9 = 576 = the weight's first dim and k = Cin = 576 = 64 x 9 = the weight's second dim x area, so
    by shape alone it reads as a 'same' 3x3 convolution 64 -> 576. costs.conv tags it ('transposed', 1) and the conv
    model never prices it, forward or as its input / weight gradient."""
    from wattlint import costs as C

    v100 = resolve_gpu("v100-sxm2-16gb")[0]
    kw = dict(stride=1, padding=1, transposed=True)
    fwd = C.conv((8, 576, 14, 14), (576, 64, 3, 3), "float32", **kw)
    assert dict(fwd.dims) == {"b": 1, "m": 8 * 14 * 14, "n": 576, "k": 576, "transposed": 1}
    grads = C.conv_backward((8, 576, 14, 14), (576, 64, 3, 3), "float32", **kw)
    for phase, c in [(Phase.FORWARD, fwd)] + [(Phase.BACKWARD, g) for g in grads]:
        rec = OpRecord(op="aten.convolution.default", kind=OpKind.CONV, module="c", phase=phase, dtype="float32",
                       shapes=((8, 576, 14, 14), (576, 64, 3, 3)), flops=c.flops, bytes_read=c.bytes_read,
                       bytes_written=c.bytes_written, dims=c.dims)
        assert pf.family(rec, v100, "fp32") is None
        untagged = dataclasses.replace(rec, dims=tuple(d for d in c.dims if d[0] != "transposed"))
        assert pf.family(untagged, v100, "fp32") == "conv"  # what the shape check alone concluded


def test_a_step_public_fit_prices_none_of_is_labelled_prior(tmp_path):
    """A small bf16 ConvNeXt: every op is a tensor-core or bf16 kernel the public-fit model was not fitted on, so the prior
    made every number; the report said 'energy model: public-fit (0% of the op time, ...)'."""
    import json as _json

    import wattlint

    cfg = tmp_path / "convnext.json"
    cfg.write_text(_json.dumps(dict(model_type="convnext", architectures=["ConvNextForImageClassification"],
                                    hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], image_size=64,
                                    num_labels=10)))
    est = wattlint.estimate(str(cfg), gpu="a100", steps=1, precision="bf16")
    assert est.calibration == "prior" and "prices none of this step's ops" in est.calibration_source
    fp32 = wattlint.estimate(str(cfg), gpu="a100", steps=1, precision="fp32")  # CUDA-core kernels: public-fit
    assert fp32.calibration == "public-fit" and fp32.calibration_coverage > 0.005
