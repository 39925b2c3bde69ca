"""Frontends turn a model source into a CostGraph: torch (meta tensors), onnx (shape inference), hf (config.json)."""
