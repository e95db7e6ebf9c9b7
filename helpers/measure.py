"""Honest measurement: serialized size, storage bytes, and a latency harness.

* Size is the byte count of ``torch.save(state_dict)`` — what lands on disk — not ``numel()``,
  which counts packed int8/4-bit weights wrongly.
* Latency: warm-up runs, then the median of repeated timed runs, with the torch thread count
  fixed and reported; quantized models are always compared with a baseline measured in the
  same run and reported as a ratio.

Taught in 04_dynamic; used by every lesson that measures a model.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch
from torch import nn

from helpers._validate import check_int

__all__ = [
    "serialized_size",
    "unique_storage_bytes",
    "tensor_bytes",
    "Timing",
    "measure_latency",
    "latency_ratio",
    "fmt_mb",
]


def serialized_size(obj: nn.Module | dict) -> int:
    """Bytes of ``torch.save(obj.state_dict())`` (or of a state-dict ``obj``) in memory."""
    if isinstance(obj, nn.Module):
        state = obj.state_dict()
    elif isinstance(obj, dict):
        state = obj
    else:
        raise TypeError(f"obj must be an nn.Module or a state_dict, got {type(obj).__name__}")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes


def unique_storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the storages behind ``tensors``, each storage counted once (views and tied weights share one).

    The course's one byte counter: ``tensor_bytes`` and ``helpers.bnb``'s model and optimizer-state
    counts are built on it.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors must hold torch.Tensor values, got {type(t).__name__}")
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key in seen:
            continue
        seen.add(key)
        total += storage.nbytes()
    return total


def tensor_bytes(model: nn.Module) -> int:
    """Bytes held by every parameter and buffer of ``model`` (each storage counted once)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return unique_storage_bytes(list(model.parameters()) + list(model.buffers()))


def fmt_mb(n_bytes: int) -> str:
    """``n_bytes`` as megabytes (10^6) with one decimal, e.g. ``'90.9 MB'``."""
    return f"{n_bytes / 1e6:.1f} MB"


class Timing(NamedTuple):
    """Result of ``measure_latency``: median and spread in milliseconds, and the setup used."""

    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    threads: int


def measure_latency(
    fn: Callable[[], Any],
    *,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = 2,
    min_time_s: float = 0.0,
) -> Timing:
    """Median wall time of ``fn()`` after ``warmup`` calls, over ``repeats`` timed calls.

    ``threads`` fixes ``torch.set_num_threads`` for the measurement (restored afterwards);
    ``None`` keeps the current setting. ``min_time_s`` keeps repeating until that much time has
    been spent, so very fast calls get enough samples. Runs under ``torch.inference_mode``.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    warmup = check_int(warmup, "warmup", lo=0)
    repeats = check_int(repeats, "repeats", lo=1)
    before = torch.get_num_threads()
    if threads is not None:
        threads = check_int(threads, "threads", lo=1, hi=256)
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                fn()
            samples: list[float] = []
            spent = 0.0
            while len(samples) < repeats or spent < min_time_s:
                start = time.perf_counter()
                fn()
                dt = time.perf_counter() - start
                samples.append(dt * 1e3)
                spent += dt
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    return Timing(statistics.median(samples), min(samples), max(samples), len(samples), warmup, used)


def latency_ratio(baseline: Timing, other: Timing) -> float:
    """Speed-up of ``other`` over ``baseline``: ``baseline.median / other.median`` (> 1 means faster)."""
    if not isinstance(baseline, Timing) or not isinstance(other, Timing):
        raise TypeError("baseline and other must be Timing results of measure_latency")
    return baseline.median_ms / other.median_ms
