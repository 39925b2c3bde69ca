"""Frontends turn a model source into a CostGraph: torch (meta tensors), onnx (shape inference), hf (config.json)."""


def exception_line(e: BaseException) -> str:
    """``Type: first line of the message`` of an exception the user's model or config raised, for a one-line error
    (``Type (no message)`` when it has none: a bare ``raise MemoryError`` printed 'MemoryError: ')."""
    msg = str(e).strip()
    return f"{type(e).__name__}: {msg.splitlines()[0]}" if msg else f"{type(e).__name__} (no message)"
