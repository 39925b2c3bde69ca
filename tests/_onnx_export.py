"""torch.onnx.export of a small token model as the ONNX mask tests need it: idx [b, t] int64 -> logits, opset 17,
the TorchScript exporter (dynamo=False), and optionally re-saved with its tensors as external data."""

from __future__ import annotations

import warnings


def export_tokens_model(model, path, external: bool):
    import onnx
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(2, 16, dtype=torch.long),), str(path), input_names=["idx"],
                          output_names=["logits"], dynamic_axes={"idx": {0: "b", 1: "t"}}, opset_version=17,
                          dynamo=False)
    if external:
        onnx.save_model(onnx.load(str(path)), str(path), save_as_external_data=True, location=path.name + ".data",
                        size_threshold=1024)
    return path


def save_model(model, path, external: bool):
    """Save ``model`` at ``path``, its initializers inline or (``external``) all in ``<name>.data`` beside it."""
    import onnx

    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data", size_threshold=0)
        assert model.graph.initializer[0].data_location == onnx.TensorProto.EXTERNAL
    else:
        onnx.save(model, str(path))
    return path
