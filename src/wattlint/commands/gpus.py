"""``wattlint gpus``: the GPU database with the energy model (provenance) an estimate on each GPU uses."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", metavar="GPU",
                   help="show one GPU (key, alias or NVML name) with the source of every value")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument("--sources", action="store_true",
                   help="with --format json, for the list: include the source of every value")
    p.add_argument("--models-dir", metavar="DIR", help="fitted energy models to search first, as the estimate does "
                   "(then [tool.wattlint] models-dir, $WATTLINT_MODELS_DIR, the user data folder, the shipped models)")


def energy_model(spec, dirs=None) -> tuple[str, str]:
    """(provenance, source) of the energy model an estimate on this GPU uses: measured | public-fit | transferred |
    prior, chosen exactly as the estimate chooses it (energy.predictor.get_predictor, on the same search path
    ``dirs``), so a GPU priced by the public fit or another GPU's calibration is never listed as 'prior', nor an
    unusable calibration as 'measured'."""
    return energy_model_notes(spec, dirs)[:2]


def energy_model_notes(spec, dirs=None) -> tuple[str, str, list[str]]:
    """:func:`energy_model` and the notes of the estimate's "energy models searched" line: each model the search
    found and did not use, and why (a damaged calibration in --models-dir must not vanish behind the shipped one)."""
    from ..energy.predictor import get_predictor

    p = get_predictor(spec, dirs)
    notes = getattr(p, "notes", None)
    if notes is None:  # a run-corrected predictor: the notes of the model it corrects
        notes = getattr(getattr(p, "base", None), "notes", ())
    return p.calibration, p.source, list(notes)


def search_dirs(models_dir=None):
    """The energy-model search path an estimate run here would use: --models-dir, this directory's
    [tool.wattlint] models-dir, $WATTLINT_MODELS_DIR, the user data folder, the shipped models."""
    from pathlib import Path

    from ..api import models_search_path
    from ..config import load_config
    from ..types import ConfigError

    if models_dir is not None and not models_dir.strip():  # '' is no folder (Path('') is the current one)
        raise ConfigError(f"--models-dir {models_dir!r} names no folder: name the folder of fitted models, or leave "
                          "the option out")
    try:
        config = load_config(Path.cwd())
    except ConfigError as e:  # listing the database must not depend on an unrelated setting of this project
        print(f"wattlint: note: [tool.wattlint] not read ({e}); energy models from the default folders",
              file=sys.stderr)
        config = None
    # a --models-dir, [tool.wattlint] models-dir or $WATTLINT_MODELS_DIR that is no folder is refused, as the estimate
    # refuses it: the list would otherwise show the energy models an estimate here never uses
    return models_search_path(models_dir, config)


def rows(with_sources: bool = False, dirs=None) -> list[dict]:
    from ..hardware import load_gpus, supported_precisions

    out = []
    for key, g in load_gpus().items():
        row = {
            "key": key, "name": g.name, "vendor": g.vendor, "arch": g.arch,
            "memory_gb": g.memory_gb, "memory_bw_gbs": g.memory_bw_gbs,
            "peak_tflops": dict(g.peak_tflops), "tdp_w": g.tdp_w, "idle_w": g.idle_w,
            "idle_estimated": g.idle_estimated, "sm_count": g.sm_count, "boost_mhz": g.boost_mhz,
            "pcie_gen": g.pcie_gen, "nvlink_gbs": g.nvlink_gbs, "aliases": list(g.aliases),
            "nvml_names": list(g.nvml_names), "unconfirmed": list(g.unconfirmed),
            "precisions": list(supported_precisions(g)),
        }
        row["calibration"], _, row["calibration_notes"] = energy_model_notes(g, dirs)
        if with_sources:
            row["sources"] = dict(g.sources)
        out.append(row)
    return out


def _num(v: float | None, fmt: str = "{:g}") -> str:
    return "-" if v is None else fmt.format(v)


def detail(name: str, dirs=None) -> tuple[dict, str | None]:
    from ..hardware import resolve_gpu, supported_precisions, value_fields

    g, note = resolve_gpu(name)
    values = {}
    for f in value_fields(g):
        v = g.peak_tflops[f.split(".", 1)[1]] if f.startswith("peak_tflops.") else getattr(g, f)
        values[f] = {"value": v, "unconfirmed": f in g.unconfirmed, "source": g.sources.get(f, "")}
    values["idle_w"]["estimated"] = g.idle_estimated
    calibration, calibration_source, calibration_notes = energy_model_notes(g, dirs)
    from ..energy.prior import eff_mem_max, eff_mem_max_source, memory_kind

    kind = memory_kind(g)
    memory = {"type": kind.upper(),
              "type_source": g.sources.get("memory_type", "") if g.memory_type else
              "from the chip code (HBM on the x100 data-centre chips, AMD Instinct, Intel Gaudi; GDDR5 on GP10x / "
              "GM; GDDR6 otherwise)",
              "streaming_fraction": eff_mem_max(g), "streaming_source": eff_mem_max_source(g)}
    return ({"key": g.key, "name": g.name, "vendor": g.vendor, "arch": g.arch, "aliases": list(g.aliases),
             "nvml_names": list(g.nvml_names), "calibration": calibration, "calibration_source": calibration_source,
             "calibration_notes": calibration_notes,
             # the list's shape (rows: a list of names, as gpus.toml states them); its source beside it, as the
             # list's --sources gives it under sources.precisions
             "precisions": list(supported_precisions(g)), "precisions_source": g.sources.get("precisions", ""),
             "memory": memory, "values": values}, note)


def _run_detail(args: argparse.Namespace, dirs) -> int:
    info, note = detail(args.name, dirs)
    if args.format == "json":
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=False)
    if note:
        console.print(f"[dim]{note}[/dim]")
    console.print(f"[bold]{info['key']}[/bold]  {info['name']} ({info['vendor']} {info['arch']})")
    console.print(f"energy model: {info['calibration']} ({info['calibration_source']})", markup=False)
    for n in info["calibration_notes"]:  # as the estimate's "energy models searched" line states them
        console.print(f"  note: {n}", markup=False)
    console.print(f"aliases: {', '.join(info['aliases']) or '-'};  NVML: {', '.join(info['nvml_names']) or '-'}")
    console.print(f"precisions: {', '.join(info['precisions'])}  ({info['precisions_source']})",
                  markup=False)
    m = info["memory"]
    console.print(f"memory: {m['type']} ({m['type_source']})", markup=False)
    console.print(f"  streaming kernels reach {m['streaming_fraction']:.2f} of the spec bandwidth "
                  f"({m['streaming_source']})", markup=False)
    table = Table(header_style="bold")
    table.add_column("field", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("flag", no_wrap=True)
    table.add_column("source")
    for f, v in info["values"].items():
        flag = "unconfirmed" if v["unconfirmed"] else ("estimated" if v.get("estimated") else "")
        table.add_row(f, ("yes" if v["value"] else "no") if isinstance(v["value"], bool) else f"{v['value']:g}", flag,
                      v["source"])
    console.print(table)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.sources and (args.name is not None or args.format != "json"):
        from ..types import InputError

        raise InputError("--sources applies to the JSON list ('wattlint gpus --format json --sources'); 'wattlint "
                         "gpus GPU' always shows the source of each value, and the text list has no room for them")
    dirs = search_dirs(args.models_dir)
    if args.name is not None:  # '' is a name too (refused as empty), not a request for the whole list
        return _run_detail(args, dirs)
    data = rows(with_sources=args.sources, dirs=dirs)
    if args.format == "json":
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return 0
    from ..report.text import fit_table
    from .estimate import terminal_width

    header = ["key", "memory GB", "GB/s", "bf16 TFLOP/s", "fp32 TFLOP/s", "TDP W", "idle W", "energy model", "name"]
    table = []
    for r in data:
        flags = set(r["unconfirmed"])

        def mark(field: str, value, flags=flags) -> str:
            return "-" if value is None else f"{value:g}" + ("*" if field in flags else "")

        table.append([r["key"], mark("memory_gb", r["memory_gb"]), mark("memory_bw_gbs", r["memory_bw_gbs"]),
                      mark("peak_tflops.bf16", r["peak_tflops"].get("bf16")),
                      mark("peak_tflops.fp32", r["peak_tflops"].get("fp32")), mark("tdp_w", r["tdp_w"]),
                      ("~" if r["idle_estimated"] else "") + f"{r['idle_w']:g}", r["calibration"], r["name"]])
    width = terminal_width(False)
    text, dropped = fit_table(header, table, width, right=header[1:7])
    sys.stdout.write(f"wattlint GPU database: {len(data)} GPUs (dense peaks; * unconfirmed, ~ estimated)\n{text}")
    if dropped:
        sys.stdout.write(f"(left out at {width} columns: {', '.join(dropped)}; set COLUMNS or use --format json)\n")
    for n in dict.fromkeys(n for r in data for n in r["calibration_notes"]):  # once, though many GPUs searched it
        sys.stdout.write(f"note: {n}\n")
    sys.stdout.write("'wattlint gpus KEY' shows one GPU with the source of every value\n")
    return 0
