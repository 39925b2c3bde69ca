"""Training plan: dataset inference, steps arithmetic, stated defaults, bad values."""

import math
import re

import pytest

from wattlint.hardware import resolve_gpu
from wattlint.plan import build_plan, infer_dataset, load_datasets, resolve_dataset
from wattlint.types import ConfigError, CostGraph, ModelInfo, TensorSpec

GPU = resolve_gpu("rtx3090-24gb")[0]
H100 = resolve_gpu("h100-sxm5-80gb")[0]


def graph(in_shape=(32, 3, 224, 224), out_shape=(32, 1000), *, micro=None, seq_len=0, in_dtype="float32"):
    return CostGraph(ModelInfo("m.onnx", "onnx", 1000, 4000), (),
                     inputs=(TensorSpec("x", in_dtype, tuple(in_shape)),),
                     outputs=(TensorSpec("y", "float32", tuple(out_shape)),),
                     micro_batch=micro or in_shape[0], seq_len=seq_len)


LM = graph((8, 512), (8, 512, 50257), seq_len=512, in_dtype="int64")


# ---- dataset inference ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("in_shape,out_shape,name", [
    ((32, 3, 224, 224), (32, 1000), "imagenet-1k"),
    ((8, 3, 160, 160), (8, 1000), "imagenet-1k"),
    ((8, 3, 299, 299), (8, 1000), "imagenet-1k"),
    ((128, 3, 32, 32), (128, 10), "cifar10"),
    ((128, 3, 32, 32), (128, 100), "cifar100"),
    ((64, 1, 28, 28), (64, 10), "mnist"),
    ((8, 224, 224, 3), (8, 1000), "imagenet-1k"),  # channels-last
    ((8, 32, 32, 3), (8, 10), "cifar10"),
])
def test_dataset_inference(in_shape, out_shape, name):
    got, note = infer_dataset(graph(in_shape, out_shape))
    assert got == name
    assert "inferred" in note and "--dataset" in note


@pytest.mark.parametrize("in_shape,out_shape", [
    ((8, 3, 128, 128), (8, 1000)),  # too small for the ImageNet rule
    ((8, 3, 224, 224), (8, 10)),  # not 1000-way
    ((8, 3, 32, 32), (8, 1000)),
    ((8, 1, 28, 28), (8, 100)),
    ((8, 512), (8, 512, 50257)),  # language model
])
def test_dataset_inference_refuses(in_shape, out_shape):
    with pytest.raises(ConfigError, match="pass --dataset"):
        infer_dataset(graph(in_shape, out_shape))


def test_presets():
    d = load_datasets()
    assert d["mnist"]["samples"] == 60000
    assert d["cifar10"]["samples"] == d["cifar100"]["samples"] == 50000
    assert d["imagenet-1k"]["samples"] == 1281167
    assert d["coco"]["samples"] == 118287
    assert all(row.get("source") for row in d.values())
    assert all(("samples" in row) != ("tokens" in row) for row in d.values())
    assert {row.get("modality") for row in d.values()} == {"image", "text", "audio", "tabular"}
    assert all(d[n]["modality"] == "text" for n, row in d.items() if "tokens" in row)


@pytest.mark.parametrize("g,dataset,flagged", [
    (LM, "imagenet-1k", "imagenet-1k is an image dataset, but the model takes only integer token ids "
                        "(x=int64[8,512])"),
    (graph(), "squad", "squad is a text dataset, but the model takes image batches (x=float32[32,3,224,224])"),
    (graph(), "cifar10", None),
    (LM, "sst2", None),
    (LM, "librispeech-960h", None),  # audio / tabular presets are not judged against token or image inputs
])
def test_a_dataset_of_another_modality_is_flagged(g, dataset, flagged):
    """Review: --dataset imagenet-1k on GPT-2 was taken silently (1.28 M 'samples' of token ids)."""
    notes = build_plan(g, gpu=GPU, dataset=dataset, epochs=1).assumptions
    lines = [a for a in notes if a.startswith("check --dataset")]
    assert lines == ([f"check --dataset: {flagged}; its sample count sets the steps all the same"] if flagged else [])
    with_steps = build_plan(g, gpu=GPU, dataset=dataset, steps=10).assumptions
    assert [a for a in with_steps if a.startswith("check --dataset")] == lines


@pytest.mark.parametrize("spec,size", [("imagenet", 1281167), ("ImageNet-1K", 1281167), ("CIFAR-10", 50000),
                                       ("50000", 50000), (50000, 50000), ("1.2e6", 1200000), ("1_000", 1000)])
def test_resolve_dataset(spec, size):
    assert resolve_dataset(spec)[1] == size


def test_token_dataset_needs_seq_len():
    with pytest.raises(ConfigError, match="--seq-len"):
        resolve_dataset("wikitext-103")
    name, n, note = resolve_dataset("wikitext-103", seq_len=1024)
    assert n == math.ceil(103227021 / 1024)


@pytest.mark.parametrize("spec,match", [("imagenet2k", "did you mean 'imagenet-1k'"), ("0", "positive"),
                                        ("-5", "positive"), ("2.5", "whole number"), ("zzz", "unknown dataset")])
def test_bad_dataset(spec, match):
    with pytest.raises(ConfigError, match=match):
        resolve_dataset(spec)


# ---- steps arithmetic ------------------------------------------------------------------------------------------

def test_epochs_steps_arithmetic():
    p = build_plan(graph(), gpu=GPU, epochs=50, batch_size=256)
    assert p.dataset == "imagenet-1k" and p.dataset_size == 1281167
    assert p.steps == math.ceil(1281167 / 256) * 50
    assert p.epochs == 50 and p.batch_size == 256
    assert any("imagenet-1k inferred" in a for a in p.assumptions)


def test_dataset_count_and_fractional_epochs():
    p = build_plan(graph(), gpu=GPU, epochs=2, dataset="1000", batch_size=300)
    assert p.steps == 4 * 2 and p.dataset is None and p.dataset_size == 1000
    p = build_plan(graph(), gpu=GPU, epochs=0.5, dataset=1000, batch_size=100)
    assert p.steps == 5


def test_steps_linear_in_epochs():
    s1 = build_plan(graph(), gpu=GPU, epochs=1, dataset="cifar10", batch_size=128).steps
    s7 = build_plan(graph(), gpu=GPU, epochs=7, dataset="cifar10", batch_size=128).steps
    assert s7 == 7 * s1


def test_steps_given():
    p = build_plan(LM, gpu=GPU, steps=1000)
    assert p.steps == 1000 and p.dataset is None
    p = build_plan(graph(), gpu=GPU, steps=100, dataset="cifar10", batch_size=500)
    assert p.epochs == pytest.approx(1.0)


def test_tokens():
    p = build_plan(LM, gpu=H100, tokens=2e12, seq_len=4096, batch_size=1024, gpus=512, sharding="fsdp")
    assert p.steps == math.ceil(2e12 / (1024 * 4096))
    assert p.gpus == 512 and p.gpus_per_node == 8 and p.sharding == "fsdp"
    assert p.internode_gbps > 100
    assert any("inter-node bandwidth" in a for a in p.assumptions)
    # seq-len from the trace
    p = build_plan(LM, gpu=GPU, tokens=1e6, batch_size=8)
    assert p.seq_len == 512 and p.steps == math.ceil(1e6 / (8 * 512))


def test_default_batch_is_traced_micro_batch_times_gpus():
    p = build_plan(graph(micro=16, in_shape=(16, 3, 32, 32), out_shape=(16, 10)), gpu=GPU, epochs=1, gpus=4,
                   grad_accum=2)
    assert p.batch_size == 16 * 4 * 2 and p.micro_batch_size == 16
    assert p.gpus_per_node == 4


def test_default_epochs_is_one_and_stated():
    p = build_plan(graph(), gpu=GPU)
    assert p.epochs == 1 and any(a.startswith("epochs 1") for a in p.assumptions)


# ---- stated defaults -------------------------------------------------------------------------------------------

def test_defaults_are_stated():
    p = build_plan(graph(), gpu=GPU, epochs=1)
    text = "\n".join(p.assumptions)
    assert p.precision == "default" and "PyTorch defaults" in text and "TF32" in text
    # an RTX 3090 is a desktop card, its host priced as a desk-side tower: no data-centre overhead (PUE 1)
    assert p.pue == 1.0 and "PUE 1 (default for a desk-side machine" in text
    dc = build_plan(graph(), gpu=H100, epochs=1)  # an SXM board: a data-centre node
    assert dc.pue == 1.2 and "PUE 1.2" in "\n".join(dc.assumptions) and "Uptime" in "\n".join(dc.assumptions)
    assert build_plan(graph(), gpu=GPU, epochs=1, pue=1.4).pue == 1.4  # a given PUE wins
    assert build_plan(graph(), gpu=GPU, epochs=1, region="gcp:us-central1").pue == 1.11  # the table's, for the region
    assert "world average" in text and 450 < p.carbon_intensity_g_per_kwh < 500
    assert p.price_per_kwh and "EIA" in text
    assert p.optimizer == "adamw" and "optimizer adamw" in text


def test_a_desktop_card_in_a_data_centre_gets_the_data_centre_pue():
    """Desk-side (1.0) only for one machine outside a cloud region (review: an RTX A6000 in coreweave:lga1, which
    lists no PUE, and 64 RTX 4090s on 8 nodes were priced as desk-side machines)."""
    a6000 = resolve_gpu("rtx-a6000-48gb")[0]
    assert build_plan(graph(), gpu=a6000, epochs=1).pue == 1.0
    cloud = build_plan(graph(), gpu=a6000, epochs=1, region="coreweave:lga1")
    assert cloud.pue == 1.2 and any(a.startswith("PUE 1.2 (default") for a in cloud.assumptions)
    assert build_plan(graph(), gpu=GPU, epochs=1, region="FR").pue == 1.0  # a country: still a desk-side machine
    many = build_plan(graph(), gpu=GPU, epochs=1, gpus=64, batch_size=64)  # 8 nodes of 8
    assert many.pue == 1.2


def test_overrides():
    p = build_plan(graph(), gpu=GPU, epochs=1, precision="bf16", optimizer="sgd", pue=1.0, region="FR",
                   price=0.2, gpu_hour_price=2.5, utilization=0.5, activation_checkpointing=True)
    assert (p.precision, p.optimizer, p.pue, p.region, p.price_per_kwh, p.gpu_hour_price, p.utilization) == \
        ("bf16", "sgd", 1.0, "FRA", 0.2, 2.5, 0.5)
    assert p.carbon_intensity_g_per_kwh == pytest.approx(56.0, abs=0.1)
    assert p.activation_checkpointing
    p = build_plan(graph(), gpu=GPU, epochs=1, region="DE", carbon_intensity=10)
    assert p.carbon_intensity_g_per_kwh == 10 and any("overrides region" in a for a in p.assumptions)


def test_precision_without_native_rate_is_stated():
    # a GPU that runs tf32 but has no sourced TF32 peak (A10G): accepted, costed at the fp32 rate, stated
    a10g = resolve_gpu("a10g")[0]
    p = build_plan(graph(), gpu=a10g, epochs=1, precision="tf32")
    assert p.precision == "tf32"
    assert any("a10g-24gb has no tf32 tensor-core rate in the database; costed at its fp32 rate" in a
               for a in p.assumptions)
    # a precision the GPU has no hardware for: an input error by default, a stated fallback for candidates
    v100 = resolve_gpu("v100")[0]
    with pytest.raises(ConfigError, match="no bf16 tensor cores"):
        build_plan(graph(), gpu=v100, epochs=1, precision="bf16")
    p = build_plan(graph(), gpu=v100, epochs=1, precision="bf16", strict_precision=False)
    assert p.precision == "fp16"
    assert any("no bf16" in a and "costed as fp16" in a for a in p.assumptions)


def test_gpus_per_node_default_and_partial_nodes():
    p = build_plan(graph(), gpu=H100, steps=10, batch_size=240, gpus=12)
    assert p.gpus_per_node == 8
    assert any("partial" in a for a in p.assumptions)


# ---- bad values ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,match", [
    (dict(epochs=-1), r"--epochs -1: expected a number in \(0, "),
    (dict(epochs=0), r"--epochs 0: expected a number in \(0, "),
    (dict(epochs=float("inf")), r"--epochs inf: expected a number"),
    (dict(batch_size=0), "--batch-size 0: expected a whole number between 1 and"),
    (dict(batch_size=10**400), "--batch-size 1000.*: expected a whole number between 1 and"),
    (dict(steps=0), "--steps 0: expected a whole number"),
    (dict(gpus=4611686018427387904), "--gpus 4611686018427387904: expected a whole number between 1 and 1,000,000"),
    (dict(steps=1.5), "whole number"),
    (dict(steps=10, epochs=2), "--epochs and --steps conflict"),
    (dict(tokens=1e9, epochs=2), "--epochs and --tokens conflict"),
    (dict(bogus=1), "not a plan option: bogus"),
    (dict(tokens=1e9, steps=2), "--steps and --tokens conflict"),
    (dict(region="XX"), "unknown region 'XX'"),
    (dict(region="XX", carbon_intensity=5), "unknown region"),
    (dict(dataset="imagenet-2k"), "unknown dataset"),
    (dict(precision="fp4"), "--precision 'fp4': expected one of default, fp32"),
    (dict(optimizer="lamb"), "--optimizer 'lamb': expected one of adamw, adam, sgd"),
    (dict(sharding="zero4"), "--sharding 'zero4': expected one of none, zero1"),
    (dict(pue=0.9), r"--pue 0.9: expected a PUE in \[1, 3\]"),
    (dict(utilization=1.5), "--utilization"),
    (dict(utilization=0), "--utilization"),
    (dict(gpus=0), "--gpus 0: expected a whole number"),
    (dict(batch_size=4, gpus=8), "smaller than gpus x grad-accum"),
    # every replica runs the same micro-batch: 3 samples over 2 GPUs, 12 over 2 GPUs x 4 micro-steps cannot
    (dict(batch_size=3, gpus=2), r"--batch-size 3 is not divisible by 2 GPU\(s\) x grad-accum 1 = 2"),
    (dict(batch_size=12, gpus=2, grad_accum=4), r"--batch-size 12 is not divisible by 2 GPU\(s\) x grad-accum 4 = 8"),
    (dict(carbon_intensity=-1), r"--carbon-intensity -1: expected a number in \[0, "),
    (dict(price=-0.1), "--price"),
    # an image model: no token input, so no --seq-len would help (review: it was asked for first)
    (dict(tokens=1e9), r"--tokens: the model's inputs have no sequence dimension \(x=float32\[32, 3, 224, 224\]\), so "
                       "tokens do not give its steps; use --steps or --epochs"),
])
def test_bad_values_one_line(kw, match):
    with pytest.raises(ConfigError, match=match) as e:
        build_plan(graph(), gpu=GPU, **kw)
    assert "\n" not in str(e.value)


def test_tokens_of_a_token_model_of_unknown_length_ask_for_the_seq_len():
    with pytest.raises(ConfigError, match="--tokens needs --seq-len"):
        build_plan(graph((8, 512), (8, 512, 50257), in_dtype="int64"), gpu=GPU, tokens=1e9)


def test_unknown_dataset_for_lm_asks_for_dataset():
    with pytest.raises(ConfigError, match="pass --dataset NAME"):
        build_plan(LM, gpu=GPU, epochs=3)


def test_gpu_hour_price_alone_does_not_add_the_default_tariff():
    """A rental GPU-hour price includes electricity: the default $/kWh must not be charged on top of it."""
    p = build_plan(graph(), gpu=GPU, epochs=1, gpu_hour_price=2.0)
    assert p.gpu_hour_price == 2.0 and p.price_per_kwh == 0.0
    assert any("included in the GPU-hour price" in a for a in p.assumptions)
    assert not any("EIA" in a for a in p.assumptions)
    p = build_plan(graph(), gpu=GPU, epochs=1, gpu_hour_price=2.0, price=0.2)  # both explicit: both charged
    assert (p.gpu_hour_price, p.price_per_kwh) == (2.0, 0.2)
    assert "electricity price $0.2/kWh (given), charged on top of the GPU-hour price" in p.assumptions
    # and the GPU-hour line no longer says the rental includes electricity (review: both lines side by side)
    assert "GPU-hour price $2 (rental; electricity charged on top)" in p.assumptions


def test_gpu_hour_price_per_gpu_picks_the_estimated_gpus_price():
    """--gpu-hour-price a100=1.8,rtx3090=0.45 (a --compare of rental GPUs): each GPU's plan takes its own price, the
    names resolved as --gpu resolves them (rtx3090 -> rtx3090-24gb); a GPU without a price, an unknown name, or one
    GPU at two prices is refused with the option named."""
    from wattlint.options import OPTIONS

    check = OPTIONS["gpu_hour_price"].check
    pairs = check("a100=1.8, rtx3090=0.45", text=True)
    assert pairs == (("a100", 1.8), ("rtx3090", 0.45))
    assert check({"a100": 1.8, "rtx3090": 0.45}) == pairs and check(pairs) == pairs  # TOML table / validated once
    assert check("2.5", text=True) == 2.5
    for bad in ("a100=x", "a100=-1", "=2", "a100=1,,h100=2"):
        with pytest.raises(ValueError):
            check(bad, text=True)
    p = build_plan(graph(), gpu=GPU, epochs=1, gpu_hour_price=pairs)
    assert p.gpu_hour_price == 0.45 and p.price_per_kwh == 0.0
    assert "GPU-hour price $0.45 for rtx3090-24gb (rental; includes electricity)" in p.assumptions
    with pytest.raises(ConfigError, match=r"^--gpu-hour-price names no price for rtx3090-24gb \(given for "
                                          r"a100-sxm4-80gb\)"):
        build_plan(graph(), gpu=GPU, epochs=1, gpu_hour_price=(("a100", 1.8),))
    with pytest.raises(ConfigError, match=r"^--gpu-hour-price: unknown GPU 'rtx9090'"):
        build_plan(graph(), gpu=GPU, epochs=1, gpu_hour_price=(("rtx9090", 1.0), ("rtx3090", 0.45)))
    with pytest.raises(ConfigError, match="both rtx3090-24gb, at different prices"):
        build_plan(graph(), gpu=GPU, epochs=1, gpu_hour_price=(("rtx3090", 0.4), ("rtx3090-24gb", 0.5)))


def test_compare_costs_each_gpu_at_its_own_hour_price(run_cli):
    """Rental only (electricity included): each compared GPU's cost = its GPU-hours x its own price."""
    import json

    code, out, err = run_cli("examples/resnet50.onnx", "--gpu", "a100", "--compare", "h100,l4", "--epochs", 1,
                             "--gpu-hour-price", "a100=1.8,h100=3.9,l4=0.8", "--format", "json")
    assert code == 0, err
    prices = {"a100-sxm4-80gb": 1.8, "h100-sxm5-80gb": 3.9, "l4-24gb": 0.8}
    ests = json.loads(out)["estimates"]
    assert {e["hardware"]["gpu"] for e in ests} == set(prices)
    for e in ests:
        assert e["total"]["cost_usd"] == pytest.approx(e["total"]["gpu_hours"] * prices[e["hardware"]["gpu"]],
                                                       rel=1e-5)
    code, out, err = run_cli("examples/resnet50.onnx", "--gpu", "a100", "--compare", "h100", "--epochs", 1,
                             "--gpu-hour-price", "a100=1.8")
    assert code == 2 and out == ""
    assert err.splitlines() == ["wattlint: error: --gpu-hour-price names no price for h100-sxm5-80gb (given for "
                                "a100-sxm4-80gb): add h100-sxm5-80gb=USD, or give one number for every GPU"]


def test_cost_label_names_what_is_charged():
    """Review: with --gpu-hour-price alone the summary row read 'Cost (electricity + GPU-hours)' while electricity
    was not charged."""
    from wattlint.report.tables import _cost_label

    assert _cost_label(build_plan(graph(), gpu=GPU, epochs=1, gpu_hour_price=2.0)) == "Cost (GPU-hours)"
    assert _cost_label(build_plan(graph(), gpu=GPU, epochs=1, gpu_hour_price=2.0, price=0.2)) == \
        "Cost (electricity + GPU-hours)"
    assert _cost_label(build_plan(graph(), gpu=GPU, epochs=1)) == "Cost (electricity)"


def test_given_pue_and_price_are_stated():
    """Every number behind the totals is an assumption line: a PUE or an electricity price given by the user was
    used silently (only the defaults were stated), unlike a given carbon intensity."""
    p = build_plan(graph(), gpu=GPU, epochs=1, pue=1.3, price=0.12)
    assert p.pue == 1.3 and p.price_per_kwh == 0.12
    assert "PUE 1.3 (given: facility energy = (GPU + host) x 1.3)" in p.assumptions
    assert "electricity price $0.12/kWh (given)" in p.assumptions
    assert not any("EIA" in a or "Uptime" in a for a in p.assumptions)  # the defaults' sources are not claimed


@pytest.mark.parametrize("extra", [{}, {"gpus": 4}])
def test_sequence_parallel_without_tensor_parallel_is_stated_not_silently_dropped(extra):
    """--sequence-parallel splits work over tensor-parallel ranks only; given alone (no layout option at all) it
    changes nothing, and the report must say so (it did only when another layout option was also given)."""
    p = build_plan(graph(), gpu=GPU, epochs=1, sequence_parallel=True, **extra)
    assert not p.sequence_parallel
    assert "--sequence-parallel has no effect without --tensor-parallel > 1" in p.assumptions
    q = build_plan(graph(), gpu=GPU, epochs=1, sequence_parallel=True, micro_batch_size=32, **extra)
    assert q.assumptions.count("--sequence-parallel has no effect without --tensor-parallel > 1") == 1


def test_seq_len_on_a_model_without_a_sequence_dimension():
    """A CNN has no sequence dimension: --seq-len is stated as not used, and --tokens cannot give its steps (it used
    to compute steps = tokens / (batch x seq-len) and print an LM throughput line with MFU 280 %)."""
    p = build_plan(graph(), gpu=GPU, steps=10, seq_len=512)
    assert p.seq_len is None
    assert any(a.startswith("--seq-len 512: the model's inputs have no sequence dimension (x=float32[32, 3, 224, 224])")
               for a in p.assumptions)
    with pytest.raises(ConfigError, match="no sequence dimension"):
        build_plan(graph(), gpu=GPU, tokens=1e9, seq_len=512)
    # a language model keeps it: 2e9 tokens / (batch 8 x 512) = 488,281.25 -> 488,282 steps
    q = build_plan(LM, gpu=H100, tokens=2e9, seq_len=512)
    assert q.seq_len == 512 and q.steps == 488_282


def test_onnx_cnn_graph_carries_no_sequence_length_from_the_flag(run_cli):
    import json as _json

    code, out, _ = run_cli("examples/resnet50.onnx", "--gpu", "a100", "--steps", "10", "--seq-len", "512",
                           "--format", "json")
    assert code == 0
    doc = _json.loads(out)
    assert doc["plan"]["seq_len"] is None and doc["utilization"] is None  # no tokens/s or MFU for a CNN


def test_a_partial_last_node_is_counted_as_it_is():
    """12 GPUs in nodes of 8 read '(2 node(s) x 8)', i.e. 16 GPUs: the note counts 1 x 8 + 4."""
    p = build_plan(graph(), gpu=resolve_gpu("h100")[0], epochs=1, gpus=12, gpus_per_node=8, batch_size=96)
    assert "data parallel over 12 GPUs (2 nodes: 1 x 8 + 4), sharding none" in p.assumptions
    assert "12 GPUs do not fill whole nodes of 8: the last node is partial" in p.assumptions
    p = build_plan(graph(), gpu=resolve_gpu("h100")[0], epochs=1, gpus=16, gpus_per_node=8, batch_size=96)
    assert "data parallel over 16 GPUs (2 node(s) x 8), sharding none" in p.assumptions


def test_wl203_own_platform_figure_is_the_candidates_own_estimate(run_cli):
    """WL203 on a desktop RTX 3090 plan names a PCIe server card (an L20, an L40): its 'in its own platform class'
    figure is what an estimate on that card gives, at the server's PUE 1.2 (review: it kept the desktop plan's 1.0: 0.542 Wh
    against the L20 estimate's 0.650 Wh)."""
    import json

    args = ["examples/torch_models.py:tiny_gpt", "--steps", "1000", "--format", "json"]
    code, out, _ = run_cli(*args, "--gpu", "rtx3090-24gb")
    assert code in (0, 1)
    # the candidate WL203 names (an L20 when tiny_gpt's loss was the sum of its outputs; an L40 since its logits get
    # the token-level cross-entropy, s49): both are PCIe server cards
    msg = next(f["message"] for f in json.loads(out)["findings"] if " trains it with " in f["message"])
    cand = re.search(r"\(--gpu ([\w.-]+), the same flags\)", msg).group(1)
    code, out, _ = run_cli(*args, "--gpu", cand)
    own = json.loads(out)["total"]["energy_kwh"] * 1000  # Wh
    # since 2026-12-07 the claim is the literal --gpu switch: the L20 on its own platform (host 77 W per GPU, a
    # PCIe server at PUE 1.2) is the figure the message leads with
    assert f"trains it with {own:.3f} Wh instead of" in msg and "(its platform class pcie_server, not desktop)" \
        in msg, (own, msg)


def test_compare_says_each_gpus_pue_where_they_differ(run_cli):
    """--compare of a desktop card (default PUE 1.0, desk-side) with data-centre cards (1.2): the ranking's sentence
    names each GPU's PUE (it ranked them without a word); with --pue given they share one and nothing is added."""
    import json

    args = ["examples/resnet50.onnx", "--gpu", "l40s-48gb", "--compare", "rtx4090-24gb,l40-48gb", "--epochs", "1",
            "--precision", "bf16"]
    code, out, _ = run_cli(*args)
    assert "each at its own machine's PUE: 1 for rtx4090-24gb, 1.2 for l40s-48gb, l40-48gb (--pue sets one for all)" \
        in " ".join(out.split())
    code, out, _ = run_cli(*args, "--pue", "1.2", "--format", "json")
    assert {e["plan"]["pue"] for e in json.loads(out)["estimates"]} == {1.2}
    code, out, _ = run_cli(*args, "--pue", "1.2")
    assert "own machine's PUE" not in out
