"""Shared pieces of the fake pynvml modules and clocks the meter and tracker tests build on."""

from __future__ import annotations

import types

SETTERS = ("nvmlDeviceSetPowerManagementLimit", "nvmlDeviceSetApplicationsClocks", "nvmlDeviceSetGpuLockedClocks",
           "nvmlDeviceSetPersistenceMode", "nvmlDeviceResetGpuLockedClocks", "nvmlDeviceSetMigMode")


class Clock:
    """A clock the test advances by hand (``clock.t += dt``)."""

    def __init__(self, start: float = 0.0):
        self.t = start

    def __call__(self):
        return self.t


def base_module(setter_message: str) -> types.ModuleType:
    """A pynvml stand-in with NVMLError, the error/enum constants and every device setter raising AssertionError
    (measurement must never change a device setting). Callers add the query functions they need."""
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        def __init__(self, value):
            self.value = value
            super().__init__(f"NVML error {value}")

    m.NVMLError = NVMLError
    m.NVML_ERROR_LIBRARY_NOT_FOUND = 12
    m.NVML_ERROR_NOT_SUPPORTED = 3
    m.NVML_ERROR_NO_PERMISSION = 4
    m.NVML_ERROR_GPU_IS_LOST = 15
    m.NVML_TEMPERATURE_GPU = 0
    m.NVML_CLOCK_SM = 1
    m.NVML_CLOCK_MEM = 2
    m.nvmlShutdown = lambda: None
    m.calls = []

    def setter(*a):
        raise AssertionError(setter_message)
    for name in SETTERS:
        setattr(m, name, setter)
    return m


def quiet_track(tmp_path, clock, **kw):
    """``wattlint.track`` as the tracker tests run it: records into ``tmp_path``, no display, one fake 250 W channel
    read on ``clock``, 1 s windows, no static estimate, PUE 1 and 500 g/kWh; ``kw`` on top."""
    import wattlint
    from wattlint.tracking import Settings
    from wattlint.tracking.devices import FakeChannel

    base = dict(out=tmp_path, display="quiet", window_s=1.0, channels=[FakeChannel(250.0)], clock=clock,
                settings=Settings(min_steps=10, min_stable_s=1.0, max_rel_ci=0.05), static=False, pue=1.0,
                carbon_intensity=500.0)
    base.update(kw)
    return wattlint.track(**base)


def run_tracked(tmp_path, n, dt, *, stream=None, after=0.0, **kw):
    """``n`` steps of ``dt`` s inside a :func:`quiet_track` block printing its line summary (then ``after`` s of
    work after the last step); returns (tracker, the BudgetWarnings raised, the printed summary)."""
    import io
    import warnings

    from wattlint.tracking import BudgetWarning

    clock = Clock(100.0)
    stream = stream or io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_track(tmp_path, clock, display="line", every=10**6, stream=stream, **kw) as t:
            for _ in range(n):
                clock.t += dt
                t.step()
            clock.t += after
    return t, [str(w.message) for w in caught if issubclass(w.category, BudgetWarning)], stream.getvalue()


def record_lines(path) -> list:
    """A run record's lines, parsed."""
    import json

    return [json.loads(x) for x in path.read_text().splitlines()]


def validate_record(lines) -> None:
    """Every line of a run record against the shipped run schema."""
    import json
    from importlib import resources

    import jsonschema

    schema = json.loads(resources.files("wattlint").joinpath("schemas", "run.schema.json").read_text())
    v = jsonschema.Draft202012Validator(schema)
    for ln in lines:
        v.validate(ln)
