"""Grading for the lessons' exercises: run the learner's function, say what is wrong, give a hint.

Every exercise in the course has three parts: a learner stub with its own name (``my_...``, which
raises ``NotImplementedError`` or is ``None`` until written), a checker from the lesson's helper
module, and a separate reference solution in a collapsed cell. A checker is built on
:func:`grade`: it computes the right answers itself (from torch or a course helper proven equal
to torch), never from the reference solution, and it includes the inputs on which the classic
wrong answers fail, so that a test can show each one is rejected (see ``tests/test_exercises.py``).

A checker prints one line and returns ``True``/``False``; it never raises, so a notebook that
runs top to bottom with an unwritten stub still runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

__all__ = ["grade", "same", "close"]

Compare = Callable[[Any, Any], "str | None"]


def _describe(value: Any, limit: int = 60) -> str:
    if isinstance(value, torch.Tensor):
        if value.numel() <= 6:
            text = f"tensor({value.tolist()}, dtype={str(value.dtype).removeprefix('torch.')})"
        else:
            text = f"tensor of shape {tuple(value.shape)}, dtype {str(value.dtype).removeprefix('torch.')}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def same(got: Any, want: Any) -> str | None:
    """Exact agreement: tensors must match in dtype, shape and every element (NaN equal to NaN)."""
    if isinstance(want, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a tensor, got {type(got).__name__}"
        if got.dtype != want.dtype:
            return f"dtype {got.dtype} (expected {want.dtype})"
        if got.shape != want.shape:
            return f"shape {tuple(got.shape)} (expected {tuple(want.shape)})"
        bad = ~((got == want) | (got.isnan() & want.isnan()) if want.is_floating_point() else (got == want))
        if bad.any():
            i = int(bad.flatten().nonzero()[0])
            n = int(bad.sum())
            return f"{n} of {want.numel()} values differ; first at flat index {i}: {got.flatten()[i].item()!r} (expected {want.flatten()[i].item()!r})"
        return None
    if isinstance(want, float):
        if not isinstance(got, (int, float)) or isinstance(got, bool):
            return f"expected a number, got {type(got).__name__}"
        if got == want or (math.isnan(want) and math.isnan(got)):
            return None
        return f"{got!r} (expected {want!r})"
    if isinstance(want, tuple) and isinstance(got, tuple) and len(got) == len(want):
        for k, (g, w) in enumerate(zip(got, want)):
            why = same(g, w)
            if why:
                return f"element {k}: {why}"
        return None
    return None if got == want else f"{_describe(got)} (expected {_describe(want)})"


def close(rtol: float = 1e-5, atol: float = 1e-6) -> Compare:
    """Agreement within ``rtol``/``atol`` (for float answers whose last bit depends on summation order)."""

    def compare(got: Any, want: Any) -> str | None:
        if isinstance(want, torch.Tensor):
            if not isinstance(got, torch.Tensor):
                return f"expected a tensor, got {type(got).__name__}"
            if got.shape != want.shape:
                return f"shape {tuple(got.shape)} (expected {tuple(want.shape)})"
            g, w = got.double(), want.double()
            bad = (g - w).abs() > atol + rtol * w.abs()
            if bad.any():
                i = int(bad.flatten().nonzero()[0])
                return f"{int(bad.sum())} of {w.numel()} values differ; first at flat index {i}: {g.flatten()[i].item():.6g} (expected {w.flatten()[i].item():.6g})"
            return None
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return f"expected a number, got {type(got).__name__}"
        return None if abs(got - want) <= atol + rtol * abs(want) else f"{got!r} (expected {want!r})"

    return compare


def grade(
    name: str,
    fn: Callable[..., Any] | None,
    cases: Iterable[tuple[Sequence[Any], Any]],
    *,
    hint: str,
    compare: Compare = same,
    hints: dict[str, str] | None = None,
    quiet: bool = False,
) -> bool:
    """Run ``fn(*args)`` on each case; print one line; return whether every case agrees.

    A case is ``(args, expected)`` or ``(args, expected, label)``. ``hint`` is printed when the
    function is missing or wrong; ``hints`` maps a case label to a more specific hint for that
    case (e.g. ``"ties"`` -> "round half to even, not half up"). ``quiet=True`` only returns the
    verdict (for tests that show a classic wrong answer is rejected).
    """

    def say(text: str) -> None:
        if not quiet:
            print(text)

    if fn is None:
        say(f"{name}: not written yet. Hint: {hint}")
        return False
    n = 0
    for case in cases:
        args, want, *label = case
        label = label[0] if label else None
        try:
            got = fn(*args)
        except NotImplementedError:
            say(f"{name}: not written yet. Hint: {hint}")
            return False
        except Exception as exc:  # the learner's code may raise anything; report it, do not crash the lesson
            say(f"{name}: raised {type(exc).__name__}: {exc} (case {label or n + 1}). Hint: {hint}")
            return False
        why = compare(got, want)
        if why is not None:
            specific = (hints or {}).get(label, hint) if label else hint
            where = f"case '{label}'" if label else f"case {n + 1}"
            say(f"{name}: not yet - {where}: {why}. Hint: {specific}")
            return False
        n += 1
    say(f"{name}: correct ({n} cases)")
    return True
