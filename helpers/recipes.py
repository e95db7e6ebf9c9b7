"""The capstone's bookkeeping: one result row per (model, method), the Pareto front, the decision guide.

Taught in 08_recipes. The rows are measured in the notebook; this module only organises them,
so the guide is derived from the measured table rather than written before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from helpers._validate import check_bits, check_choice, check_finite_number, check_float_tensor, check_int

__all__ = [
    "Result",
    "timed",
    "pareto_front",
    "recommend",
    "decision_view",
    "format_table",
    "packed_state_dict",
    "affine_codes",
    "codebook_codes",
]


class Result(NamedTuple):
    """One measured variant: quality (accuracy % or mean cosine), bytes, speed-up vs fp32, time to quantize."""

    model: str
    method: str
    quality: float
    size_bytes: int
    speedup: float | None
    quantize_s: float
    retrieval: float | None = None
    note: str = ""
    has_kernel: bool = True  # False: simulated (fake-quant) — no kernel here runs the stored format


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``: the result of ``fn`` and the wall time it took (e.g. time to quantize)."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _check_results(results: Sequence[Result]) -> list[Result]:
    results = list(results)
    if not results:
        raise ValueError("results must be a non-empty list of Result rows")
    for r in results:
        if not isinstance(r, Result):
            raise TypeError(f"results must hold Result rows, got {type(r).__name__}")
    return results


def pareto_front(results: Iterable[Result]) -> list[Result]:
    """Rows not dominated by another row (smaller-or-equal size and higher-or-equal quality, one strictly).

    Sorted by size, smallest first.
    """
    rows = _check_results(results)
    front = []
    for r in rows:
        dominated = any(
            o.size_bytes <= r.size_bytes
            and o.quality >= r.quality
            and (o.size_bytes < r.size_bytes or o.quality > r.quality)
            for o in rows
        )
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (r.size_bytes, -r.quality))


def recommend(
    results: Iterable[Result],
    *,
    max_drop: float,
    goal: str = "size",
    baseline: str = "fp32",
    require_kernel: bool = False,
) -> Result | None:
    """The best row whose quality is within ``max_drop`` of the ``baseline`` row.

    ``goal="size"`` picks the smallest, ``"speed"`` the fastest (largest speed-up, ties broken by
    size), ``"quality"`` the most faithful among the quantized rows. ``require_kernel=True`` keeps
    only rows that run with a real kernel here (not simulated). Returns None when no quantized
    row is within the budget.
    """
    rows = _check_results(results)
    max_drop = check_finite_number(max_drop, "max_drop")
    if max_drop < 0:
        raise ValueError(f"max_drop must be >= 0, got {max_drop}")
    check_choice(goal, "goal", ("size", "speed", "quality"))
    base = [r for r in rows if r.method == baseline]
    if len(base) != 1:
        raise ValueError(f"results must contain exactly one row with method {baseline!r}, found {len(base)}")
    if not isinstance(require_kernel, bool):
        raise TypeError(f"require_kernel must be True or False, got {require_kernel!r}")
    ok = [
        r
        for r in rows
        if r.method != baseline and base[0].quality - r.quality <= max_drop and (r.has_kernel or not require_kernel)
    ]
    if not ok:
        return None
    if goal == "size":
        return min(ok, key=lambda r: (r.size_bytes, -r.quality))
    if goal == "speed":
        return max(ok, key=lambda r: (r.speedup if r.speedup is not None else 0.0, -r.size_bytes))
    return max(ok, key=lambda r: (r.quality, -r.size_bytes))


def decision_view(
    results: Iterable[Result], *, max_drop: float, goal: str = "size", quality_name: str = "quality"
) -> dict:
    """What the capstone's decision widget shows: the Pareto front, the pick for ``goal`` within ``max_drop``, a readout.

    Returns ``front`` (:func:`pareto_front`), ``pick`` (:func:`recommend`, or None when no quantized
    row keeps the quality within ``max_drop`` of fp32) and ``readout``. Taught in 08_recipes.
    """
    rows = _check_results(results)
    pick = recommend(rows, max_drop=max_drop, goal=goal)
    if pick is None:
        readout = f"no quantized method keeps {quality_name} within {max_drop:g} of fp32"
    else:
        speed = "n/a" if pick.speedup is None else f"{pick.speedup:.2f}x"
        readout = (
            f"pick: {pick.method}  {quality_name} {pick.quality:.4f}  size {pick.size_bytes / 1e6:.2f} MB  "
            f"speed-up {speed}"
        )
    return {"front": pareto_front(rows), "pick": pick, "readout": readout}


def format_table(
    results: Iterable[Result], quality_name: str, *, timings: bool = False, quality_fmt: str = "{:.4f}"
) -> str:
    """A Markdown table of ``results``: quality, size in MB and × smaller than fp32.

    ``timings=True`` adds the noisy columns (speed-up vs fp32, time to quantize); keep those in a
    separate, nbval-ignored cell so the deterministic table stays comparable run to run.
    """
    rows = _check_results(results)
    has_retrieval = any(r.retrieval is not None for r in rows)
    head = ["method", quality_name] + (["top-5 agreement"] if has_retrieval else [])
    head += ["size (MB)", "× smaller"] + (["speed-up vs fp32", "quantize (s)"] if timings else []) + ["note"]
    base = next((r for r in rows if r.method == "fp32"), rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.method, quality_fmt.format(r.quality)]
        if has_retrieval:
            cells.append("" if r.retrieval is None else f"{r.retrieval:.3f}")
        cells += [f"{r.size_bytes / 1e6:.2f}", f"{base.size_bytes / r.size_bytes:.2f}"]
        if timings:
            cells += ["n/a" if r.speedup is None else f"{r.speedup:.2f}×", f"{r.quantize_s:.2f}"]
        cells.append(r.note)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def packed_state_dict(
    model: nn.Module, pack: Callable[[torch.Tensor], dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with every Conv/Linear weight replaced by what ``pack(weight)`` stores.

    ``pack`` returns the tensors a real file would hold for one weight (packed codes, scales,
    codebook...); they are saved under ``<name>.weight.<key>``. ``serialized_size`` of the result
    is then the honest on-disk size of a method that has no PyTorch module of its own.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(pack):
        raise TypeError(f"pack must be callable, got {type(pack).__name__}")
    state = dict(model.state_dict())
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            key = f"{name}.weight" if name else "weight"
            del state[key]
            for sub, tensor in pack(module.weight.detach()).items():
                state[f"{key}.{sub}"] = tensor
    return state


def affine_codes(weight: torch.Tensor, bits: int) -> dict[str, torch.Tensor]:
    """Per-output-channel symmetric ``bits``-bit codes of ``weight`` (packed two per byte at 4 bits) and fp32 scales."""
    from helpers.affine import quantize_tensor
    from helpers.nonuniform import pack_codes

    check_float_tensor(weight, "weight")
    bits = check_bits(bits, lo=2, hi=8)
    q, scale, _ = quantize_tensor(weight, bits, scheme="symmetric", granularity="channel", axis=0)
    if bits == 8:
        return {"q": q, "scale": scale}
    unsigned = (q.to(torch.int16) + 2 ** (bits - 1)).to(torch.uint8)
    width = 4 if bits <= 4 else 8
    return {"q": pack_codes(unsigned, width), "scale": scale}


def codebook_codes(
    weight: torch.Tensor, levels: torch.Tensor, bits: int, block_size: int | None, *, store_levels: bool
) -> dict[str, torch.Tensor]:
    """Blockwise-absmax codebook indices of ``weight`` packed ``bits`` per index, the absmax per block,
    and the levels themselves when ``store_levels`` (a fitted k-means codebook must be stored; NF4's
    table is a constant of the format)."""
    from helpers.nonuniform import blockwise_absmax_codebook, pack_codes

    check_float_tensor(weight, "weight")
    check_choice(bits, "bits", (1, 2, 4, 8))
    bs = weight.numel() if block_size is None else check_int(block_size, "block_size", lo=1)
    q, absmax = blockwise_absmax_codebook(weight.reshape(-1), levels, bs)
    out = {"q": pack_codes(q, bits), "absmax": absmax}
    if store_levels:
        out["levels"] = levels
    return out
