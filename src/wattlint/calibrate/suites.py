"""Calibration suites as data: ``calibration/suites/<name>.toml`` -> an ordered list of samples.

A suite file::

    [suite]
    name = "default"
    description = "..."
    seed = 1                      # deterministic shuffle (families interleaved, so drift is not a family effect)

    [suite.timing.cuda]           # per-sample windows by device (seconds); the planned duration comes from these
    warmup_s = 0.05               # run the op until this much time has passed (>= 2 calls)
    timing_s = 0.10               # timed calls (CUDA events / synchronize), median of rounds
    window_s = 0.5                # energy window (NVML counter needs >= 0.5 s)
    overhead_s = 0.10             # allocation, counter-tick alignment, bookkeeping

    [suite.setup]
    idle_s = 5                    # idle power, measured first
    stabilize_max_s = 30          # thermal stabilisation (cuda): until the temperature is flat, at most this

    [[group]]
    family = "gemm"
    precisions = ["fp32", "tf32", "bf16"]
    phases = ["forward", "backward"]
    shapes = [{m = 4096, n = 4096, k = 4096}, ...]     # explicit shapes, and/or
    grid = {m = [...], n = [...], k = [...]}           # a cartesian grid
    fixed = {bias = 1}                                 # merged into every shape

Samples = shapes x precisions x phases (combinations a family cannot measure are dropped).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..types import ConfigError
from . import benchmarks

SUITE_DIR_ENV = "WATTLINT_SUITES"
DEFAULT_TIMING = {
    "cuda": {"warmup_s": 0.05, "timing_s": 0.10, "window_s": 0.5, "overhead_s": 0.10},
    "cpu": {"warmup_s": 0.02, "timing_s": 0.12, "window_s": 0.0, "overhead_s": 0.02},
    "fake": {"warmup_s": 0.0, "timing_s": 0.0, "window_s": 0.5, "overhead_s": 0.0},
}
DEFAULT_SETUP = {"idle_s": 5.0, "stabilize_max_s": 30.0}


@dataclass(frozen=True)
class Sample:
    family: str
    params: tuple[tuple[str, Any], ...]  # sorted
    precision: str
    phase: str

    @property
    def params_dict(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def params_json(self) -> str:
        return json.dumps(self.params_dict, sort_keys=True, separators=(",", ":"))

    @property
    def shape_key(self) -> str:
        return f"{self.family}:{self.params_json}"

    @property
    def id(self) -> str:
        return f"{self.family}:{self.params_json}:{self.precision}:{self.phase}"

    def records(self):
        return benchmarks.records(self.family, self.params_dict, self.precision, self.phase)


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    description: str
    samples: tuple[Sample, ...]
    timing: Mapping[str, Mapping[str, float]]
    setup: Mapping[str, float]
    sha256: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def sample_seconds(self, device: str) -> float:
        t = self.timing.get(device) or DEFAULT_TIMING.get(device) or DEFAULT_TIMING["cuda"]
        return float(sum(t.get(k, 0.0) for k in ("warmup_s", "timing_s", "window_s", "overhead_s")))

    def part(self, k: int, n: int) -> tuple[Sample, ...]:
        """Part k of n (1-based): every n-th sample of the shuffled order, so each part covers every family."""
        if not (1 <= k <= n):
            raise ConfigError(f"--part {k}/{n}: expected 1 <= K <= N")
        return tuple(s for i, s in enumerate(self.samples) if i % n == k - 1)

    def planned_seconds(self, device: str, samples: int | None = None, *, with_setup: bool = True) -> float:
        n = len(self.samples) if samples is None else samples
        setup = 0.0
        if with_setup:
            setup = float(self.setup.get("idle_s", 0.0))
            if device == "cuda":
                setup += float(self.setup.get("stabilize_max_s", 0.0))
        return n * self.sample_seconds(device) + setup

    def family_counts(self, samples=None) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in samples or self.samples:
            out[s.family] = out.get(s.family, 0) + 1
        return dict(sorted(out.items()))


def suites_dir() -> Path:
    """``calibration/suites`` of the source tree (the suites are data, not package code)."""
    import os

    env = os.environ.get(SUITE_DIR_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "calibration" / "suites"
        if cand.is_dir():
            return cand
    return Path.cwd() / "calibration" / "suites"


def resolve_suite_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"suite file {name_or_path!r} not found")
        return p
    cand = suites_dir() / f"{name_or_path}.toml"
    if not cand.is_file():
        avail = sorted(x.stem for x in suites_dir().glob("*.toml"))
        raise ConfigError(f"unknown suite {name_or_path!r} (available: {', '.join(avail) or 'none'}; or a .toml path)")
    return cand


def load_suite(name_or_path: str) -> Suite:
    path = resolve_suite_path(name_or_path)
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    return parse_suite(data, path=str(path), sha256=hashlib.sha256(raw).hexdigest())


def parse_suite(data: Mapping[str, Any], *, path: str = "<memory>", sha256: str = "") -> Suite:
    head = data.get("suite") or {}
    unknown = set(data) - {"suite", "group"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)}")
    timing = {d: dict(DEFAULT_TIMING[d]) for d in DEFAULT_TIMING}
    for dev, t in (head.get("timing") or {}).items():
        timing.setdefault(dev, {}).update({k: float(v) for k, v in t.items()})
    setup = dict(DEFAULT_SETUP)
    setup.update({k: float(v) for k, v in (head.get("setup") or {}).items()})
    seen: set[str] = set()
    samples: list[Sample] = []
    for gi, g in enumerate(data.get("group") or []):
        where = f"{path}: group {gi + 1}"
        fam = g.get("family")
        if fam not in benchmarks.FAMILIES:
            raise ConfigError(f"{where}: unknown family {fam!r} (one of {', '.join(benchmarks.FAMILIES)})")
        bad = set(g) - {"family", "precisions", "phases", "shapes", "grid", "fixed", "note"}
        if bad:
            raise ConfigError(f"{where}: unknown key(s) {sorted(bad)}")
        precisions = list(g.get("precisions") or ["fp32"])
        phases = list(g.get("phases") or benchmarks.FAMILIES[fam].phases)
        fixed = dict(g.get("fixed") or {})
        shapes = [dict(s) for s in g.get("shapes") or []]
        grid = g.get("grid")
        if grid:
            keys = sorted(grid)
            for combo in itertools.product(*(grid[k] for k in keys)):
                shapes.append(dict(zip(keys, combo)))
        if not shapes:
            raise ConfigError(f"{where}: no shapes (give 'shapes' and/or 'grid')")
        for shp in shapes:
            params = {**fixed, **shp}
            for prec in precisions:
                if prec not in benchmarks.FAMILIES[fam].precisions:
                    continue
                for ph in phases:
                    if not benchmarks.supports(fam, params, ph):
                        continue
                    s = Sample(fam, tuple(sorted(params.items())), prec, ph)
                    try:
                        s.records()
                    except (benchmarks.BenchmarkError, KeyError, TypeError, ValueError) as e:
                        raise ConfigError(f"{where}: bad shape {params}: {e}") from None
                    if s.id in seen:
                        continue
                    seen.add(s.id)
                    samples.append(s)
    rnd = random.Random(int(head.get("seed", 1)))
    rnd.shuffle(samples)
    return Suite(name=str(head.get("name") or Path(path).stem), path=path,
                 description=str(head.get("description", "")), samples=tuple(samples), timing=timing, setup=setup,
                 sha256=sha256 or hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest())


def plan_text(suite: Suite, device: str, samples: tuple[Sample, ...] | None = None, part: str = "") -> str:
    """One paragraph printed before a run starts: samples, per-sample window, planned duration."""
    samples = suite.samples if samples is None else samples
    per = suite.sample_seconds(device)
    total = suite.planned_seconds(device, len(samples))
    fams = ", ".join(f"{k} {v}" for k, v in suite.family_counts(samples).items())
    return (f"suite {suite.name}{' part ' + part if part else ''}: {len(samples)} samples ({fams}); "
            f"{per:.2f} s per sample on {device} + setup -> planned {total / 60:.1f} min")
