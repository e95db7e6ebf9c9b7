"""The capstone's bookkeeping: one result row per (model, method), the Pareto front, the decision guide.

Taught in 08_recipes. The rows are measured in the notebook; this module only organises them,
so the guide is derived from the measured table rather than written before it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from helpers._validate import (
    check_bits,
    check_choice,
    check_finite_number,
    check_float32_tensor,
    check_float_tensor,
    check_int,
)
from helpers.exercises import grade

__all__ = [
    "Result",
    "timed",
    "logit_kl",
    "mean_and_se",
    "accuracy_se",
    "speed_fields",
    "size_tie",
    "quality_tie",
    "speed_tie",
    "pareto_front",
    "choose",
    "recommend",
    "decision_view",
    "format_table",
    "ort_embed",
    "packed_state_dict",
    "affine_codes",
    "codebook_codes",
    "check_front",
    "check_budget_pick",
]


class Result(NamedTuple):
    """One measured variant: quality (accuracy % or mean cosine), bytes, speed-up, time to quantize.

    ``speedup`` is the best fp32 path's median time ÷ this row's median (> 1: faster than the
    fastest fp32 path timed in the same interleaved loop); ``speedup_eager`` the same against
    eager PyTorch fp32; ``speed_band`` the speed-up's spread, ``(best fp32 median ÷ this row's
    p90, best fp32 median ÷ this row's min)``. ``quality_se`` is the standard error of ``quality``
    over the test items (images, sentences); ``divergence`` a continuous fidelity measure, lower
    is better (the mean KL divergence of the outputs from fp32's, :func:`logit_kl`), that ranks
    rows whose quality ties. ``fp32`` marks an unquantized path (the baseline's peers: another
    runtime); such rows are never recommended as a quantization recipe.
    """

    model: str
    method: str
    quality: float
    size_bytes: int
    speedup: float | None
    quantize_s: float
    retrieval: float | None = None
    note: str = ""
    has_kernel: bool = True  # False: simulated (fake-quant) — no kernel here runs the stored format
    divergence: float | None = None
    quality_se: float = 0.0
    speedup_eager: float | None = None
    speed_band: tuple[float, float] | None = None
    fp32: bool = False


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``: the result of ``fn`` and the wall time it took (e.g. time to quantize)."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def logit_kl(ref_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean over rows of KL(softmax(ref_logits) ‖ softmax(logits)) in nats, computed in float64.

    ``ref_logits`` are the fp32 model's outputs, ``logits`` a quantized model's on the same inputs
    (both ``(n, classes)``). 0 means the same output distribution; unlike top-1 accuracy it moves
    with every change of the logits, so it separates recipes whose accuracy ties. Taught in 08_recipes.
    """
    check_float_tensor(ref_logits, "ref_logits")
    check_float_tensor(logits, "logits")
    if ref_logits.dim() != 2 or ref_logits.shape != logits.shape:
        raise ValueError(
            f"ref_logits and logits must both have shape (n, classes), got {tuple(ref_logits.shape)} "
            f"and {tuple(logits.shape)}"
        )
    log_p = torch.log_softmax(ref_logits.double(), dim=1)
    log_q = torch.log_softmax(logits.double(), dim=1)
    return float((log_p.exp() * (log_p - log_q)).sum(dim=1).mean().clamp_min(0.0))


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """``(mean, standard error of the mean)`` of per-item values (e.g. per-sentence cosines), in float64.

    The standard error ``std / sqrt(n)`` (``n - 1`` in the std) is how far another draw of test
    items would typically move the mean: two recipes whose qualities differ by less than their
    combined standard error tie (:func:`quality_tie`). One item has no spread: ``se = 0``.
    """
    check_float_tensor(values, "values")
    v = values.double().reshape(-1)
    if v.numel() == 1:
        return float(v[0]), 0.0
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


def accuracy_se(accuracy: float, n: int) -> float:
    """Standard error, in percentage points, of a top-1 accuracy (%) measured on ``n`` items: ``100 sqrt(p(1-p)/n)``."""
    accuracy = check_finite_number(accuracy, "accuracy")
    if not 0.0 <= accuracy <= 100.0:
        raise ValueError(f"accuracy must be a percentage in 0..100, got {accuracy}")
    n = check_int(n, "n", lo=1)
    p = accuracy / 100.0
    return 100.0 * math.sqrt(p * (1.0 - p) / n)


def speed_fields(
    median_ms: float, min_ms: float, p90_ms: float, *, best_fp32_ms: float, eager_ms: float
) -> dict[str, Any]:
    """``Result`` speed fields of a path from its timing and the baselines' medians (same interleaved loop).

    Returns ``{"speedup": best_fp32_ms / median_ms, "speedup_eager": eager_ms / median_ms,
    "speed_band": (best_fp32_ms / p90_ms, best_fp32_ms / min_ms)}``; use as ``row._replace(**fields)``.
    """
    vals = {}
    for name, v in (
        ("median_ms", median_ms),
        ("min_ms", min_ms),
        ("p90_ms", p90_ms),
        ("best_fp32_ms", best_fp32_ms),
        ("eager_ms", eager_ms),
    ):
        v = check_finite_number(v, name)
        if v <= 0:
            raise ValueError(f"{name} must be > 0 milliseconds, got {v}")
        vals[name] = v
    if not vals["min_ms"] <= vals["median_ms"] <= vals["p90_ms"]:
        raise ValueError(
            f"min_ms <= median_ms <= p90_ms must hold, got {vals['min_ms']}, {vals['median_ms']}, {vals['p90_ms']}"
        )
    best = vals["best_fp32_ms"]
    return {
        "speedup": best / vals["median_ms"],
        "speedup_eager": vals["eager_ms"] / vals["median_ms"],
        "speed_band": (best / vals["p90_ms"], best / vals["min_ms"]),
    }


def _check_size_rel(size_rel: Any) -> float:
    size_rel = check_finite_number(size_rel, "size_rel")
    if not 0.0 <= size_rel < 1.0:
        raise ValueError(f"size_rel must be a fraction in [0, 1), got {size_rel}")
    return size_rel


def size_tie(a: Result, b: Result, *, size_rel: float = 0.01) -> bool:
    """Sizes tie when the larger is within ``size_rel`` (default 1 %) of the smaller."""
    size_rel = _check_size_rel(size_rel)
    lo, hi = sorted((a.size_bytes, b.size_bytes))
    return hi <= lo * (1.0 + size_rel)


def quality_tie(a: Result, b: Result) -> bool:
    """Qualities tie when they differ by no more than their combined standard error ``sqrt(se_a² + se_b²)``."""
    return abs(a.quality - b.quality) <= math.hypot(a.quality_se, b.quality_se)


def speed_tie(a: Result, b: Result) -> bool:
    """Speeds tie when their measured spreads (``speed_band``) overlap; without bands, when the speed-ups are equal."""
    if a.speed_band is not None and b.speed_band is not None:
        return a.speed_band[0] <= b.speed_band[1] and b.speed_band[0] <= a.speed_band[1]
    return a.speedup == b.speedup


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


_CRITERIA = {
    "size": ("size", "quality", "divergence", "speed"),
    "quality": ("quality", "divergence", "size", "speed"),
    "speed": ("speed", "quality", "divergence", "size"),
}


def _speed(r: Result) -> float:
    return r.speedup if r.speedup is not None else 0.0


def _narrow(rows: list[Result], criterion: str, size_rel: float) -> list[Result]:
    """Keep the best row under ``criterion`` and every row tied with it (in table order)."""
    if criterion == "size":
        best = min(rows, key=lambda r: r.size_bytes)
        return [r for r in rows if size_tie(best, r, size_rel=size_rel)]
    if criterion == "quality":
        best = max(rows, key=lambda r: r.quality)
        return [r for r in rows if quality_tie(best, r)]
    if criterion == "speed":
        best = max(rows, key=_speed)
        return [r for r in rows if speed_tie(best, r)]
    low = min(r.divergence for r in rows)
    return [r for r in rows if r.divergence == low]


_TIE_WORDS = {
    "size": "size within {pct:g} %",
    "quality": "quality within its spread",
    "speed": "speed within its measured spread",
    "divergence": "the same divergence",
}


def choose(
    results: Iterable[Result],
    *,
    max_drop: float,
    goal: str = "size",
    baseline: str = "fp32",
    require_kernel: bool = False,
    size_rel: float = 0.01,
) -> tuple[Result | None, str]:
    """:func:`recommend`'s pick and the reason, e.g. ``"4 tie on size within 1 %; decided by quality"``.

    Candidates are the quantized rows (not ``baseline``, not ``fp32=True``) whose quality is within
    ``max_drop`` of the ``baseline`` row (and that run a real kernel, with ``require_kernel``). The
    goal's criterion picks the best candidate; the rows that tie with it — sizes within
    ``size_rel`` (:func:`size_tie`), qualities within their standard error (:func:`quality_tie`),
    speeds whose measured spreads overlap (:func:`speed_tie`) — go on to the next criterion:
    ``size → quality → divergence → speed`` for ``goal="size"``, ``quality → divergence → size →
    speed`` for ``"quality"``, ``speed → quality → divergence → size`` for ``"speed"``. A criterion
    the tied rows did not measure (a divergence missing, no speed-up at all) is skipped. Rows still
    tied after the last criterion are decided by table order. Returns ``(None, reason)`` when no
    candidate is within the budget.
    """
    rows = _check_results(results)
    max_drop = check_finite_number(max_drop, "max_drop")
    if max_drop < 0:
        raise ValueError(f"max_drop must be >= 0, got {max_drop}")
    check_choice(goal, "goal", tuple(_CRITERIA))
    base = [r for r in rows if r.method == baseline]
    if len(base) != 1:
        raise ValueError(f"results must contain exactly one row with method {baseline!r}, found {len(base)}")
    if not isinstance(require_kernel, bool):
        raise TypeError(f"require_kernel must be True or False, got {require_kernel!r}")
    size_rel = _check_size_rel(size_rel)
    ok = [
        r
        for r in rows
        if r.method != baseline
        and not r.fp32
        and base[0].quality - r.quality <= max_drop
        and (r.has_kernel or not require_kernel)
    ]
    if not ok:
        return None, f"no quantized row within a drop of {max_drop:g}"
    steps = []
    for criterion in _CRITERIA[goal]:
        if criterion == "divergence" and any(r.divergence is None for r in ok):
            steps.append("divergence not measured for every tied row")
            continue
        if criterion == "speed" and all(r.speedup is None for r in ok):
            steps.append("speed not measured")
            continue
        narrowed = _narrow(ok, criterion, size_rel)
        if len(narrowed) > 1:
            steps.append(f"{len(narrowed)} tie on {_TIE_WORDS[criterion].format(pct=100 * size_rel)}")
        else:
            steps.append(f"decided by {criterion}")
            return narrowed[0], "; ".join(steps)
        ok = narrowed
    steps.append("decided by table order")
    return ok[0], "; ".join(steps)


def recommend(
    results: Iterable[Result],
    *,
    max_drop: float,
    goal: str = "size",
    baseline: str = "fp32",
    require_kernel: bool = False,
    size_rel: float = 0.01,
) -> Result | None:
    """The best quantized row whose quality is within ``max_drop`` of the ``baseline`` row, ties handled.

    ``goal="size"`` picks the smallest, ``"speed"`` the fastest (largest ``speedup``), ``"quality"``
    the most faithful; ties within measured noise (sizes within ``size_rel``, qualities within their
    standard error, speeds within their spread) go to the next criterion, as :func:`choose`
    explains. ``require_kernel=True`` keeps only rows that run with a real kernel here (not
    simulated). Returns None when no quantized row is within the budget.
    """
    return choose(
        results, max_drop=max_drop, goal=goal, baseline=baseline, require_kernel=require_kernel, size_rel=size_rel
    )[0]


def decision_view(
    results: Iterable[Result],
    *,
    max_drop: float,
    goal: str = "size",
    quality_name: str = "quality",
    require_kernel: bool = False,
) -> dict:
    """What the capstone's decision widget shows: the Pareto front, the pick for ``goal`` within ``max_drop``, a readout.

    Returns ``front`` (:func:`pareto_front`), ``pick`` (:func:`recommend`, or None when no quantized
    row keeps the quality within ``max_drop`` of fp32), ``reason`` (:func:`choose`: which ties the
    pick was decided among) and ``readout``. ``require_kernel`` as in :func:`recommend`. Taught in 08_recipes.
    """
    rows = _check_results(results)
    pick, reason = choose(rows, max_drop=max_drop, goal=goal, require_kernel=require_kernel)
    if pick is None:
        real = " with a real kernel" if require_kernel else ""
        readout = f"no quantized method{real} keeps {quality_name} within {max_drop:g} of fp32"
    else:
        speed = "n/a" if pick.speedup is None else f"{pick.speedup:.2f}x"
        readout = (
            f"pick: {pick.method}  {quality_name} {pick.quality:.4f}  size {pick.size_bytes / 1e6:.2f} MB  "
            f"speed vs best fp32 {speed}  ({reason})"
        )
    return {"front": pareto_front(rows), "pick": pick, "reason": reason, "readout": readout}


def _fmt_quality(r: Result, quality_fmt: str) -> str:
    text = quality_fmt.format(r.quality)
    if r.quality_se <= 0:
        return text
    se = quality_fmt.format(r.quality_se)
    if float(se) == 0.0:  # below the quality's last printed digit: one significant digit instead
        se = f"{r.quality_se:.1g}"
    return f"{text} ± {se}"


def format_table(
    results: Iterable[Result],
    quality_name: str,
    *,
    timings: bool = False,
    quality_fmt: str = "{:.4f}",
    divergence_name: str = "KL to fp32",
) -> str:
    """A Markdown table of ``results``: quality (± its standard error), divergence, size in MB, × smaller than fp32.

    The standard error is printed like the quality, or to one significant digit when it is below
    the quality's last printed digit.
    The divergence column appears when a row has one (printed to 3 significant digits).
    ``timings=True`` adds the noisy columns (speed-up against the best fp32 path with its min–p90
    spread, against eager fp32, time to quantize); keep those in a separate, nbval-ignored cell so
    the deterministic table stays comparable run to run.
    """
    rows = _check_results(results)
    has_retrieval = any(r.retrieval is not None for r in rows)
    has_div = any(r.divergence is not None for r in rows)
    head = ["method", quality_name] + (["top-5 agreement"] if has_retrieval else [])
    head += [divergence_name] if has_div else []
    head += ["size (MB)", "× smaller"]
    head += ["vs best fp32 (min–p90)", "vs eager fp32", "quantize (s)"] if timings else []
    head += ["note"]
    base = next((r for r in rows if r.method == "fp32"), rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.method, _fmt_quality(r, quality_fmt)]
        if has_retrieval:
            cells.append("" if r.retrieval is None else f"{r.retrieval:.3f}")
        if has_div:
            cells.append("" if r.divergence is None else f"{r.divergence:.3g}")
        cells += [f"{r.size_bytes / 1e6:.2f}", f"{base.size_bytes / r.size_bytes:.2f}"]
        if timings:
            if r.speedup is None:
                cells.append("n/a")
            elif r.speed_band is None:
                cells.append(f"{r.speedup:.2f}×")
            else:
                cells.append(f"{r.speedup:.2f}× ({r.speed_band[0]:.2f}–{r.speed_band[1]:.2f})")
            cells += ["n/a" if r.speedup_eager is None else f"{r.speedup_eager:.2f}×", f"{r.quantize_s:.2f}"]
        cells.append(r.note)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ort_embed(session: Any, tokenizer: Any, sentences: Sequence[str], *, max_length: int = 128) -> torch.Tensor:
    """``helpers.language.embed`` for an ONNX Runtime encoder session (``helpers.runtimes.export_encoder``): float64 embeddings.

    One batch of ``sentences`` (padded, truncated to ``max_length``), the session's last hidden
    state mean-pooled over real tokens and L2-normalised, in float64 — the same pooling as ``embed``.
    """
    if not hasattr(session, "run") or not hasattr(session, "get_inputs"):
        raise TypeError(f"session must be an onnxruntime.InferenceSession, got {type(session).__name__}")
    if isinstance(sentences, str) or not isinstance(sentences, (list, tuple)) or not sentences:
        raise TypeError("sentences must be a non-empty list of strings")
    max_length = check_int(max_length, "max_length", lo=1)
    batch = tokenizer(list(sentences), padding=True, truncation=True, max_length=max_length, return_tensors="np")
    feeds = {i.name: batch[i.name].astype("int64") for i in session.get_inputs()}
    hidden = torch.from_numpy(session.run(None, feeds)[0]).double()
    mask = torch.from_numpy(batch["attention_mask"]).unsqueeze(-1).double()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


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

    check_float32_tensor(weight, "weight", kernel="the packed integer formats (torch's quantize ops)")
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


# Exercises of 08_recipes: checkers built on helpers.exercises.grade. The right answers come from
# pareto_front (tested against a brute-force dominance check) and recommend, never from a solution.

_FRONT_CASES = {
    # label: points; each case defeats at least one classic wrong answer (see tests/test_recipes.py)
    "unsorted input": [(300, 0.95), (100, 0.90), (200, 0.93)],
    "dominated points": [(100, 0.90), (150, 0.85), (200, 0.93), (250, 0.93), (300, 0.99)],
    "equal size": [(100, 0.90), (100, 0.92), (200, 0.95)],
    "identical points": [(100, 0.90), (200, 0.95), (100, 0.90)],
    "one point": [(5, 0.5)],
}

_FRONT_HINTS = {
    "unsorted input": "return the front sorted by size, smallest first (not by quality, not in input order)",
    "dominated points": "higher quality is better and smaller size is better; drop a point when another is at "
    "least as good on both and strictly better on one (equal quality at a larger size counts as dominated)",
    "equal size": "a point with the same size but lower quality than another is dominated: "
    "dominance is <= / >= on both coordinates with at least one strict, not < / > on both",
    "identical points": "two identical points do not dominate each other (neither is strictly better): keep both",
}


def _compare_front(got: Any, want: list) -> str | None:
    if not isinstance(got, (list, tuple)):
        return f"expected a list of (size, quality) pairs, got {type(got).__name__}"
    try:
        got = [tuple(p) for p in got]
    except TypeError:
        return "expected a list of (size, quality) pairs"
    return None if got == want else f"{got} (expected {want})"


def check_front(fn: Callable[[list], Any] | None, *, quiet: bool = False) -> bool:
    """Grade ``fn(points)``: the non-dominated ``(size, quality)`` pairs of a list, smallest size first.

    The right answers come from :func:`pareto_front` on rows built from the points (smaller size
    and higher quality are better; a point is dominated by one at least as good on both and
    strictly better on one, so identical points are both kept). The cases reject the classic wrong
    answers: keeping a point dominated at equal size (strict on both coordinates), dropping
    identical points (non-strict dominance, or a set), sorting by quality (best first) or not at
    all, treating smaller quality as better, and returning every point. Taught in 08_recipes.
    """
    cases = []
    for label, points in _FRONT_CASES.items():
        rows = [Result("exercise", str(i), float(q), s, None, 0.0) for i, (s, q) in enumerate(points)]
        want = [points[int(r.method)] for r in pareto_front(rows)]
        cases.append(((list(points),), want, label))
    hint = (
        "keep p unless some other point q has q.size <= p.size and q.quality >= p.quality with one of "
        "them strict; return the kept (size, quality) pairs sorted by size"
    )
    return grade("front", fn, cases, hint=hint, hints=_FRONT_HINTS, compare=_compare_front, quiet=quiet)


def check_budget_pick(answer: str | None, results: Iterable[Result], *, quiet: bool = False) -> bool:
    """Grade the method name one would ship at a 0.001 quality budget, goal size (None if unanswered).

    The right answer is ``recommend(results, max_drop=0.001, goal="size")`` computed here from the
    lesson's rows (``"none"`` when no quantized row keeps the quality within 0.001 of fp32).
    Taught in 08_recipes.
    """
    pick = recommend(_check_results(results), max_drop=0.001, goal="size")
    want = pick.method if pick is not None else "none"
    if answer is None:
        fn = None
    else:

        def fn():
            if not isinstance(answer, str):
                raise TypeError(f"the answer must be a method name (a str), got {type(answer).__name__}")
            return answer

    hint = (
        "a tighter budget rules out the recipes that lose more than 0.001 of quality; ask the table: "
        "recommend(lm_rows, max_drop=0.001, goal='size') and give its .method"
    )
    return grade("budget pick", fn, [((), want, "0.001 budget")], hint=hint, quiet=quiet)
