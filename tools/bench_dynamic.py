"""Benchmark: MiniLM latency, fp32 vs classic ``quantize_dynamic`` vs the lesson's mixed-precision variant.

The mixed variant is rebuilt exactly as lesson 04 builds it: a per-layer sensitivity sweep with
the course's dynamic int8 layer (per-channel weights) on one sentence per topic, then the
smallest number of most-sensitive layers kept float that brings the mean cosine on all
sentences to 0.99. Latency: the lesson's batch sizes, sentences padded to the longest in the
batch, 2 threads, medians after warm-up, ratios against fp32 measured in the same run.
Goal (issue 4): the mixed variant >= 1.2x faster than fp32 at some batch size.
"""

from __future__ import annotations

import warnings

import torch

from helpers.dynamic import (
    LATENCY_BATCH_SIZES,
    latency_sweep,
    layer_sensitivity,
    linear_names,
    minilm_batch,
    mixed_precision,
    smallest_keep_set,
)
from helpers.language import cosine_to_reference, embed, load_minilm, load_sentences

GOAL = 1.2


def run() -> dict:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    torch.manual_seed(0)
    model, tok = load_minilm()
    sentences, _ = load_sentences()
    ref = embed(model, tok, sentences)
    names = [n for n in linear_names(model) if n.startswith("encoder.")]
    subset = sentences[::6]
    sens = layer_sensitivity(model, tok, subset, ref[::6], names, weight_granularity="channel")
    ranked = sorted(names, key=lambda n: sens[n])
    keep, trace = smallest_keep_set(model, tok, sentences, ref, ranked, target=0.99)
    classic = mixed_precision(model, [], per_channel=False)
    mixed = mixed_precision(model, keep, per_channel=True)
    cos = {
        "classic": float(cosine_to_reference(embed(classic, tok, sentences), ref).mean()),
        "mixed": float(cosine_to_reference(embed(mixed, tok, sentences), ref).mean()),
    }
    print(
        f"mixed variant keeps {len(keep)} layers float; mean cosine classic {cos['classic']:.4f}, mixed {cos['mixed']:.4f}"
    )
    batches = {b: minilm_batch(tok, sentences, b) for b in LATENCY_BATCH_SIZES}
    models = {"fp32": model, "classic": classic, "mixed": mixed}
    timings = latency_sweep(models, batches, warmup=3, repeats=15)
    out: dict = {"keep_float": keep, "cosine": cos, "ratio_vs_fp32": {}, "median_ms": {}}
    print(f"{'batch':>5s} {'seq':>4s} {'fp32 ms':>9s} {'classic':>9s} {'mixed':>9s}   (speed-up vs fp32, 2 threads)")
    for b in LATENCY_BATCH_SIZES:
        base = timings["fp32"][b].median_ms
        r_classic = base / timings["classic"][b].median_ms
        r_mixed = base / timings["mixed"][b].median_ms
        seq = int(batches[b]["input_ids"].shape[1])
        print(f"{b:5d} {seq:4d} {base:9.1f} {r_classic:8.2f}x {r_mixed:8.2f}x")
        out["ratio_vs_fp32"][b] = {"classic": round(r_classic, 3), "mixed": round(r_mixed, 3)}
        out["median_ms"][b] = {k: round(timings[k][b].median_ms, 2) for k in models}
    best = max(LATENCY_BATCH_SIZES, key=lambda b: out["ratio_vs_fp32"][b]["mixed"])
    best_ratio = out["ratio_vs_fp32"][best]["mixed"]
    verdict = "meets" if best_ratio >= GOAL else "does NOT meet"
    print(f"mixed variant: best {best_ratio:.2f}x at batch {best} ({verdict} the {GOAL}x goal)")
    out["best_batch"] = best
    out["best_mixed_ratio"] = best_ratio
    out["threads"] = 2
    return out
