"""Argument checks shared by every public helper.

Each check raises a ``TypeError`` (wrong kind of object or dtype) or a ``ValueError``
(right kind, wrong value) whose message names the argument and the allowed values, e.g.
``ValueError("bits must be an integer in 1..16, got 0")``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

__all__ = [
    "check_bits",
    "check_choice",
    "check_float_tensor",
    "check_tensor",
    "check_positive",
    "check_min_max",
    "check_axis",
    "check_int",
    "check_finite_number",
]


def check_int(value: Any, name: str, lo: int | None = None, hi: int | None = None) -> int:
    """Return ``value`` as int if it is an integer (not bool) within ``lo..hi``."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else str(lo)
        hi_s = "inf" if hi is None else str(hi)
        raise ValueError(f"{name} must be an integer in {lo_s}..{hi_s}, got {value}")
    return value


def check_bits(bits: Any, lo: int = 1, hi: int = 16, name: str = "bits") -> int:
    """Return ``bits`` if it is an integer bit width in ``lo..hi``."""
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"{name} must be an integer in {lo}..{hi}, got {type(bits).__name__}")
    if not lo <= bits <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {bits}")
    return bits


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``; the error lists them."""
    choices = tuple(choices)
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    return value


def check_tensor(x: Any, name: str, *, allow_empty: bool = False) -> torch.Tensor:
    """Return ``x`` if it is a torch.Tensor (non-empty unless ``allow_empty``)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not allow_empty and x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty tensor, got shape {tuple(x.shape)}")
    return x


def check_float_tensor(
    x: Any,
    name: str,
    *,
    allow_empty: bool = False,
    allow_nonfinite: bool = False,
) -> torch.Tensor:
    """Return ``x`` if it is a non-empty floating-point tensor with finite values.

    Integer, bool and complex tensors raise ``TypeError``; NaN or inf raise ``ValueError``
    unless ``allow_nonfinite``.
    """
    check_tensor(x, name, allow_empty=allow_empty)
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), got dtype {x.dtype}"
        )
    if not allow_nonfinite and x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must contain only finite values (no NaN or inf)")
    return x


def check_float32_tensor(x: Any, name: str, *, kernel: str) -> torch.Tensor:
    """Return ``x`` if it is a non-empty float32 tensor (values unchecked): what ``kernel`` accepts."""
    check_tensor(x, name)
    if x.dtype != torch.float32:
        raise TypeError(
            f"{name} must be a float32 tensor, as {kernel} require; got dtype {x.dtype}: pass {name}.float()"
        )
    return x


def check_finite_number(value: Any, name: str) -> float:
    """Return ``value`` as a float if it is a finite real number (or a 1-element tensor)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def check_positive(scale: Any, name: str = "scale") -> None:
    """Raise unless every entry of ``scale`` (number or tensor) is finite and > 0."""
    if isinstance(scale, torch.Tensor):
        if scale.numel() == 0:
            raise ValueError(f"{name} must be non-empty")
        if not scale.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {scale.dtype}")
        if not bool(torch.isfinite(scale).all()) or not bool((scale > 0).all()):
            raise ValueError(f"{name} must be finite and > 0 everywhere, got min {scale.min().item():.6g}")
        return
    value = check_finite_number(scale, name)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def check_min_max(x_min: Any, x_max: Any, names: tuple[str, str] = ("x_min", "x_max")) -> None:
    """Raise unless ``x_min <= x_max`` everywhere and both are finite."""
    lo_name, hi_name = names
    lo = torch.as_tensor(x_min, dtype=torch.float64)
    hi = torch.as_tensor(x_max, dtype=torch.float64)
    if lo.numel() == 0 or hi.numel() == 0:
        raise ValueError(f"{lo_name} and {hi_name} must be non-empty")
    if not bool(torch.isfinite(lo).all()) or not bool(torch.isfinite(hi).all()):
        raise ValueError(f"{lo_name} and {hi_name} must be finite (no NaN or inf)")
    if lo.shape != hi.shape and lo.numel() != 1 and hi.numel() != 1:
        raise ValueError(
            f"{lo_name} and {hi_name} must have the same shape, got {tuple(lo.shape)} and {tuple(hi.shape)}"
        )
    if bool((lo > hi).any()):
        raise ValueError(f"{lo_name} must be <= {hi_name}, got {lo_name}={lo.min().item():.6g} > {hi_name}")


def check_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    """Return ``axis`` normalised to ``0..ndim-1``; negative axes count from the end."""
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"{name} must be an int in {-ndim}..{ndim - 1}, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name} must be in {-ndim}..{ndim - 1} for a {ndim}-d tensor, got {axis}")
    return axis % ndim
