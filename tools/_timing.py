"""Shared timing helper for the benchmark sections."""

from __future__ import annotations

from collections.abc import Callable

from helpers.measure import measure_latency


def compare(label: str, reference: Callable[[], object], library: Callable[[], object], *, repeats: int = 7) -> dict:
    """Time ``reference`` (a course helper) and ``library`` (the kernel it mirrors) alternately; print the ratio."""
    ref = measure_latency(reference, warmup=2, repeats=repeats)
    lib = measure_latency(library, warmup=2, repeats=repeats)
    ratio = ref.median_ms / lib.median_ms
    print(f"{label:<48s} helper {ref.median_ms:9.1f} ms   library {lib.median_ms:9.1f} ms   ratio {ratio:5.2f}x")
    return {"helper_ms": round(ref.median_ms, 2), "library_ms": round(lib.median_ms, 2), "ratio": round(ratio, 3)}
