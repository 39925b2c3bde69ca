"""``wattlint.analysis/1``: the cost graph of one traced training step as JSON (DESIGN §7) and as a rich table.

The JSON is deterministic (same graph -> byte-identical text): integers only, layers in module definition order
then phase order, assumptions in the order the frontend stated them.
"""

from __future__ import annotations

import io
import json

from ..types import CostGraph, Phase, Status, Totals
from . import units as u

SCHEMA = "wattlint.analysis/1"
PHASES = (Phase.FORWARD.value, Phase.BACKWARD.value, Phase.OPTIMIZER.value)


def layer_rows(graph: CostGraph) -> list[dict]:
    """One row per (innermost module, phase) with any cost, in module definition order."""
    order = {name: i for i, (name, _) in enumerate(graph.modules)}
    types = graph.module_types()
    agg = graph.by_module_phase()
    phase_rank = {p: i for i, p in enumerate(PHASES + (Phase.COMMUNICATION.value,))}
    keys = sorted(agg, key=lambda k: (order.get(k[0], len(order)), k[0], phase_rank.get(k[1], 9)))
    rows = []
    for name, phase in keys:
        t = agg[(name, phase)]
        if not (t.flops or t.bytes_read or t.bytes_written):
            continue
        rows.append({"name": name, "type": types.get(name, ""), "phase": phase, "flops": t.flops,
                     "bytes_read": t.bytes_read, "bytes_written": t.bytes_written})
    return rows


def analysis_to_dict(graph: CostGraph) -> dict:
    phases = graph.by_phase()
    totals = {p: phases.get(p, Totals()).as_dict() for p in PHASES}
    if phases.get(Phase.COMMUNICATION.value, Totals()).count:
        totals[Phase.COMMUNICATION.value] = phases[Phase.COMMUNICATION.value].as_dict()
    status = graph.status_counts()
    return {
        "schema": SCHEMA,
        "model": graph.model.as_dict(),
        "totals": totals,
        "layers": layer_rows(graph),
        "ops": {"count": len(graph.records), "handled": status.get("handled", 0),
                "ignored": status.get("ignored", 0), "unsupported": graph.unsupported()},
        "trace": {
            "micro_batch": int(graph.micro_batch), "seq_len": int(graph.seq_len), "precision": graph.precision,
            "optimizer": graph.optimizer, "trainable_params": int(graph.trainable_params),
            "activation_bytes": int(graph.extra.get("activation_bytes", 0) or 0),
            "inputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in graph.inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in graph.outputs],
        },
        "assumptions": list(graph.assumptions),
    }


def dumps(obj: dict) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def render_json(graph: CostGraph) -> str:
    return dumps(analysis_to_dict(graph))


def _safe(text) -> str:
    """A name or line from the model (op, layer, file names) as literal text: control characters escaped
    (tables.clean) and rich's markup brackets escaped (an ONNX output named 'out[/]' raised MarkupError, exit 3)."""
    from rich.markup import escape

    from .tables import clean

    return escape(clean(text))


def _unsupported_cost(graph: CostGraph) -> str:
    """What the unsupported ops add to the step, from their records: no cost formula, so nothing (the estimate
    counts them at zero cost too), unless a frontend recorded FLOPs or bytes for them."""
    recs = [r for r in graph.records if r.status is Status.UNSUPPORTED]
    flops, nbytes = sum(r.flops for r in recs), sum(r.bytes for r in recs)
    if not (flops or nbytes):
        return "no cost formula: counted at zero cost, 0 FLOPs and 0 bytes"
    return f"no cost formula: {u.flops(flops)} and {u.bytes_(nbytes)} counted"


def render_text(graph: CostGraph, *, top: int = 15, width: int = 120, color: bool = False) -> str:
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    con = Console(file=buf, width=width, force_terminal=color, color_system="standard" if color else None,
                  highlight=False, emoji=False, soft_wrap=False)
    m = graph.model
    con.print(f"[bold]{_safe(m.source or m.name)}[/bold] ({m.format}) — {u.count(m.params)} parameters, "
              f"{u.bytes_(m.param_bytes)}; micro-batch {graph.micro_batch}"
              + (f", seq {graph.seq_len}" if graph.seq_len else "") + f", {graph.precision}, {graph.optimizer}")
    phases = graph.by_phase()
    t = Table(title="One training step (per micro-batch)", title_justify="left")
    for col in ("phase", "FLOPs", "bytes read", "bytes written", "ops"):
        t.add_column(col, justify="left" if col == "phase" else "right")
    total = Totals()
    for p in PHASES:
        x = phases.get(p, Totals())
        total = total + x
        t.add_row(p, u.flops(x.flops), u.bytes_(x.bytes_read), u.bytes_(x.bytes_written), f"{x.count:,}")
    t.add_row("[bold]total[/bold]", u.flops(total.flops), u.bytes_(total.bytes_read), u.bytes_(total.bytes_written),
              f"{total.count:,}")
    con.print(t)
    # top layers by FLOPs (forward + backward + optimizer: every FLOP column shown)
    per: dict[str, list[int]] = {}
    types = graph.module_types()
    for (name, phase), x in graph.by_module_phase().items():
        row = per.setdefault(name, [0, 0, 0, 0])
        if phase == Phase.FORWARD.value:
            row[0] += x.flops
        elif phase == Phase.BACKWARD.value:
            row[1] += x.flops
        else:
            row[3] += x.flops
        row[2] += x.bytes_read + x.bytes_written
    grand = sum(r[0] + r[1] + r[3] for r in per.values()) or 1
    ranked = sorted(per.items(), key=lambda kv: (-(kv[1][0] + kv[1][1] + kv[1][3]), kv[0]))[:top]
    lt = Table(title=f"Top {len(ranked)} layers by FLOPs (of {len(per)})", title_justify="left")
    for col in ("layer", "type", "forward", "backward", "optimizer", "bytes", "share"):
        lt.add_column(col, justify="left" if col in ("layer", "type") else "right", overflow="fold")
    for name, (f, b, by, o) in ranked:
        lt.add_row(_safe(name) if name else "(root)", _safe(types.get(name, "")), u.flops(f), u.flops(b), u.flops(o),
                   u.bytes_(by), u.pct((f + b + o) / grand))
    con.print(lt)
    st = graph.status_counts()
    con.print(f"ops: {len(graph.records):,} recorded — {st['handled']:,} handled, {st['ignored']:,} ignored "
              f"(views/metadata), {st['unsupported']:,} unsupported")
    uns = graph.unsupported()
    if uns:
        con.print(f"unsupported ({_unsupported_cost(graph)}): " + ", ".join(f"{_safe(k)} x{v}" for k, v in uns.items()))
    act = graph.extra.get("activation_bytes")
    if act:
        con.print(f"activations saved for backward: {u.bytes_(act)}")
    if graph.assumptions:
        con.print("[bold]assumptions[/bold]")
        for a in graph.assumptions:
            con.print(f"  - {_safe(a)}")
    return buf.getvalue()
