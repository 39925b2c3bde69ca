"""Frontends turn a model source into a CostGraph: torch (meta tensors), onnx (shape inference), hf (config.json)."""


def exception_line(e: BaseException) -> str:
    """``Type: first line of the message`` of an exception the user's model or config raised, for a one-line error
    (``Type (no message)`` when it has none: a bare ``raise MemoryError`` printed 'MemoryError: ')."""
    msg = str(e).strip()
    return f"{type(e).__name__}: {msg.splitlines()[0]}" if msg else f"{type(e).__name__} (no message)"


def token_loss_note(classes: int, shape, token: tuple, tail: str = "") -> str:
    """The assumption line of a language model's assumed loss, the same from the torch and ONNX frontends: a
    token-level cross-entropy over ``classes``-way logits, labels of ``shape``, one per token of the integer input
    ``token`` = (name, shape); ``tail`` adds a frontend's own words before the closing parenthesis."""
    return (f"loss: token-level cross-entropy on the {classes}-way logits over their last dim (labels of shape "
            f"{shape}, one per token of the integer input {token[0]} {list(token[1])}, every position labelled: a "
            f"language model's next-token loss{tail})")
