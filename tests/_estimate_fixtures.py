"""Small hand-built CostGraphs for estimate tests (no frontend, no torch)."""

from __future__ import annotations

from wattlint import costs
from wattlint.types import CostGraph, ModelInfo, OpKind, OpRecord, Phase, TensorSpec


def rec(cost, module, phase, dtype="float32", mtype="Linear", op="aten.mm.default"):
    return OpRecord(op=op, kind=cost.kind, module=module, phase=phase, dtype=dtype, flops=cost.flops,
                    bytes_read=cost.bytes_read, bytes_written=cost.bytes_written, module_type=mtype, dims=cost.dims)


def mlp_graph(batch=64, width=4096, layers=4, dtype="float32", precision="fp32", activation_bytes=None):
    """A ``layers``-deep MLP (width x width Linear + ReLU) with one training step's records."""
    recs = []
    params = 0
    for i in range(layers):
        name = f"layers.{i}"
        x = (batch, width)
        w = (width, width)
        params += width * width + width
        recs.append(rec(costs.linear(x, w, dtype, bias=True), f"{name}.fc", Phase.FORWARD, dtype))
        recs.append(rec(costs.elementwise("relu", [x], x, dtype), f"{name}.act", Phase.FORWARD, dtype, "ReLU",
                        "aten.relu.default"))
    for i in reversed(range(layers)):
        name = f"layers.{i}"
        x = (batch, width)
        w = (width, width)
        recs.append(rec(costs.elementwise("relu", [x, x], x, dtype, backward=True), f"{name}.act", Phase.BACKWARD,
                        dtype, "ReLU", "aten.threshold_backward.default"))
        for c in costs.linear_backward(x, w, dtype, input_grad=i > 0, bias=True):
            recs.append(rec(c, f"{name}.fc", Phase.BACKWARD, dtype))
    for i in range(layers):
        c = costs.optimizer_step("adamw", width * width + width)
        recs.append(OpRecord(op="aten._fused_adamw_.default", kind=OpKind.OPTIMIZER, module=f"layers.{i}.fc",
                             phase=Phase.OPTIMIZER, dtype="float32", flops=c.flops, bytes_read=c.bytes_read,
                             bytes_written=c.bytes_written, module_type="Linear", dims=c.dims))
    act = activation_bytes if activation_bytes is not None else 2 * layers * batch * width * costs.dtype_bytes(dtype)
    return CostGraph(
        model=ModelInfo(source="tests:mlp", format="torch", params=params, param_bytes=params * 4, name="mlp"),
        records=tuple(recs), inputs=(TensorSpec("x", "float32", (batch, width)),),
        outputs=(TensorSpec("y", "float32", (batch, width)),),
        modules=tuple((f"layers.{i}.fc", "Linear") for i in range(layers)), micro_batch=batch,
        precision=precision, optimizer="adamw", extra={"activation_bytes": act},
    )
