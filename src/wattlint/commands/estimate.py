"""``wattlint MODEL --gpu G [plan options]`` (the default command): energy, time, CO2 and cost of a training plan.

Defaults come from ``[tool.wattlint]`` (wattlint.config) when present; CLI flags win. Exits 0 whenever an estimate
was produced (findings do not change the exit code here; ``wattlint check`` gates on them), 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import options as O
from ..report.layers import GROUPINGS
from ._common import (add_model_arguments, add_option, add_output_argument, check_output_path, cli_options,
                      config_given, format_for, model_file, nonempty, positive_int, project_inputs, settings_note, shown_setting,
                      write_output)

GROUPS = {
    "hardware": ("gpu", "compare", "gpus", "gpus_per_node", "tensor_parallel", "pipeline_parallel",
                 "virtual_pipeline_stages", "context_parallel", "expert_parallel", "moe_token_dispatcher_type",
                 "overlap_moe_expert_parallel_comm", "sequence_parallel", "sharding", "ddp_bucket_view", "internode_gbps", "launch_overhead",
                 "host_op_time", "utilization"),
    "work": ("epochs", "dataset", "steps", "tokens", "grad_accum", "micro_batch_size", "recompute",
             "activation_checkpointing", "training_stack", "loss_impl",
             "goodput", "loader_sample_time"),
    "site": ("pue", "region", "carbon_intensity", "price_per_kwh", "gpu_hour_price"),
}
CLI_OPTIONS = tuple(n for names in GROUPS.values() for n in names if n not in ("gpu", "compare")) + \
    ("inputs", "batch_size", "seq_len", "precision", "optimizer", "optimizer_impl", "attention", "torch_version",
     "capacity_factor")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    for title, names in GROUPS.items():
        g = p.add_argument_group(title)
        for name in names:
            add_option(g, name)
    p.add_argument("--models-dir", metavar="DIR", type=nonempty("folder name"), help="fitted energy models to search first (then [tool.wattlint] "
                   "models-dir, $WATTLINT_MODELS_DIR, the user data folder, the shipped models)")
    o = p.add_argument_group("output")
    o.add_argument("--format", choices=O.ESTIMATE_FORMATS, default=None,
                   help="output format (default text, or the one an --output name implies: .json, .md, .html)")
    add_output_argument(o, O.ESTIMATE_FORMATS)
    o.add_argument("--top", type=positive_int, default=10, metavar="N", help="layer rows the text / markdown / HTML report shows (default 10; JSON lists every "
                   "layer)")
    o.add_argument("--group-by", choices=GROUPINGS, default="block",
                   help="layer rows of the text / markdown / HTML report (JSON lists every module): block "
                        "(repeated blocks merged, default), name (every module), type (module type), depth (modules "
                        "cut at --depth components)")
    o.add_argument("--depth", type=positive_int, default=None, metavar="N",
                   help="path depth for --group-by depth (default 2; only with --group-by depth)")


def request(args) -> tuple[object, str]:
    """The api.Request of the command line overlaid on ``[tool.wattlint]`` defaults, and the output format."""
    from ..api import Request, models_search_path
    from ..config import load_config
    from ..types import ConfigError

    config = load_config(Path.cwd())
    cli = cli_options(args, CLI_OPTIONS)
    conflict = O.work_conflict(cli, lambda n: O.OPTIONS[n].flag)
    if conflict:
        raise ConfigError(conflict)
    defaults = dict(config.defaults)
    # the CLI's choices replace the config's whole choice (--steps over a configured epochs, --grad-accum over its
    # micro-batch-size, --region over its carbon-intensity): the two conflicted, exit 2 though the user gave one
    opts = O.overlay({k: v for k, v in defaults.items() if k != "gpu"}, cli)
    gpu = args.gpu or defaults.get("gpu")
    if not args.gpu and defaults.get("gpu"):  # an unknown GPU named in the file must say where it was named
        from ..config import _where
        from ..hardware import resolve_gpu
        from ..types import WattlintError

        try:
            resolve_gpu(gpu)
        except WattlintError as e:
            raise ConfigError(f"{_where(config.path)}: [tool.wattlint] gpu = {gpu!r}: {e}") from None
    notes: tuple[str, ...] = ()
    if not gpu:
        gpu = O.DEFAULT_GPU
        notes = (f"no --gpu given: {O.DEFAULT_GPU}",)
    # the settings the report takes from the file: those the command line's choices did not replace (options.overlay)
    from_file = [(k, v) for k, v in defaults.items() if (k == "gpu" and not args.gpu) or
                 (k != "gpu" and k not in cli and opts.get(k) == v)]
    if from_file:  # every number they change must say where its setting came from
        notes += (settings_note(config, from_file),)
    gpus = (gpu,) + tuple(g for g in (args.compare or ()) if g != gpu)
    if args.compare:  # a comparison of one GPU printed a single report (and another JSON schema): refuse it
        from ..hardware import resolve_gpu

        keys = {resolve_gpu(g)[0].key for g in gpus}  # an unknown name is its own one-line error here
        if len(keys) == 1:
            raise ConfigError(f"--compare {','.join(args.compare)}: names no GPU other than the --gpu "
                              f"({keys.pop()}): nothing to compare; name other GPUs or drop --compare")
    # [tool.wattlint] format is check's (docs/CONFIG.md: the report options are command-line only here)
    fmt = args.format or format_for(args.output, O.ESTIMATE_FORMATS) or "text"
    dirs = models_search_path(args.models_dir, config)
    # the notes and input errors name a setting from the file as the file writes it, not as a flag the user did not
    # type ('--gpus 3' for a gpus = 3 in [tool.wattlint])
    given = config_given(config, [(k, v) for k, v in from_file if k != "gpu"]) if from_file else {}
    return Request(source=args.model, gpus=gpus, options=opts, config=config, notes=notes, models_dirs=dirs,
                   given=given), fmt


def _name_the_config(e, req, cli: set[str]):
    """An error about an option ('--precision bf16: ...') whose value came from [tool.wattlint], not from the command
    line (``cli``: the options given there), says so: the user did not type that flag."""
    from ..config import _where
    from ..types import ConfigError

    msg = str(e)
    for name, value in (req.config.defaults.items() if req.config is not None else ()):
        opt = O.OPTIONS.get(name)
        if opt is None or name in cli or req.options.get(name) != value:
            continue  # given on the command line (it wins), or not an option of the plan
        # the message names the flag, or (a value the option's own module refused: 'unknown region 'EU'') the value
        if (msg.startswith(f"{opt.flag} ") or msg.startswith(f"{opt.flag}:")
                or (isinstance(value, str) and len(value) > 1 and repr(value) in msg)):
            key = name.replace("_", "-")
            msg = msg.replace(f" (or pass a sample count, e.g. {opt.flag} ", f" (or set a sample count, e.g. {key} = ")
            return ConfigError(f"{msg} (from {key} = {shown_setting(value)} in [tool.wattlint] of "
                               f"{_where(req.config.path)})")
    return e


def run(args) -> int:
    from ..api import run as run_request
    from ..types import WattlintError

    check_output_path(args.output)
    if args.depth is not None and args.group_by != "depth":
        from ..types import ConfigError

        raise ConfigError(f"--depth {args.depth} applies to --group-by depth (layer rows are grouped by "
                          f"{args.group_by}); add --group-by depth or drop --depth")
    req, fmt = request(args)
    inputs = ((model_file(args.model), "the model file"), *project_inputs(req.config))
    check_output_path(args.output, inputs=inputs)
    try:
        ests = run_request(req)
    except WattlintError as e:
        raise _name_the_config(e, req, set(cli_options(args, CLI_OPTIONS))) from None
    write_output(args.output, render(ests, fmt, args), inputs=inputs)
    if args.output:
        print(f"wattlint: wrote {args.output} ({fmt})", file=sys.stderr)
    return 0


def terminal_width(to_file: bool) -> int:
    """Columns for text output: the terminal's when writing to one, else $COLUMNS, else 100 (clamped 60-200)."""
    import shutil

    env = os.environ.get("COLUMNS", "")
    if env.isdigit():
        w = int(env)
    elif not to_file and sys.stdout.isatty():
        w = shutil.get_terminal_size((100, 24)).columns
    else:
        w = 100
    return max(60, min(200, w))


def report_width(to_file: bool) -> int | None:
    """Columns the text report's tables are fitted to: :func:`terminal_width` where there is one (a terminal, or
    $COLUMNS set for stdout), else None: a file (--output, whatever $COLUMNS says) or a pipe has no width, so no
    column is left out (review: a --compare report redirected to a file lost its GPU-hours, CO2, cost and memory
    columns 'at 100 columns')."""
    if not to_file and (os.environ.get("COLUMNS", "").isdigit() or sys.stdout.isatty()):
        return terminal_width(to_file)
    return None


def render(ests, fmt: str, args) -> str:
    layers = {"top": args.top, "group_by": args.group_by, "depth": args.depth or 2}
    if fmt == "json":
        from ..report.json_out import render as render_json

        return render_json(ests)
    if fmt == "markdown":
        from ..report.markdown import render as render_md

        return render_md(ests, **layers)
    if fmt == "html":
        from ..report.html import render as render_html

        return render_html(ests, **layers)
    from ..report.text import render as render_text

    color = (not args.output and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    return render_text(ests, color=bool(color), width=report_width(bool(args.output)), **layers)
