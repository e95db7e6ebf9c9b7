"""Shared timing for the benchmark sections: helper-vs-library ratios, the machine's matmul peaks, model tables."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping

import torch

from helpers.runtimes import format_speed_table, matmul_peaks, speed_table, time_interleaved


def compare(label: str, reference: Callable[[], object], library: Callable[[], object], *, repeats: int = 7) -> dict:
    """Time ``reference`` (a course helper) and ``library`` (the kernel it mirrors) interleaved; print the ratio.

    ``repeats`` rounds, each calling both once in a shuffled order (after 2 warm-up calls each), so a
    burst of load hits both alike; medians with min-p90.
    """
    t = time_interleaved({"helper": reference, "library": library}, rounds=repeats, calls_per_round=1, warmup=2)
    ref, lib = t["helper"], t["library"]
    ratio = ref.median_ms / lib.median_ms
    print(
        f"{label:<48s} helper {ref.median_ms:9.1f} ms ({ref.min_ms:.1f}-{ref.p90_ms:.1f})   "
        f"library {lib.median_ms:9.1f} ms ({lib.min_ms:.1f}-{lib.p90_ms:.1f})   ratio {ratio:5.2f}x"
    )
    return {
        "helper_ms": round(ref.median_ms, 2),
        "helper_min_p90_ms": [round(ref.min_ms, 2), round(ref.p90_ms, 2)],
        "library_ms": round(lib.median_ms, 2),
        "library_min_p90_ms": [round(lib.min_ms, 2), round(lib.p90_ms, 2)],
        "ratio": round(ratio, 3),
    }


@functools.cache
def peaks() -> dict:
    """The machine's matmul peaks on 2 threads (``helpers.runtimes.matmul_peaks``), measured once per run."""
    return matmul_peaks(threads=2, size=1024, gemv=2048, repeats=15)


def print_peaks(p: Mapping) -> None:
    print(
        f"matmul peaks, {p['threads']} threads: compute-bound {'x'.join(map(str, p['compute_shape']))}: "
        f"fp32 {p['compute_fp32_gflops']:.0f} GFLOP/s, int8 {p['compute_int8_gops']:.0f} GOP/s "
        f"({p['int8_over_fp32_compute']:.1f}x)"
    )
    print(
        f"  batch 1 {'x'.join(map(str, p['batch1_shape']))} (memory-bound): fp32 {p['batch1_fp32_gflops']:.1f} GFLOP/s "
        f"({p['batch1_fp32_weight_gbs']:.1f} GB/s of weights), int8 {p['batch1_int8_gops']:.1f} GOP/s "
        f"({p['batch1_int8_weight_gbs']:.1f} GB/s); batch 16: fp32 {p['batch16_fp32_gflops']:.1f}, "
        f"int8 {p['batch16_int8_gops']:.1f}"
    )


def model_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (a multiply-add = 2), counted by ``torch.utils.flop_counter``: matmuls and convolutions."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def load_average() -> float:
    """The 1-minute load average (0.0 where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def model_table(
    title: str,
    paths: Mapping[str, Callable[[], object]],
    *,
    eager: str,
    precision: Mapping[str, str],
    flops: int,
    fidelity: Mapping[str, Mapping[str, float]] | None = None,
    rounds: int = 10,
    calls_per_round: int = 3,
) -> dict:
    """Time ``paths`` in one interleaved loop and print/return their table.

    ``precision`` says "fp32" or "int8" per path: the fp32 ones compete for the best-fp32 baseline,
    and each path's achieved rate (``flops`` per median call) is given as a % of the matching
    matmul peak (fp32 GFLOP/s or int8 GOP/s, compute-bound shape). ``fidelity`` adds per-path
    figures (top-1 agreement, SQNR, cosine to fp32).
    """
    peak = peaks()
    timings = time_interleaved(paths, rounds=rounds, calls_per_round=calls_per_round, warmup=2)
    rows = speed_table(timings, eager=eager, fp32=[n for n in paths if precision[n] == "fp32"])
    print(f"--- {title}: {flops / 1e9:.2f} GFLOP per call, {load_average():.2f} load")
    print(format_speed_table(rows))
    out_paths = {}
    for row in rows:
        name = row["name"]
        rate = flops / (row["median_ms"] / 1e3) / 1e9
        top = peak["compute_fp32_gflops"] if precision[name] == "fp32" else peak["compute_int8_gops"]
        entry = {
            "precision": precision[name],
            "median_ms": round(row["median_ms"], 3),
            "min_ms": round(row["min_ms"], 3),
            "p90_ms": round(row["p90_ms"], 3),
            "samples": timings[name].samples,
            "vs_eager": round(row["vs_eager"], 3),
            "vs_best_fp32": round(row["vs_best_fp32"], 3),
            "g_ops_per_s": round(rate, 1),
            "pct_of_peak": round(100 * rate / top, 1),
        }
        for key, value in ((fidelity or {}).get(name) or {}).items():
            entry[key] = round(value, 4) if isinstance(value, float) and math.isfinite(value) else value
        out_paths[name] = entry
    extra = []
    for name, e in out_paths.items():
        fid = ", ".join(f"{k} {e[k]}" for k in ("top1_agree", "sqnr_db", "cosine") if k in e)
        extra.append(
            f"  {name:<40s} {e['g_ops_per_s']:7.1f} G{'FLOP' if e['precision'] == 'fp32' else 'OP'}/s = "
            f"{e['pct_of_peak']:5.1f}% of the {e['precision']} peak" + (f"; {fid}" if fid else "")
        )
    print("\n".join(extra), flush=True)
    return {"gflop_per_call": round(flops / 1e9, 4), "best_fp32": rows[0]["best_fp32"], "paths": out_paths}
