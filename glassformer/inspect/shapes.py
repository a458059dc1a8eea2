"""Every module's input and output shapes through one forward pass, written in the courses'
letters: B batch, T length (the decoder's, in an encoder-decoder), S the source length, C width,
H heads, Hkv kv heads, D head dim, F feed-forward width, V vocabulary (and multiples such as 3C).

Forward hooks record the shapes, the hook points' (model/hooks.py) among them; the model runs
unchanged, except that a hooked attention pattern makes attention take its explicit math kernel
(the same numbers), so that the scores and weights (B, H, T, T) show as well.
"""

import torch

LETTERS = ("B", "T", "S", "C", "F", "V", "H", "Hkv", "D")  # the first match names a size


def dimensions(cfg, batch: int, length: int, source_length: int | None = None) -> dict[str, int]:
    """{letter: size} for model config `cfg` run on `batch` sequences of `length` tokens (and,
    in an encoder-decoder, sources of `source_length`)."""
    dims = {"B": batch, "T": length, "C": cfg.n_embd, "F": cfg.hidden, "V": cfg.vocab_size,
            "H": cfg.n_head, "Hkv": cfg.kv_heads, "D": cfg.head_dim}
    return dims | ({"S": source_length} if source_length is not None else {})


def pick_batch(cfg, length: int, source_length: int | None = None) -> int:
    """The smallest batch of at least 2 whose size no other letter has, so B reads unambiguously."""
    taken = set(dimensions(cfg, 0, length, source_length).values())
    return next(b for b in range(2, 10 ** 6) if b not in taken)


def trace_shapes(model, *inputs) -> list[dict]:
    """Run `model(*inputs)` once (ids (B, T), or src (B, S) and ids (B, T)); return {name, type, depth, inputs, outputs} per module call, in
    call order (a parent before its children), inputs and outputs as lists of shape tuples."""
    records, open_calls, handles = [], [], []

    def before(name):
        def hook(module, args, kwargs):
            record = {"name": name or type(module).__name__, "type": type(module).__name__,
                      "depth": len(open_calls),  # calls still running: the record's parents
                      "inputs": tensor_shapes(args) + tensor_shapes(kwargs), "outputs": []}
            records.append(record)
            open_calls.append(record)
        return hook

    def after(module, args, kwargs, output):
        open_calls.pop()["outputs"] = tensor_shapes(output)

    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(before(name), with_kwargs=True))
        handles.append(module.register_forward_hook(after, with_kwargs=True))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return records


def tensor_shapes(value) -> list[tuple[int, ...]]:
    """Shapes of the tensors in `value` (a tensor, or tuples, lists and dicts of them)."""
    if isinstance(value, torch.Tensor):
        return [tuple(value.shape)]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [shape for item in value for shape in tensor_shapes(item)]
    return []


def name_shape(shape, dims: dict[str, int]) -> str:
    """(2, 13, 96) -> "(B, T, 3C)" with dims {"B": 2, "T": 13, "C": 32, ...}."""
    return "(" + ", ".join(name_size(n, dims) for n in shape) + ")"


def name_size(n: int, dims: dict[str, int]) -> str:
    for letter in LETTERS:
        if dims.get(letter) == n:
            return letter
    for k in (2, 3, 4):
        for letter in ("C", "T"):
            if k * dims[letter] == n:
                return f"{k}{letter}"
    return str(n)


def format_trace(records: list[dict], dims: dict[str, int]) -> str:
    """One line per module call: indented name, type, inputs -> outputs."""
    def shapes(items):
        return ", ".join(name_shape(s, dims) for s in items) or "-"

    width = max(2 * r["depth"] + len(r["name"]) for r in records)
    lines = [" ".join(f"{k}={v}" for k, v in dims.items())]
    plain = {k: v for k, v in dims.items() if k != "Hkv" or v != dims["H"]}  # Hkv = H: MHA
    shared = {n: [k for k, v in plain.items() if v == n] for n in plain.values()}
    for n, letters in shared.items():
        if len(letters) > 1:
            lines.append(f"note: {' = '.join(letters)} = {n}; such a size is written "
                         f"{name_size(n, dims)} (a text of another length avoids this)")
    for r in records:
        label = "  " * r["depth"] + r["name"]
        lines.append(f"{label:<{width}}  {r['type']:<20} {shapes(r['inputs'])} -> "
                     f"{shapes(r['outputs'])}")
    return "\n".join(lines)
