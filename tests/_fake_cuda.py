"""A CUDA 'GPU' for the calibration runner's tests: torch.cuda answers as an H100 whose ops run on the CPU."""

import types


def mock_cuda_device(monkeypatch, event_cls):
    """Patch torch.cuda (available, an H100's properties, ``event_cls`` as its Event) and the CUDA backend's op
    builder (the ops run on the CPU); returns the device properties."""
    import torch

    from wattlint.calibrate import backends

    props = types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", multi_processor_count=132, total_memory=80 << 30,
                                  major=9, minor=0, uuid="1234")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: None)
    monkeypatch.setattr(torch.cuda, "Event", event_cls)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(backends.CudaBackend, "build",
                        lambda self, s: backends.benchmarks.build(s.family, s.params_dict, s.precision, s.phase, "cpu"))
    return props
